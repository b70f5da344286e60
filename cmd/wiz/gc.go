package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/sdk/blob"
)

// GCCmd is `wiz gc`.
type GCCmd struct {
	KeepLast  int    `name:"keep-last" xor:"policy" placeholder:"N" help:"Keep the newest N runs; delete the older ones."`
	OlderThan string `name:"older-than" xor:"policy" placeholder:"AGE" help:"Delete runs that ended more than AGE ago: 30d, 12h, 90m."`
	DryRun    bool   `name:"dry-run" help:"Say what would be deleted and freed; delete nothing."`
}

// Run implements the command: it deletes the runs the policy selects
// (never one that has not ended) with their processors, events and logs,
// then every blob that no run left refers to, and says what it freed.
func (c *GCCmd) Run(env *Env) error {
	if env.CLI.Server != "" {
		return usageError{fmt.Errorf("wiz gc works on a wiz home, not through --server: run it on the daemon's machine with --home set to its data dir while the daemon is stopped")}
	}
	if c.KeepLast == 0 && c.OlderThan == "" {
		return usageError{fmt.Errorf("wiz gc needs a policy: --keep-last N or --older-than AGE (e.g. 30d)")}
	}
	if c.KeepLast < 0 {
		return usageError{fmt.Errorf("--keep-last must be 1 or more, got %d", c.KeepLast)}
	}
	var cutoff time.Time
	if c.OlderThan != "" {
		age, err := parseAge(c.OlderThan)
		if err != nil {
			return usageError{err}
		}
		cutoff = time.Now().Add(-age)
	}
	// gc needs the store to itself: a Manager running elsewhere on this home
	// may be writing blobs that no record names yet.
	if _, err := env.Manager(); err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	st := env.store
	home, err := env.Home()
	if err != nil {
		return err
	}
	blobs, err := blob.Open(filepath.Join(home, "blobs"))
	if err != nil {
		return err
	}

	runs, err := st.Runs(0) // newest first
	if err != nil {
		return err
	}
	active := map[string]bool{}
	ids, err := st.ActiveRuns()
	if err != nil {
		return err
	}
	for _, id := range ids {
		active[id] = true
	}
	var doomed []*wizpb.Run
	kept, skipped := 0, 0
	for i, r := range runs {
		old := c.KeepLast > 0 && i >= c.KeepLast
		if !cutoff.IsZero() {
			end := r.Ended
			if end == nil {
				end = r.Started
			}
			old = end != nil && end.AsTime().Before(cutoff)
		}
		switch {
		case !old:
			kept++
		case active[r.Id] || r.State == wizpb.RunState_RUN_STATE_RUNNING:
			skipped++
		default:
			doomed = append(doomed, r)
		}
	}

	if !c.DryRun {
		for _, r := range doomed {
			if err := st.DeleteRun(r.Id); err != nil {
				return fmt.Errorf("gc: %w", err)
			}
		}
	}
	// The blobs still referred to: by every run when this is a dry run, by
	// what is left otherwise, minus what the doomed runs alone refer to.
	doomedIDs := map[string]bool{}
	for _, r := range doomed {
		doomedIDs[r.Id] = true
	}
	refs := map[string]bool{}
	if c.DryRun {
		for _, r := range runs {
			if doomedIDs[r.Id] {
				continue
			}
			for _, d := range r.Inputs {
				for _, f := range d.Files {
					refs[f.Digest] = true
				}
			}
			procs, err := st.Processors(r.Id)
			if err != nil {
				return err
			}
			for _, p := range procs {
				for _, d := range p.Outputs {
					for _, f := range d.Files {
						refs[f.Digest] = true
					}
				}
			}
		}
	} else if err := st.BlobRefs(func(d string) { refs[d] = true }); err != nil {
		return err
	}
	var nblobs, freed int64
	err = blobs.Walk(func(digest string, size int64) error {
		if refs[digest] {
			return nil
		}
		if !c.DryRun {
			if err := blobs.Remove(digest); err != nil {
				return err
			}
		}
		nblobs++
		freed += size
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if !c.DryRun {
		tmp, err := blobs.RemoveTemp()
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		freed += tmp
		st.Compact()
	}
	verb, freedVerb := "deleted", "freed"
	if c.DryRun {
		verb, freedVerb = "would delete", "would free"
	}
	fmt.Fprintf(os.Stdout, "%s %d runs and %d blobs, %s %s (kept %d runs", verb, len(doomed), nblobs, freedVerb, blob.Size(freed), kept)
	if skipped > 0 {
		fmt.Fprintf(os.Stdout, "; %d not ended, left alone", skipped)
	}
	fmt.Fprintln(os.Stdout, ")")
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
