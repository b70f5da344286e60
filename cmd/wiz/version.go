package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/wiz-run/wiz/internal/pluginhost"
	"github.com/wiz-run/wiz/sdk"
)

// VersionCmd is `wiz version`.
type VersionCmd struct{}

// Run implements the command.
func (c *VersionCmd) Run(env *Env) error {
	fmt.Printf("wiz %s (plugin protocol %d)\n", version, sdk.ProtocolVersion)
	reg, err := env.Registry()
	if err != nil {
		return err
	}
	packs, err := reg.Packs()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tKIND\tVERSION\tPATH")
	for _, p := range packs {
		fmt.Fprintf(tw, "%s\tprocessor pack\t%s\t%s\n", p.Ref.Name, p.Ref.Version, p.Ref.Path)
	}
	names, err := reg.BackendNames()
	if err != nil {
		return err
	}
	for _, n := range names {
		path := reg.BackendPath(n)
		ver := "?"
		if sum, err := pluginhost.FileSHA256(path); err == nil {
			if b, err := pluginhost.LaunchBackend(pluginhost.Config{Name: n, Path: path, SHA256: sum, Logger: env.Logger()}); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if d, err := b.Describe(ctx); err == nil {
					ver = d.Version
				}
				cancel()
				b.Kill()
			} else {
				ver = "error: " + err.Error()
			}
		}
		fmt.Fprintf(tw, "%s\texecutor backend\t%s\t%s\n", n, ver, path)
	}
	return tw.Flush()
}
