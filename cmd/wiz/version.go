package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/wiz-run/wiz/sdk"
)

// VersionCmd is `wiz version`.
type VersionCmd struct {
	Format `embed:""`
}

// Run implements the command.
func (c *VersionCmd) Run(env *Env) error {
	reg, err := env.Registry()
	if err != nil {
		return err
	}
	all, err := reg.All()
	if err != nil {
		return err
	}
	if c.Data() {
		ps := []map[string]any{}
		for _, p := range all {
			ps = append(ps, map[string]any{"name": p.Name, "kind": kindText(p.Kind), "version": p.Version, "source": p.Source})
		}
		return c.Print(map[string]any{"version": version, "plugin_protocol": sdk.ProtocolVersion, "plugins": ps})
	}
	fmt.Printf("wiz %s (plugin protocol %d)\n", version, sdk.ProtocolVersion)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tKIND\tVERSION\tSOURCE")
	for _, p := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, kindText(p.Kind), p.Version, p.Source)
	}
	return tw.Flush()
}
