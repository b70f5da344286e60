package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/sdk/blob"
)

// GCCmd is `wiz gc`.
type GCCmd struct {
	KeepLast  int    `name:"keep-last" xor:"policy" placeholder:"N" help:"Keep the newest N runs; delete the older ones."`
	OlderThan string `name:"older-than" xor:"policy" placeholder:"AGE" help:"Delete runs that ended more than AGE ago: 30d, 12h, 90m."`
	DryRun    bool   `name:"dry-run" help:"Say what would be deleted and freed; delete nothing."`
	Format    `embed:""`
}

// Run implements the command: the Manager deletes the runs the policy
// selects (never one that has not ended) with their processors, events and
// logs, then every blob that no run left refers to, and the command says
// what it freed. It works on the wiz home, through the process holding it,
// or against a daemon (admin tokens).
func (c *GCCmd) Run(env *Env) error {
	if c.KeepLast == 0 && c.OlderThan == "" {
		return usageError{fmt.Errorf("wiz gc needs a policy: --keep-last N or --older-than AGE (e.g. 30d)")}
	}
	if c.KeepLast < 0 {
		return usageError{fmt.Errorf("--keep-last must be 1 or more, got %d", c.KeepLast)}
	}
	req := manager.GCRequest{KeepLast: c.KeepLast, DryRun: c.DryRun}
	if c.OlderThan != "" {
		age, err := parseAge(c.OlderThan)
		if err != nil {
			return usageError{err}
		}
		req.OlderThan = age
	}
	api, err := env.Client()
	if err != nil {
		return err
	}
	res, err := api.GC(req)
	if err != nil {
		return err
	}
	if c.Data() {
		return c.Print(map[string]any{"runs": res.Runs, "kept": res.Kept, "skipped": res.Skipped, "blobs": res.Blobs,
			"bytes": res.Bytes, "swept": res.Swept, "dry_run": c.DryRun})
	}
	verb, freedVerb := "deleted", "freed"
	if c.DryRun {
		verb, freedVerb = "would delete", "would free"
	}
	fmt.Fprintf(os.Stdout, "%s %d runs and %d blobs, %s %s (kept %d runs", verb, res.Runs, res.Blobs, freedVerb, blob.Size(res.Bytes), res.Kept)
	if res.Skipped > 0 {
		fmt.Fprintf(os.Stdout, "; %d not ended, left alone", res.Skipped)
	}
	fmt.Fprintln(os.Stdout, ")")
	if !res.Swept {
		fmt.Fprintln(os.Stderr, "wiz: blobs were not swept: runs or uploads are in progress and may be writing blobs no run names yet; run wiz gc again when none are")
	}
	return nil
}

// parseAge parses an age like 30d, 12h or 90m (days, and Go durations).
func parseAge(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("--older-than %q is not an age; use days or a duration, e.g. 30d, 12h, 90m", s)
}
