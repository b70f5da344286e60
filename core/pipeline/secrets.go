package pipeline

import (
	"fmt"
	"regexp"
	"slices"
)

// SecretRef is a use of a secret in a pipeline file.
type SecretRef struct {
	Name string
	Pos  Position
}

// secretRefRE matches the expression of "${{ secrets.NAME }}".
var secretRefRE = regexp.MustCompile(`^\s*(?:\$\{\{\s*)?secrets\.([A-Za-z_][A-Za-z0-9_]*)(?:\s*\}\})?\s*$`)

// secretsWordRE finds a mention of secrets in an expression that is not a
// plain secrets.NAME.
var secretsWordRE = regexp.MustCompile(`(^|[^A-Za-z0-9_.])secrets\b`)

// errSecretPlace says where a secret may be used.
func errSecretPlace(expr string) error {
	return fmt.Errorf("${{ %s }}: a secret may appear only as ${{ secrets.NAME }} in env: values (the pipeline's env, defaults.env or with.env of a native type like std/exec) and in secret_files, so that it reaches a program as a variable or a file, never as config or script text", expr)
}

// SecretRefs returns every use of a secret in the pipeline (its env, its
// processors' with.env and secret_files), by position. Valid after
// Validate.
func (p *Pipeline) SecretRefs() []SecretRef {
	out := slices.Clone(p.envSecretRefs)
	for _, n := range p.Processors {
		out = append(out, n.envSecretRefs...)
		out = append(out, n.secretFileRefs...)
	}
	slices.SortStableFunc(out, func(a, b SecretRef) int { return a.Pos.compare(b.Pos) })
	return out
}

// Secrets returns the names of the secrets a task of n needs, sorted: those
// of the pipeline's env, its with.env and its secret_files. Only a native
// type's task takes secrets; others get none.
func (p *Pipeline) Secrets(n *ProcessorNode) []string {
	var names []string
	for _, refs := range [][]SecretRef{p.envSecretRefs, n.envSecretRefs, n.secretFileRefs} {
		for _, r := range refs {
			names = append(names, r.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// checkSecretFiles checks that n, which has secret_files, can take them.
func (n *ProcessorNode) checkSecretFiles(spec *TypeSpec, errorf func(Position, string, ...any)) {
	if len(n.secretFileRefs) == 0 && n.SecretFiles == nil {
		return
	}
	switch {
	case n.Child != nil:
		errorf(n.secretFilesPos, "secret_files on %s, a sub-pipeline: give the secret_files to the processors inside it", n.Name)
	case spec != nil && !spec.Native:
		errorf(n.secretFilesPos, "secret_files on %s: %s runs inside its pack, and only a native type (like std/exec or std/shell) takes secret files", n.Name, n.Uses)
	}
}
