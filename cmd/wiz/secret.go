package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/wiz-run/wiz/core/secrets"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// keyring returns the secrets key of the store in dir (a wiz home or a
// daemon's data dir): --secrets-key-file when given, else secrets.key there.
func (e *Env) keyring(dir string) *secrets.Keyring {
	if f := e.CLI.SecretsKeyFile; f != "" {
		abs, err := filepath.Abs(f)
		if err == nil {
			f = abs
		}
		return secrets.NewKeyring(f, true)
	}
	return secrets.NewKeyring(filepath.Join(dir, secrets.KeyFile), false)
}

// SecretCmd is `wiz secret` (also `wiz secrets`).
type SecretCmd struct {
	Set  SecretSetCmd  `cmd:"" help:"Set a secret from stdin or --from-file (admin)."`
	List SecretListCmd `cmd:"" aliases:"ls" help:"List the secrets: names and dates, never values."`
	Rm   SecretRmCmd   `cmd:"" aliases:"remove,delete" help:"Remove a secret (admin)."`
}

// SecretSetCmd is `wiz secret set NAME`.
type SecretSetCmd struct {
	Name     string `arg:"" help:"Secret name: letters, digits and _ (used as secrets.NAME in a pipeline)."`
	FromFile string `name:"from-file" type:"existingfile" placeholder:"FILE" help:"Read the value from FILE, byte for byte (default: stdin, without one trailing newline)."`
	Format   `embed:""`
}

// Run implements the command.
func (c *SecretSetCmd) Run(env *Env) error {
	if err := secrets.CheckName(c.Name); err != nil {
		return usageError{err}
	}
	var value []byte
	var err error
	if c.FromFile != "" {
		value, err = os.ReadFile(c.FromFile)
		if err != nil {
			return usageError{fmt.Errorf("--from-file: %w", err)}
		}
	} else {
		if st, serr := os.Stdin.Stat(); serr == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(os.Stderr, "value of %s (end with Ctrl-D):\n", c.Name)
		}
		value, err = io.ReadAll(io.LimitReader(os.Stdin, secrets.MaxValue+2))
		if err != nil {
			return fmt.Errorf("read the value from stdin: %w", err)
		}
		value = trimNewline(value)
	}
	if len(value) == 0 {
		return usageError{errors.New("the value is empty: pipe it in (printf %s VALUE | wiz secret set " + c.Name + ") or pass --from-file FILE")}
	}
	api, err := env.Client()
	if err != nil {
		return err
	}
	sec, created, err := api.SetSecret(c.Name, value)
	if err != nil {
		return err
	}
	if c.Data() {
		return c.Print(secretJSON(sec))
	}
	verb := "updated"
	if created {
		verb = "created"
	}
	fmt.Fprintf(os.Stderr, "secret %s %s\n", sec.Name, verb)
	return nil
}

// trimNewline drops one trailing newline (\n or \r\n): what `echo` adds.
func trimNewline(b []byte) []byte {
	s := strings.TrimSuffix(string(b), "\n")
	if len(s) < len(b) {
		s = strings.TrimSuffix(s, "\r")
	}
	return []byte(s)
}

func secretJSON(s *wizpb.Secret) map[string]any {
	return map[string]any{"name": s.Name, "created": ts(s.Created), "updated": ts(s.Updated)}
}

// SecretListCmd is `wiz secret list`.
type SecretListCmd struct {
	Format `embed:""`
}

// Run implements the command.
func (c *SecretListCmd) Run(env *Env) error {
	api, err := env.Client()
	if err != nil {
		return err
	}
	ss, err := api.Secrets()
	if err != nil {
		return err
	}
	if c.Data() {
		out := []map[string]any{}
		for _, s := range ss {
			out = append(out, secretJSON(s))
		}
		return c.Print(out)
	}
	if len(ss) == 0 {
		fmt.Fprintln(os.Stderr, "no secrets; set one with `wiz secret set NAME`")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED\tUPDATED")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, s.Created.AsTime().Local().Format("2006-01-02 15:04"), s.Updated.AsTime().Local().Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}

// SecretRmCmd is `wiz secret rm NAME`.
type SecretRmCmd struct {
	Name   string `arg:"" help:"Secret name."`
	Format `embed:""`
}

// Run implements the command.
func (c *SecretRmCmd) Run(env *Env) error {
	api, err := env.Client()
	if err != nil {
		return err
	}
	if err := api.DeleteSecret(c.Name); err != nil {
		return err
	}
	if c.Data() {
		return c.Print(map[string]any{"name": c.Name, "removed": true})
	}
	fmt.Fprintf(os.Stderr, "secret %s removed\n", c.Name)
	return nil
}
