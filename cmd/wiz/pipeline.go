package main

import (
	"fmt"
	"os"
	"text/tabwriter"
)

// PipelineCmd is `wiz pipeline`.
type PipelineCmd struct {
	Apply PipelineApplyCmd `cmd:"" help:"Validate a pipeline file and store it as the pipeline's newest version."`
	List  PipelineListCmd  `cmd:"" help:"List stored pipelines."`
	Show  PipelineShowCmd  `cmd:"" help:"Show a stored pipeline's versions and current source."`
}

// PipelineApplyCmd is `wiz pipeline apply`.
type PipelineApplyCmd struct {
	File string `arg:"" type:"existingfile" help:"Pipeline file."`
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
	if a.Changed {
		fmt.Printf("pipeline %s: stored version %d (%s)\n", a.Pipeline.Name, a.Version.Number, a.Version.Id)
	} else {
		fmt.Printf("pipeline %s: unchanged, version %d (%s)\n", a.Pipeline.Name, a.Version.Number, a.Version.Id)
	}
	return nil
}

// PipelineListCmd is `wiz pipeline list`.
type PipelineListCmd struct{}

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
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tID\tCREATED")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", p.Name, p.VersionCount, p.Id, p.Created.AsTime().Local().Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

// PipelineShowCmd is `wiz pipeline show`.
type PipelineShowCmd struct {
	Name    string `arg:"" help:"Pipeline name."`
	Version int    `help:"Show this version's source instead of the newest." default:"0"`
}

// Run implements the command.
func (c *PipelineShowCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	p, vs, err := m.PipelineVersions(c.Name)
	if err != nil {
		return err
	}
	fmt.Printf("pipeline %s (%s)\n\nVERSIONS\n", p.Name, p.Id)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tID\tFILE\tCREATED")
	show := vs[len(vs)-1]
	for _, v := range vs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", v.Number, v.Id, v.File, v.Created.AsTime().Local().Format("2006-01-02 15:04:05"))
		if int(v.Number) == c.Version {
			show = v
		}
	}
	tw.Flush()
	if c.Version != 0 && int(show.Number) != c.Version {
		return usageError{fmt.Errorf("pipeline %s has no version %d (it has 1 to %d)", p.Name, c.Version, len(vs))}
	}
	fmt.Printf("\nSOURCE (version %d)\n%s", show.Number, show.Source)
	return nil
}
