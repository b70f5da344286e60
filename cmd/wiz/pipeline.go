package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// PipelineCmd is `wiz pipeline`.
type PipelineCmd struct {
	Apply PipelineApplyCmd `cmd:"" help:"Validate a pipeline file and store it as the pipeline's newest version."`
	List  PipelineListCmd  `cmd:"" help:"List stored pipelines."`
	Show  PipelineShowCmd  `cmd:"" help:"Show a stored pipeline's versions and current source."`
}

// PipelineApplyCmd is `wiz pipeline apply`.
type PipelineApplyCmd struct {
	File string `arg:"" type:"existingfile" predictor:"yaml" help:"Pipeline file."`
}

// Run implements the command.
func (c *PipelineApplyCmd) Run(env *Env) error {
	src, err := os.ReadFile(c.File)
	if err != nil {
		return usageError{fmt.Errorf("read pipeline file: %w", err)}
	}
	m, err := env.Client()
	if err != nil {
		return err
	}
	a, err := m.Apply(c.File, src)
	if err != nil {
		return err
	}
	if a.Warning != "" {
		fmt.Fprintf(os.Stderr, "wiz: warning: %s\n", a.Warning)
	}
	if a.Changed {
		fmt.Printf("pipeline %s: stored version %d (%s)\n", a.Pipeline.Name, a.Version.Number, a.Version.Id)
	} else {
		fmt.Printf("pipeline %s: unchanged, version %d (%s)\n", a.Pipeline.Name, a.Version.Number, a.Version.Id)
	}
	return nil
}

// PipelineListCmd is `wiz pipeline list`.
type PipelineListCmd struct {
	Format `embed:""`
}

// Run implements the command.
func (c *PipelineListCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	ps, err := m.Pipelines()
	if err != nil {
		return err
	}
	if c.Data() {
		out := []map[string]any{}
		for _, p := range ps {
			out = append(out, map[string]any{"name": p.Name, "id": p.Id, "versions": p.VersionCount,
				"latest_version_id": p.LatestVersionId, "created": ts(p.Created)})
		}
		return c.Print(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tID\tCREATED")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", p.Name, p.VersionCount, p.Id, p.Created.AsTime().Local().Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

// PipelineShowCmd is `wiz pipeline show`.
type PipelineShowCmd struct {
	Name    string `arg:"" help:"Pipeline name, or NAME@N for version N." placeholder:"NAME[@N]"`
	Version int    `help:"Show this version's source instead of the newest (the same as NAME@N)." default:"0"`
	Format  `embed:""`
}

// Run implements the command.
func (c *PipelineShowCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	name, want, err := nameAtVersion(c.Name, c.Version)
	if err != nil {
		return err
	}
	p, vs, err := m.PipelineVersions(name)
	if err != nil {
		return err
	}
	show := vs[len(vs)-1]
	if want != 0 {
		i := slices.IndexFunc(vs, func(v *wizpb.PipelineVersion) bool { return int(v.Number) == want })
		if i < 0 {
			return manager.NotFound(fmt.Sprintf("pipeline %s has no version %d (it has 1 to %d)", p.Name, want, len(vs)))
		}
		show = vs[i]
	}
	if c.Data() {
		var versions []map[string]any
		for _, v := range vs {
			versions = append(versions, map[string]any{"version": v.Number, "id": v.Id, "file": v.File, "created": ts(v.Created)})
		}
		return c.Print(map[string]any{"name": p.Name, "id": p.Id, "versions": versions,
			"shown_version": show.Number, "source": string(show.Source)})
	}
	fmt.Printf("pipeline %s (%s)\n\nVERSIONS\n", p.Name, p.Id)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tID\tFILE\tCREATED")
	for _, v := range vs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", v.Number, v.Id, v.File, v.Created.AsTime().Local().Format("2006-01-02 15:04:05"))
	}
	tw.Flush()
	fmt.Printf("\nSOURCE (version %d)\n%s", show.Number, show.Source)
	return nil
}

// nameAtVersion splits NAME@N; version, when not 0, is the --version flag,
// which must agree.
func nameAtVersion(arg string, version int) (string, int, error) {
	name, n, hasAt := strings.Cut(arg, "@")
	if !hasAt {
		if version < 0 {
			return "", 0, usageError{fmt.Errorf("--version %d: a version is a number from 1", version)}
		}
		return name, version, nil
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 1 || name == "" {
		return "", 0, usageError{fmt.Errorf("%q: write NAME@N, N a version number from 1", arg)}
	}
	if version != 0 && version != v {
		return "", 0, usageError{fmt.Errorf("%q and --version %d name different versions; give one", arg, version)}
	}
	return name, v, nil
}
