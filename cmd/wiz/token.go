package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wiz-run/wiz/internal/daemon"
	"github.com/wiz-run/wiz/internal/managerapi"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// TokenCmd is `wiz token`.
type TokenCmd struct {
	Create TokenCreateCmd `cmd:"" help:"Create an API token of a daemon (admin)."`
	List   TokenListCmd   `cmd:"" help:"List a daemon's API tokens (admin)."`
	Revoke TokenRevokeCmd `cmd:"" help:"Revoke an API token (admin)."`
}

func (e *Env) tokens() (wizrpc.TokensClient, error) {
	if e.CLI.Server == "" {
		return nil, usageError{fmt.Errorf("tokens belong to a daemon: pass --server URL and an admin --token (or WIZ_SERVER, WIZ_TOKEN)")}
	}
	api, err := e.Client()
	if err != nil {
		return nil, err
	}
	return api.(*managerapi.Client).Tokens, nil
}

// TokenCreateCmd is `wiz token create`.
type TokenCreateCmd struct {
	Name    string `required:"" help:"Token name."`
	Role    string `default:"runner" enum:"admin,runner,viewer" help:"Role: viewer reads; runner also applies pipelines and starts and cancels runs; admin also manages tokens."`
	Expires string `help:"Lifetime, e.g. 30d, 12h (default: never)."`
	Format  `embed:""`
}

// Run implements the command.
func (c *TokenCreateCmd) Run(env *Env) error {
	ttl, err := parseLifetime(c.Expires)
	if err != nil {
		return usageError{err}
	}
	role, _ := daemon.ParseRole(c.Role)
	tc, err := env.tokens()
	if err != nil {
		return err
	}
	r, err := tc.CreateToken(context.Background(), &wizrpc.CreateTokenRequest{Name: c.Name, Role: role, ExpiresInSeconds: int64(ttl.Seconds())})
	if err != nil {
		return managerapi.FromStatus(err)
	}
	if c.Data() {
		return c.Print(map[string]any{"id": r.Token.Id, "name": r.Token.Name, "role": c.Role, "secret": r.Secret})
	}
	fmt.Fprintf(os.Stderr, "token %s (%s, role %s) — the secret is shown once:\n", r.Token.Name, r.Token.Id, c.Role)
	fmt.Println(r.Secret)
	return nil
}

// TokenListCmd is `wiz token list`.
type TokenListCmd struct {
	Format `embed:""`
}

// Run implements the command.
func (c *TokenListCmd) Run(env *Env) error {
	tc, err := env.tokens()
	if err != nil {
		return err
	}
	r, err := tc.ListTokens(context.Background(), &wizrpc.ListTokensRequest{})
	if err != nil {
		return managerapi.FromStatus(err)
	}
	if c.Data() {
		out := []map[string]any{}
		for _, t := range r.Tokens {
			tm := map[string]any{"id": t.Id, "name": t.Name, "role": daemon.RoleName(t.Role), "created": ts(t.Created), "revoked": t.Revoked}
			if t.Expires != nil {
				tm["expires"] = ts(t.Expires)
			}
			out = append(out, tm)
		}
		return c.Print(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tEXPIRES\tSTATE")
	for _, t := range r.Tokens {
		exp, state := "never", "active"
		if t.Expires != nil {
			exp = t.Expires.AsTime().Local().Format("2006-01-02 15:04")
			if time.Now().After(t.Expires.AsTime()) {
				state = "expired"
			}
		}
		if t.Revoked {
			state = "revoked"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Id, t.Name, daemon.RoleName(t.Role), t.Created.AsTime().Local().Format("2006-01-02 15:04"), exp, state)
	}
	return tw.Flush()
}

// TokenRevokeCmd is `wiz token revoke`.
type TokenRevokeCmd struct {
	Token string `arg:"" help:"Token ID or name."`
}

// Run implements the command.
func (c *TokenRevokeCmd) Run(env *Env) error {
	tc, err := env.tokens()
	if err != nil {
		return err
	}
	r, err := tc.RevokeToken(context.Background(), &wizrpc.RevokeTokenRequest{IdOrName: c.Token})
	if err != nil {
		return managerapi.FromStatus(err)
	}
	fmt.Printf("revoked token %s (%s)\n", r.Token.Name, r.Token.Id)
	return nil
}

// parseLifetime reads 30d, 12h, 90m, or any Go duration; "" is never.
func parseLifetime(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("--expires %q: write e.g. 30d, 12h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--expires %q: write e.g. 30d, 12h", s)
	}
	if d < time.Second {
		return 0, fmt.Errorf("--expires %q: a token lives at least 1s", s)
	}
	return d.Round(time.Second), nil
}
