package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/alecthomas/kong"
)

// helpPrinter is kong's help, with the global flags shown once: in `wiz
// --help`, not again under every command.
func helpPrinter(options kong.HelpOptions, ctx *kong.Context) error {
	if ctx.Selected() == nil {
		return kong.DefaultHelpPrinter(options, ctx)
	}
	var hidden []*kong.Flag
	for _, f := range ctx.Model.Node.Flags {
		if !f.Hidden && f.Name != "help" {
			f.Hidden = true
			hidden = append(hidden, f)
		}
	}
	defer func() {
		for _, f := range hidden {
			f.Hidden = false
		}
	}()
	if err := kong.DefaultHelpPrinter(options, ctx); err != nil {
		return err
	}
	_, err := fmt.Fprintln(ctx.Stdout, "\nGlobal flags (--home, --server, --token, --log-level, ...): see `wiz --help`.")
	return err
}

// printUsage is what a bare `wiz` prints: the commands, and where the rest
// is.
func printUsage(w io.Writer, app *kong.Application) {
	fmt.Fprintf(w, "Usage: wiz <command> [flags]\n\n%s\n\nCommands:\n", app.Help)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range app.Children {
		if !c.Hidden {
			fmt.Fprintf(tw, "  %s\t%s\n", c.Name, c.Help)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRun `wiz --help` for every command and the global flags, `wiz COMMAND --help` for one command.")
}

// CompletionCmd is `wiz completion`.
type CompletionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

// completionScripts hook wiz into each shell: the shell runs wiz with
// COMP_LINE set, and wiz prints the completions (kongplete).
var completionScripts = map[string]string{
	"bash": "complete -o default -C %[1]q wiz\n",
	"zsh":  "autoload -U +X bashcompinit && bashcompinit\ncomplete -o default -C %[1]q wiz\n",
	"fish": `function __complete_wiz
    set -lx COMP_LINE (commandline -cp)
    test -z (commandline -ct)
    and set COMP_LINE "$COMP_LINE "
    %[1]q
end
complete -f -c wiz -a "(__complete_wiz)"
`,
}

// Run implements the command.
func (c *CompletionCmd) Run(env *Env) error {
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("completion: find the wiz binary: %w", err)
	}
	fmt.Printf(completionScripts[c.Shell], bin)
	return nil
}
