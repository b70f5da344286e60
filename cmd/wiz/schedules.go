package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/schedule"
)

// SchedulesCmd is `wiz schedules` (also `wiz schedule`).
type SchedulesCmd struct {
	List   SchedulesListCmd  `cmd:"" aliases:"ls" help:"List the schedules: next and last fire, state, skipped ticks."`
	Pause  SchedulePauseCmd  `cmd:"" help:"Pause a schedule (PIPELINE/NAME): its ticks are recorded skipped until it is resumed."`
	Resume ScheduleResumeCmd `cmd:"" help:"Resume a paused schedule; the ticks it missed while paused stay skipped."`
}

// splitSchedule reads PIPELINE/NAME.
func splitSchedule(s string) (string, string, error) {
	p, n, ok := strings.Cut(s, "/")
	if !ok || p == "" || n == "" || strings.Contains(n, "/") {
		return "", "", usageError{fmt.Errorf("%q: name a schedule as PIPELINE/NAME, like nightly-etl/nightly", s)}
	}
	return p, n, nil
}

func scheduleJSON(i *manager.ScheduleInfo) map[string]any {
	if i.Kind == "files" {
		return map[string]any{"pipeline": i.Pipeline, "name": i.Name, "kind": "files", "watch": i.Watch, "state": scheduleStateWord(i), "error": i.Error}
	}
	st := i.State
	out := map[string]any{
		"pipeline": i.Pipeline, "name": i.Name, "cron": i.Cron, "timezone": cmpOr(i.Timezone, "UTC"), "overlap": i.Overlap,
		"kind": "schedule", "catchup": i.Catchup.String(), "state": scheduleStateWord(i), "next_fire": nil, "last_fire": nil, "last_run": st.GetLastRun(),
	}
	if !i.Next.IsZero() {
		out["next_fire"] = i.Next.UTC().Format(time.RFC3339)
	}
	if st.GetLastFire() != nil {
		out["last_fire"] = ts(st.LastFire)
	}
	skipped := []map[string]any{}
	for _, s := range st.GetSkipped() {
		skipped = append(skipped, map[string]any{"tick": ts(s.Tick), "reason": s.Reason})
	}
	out["skipped"] = skipped
	return out
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func scheduleStateWord(i *manager.ScheduleInfo) string {
	if i.Error != "" {
		return "failing"
	}
	if i.State.GetPaused() {
		return "paused"
	}
	return "active"
}

// SchedulesListCmd is `wiz schedules list`.
type SchedulesListCmd struct {
	Format `embed:""`
}

// Run implements the command.
func (c *SchedulesListCmd) Run(env *Env) error {
	api, err := env.Client()
	if err != nil {
		return err
	}
	is, err := api.Schedules()
	if err != nil {
		return err
	}
	if c.Data() {
		out := []map[string]any{}
		for _, i := range is {
			out = append(out, scheduleJSON(i))
		}
		return c.Print(out)
	}
	if len(is) == 0 {
		fmt.Fprintln(os.Stderr, "no schedules; add schedules: to a pipeline file and apply it (docs/schedules.md)")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tCRON\tTIMEZONE\tSTATE\tNEXT FIRE\tLAST FIRE\tLAST RUN\tSKIPPED")
	for _, i := range is {
		if i.Kind == "files" {
			state := scheduleStateWord(i)
			if i.Error != "" {
				state += ": " + i.Error
			}
			fmt.Fprintf(tw, "%s/%s\tfiles %s\t-\t%s\t-\t-\t-\t-\n", i.Pipeline, i.Name, i.Watch, state)
			continue
		}
		next, last := "-", "-"
		if !i.Next.IsZero() {
			next = i.Next.Local().Format("2006-01-02 15:04:05")
		}
		if lf := i.State.GetLastFire(); lf != nil {
			last = lf.AsTime().Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", i.Pipeline, i.Name, i.Cron, cmpOr(i.Timezone, "UTC"), scheduleStateWord(i), next, last, cmpOr(i.State.GetLastRun(), "-"), len(i.State.GetSkipped()))
	}
	return tw.Flush()
}

// SchedulePauseCmd is `wiz schedules pause PIPELINE/NAME`.
type SchedulePauseCmd struct {
	Schedule string `arg:"" help:"PIPELINE/NAME."`
	Format   `embed:""`
}

// Run implements the command.
func (c *SchedulePauseCmd) Run(env *Env) error { return pauseSchedule(env, c.Schedule, true, c.Format) }

// ScheduleResumeCmd is `wiz schedules resume PIPELINE/NAME`.
type ScheduleResumeCmd struct {
	Schedule string `arg:"" help:"PIPELINE/NAME."`
	Format   `embed:""`
}

// Run implements the command.
func (c *ScheduleResumeCmd) Run(env *Env) error {
	return pauseSchedule(env, c.Schedule, false, c.Format)
}

func pauseSchedule(env *Env, name string, pause bool, f Format) error {
	p, n, err := splitSchedule(name)
	if err != nil {
		return err
	}
	api, err := env.Client()
	if err != nil {
		return err
	}
	i, err := api.PauseSchedule(p, n, pause)
	if err != nil {
		return err
	}
	if f.Data() {
		return f.Print(scheduleJSON(i))
	}
	if pause {
		fmt.Fprintf(os.Stderr, "schedule %s/%s paused\n", p, n)
	} else {
		fmt.Fprintf(os.Stderr, "schedule %s/%s resumed; next fire %s\n", p, n, i.Next.Local().Format(time.RFC3339))
	}
	return nil
}

// BackfillCmd is `wiz backfill PIPELINE/NAME --from T --to T`.
type BackfillCmd struct {
	Schedule    string `arg:"" help:"PIPELINE/NAME."`
	From        string `required:"" help:"First tick: RFC 3339, or YYYY-MM-DD for midnight in the schedule's timezone (inclusive)." placeholder:"T"`
	To          string `required:"" help:"Last tick, as --from (inclusive)." placeholder:"T"`
	MaxParallel int    `name:"max-parallel" default:"1" help:"Runs at once." placeholder:"N"`
	DryRun      bool   `name:"dry-run" help:"Print the ticks that would run and start nothing."`
	Wait        bool   `help:"Wait for the runs to end; exit 1 when one Failed."`
	Format      `embed:""`
}

// Run implements the command.
func (c *BackfillCmd) Run(env *Env) error {
	p, n, err := splitSchedule(c.Schedule)
	if err != nil {
		return err
	}
	if c.MaxParallel < 1 {
		return usageError{fmt.Errorf("--max-parallel must be at least 1")}
	}
	api, err := env.Client()
	if err != nil {
		return err
	}
	loc, err := scheduleZone(api, p, n)
	if err != nil {
		return err
	}
	from, err := parseTick("--from", c.From, loc)
	if err != nil {
		return err
	}
	to, err := parseTick("--to", c.To, loc)
	if err != nil {
		return err
	}
	ticks, wait, err := api.Backfill(p, n, from, to, c.MaxParallel, c.DryRun)
	if err != nil {
		return err
	}
	local := env.remote == nil // this process's Manager runs them
	if c.Data() {
		out := []map[string]any{}
		for _, t := range ticks {
			m := map[string]any{"tick": t.Tick.UTC().Format(time.RFC3339), "run_id": t.RunID}
			if t.Skipped != "" {
				m["skipped"] = t.Skipped
			}
			out = append(out, m)
		}
		if err := c.Print(out); err != nil {
			return err
		}
	} else {
		for _, t := range ticks {
			switch {
			case t.Skipped != "":
				fmt.Fprintf(os.Stderr, "%s skipped: %s\n", t.Tick.UTC().Format(time.RFC3339), t.Skipped)
			case c.DryRun:
				fmt.Printf("%s would run\n", t.Tick.UTC().Format(time.RFC3339))
			default:
				fmt.Printf("%s %s\n", t.Tick.UTC().Format(time.RFC3339), t.RunID)
			}
		}
	}
	if c.DryRun {
		return nil
	}
	if local {
		// This process runs them: it cannot return before they end.
		wait()
	} else if !c.Wait {
		return nil
	}
	return waitRuns(api, ticks)
}

// scheduleZone returns the timezone of PIPELINE/NAME.
func scheduleZone(api manager.API, p, n string) (*time.Location, error) {
	is, err := api.Schedules()
	if err != nil {
		return nil, err
	}
	for _, i := range is {
		if i.Kind == "schedule" && i.Pipeline == p && i.Name == n {
			spec, err := schedule.Parse(i.Cron, i.Timezone)
			if err != nil {
				return nil, err
			}
			return spec.Location(), nil
		}
	}
	return nil, manager.NotFound(fmt.Sprintf("schedule %s/%s does not exist (wiz schedules list shows them)", p, n))
}

// parseTick reads a --from or --to: RFC 3339, or a date for midnight in loc.
func parseTick(flag, s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, loc); err == nil {
		return t, nil
	}
	return time.Time{}, usageError{fmt.Errorf("%s %q: write an RFC 3339 time (2026-12-01T02:30:00Z) or a date (2026-12-01, midnight in the schedule's timezone)", flag, s)}
}

// waitRuns waits until the runs of ticks have ended; exit 1 when one
// Failed.
func waitRuns(api manager.API, ticks []manager.BackfillTick) error {
	failed := 0
	for _, t := range ticks {
		if t.RunID == "" {
			continue
		}
		// Runs start in tick order: once the earlier ones have ended, this
		// one has started, or it could not (then it is never found).
		missing := time.Now()
		for {
			d, err := api.RunDetail(t.RunID)
			if err == nil && d.Run.Ended != nil {
				if runStateName(d.Run.State) != "Succeeded" {
					failed++
				}
				break
			}
			if err == nil {
				missing = time.Now()
			} else if time.Since(missing) > 30*time.Second {
				fmt.Fprintf(os.Stderr, "the run %s of tick %s did not start (the Manager's log says why)\n", t.RunID, t.Tick.UTC().Format(time.RFC3339))
				failed++
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "%d of the backfill's runs Failed\n", failed)
		return exitError{exitFailed}
	}
	return nil
}
