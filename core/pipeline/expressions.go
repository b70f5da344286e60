package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/wiz-run/wiz/core/expr"
	"github.com/wiz-run/wiz/core/secrets"
)

// Field types with rules for expressions (FieldSpec.Type).
const (
	// FieldScript is a POSIX shell script: each "${{ E }}" in it becomes a
	// reference to an environment variable that holds E's value, so no
	// value is ever read as shell syntax. A sibling field "shell", when
	// set, names the shell, which must be a POSIX one.
	FieldScript = "script"
	// FieldCode is program text of another language (a jq filter): "${{ }}"
	// is refused in it, since a value spliced into code becomes code.
	FieldCode = "code"
	// FieldOutputs is a map whose keys name outputs the processor makes
	// (std/exec's outputs: {NAME: PATH}).
	FieldOutputs = "outputs"
)

// MaxValue is the largest value one expression may give: the kernel's
// limit for one argument or environment variable (MAX_ARG_STRLEN).
const MaxValue = 128 << 10

// ExprVarPrefix starts the names of the environment variables that carry
// the values of a script's expressions: WIZ_EXPR_0, WIZ_EXPR_1, ...
const ExprVarPrefix = "WIZ_EXPR_"

// Template is one string of a processor's config that holds expressions.
type Template struct {
	Parts []TemplatePart
	// Script: the string is a shell script (FieldScript).
	Script bool
	// Native: the string is one expression in a field of another type than
	// string, which gets the value itself, not its text.
	Native bool
}

// TemplatePart is literal text, an expression, or "${{ files.NAME }}".
type TemplatePart struct {
	Lit  string
	Prog *expr.Program
	// File names the input of "${{ files.NAME }}", whose path the executor
	// substitutes.
	File string
	// Var is the environment variable a script's expression becomes.
	Var string
	// Secret names the secret of "${{ secrets.NAME }}" (in an env value),
	// which renders as a marker the executor replaces (secrets.Marker).
	Secret string
}

// Templates are the expressions of a processor's `with`.
type Templates struct {
	with any // With, with each string that holds an expression as a *Template
	// Refs are the processors the expressions name, sorted.
	Refs []string
	// Outputs are the outputs they name, as "PROCESSOR.OUTPUT", sorted.
	Outputs []string
}

var filesExprRE = regexp.MustCompile(`^files\.([A-Za-z0-9_.-]+)$`)

// compileExprs compiles the expressions of the pipeline: its when and env,
// and each processor's when and `with`. specs are the processors' type
// specs (nil entries when unknown).
func (p *Pipeline) compileExprs(specs []*TypeSpec, errorf func(Position, string, ...any)) {
	p.Exprs, p.EnvTemplates, p.envSecretRefs = nil, nil, nil
	for _, n := range p.Processors {
		n.Templates, n.envSecretRefs = nil, nil
	}
	if !p.hasExprs() {
		return // a CEL environment costs milliseconds and megabytes: none is made
	}
	types := make(map[string]string, len(p.Inputs))
	for _, in := range p.Inputs {
		types[in.Name] = in.Type
	}
	env, err := expr.NewEnv(types)
	if err != nil {
		errorf(Position{File: p.File, Line: 1, Col: 1}, "%v", err)
		return
	}
	p.Exprs = env
	names := make([]string, len(p.Processors))
	for i, n := range p.Processors {
		names[i] = n.Name
	}
	top := &expr.Scope{Processors: names, NoProcessors: true}
	if p.When != nil {
		if prog, err := compileExpr(env, p.When.Src, top, true); err != nil {
			errorf(p.When.Pos, "when: %v", err)
		} else {
			p.When.Prog = prog
		}
	}
	p.EnvTemplates = nil
	for _, k := range slices.Sorted(mapKeys(p.Env)) {
		t, err := compileTemplate(env, p.Env[k], top, nil, false, true)
		if err != nil {
			errorf(Position{File: p.File, Line: 1, Col: 1}, "env.%s: %v", k, err)
			continue
		}
		for _, name := range t.secretNames() {
			p.envSecretRefs = append(p.envSecretRefs, SecretRef{Name: name, Pos: Position{File: p.File, Line: 1, Col: 1}})
		}
		if t != nil {
			if p.EnvTemplates == nil {
				p.EnvTemplates = map[string]*Template{}
			}
			p.EnvTemplates[k] = t
		}
	}
	mains := map[string]bool{}
	for _, n := range p.Processors {
		if !n.Finally {
			mains[n.Name] = true
		}
	}
	for i, n := range p.Processors {
		scope := &expr.Scope{Processors: names, Processor: n.Name, Finally: n.Finally, Upstream: p.upstream(n, mains)}
		if fe := n.ForEach; fe != nil && fe.Expr != nil {
			// The list is evaluated before there are instances.
			if prog, err := compileExpr(env, fe.Expr.Src, scope, false); err != nil {
				errorf(fe.Pos, "for_each of %s: %v", n.Name, err)
			} else {
				fe.Expr.Prog = prog
			}
		}
		scope.ForEach = n.ForEach != nil
		if n.When != nil {
			if prog, err := compileExpr(env, n.When.Src, scope, true); err != nil {
				errorf(n.When.Pos, "when of %s: %v", n.Name, err)
			} else {
				n.When.Prog = prog
			}
		}
		var spec *TypeSpec
		if i < len(specs) {
			spec = specs[i]
		}
		n.Templates = nil
		if hasRef(n.With) {
			n.compileWith(env, scope, spec, errorf)
		}
	}
}

// hasExprs reports whether the pipeline holds any expression.
func (p *Pipeline) hasExprs() bool {
	if p.When != nil {
		return true
	}
	for _, v := range p.Env {
		if expr.HasExpr(v) {
			return true
		}
	}
	for _, n := range p.Processors {
		if n.When != nil || n.ForEach != nil && n.ForEach.Expr != nil || hasRef(n.With) {
			return true
		}
	}
	return false
}

// upstream returns a test of whether a processor is upstream of n: an
// ancestor through inputs or after, or, for a finally processor, any main
// processor. The ancestors are found once, on first use.
func (p *Pipeline) upstream(n *ProcessorNode, mains map[string]bool) func(string) bool {
	var anc map[string]bool
	return func(name string) bool {
		if n.Finally && mains[name] {
			return true
		}
		if anc == nil {
			anc = map[string]bool{}
			stack := []int64{n.ID()}
			for len(stack) > 0 {
				id := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				to := p.Graph.To(id)
				for to.Next() {
					u := to.Node().(*ProcessorNode)
					if !anc[u.Name] {
						anc[u.Name] = true
						stack = append(stack, u.ID())
					}
				}
			}
		}
		return anc[name]
	}
}

// compileWith compiles the expressions of n's `with`.
func (n *ProcessorNode) compileWith(env *expr.Env, scope *expr.Scope, spec *TypeSpec, errorf func(Position, string, ...any)) {
	fields := map[string]FieldSpec{}
	if spec != nil {
		for _, f := range spec.Fields {
			fields[f.Name] = f
		}
	}
	inputs := make([]string, len(n.Inputs))
	for i, b := range n.Inputs {
		inputs[i] = b.Name
	}
	ts := &Templates{}
	refs, outs := map[string]bool{}, map[string]bool{}
	vars := 0
	out := make(map[string]any, len(n.With))
	for key, pos := range sortedPositions(n.WithPos) {
		f := fields[key]
		var err error
		switch {
		case f.Type == FieldCode && hasRef(n.With[key]):
			err = fmt.Errorf("%s is code (%s): ${{ }} cannot be spliced into it, as a value would become code; pass the value as an input of the processor instead", key, n.Uses)
		case f.Type == FieldScript:
			script, _ := n.With[key].(string)
			if err = checkShell(n.With["shell"]); err == nil {
				err = checkScriptQuoting(script)
			}
			if err == nil {
				var t *Template
				t, err = compileTemplate(env, script, scope, inputs, false, false)
				if t != nil {
					t.Script = true
					for i := range t.Parts {
						if t.Parts[i].Prog != nil || t.Parts[i].File != "" {
							t.Parts[i].Var = ExprVarPrefix + strconv.Itoa(vars)
							vars++
						}
					}
					out[key] = t
				} else {
					out[key] = n.With[key]
				}
			}
		default:
			typed := f.Type != "" && f.Type != "string" && f.Type != FieldScript
			// A native type's with.env may hold secrets: it becomes the
			// program's environment.
			withSecrets := key == "env" && spec != nil && spec.Native
			out[key], err = compileValue(env, n.With[key], scope, inputs, typed, withSecrets)
			if err == nil && withSecrets {
				for _, name := range templateSecrets(out[key]) {
					n.envSecretRefs = append(n.envSecretRefs, SecretRef{Name: name, Pos: pos})
				}
			}
		}
		if err != nil {
			errorf(pos, "with.%s of %s: %v", key, n.Name, err)
			continue
		}
		collect(out[key], refs, outs)
	}
	ts.with = out
	ts.Refs = slices.Sorted(mapKeys(refs))
	ts.Outputs = slices.Sorted(mapKeys(outs))
	n.Templates = ts
}

// compileValue compiles the strings of a config value, at any depth.
func compileValue(env *expr.Env, v any, scope *expr.Scope, inputs []string, typed, withSecrets bool) (any, error) {
	switch x := v.(type) {
	case string:
		t, err := compileTemplate(env, x, scope, inputs, typed, withSecrets)
		if t == nil || err != nil {
			return x, err
		}
		return t, nil
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			c, err := compileValue(env, item, scope, inputs, false, withSecrets)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			c, err := compileValue(env, item, scope, inputs, false, withSecrets)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	}
	return v, nil
}

// compileTemplate compiles the expressions of s; nil when it has none (an
// escaped "$${{" turns into the literal text). inputs are the processor's
// inputs, which "${{ files.NAME }}" may name; nil forbids files.
// withSecrets allows "${{ secrets.NAME }}" (an env value).
func compileTemplate(env *expr.Env, s string, scope *expr.Scope, inputs []string, typed, withSecrets bool) (*Template, error) {
	if !expr.HasExpr(s) {
		return nil, nil
	}
	parts, err := expr.ParseTemplate(s)
	if err != nil {
		return nil, fmt.Errorf("in %q: %w", abbreviate(s), err)
	}
	t := &Template{}
	any := false
	for _, part := range parts {
		if !part.IsExpr() {
			t.Parts = append(t.Parts, TemplatePart{Lit: part.Lit})
			continue
		}
		any = true
		if m := filesExprRE.FindStringSubmatch(part.Expr); m != nil {
			if inputs == nil {
				return nil, fmt.Errorf("${{ files.%s }}: only a processor's config can name its input files", m[1])
			}
			if !slices.Contains(inputs, m[1]) {
				have := "it has no inputs; add inputs: {" + m[1] + ": PROCESSOR}"
				if len(inputs) > 0 {
					have = "its inputs: " + strings.Join(inputs, ", ")
				}
				return nil, fmt.Errorf("${{ files.%s }} names input %q, which %s does not have (%s)", m[1], m[1], scope.Processor, have)
			}
			t.Parts = append(t.Parts, TemplatePart{File: m[1]})
			continue
		}
		if m := secretRefRE.FindStringSubmatch(part.Expr); m != nil {
			if !withSecrets {
				return nil, errSecretPlace(part.Expr)
			}
			t.Parts = append(t.Parts, TemplatePart{Secret: m[1]})
			continue
		}
		prog, err := compileExpr(env, part.Expr, scope, false)
		if err != nil {
			return nil, err
		}
		t.Parts = append(t.Parts, TemplatePart{Prog: prog})
	}
	if !any {
		if len(t.Parts) == 0 {
			return nil, nil
		}
		t.Parts = []TemplatePart{{Lit: joinLits(t.Parts)}}
		return t, nil // only escapes: the literal text, unescaped
	}
	t.Native = typed && len(t.Parts) == 1 && t.Parts[0].Prog != nil
	return t, nil
}

func joinLits(parts []TemplatePart) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Lit)
	}
	return b.String()
}

// collect adds the processors and outputs that a compiled value names.
func collect(v any, refs, outs map[string]bool) {
	switch x := v.(type) {
	case *Template:
		for _, p := range x.Parts {
			if p.Prog != nil {
				for _, r := range p.Prog.Refs {
					refs[r] = true
				}
				for _, o := range p.Prog.Outputs {
					outs[o] = true
				}
			}
		}
	case []any:
		for _, it := range x {
			collect(it, refs, outs)
		}
	case map[string]any:
		for _, it := range x {
			collect(it, refs, outs)
		}
	}
}

// posixShells are the shells whose quoting checkScriptQuoting knows.
var posixShells = map[string]bool{"sh": true, "bash": true, "dash": true, "ash": true, "ksh": true, "mksh": true, "zsh": true, "busybox": true}

// checkShell accepts a POSIX shell (by the base name of `shell`), or none.
func checkShell(v any) error {
	s, _ := v.(string)
	if s == "" {
		return nil
	}
	if posixShells[path.Base(s)] {
		return nil
	}
	return fmt.Errorf("the script holds ${{ }}, which become environment variables of a POSIX shell, and shell %q is not one (sh, bash, dash, ksh, zsh); set the values in with.env (env: {X: \"${{ ... }}\"}) and read them from the environment instead", s)
}

// checkScriptQuoting refuses an expression where a shell would not expand a
// variable reference: inside single quotes, $'...', or a here-doc with a
// quoted delimiter. It follows POSIX quoting: backslash escapes outside
// single quotes, comments from a # that starts a word.
func checkScriptQuoting(s string) error {
	const hint = "; put it in double quotes (\"${{ ... }}\") or pass it through env:"
	type heredoc struct {
		word   string
		quoted bool
		strip  bool
	}
	var pending []heredoc
	line := 1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case strings.HasPrefix(s[i:], "$${{"):
			i += 3
		case strings.HasPrefix(s[i:], "${{"):
			end := strings.Index(s[i:], "}}")
			if end < 0 {
				return nil // ParseTemplate reports it
			}
			i += end + 1
		case c == '\\':
			if i+1 < len(s) && s[i+1] == '\n' {
				line++
			}
			i++
		case c == '\'' || c == '$' && i+1 < len(s) && s[i+1] == '\'':
			if c == '$' {
				i++
			}
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				end = len(s) - i - 1
			}
			body := s[i+1 : i+1+end]
			if idx := exprIndex(body); idx >= 0 {
				return fmt.Errorf("line %d of the script: ${{ }} inside single quotes would be passed as a literal $WIZ_EXPR_n%s", line+strings.Count(body[:idx], "\n"), hint)
			}
			line += strings.Count(body, "\n")
			i += end + 1
		case c == '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				switch {
				case s[i] == '\\':
					i++
				case s[i] == '\n':
					line++
				}
			}
		case c == '#' && (i == 0 || strings.IndexByte(" \t\n;&|(", s[i-1]) >= 0):
			for i < len(s) && s[i] != '\n' {
				i++
			}
			i--
		case c == '<' && strings.HasPrefix(s[i:], "<<") && !strings.HasPrefix(s[i:], "<<<"):
			m := heredocRE.FindStringSubmatch(s[i:])
			if m == nil {
				i++
				continue
			}
			word := m[2]
			quoted := strings.ContainsAny(word, `'"\`)
			pending = append(pending, heredoc{word: strings.NewReplacer(`'`, "", `"`, "", `\`, "").Replace(word), quoted: quoted, strip: m[1] == "-"})
			i += len(m[0]) - 1
		case c == '\n':
			line++
			// The here-docs opened on the line just ended: their bodies
			// follow, one after the other, each up to its delimiter line.
			pos := i + 1 // start of the next body line
			for _, h := range pending {
				for pos < len(s) {
					text, _, _ := strings.Cut(s[pos:], "\n")
					next := pos + len(text) + 1 // past the line's break
					cmp := text
					if h.strip {
						cmp = strings.TrimLeft(text, "\t")
					}
					if cmp == h.word {
						line++
						pos = next
						break
					}
					if h.quoted && exprIndex(text) >= 0 {
						return fmt.Errorf("line %d of the script: ${{ }} inside a here-doc with a quoted delimiter would be passed as a literal $WIZ_EXPR_n%s", line, hint)
					}
					line++
					pos = next
				}
			}
			pending = pending[:0]
			i = min(pos, len(s)) - 1 // the loop's i++ moves to pos
		}
	}
	return nil
}

var heredocRE = regexp.MustCompile(`^<<(-?)[ \t]*('[^'\n]*'|"[^"\n]*"|[^\s;&|<>()]+)`)

// exprIndex returns the index of the first "${{" of s that is not "$${{", or -1.
func exprIndex(s string) int {
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], "$${{") {
			i += 3
			continue
		}
		if strings.HasPrefix(s[i:], "${{") {
			return i
		}
	}
	return -1
}

// Rendered is a processor's config with the values of its expressions.
type Rendered struct {
	// Config is `with` as JSON.
	Config []byte
	// Env holds the values of a script's expressions, by variable name.
	Env map[string]string
	// FileEnv names, for a script's "${{ files.NAME }}", the input whose
	// path its variable holds.
	FileEnv map[string]string
}

// Render returns n's config with the values of its expressions, which see
// vars. A value over MaxValue, or one that cannot be rendered, is an error
// naming the expression.
func (n *ProcessorNode) Render(vars *expr.Vars) (*Rendered, error) {
	if n.Templates == nil {
		b, err := n.staticJSON()
		return &Rendered{Config: b}, err
	}
	r := &Rendered{}
	with, err := r.render(n.Templates.with, vars)
	if err != nil {
		return nil, err
	}
	if r.Config, err = jsonMarshal(with); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return r, nil
}

func (r *Rendered) render(v any, vars *expr.Vars) (any, error) {
	switch x := v.(type) {
	case *Template:
		return r.template(x, vars)
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			c, err := r.render(item, vars)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			c, err := r.render(item, vars)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	}
	return v, nil
}

func (r *Rendered) template(t *Template, vars *expr.Vars) (any, error) {
	if t.Native {
		v, err := t.Parts[0].Prog.EvalNative(vars)
		if err != nil {
			return nil, err
		}
		if s, ok := v.(string); ok && len(s) > MaxValue {
			return nil, tooLarge(t.Parts[0].Prog, len(s))
		}
		return v, nil
	}
	var b strings.Builder
	for _, p := range t.Parts {
		switch {
		case p.Prog != nil:
			s, err := p.Prog.EvalText(vars)
			if err != nil {
				return nil, err
			}
			if len(s) > MaxValue {
				return nil, tooLarge(p.Prog, len(s))
			}
			if t.Script {
				if r.Env == nil {
					r.Env = map[string]string{}
				}
				r.Env[p.Var] = s
				b.WriteString("${" + p.Var + "}")
			} else {
				b.WriteString(s)
			}
		case p.File != "" && t.Script:
			if r.FileEnv == nil {
				r.FileEnv = map[string]string{}
			}
			r.FileEnv[p.Var] = p.File
			b.WriteString("${" + p.Var + "}")
		case p.File != "":
			b.WriteString("${{ files." + p.File + " }}") // the executor's to substitute
		case p.Secret != "":
			b.WriteString(secrets.Marker(p.Secret)) // the executor's to substitute
		default:
			b.WriteString(p.Lit)
		}
	}
	return b.String(), nil
}

func tooLarge(p *expr.Program, n int) error {
	return fmt.Errorf("the value of %q is %d bytes, over the %d KiB a program's argument or variable may hold; pass it as an input of the processor instead", p.Source, n, MaxValue>>10)
}

// RenderEnv returns the pipeline's env with the values of its expressions.
func (p *Pipeline) RenderEnv(vars *expr.Vars) (map[string]string, error) {
	if len(p.Env) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(p.Env))
	for k, v := range p.Env {
		t := p.EnvTemplates[k]
		if t == nil {
			out[k] = v
			continue
		}
		var r Rendered
		s, err := r.template(t, vars)
		if err != nil {
			return nil, fmt.Errorf("env.%s: %w", k, err)
		}
		out[k] = s.(string)
	}
	return out, nil
}

func jsonMarshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// jsonText encodes a decoded YAML value as JSON text.
func jsonText(v any) (string, error) {
	b, err := jsonMarshal(v)
	if err != nil {
		return "", fmt.Errorf("cannot encode as JSON: %w", err)
	}
	return string(b), nil
}

func abbreviate(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// secretNames returns the secrets t uses; none for a nil t.
func (t *Template) secretNames() []string {
	if t == nil {
		return nil
	}
	var out []string
	for _, p := range t.Parts {
		if p.Secret != "" {
			out = append(out, p.Secret)
		}
	}
	return out
}

// templateSecrets returns the secrets the templates of a compiled config
// value use, at any depth.
func templateSecrets(v any) []string {
	switch x := v.(type) {
	case *Template:
		return x.secretNames()
	case []any:
		var out []string
		for _, item := range x {
			out = append(out, templateSecrets(item)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, k := range slices.Sorted(mapKeys(x)) {
			out = append(out, templateSecrets(x[k])...)
		}
		return out
	}
	return nil
}

// compileExpr is env.Compile, with the error that says where secrets may
// be used for an expression that names them.
func compileExpr(env *expr.Env, src string, scope *expr.Scope, isBool bool) (*expr.Program, error) {
	prog, err := env.Compile(src, scope, isBool)
	if err != nil && secretsWordRE.MatchString(src) {
		return nil, errSecretPlace(src)
	}
	return prog, err
}
