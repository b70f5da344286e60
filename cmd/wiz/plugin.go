package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/internal/plugins"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// PluginCmd is `wiz plugin`.
type PluginCmd struct {
	Install PluginInstallCmd `cmd:"" help:"Install a plugin: a binary, a directory holding one, or a .tar.gz holding one."`
	List    PluginListCmd    `cmd:"" help:"List installed plugins."`
	Info    PluginInfoCmd    `cmd:"" help:"Show a plugin's versions, types and config fields."`
	Remove  PluginRemoveCmd  `cmd:"" help:"Remove an installed plugin (NAME or NAME@VERSION)."`
}

// PluginInstallCmd is `wiz plugin install`.
type PluginInstallCmd struct {
	Path   string `arg:"" help:"Plugin binary, directory or .tar.gz."`
	Format `embed:""`
}

// Run implements the command.
func (c *PluginInstallCmd) Run(env *Env) error {
	reg, err := env.Registry()
	if err != nil {
		return err
	}
	p, fresh, err := reg.Install(context.Background(), c.Path)
	if err != nil {
		return err
	}
	if c.Data() {
		out := pluginJSON(p)
		out["fresh"] = fresh
		return c.Print(out)
	}
	what := "installed"
	if !fresh {
		what = "already installed"
	}
	fmt.Printf("%s %s %s %s (sha256 %s)\n", what, kindText(p.Kind), p.Name, p.Version, p.SHA256)
	if len(p.Types) > 0 {
		fmt.Printf("types: %s\n", strings.Join(p.Types, ", "))
	}
	return nil
}

// PluginListCmd is `wiz plugin list`.
type PluginListCmd struct {
	Format `embed:""`
}

// Run implements the command.
func (c *PluginListCmd) Run(env *Env) error {
	reg, err := env.Registry()
	if err != nil {
		return err
	}
	all, err := reg.All()
	if err != nil {
		return err
	}
	if c.Data() {
		out := []map[string]any{}
		for _, p := range all {
			out = append(out, pluginJSON(p))
		}
		return c.Print(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tVERSION\tTYPES\tSOURCE")
	for _, p := range all {
		types := strings.Join(p.Types, ",")
		if types == "" {
			types = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, kindText(p.Kind), p.Version, types, p.Source)
	}
	return tw.Flush()
}

// PluginInfoCmd is `wiz plugin info`.
type PluginInfoCmd struct {
	Name   string `arg:"" help:"Plugin name."`
	Format `embed:""`
}

// Run implements the command.
func (c *PluginInfoCmd) Run(env *Env) error {
	reg, err := env.Registry()
	if err != nil {
		return err
	}
	all, err := reg.All()
	if err != nil {
		return err
	}
	found := false
	var data []map[string]any
	for _, p := range all {
		if p.Name != c.Name {
			continue
		}
		found = true
		if c.Data() {
			data = append(data, pluginJSON(p))
			continue
		}
		fmt.Printf("%s %s (%s)\n", p.Name, p.Version, kindText(p.Kind))
		fmt.Printf("  protocol  %d\n  sha256    %s\n  path      %s\n  source    %s\n", p.ProtocolVersion, p.SHA256, p.Path, p.Source)
		if p.Desc != nil {
			for _, t := range p.Desc.Types {
				kind := "data processor"
				if t.Kind == wizrpc.TypeKind_TYPE_KIND_NATIVE {
					kind = "native program"
				}
				fmt.Printf("  type %s/%s (%s): %s\n", p.Name, t.Name, kind, t.Doc)
				for _, f := range t.Fields {
					extra := ""
					if f.Required {
						extra = ", required"
					}
					if f.DefaultJson != "" {
						extra += ", default " + f.DefaultJson
					}
					fmt.Printf("      %-10s %s%s — %s\n", f.Name, f.Type, extra, f.Doc)
				}
			}
		}
		fmt.Println()
	}
	if found && c.Data() {
		return c.Print(data)
	}
	if !found {
		return manager.NotFound(fmt.Sprintf("no plugin named %q is installed; `wiz plugin list` shows the installed ones", c.Name))
	}
	return nil
}

// PluginRemoveCmd is `wiz plugin remove`.
type PluginRemoveCmd struct {
	Plugin string `arg:"" help:"NAME (every installed version) or NAME@VERSION."`
}

// Run implements the command.
func (c *PluginRemoveCmd) Run(env *Env) error {
	reg, err := env.Registry()
	if err != nil {
		return err
	}
	name, ver, _ := strings.Cut(c.Plugin, "@")
	removed, err := reg.Remove(name, ver)
	if errors.Is(err, plugins.ErrNotInstalled) {
		return manager.NotFound(err.Error())
	}
	if err != nil {
		return usageError{err}
	}
	for _, p := range removed {
		fmt.Printf("removed %s %s\n", p.Name, p.Version)
	}
	return nil
}

// pluginJSON is a plugin in -o json and yaml: its manifest and, for a pack,
// its types with their config fields.
func pluginJSON(p *plugins.Plugin) map[string]any {
	out := map[string]any{"name": p.Name, "kind": kindText(p.Kind), "version": p.Version,
		"protocol_version": p.ProtocolVersion, "sha256": p.SHA256, "path": p.Path, "source": p.Source}
	types := []map[string]any{}
	if p.Desc != nil {
		for _, t := range p.Desc.Types {
			kind := "data"
			if t.Kind == wizrpc.TypeKind_TYPE_KIND_NATIVE {
				kind = "native"
			}
			fields := []map[string]any{}
			for _, f := range t.Fields {
				fm := map[string]any{"name": f.Name, "type": f.Type, "required": f.Required, "doc": f.Doc}
				if f.DefaultJson != "" {
					fm["default"] = json.RawMessage(f.DefaultJson)
				}
				fields = append(fields, fm)
			}
			types = append(types, map[string]any{"name": p.Name + "/" + t.Name, "kind": kind, "doc": t.Doc, "fields": fields})
		}
	} else {
		for _, t := range p.Types {
			types = append(types, map[string]any{"name": t})
		}
	}
	out["types"] = types
	return out
}

func kindText(k string) string {
	if k == plugins.KindPack {
		return "processor-pack"
	}
	return "executor-backend"
}
