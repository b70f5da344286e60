package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// CacheCmd is `wiz cache`: the results runs may reuse (cache: on a
// processor).
type CacheCmd struct {
	List  CacheListCmd  `cmd:"" help:"List the cached results: pipeline, processor, the run that made them, age and size."`
	Clear CacheClearCmd `cmd:"" help:"Delete cached results, of one pipeline or all; the next runs run those processors again."`
}

// CacheListCmd is `wiz cache list`.
type CacheListCmd struct {
	Format `embed:""`
}

// Run implements the command.
func (c *CacheListCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	es, err := m.CacheEntries()
	if err != nil {
		return err
	}
	if c.Data() {
		out := []map[string]any{}
		for _, e := range es {
			out = append(out, map[string]any{"key": e.Key, "pipeline": e.Pipeline, "processor": e.Processor, "type": e.Type,
				"run": e.RunId, "created": ts(e.Created), "size": entrySize(e)})
		}
		return c.Print(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PIPELINE\tPROCESSOR\tTYPE\tRUN\tAGE\tSIZE\tKEY")
	for _, e := range es {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Pipeline, e.Processor, e.Type, e.RunId,
			fmtDuration(time.Since(e.Created.AsTime()).Round(time.Second)), fmtBytes(entrySize(e)), e.Key[:12])
	}
	return tw.Flush()
}

// entrySize is the size of a cache entry's outputs.
func entrySize(e *wizpb.CacheEntry) int64 {
	var size int64
	for _, d := range e.Outputs {
		size += int64(len(d.Inline))
		for _, f := range d.Files {
			size += f.Size
		}
	}
	return size
}

// CacheClearCmd is `wiz cache clear`.
type CacheClearCmd struct {
	Pipeline string `arg:"" optional:"" help:"Only this pipeline's entries (default: all)."`
}

// Run implements the command.
func (c *CacheClearCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	n, err := m.ClearCache(c.Pipeline)
	if err != nil {
		return err
	}
	fmt.Printf("deleted %d cache entr%s\n", n, map[bool]string{true: "y", false: "ies"}[n == 1])
	return nil
}
