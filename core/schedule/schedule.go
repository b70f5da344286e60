// Package schedule decides when a pipeline's schedules fire: the ticks of a
// cron expression in a timezone (firing once across daylight-saving gaps and
// overlaps), and, given what was handled before and the time now, which
// ticks fire and which are skipped, and why. It is pure: time comes in as
// arguments; the Manager's service loop carries its decisions out.
package schedule

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones even where the host has none (a scratch image)

	"github.com/robfig/cron/v3"
)

// parser reads 5 fields, or 6 with seconds first, and @hourly, @daily, ….
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Spec is a parsed schedule: a cron expression in a timezone, or @every D.
type Spec struct {
	cron  *cron.SpecSchedule // evaluated on wall-clock time, as if in UTC
	every time.Duration      // @every D: multiples of D since the Unix epoch
	loc   *time.Location
}

// Parse parses a cron expression (5 fields, 6 with seconds, a @descriptor
// or "@every D") and an IANA timezone ("" is UTC).
func Parse(expr, timezone string) (*Spec, error) {
	loc := time.UTC
	if timezone != "" {
		var err error
		if loc, err = time.LoadLocation(timezone); err != nil {
			return nil, fmt.Errorf("timezone %q is not an IANA time zone name (like Europe/Berlin or America/New_York)", timezone)
		}
	}
	expr = strings.TrimSpace(expr)
	if d, ok := strings.CutPrefix(expr, "@every "); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil || every < time.Second || every%time.Second != 0 {
			return nil, fmt.Errorf("cron %q: @every takes a whole number of seconds, at least 1s, like @every 10s or @every 1h30m", expr)
		}
		return &Spec{every: every, loc: loc}, nil
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("cron %q: give the zone with timezone:, not in the expression", expr)
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %v (5 fields: minute hour day-of-month month day-of-week; 6 with seconds first; or @hourly, @daily, @weekly, @monthly, @yearly, @every D)", expr, err)
	}
	ss, ok := s.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("cron %q: not a calendar schedule", expr)
	}
	ss.Location = time.UTC // wall-clock fields, mapped to the zone by Next
	return &Spec{cron: ss, loc: loc}, nil
}

// Location returns the schedule's timezone.
func (s *Spec) Location() *time.Location { return s.loc }

// Next returns the first tick after t. A wall-clock time that a
// daylight-saving change skips fires once, at the same distance after the
// change (02:30 on a night that jumps from 02:00 to 03:00 fires at 03:30); one
// that happens twice fires once, the first time. Zero when there is none
// (a date that never comes).
func (s *Spec) Next(t time.Time) time.Time {
	if s.every > 0 {
		n := t.UnixNano()/int64(s.every)*int64(s.every) + int64(s.every)
		return time.Unix(0, n).In(s.loc)
	}
	w := wall(t.In(s.loc))
	for i := 0; i < 10; i++ {
		nw := s.cron.Next(w)
		if nw.IsZero() {
			return time.Time{}
		}
		real := s.firstInstant(nw)
		if real.After(t) {
			return real
		}
		// The wall time came back (an overlap): it fired the first time.
		w = nw
	}
	return time.Time{}
}

// firstInstant returns the first instant whose wall-clock reading in the
// zone is w, or, for a reading the zone skips, the instant as far after the
// change as w is.
func (s *Spec) firstInstant(w time.Time) time.Time {
	real := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, s.loc)
	for _, back := range []time.Duration{2 * time.Hour, time.Hour, 30 * time.Minute} {
		if c := real.Add(-back); wall(c.In(s.loc)).Equal(w) {
			return c // a reading that happens twice: its first time
		}
	}
	return real
}

// wall returns t's wall-clock reading as a UTC time.
func wall(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// Ticks returns the ticks in [from, to], at most max of them (more is an
// error naming the count so far).
func (s *Spec) Ticks(from, to time.Time, max int) ([]time.Time, error) {
	var out []time.Time
	for t := s.Next(from.Add(-time.Nanosecond)); !t.IsZero() && !t.After(to); t = s.Next(t) {
		if len(out) == max {
			return nil, fmt.Errorf("more than %d ticks from %s to %s; use a shorter range", max, from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
		out = append(out, t)
	}
	return out, nil
}

// Overlap policies: what a tick does while a run of the same schedule is
// still Running.
const (
	OverlapSkip   = "skip"            // record the tick skipped
	OverlapQueue  = "queue"           // start it when the running one ends
	OverlapCancel = "cancel_previous" // cancel the running one, then start
	OverlapAllow  = "allow"           // start it anyway
)

// Overlaps are the overlap policies, in the order docs list them.
var Overlaps = []string{OverlapSkip, OverlapQueue, OverlapCancel, OverlapAllow}

// State is what the service loop knows of one schedule.
type State struct {
	// Since is when the schedule's ticks start counting: its first apply,
	// or its last resume, whichever is later. No tick at or before it fires.
	Since time.Time
	// Last is the newest tick handled (fired or skipped); zero: none.
	Last time.Time
	// Paused: ticks are recorded skipped ("paused").
	Paused bool
	// Running is how many runs of the schedule are Running.
	Running int
}

// Action is what to do with one tick.
type Action int

// Actions.
const (
	Fire          Action = iota + 1
	Skip                 // record the tick skipped with Reason
	Wait                 // queue: leave it (and the ticks after it) for later
	CancelAndFire        // cancel the running runs, then fire
)

// Decision is what to do with one tick.
type Decision struct {
	Tick   time.Time
	Action Action
	Reason string // for Skip
}

// Policy is a schedule's handling of missed and overlapping ticks.
type Policy struct {
	Overlap string
	// Catchup: a tick missed while no service process ran fires when it is
	// at most this old; older ones are skipped.
	Catchup time.Duration
}

// maxTicks bounds the ticks one call decides: a long downtime of a
// per-second schedule is decided in several calls.
const maxTicks = 10_000

// Due decides the ticks of s after st.Last (and after st.Since) up to now.
// boot is when the deciding process started: a tick before it was missed
// while none ran. It returns the decisions, oldest first, and when to call
// again (the next tick; zero when none comes).
func Due(s *Spec, p Policy, st State, boot, now time.Time) ([]Decision, time.Time) {
	after := st.Last
	if after.Before(st.Since) {
		after = st.Since
	}
	var out []Decision
	running := st.Running
	t := s.Next(after)
	for ; !t.IsZero() && !t.After(now) && len(out) < maxTicks; t = s.Next(t) {
		switch {
		case st.Paused:
			out = append(out, Decision{Tick: t, Action: Skip, Reason: "paused"})
			continue
		case t.Before(boot) && now.Sub(t) > p.Catchup:
			reason := "missed while no wiz daemon ran"
			if p.Catchup > 0 {
				reason += fmt.Sprintf(", older than catchup %s", p.Catchup)
			} else {
				reason += " (catchup is 0)"
			}
			out = append(out, Decision{Tick: t, Action: Skip, Reason: reason})
			continue
		}
		if running == 0 || p.Overlap == OverlapAllow {
			out = append(out, Decision{Tick: t, Action: Fire})
			running++
			continue
		}
		if t.Before(boot) {
			// Missed ticks being caught up each run once, oldest first:
			// one after the other, whatever the overlap policy.
			out = append(out, Decision{Tick: t, Action: Wait})
			return out, time.Time{}
		}
		switch p.Overlap {
		case OverlapQueue:
			out = append(out, Decision{Tick: t, Action: Wait})
			return out, time.Time{} // the end of the running run calls again
		case OverlapCancel:
			out = append(out, Decision{Tick: t, Action: CancelAndFire})
			running = 1
		default:
			out = append(out, Decision{Tick: t, Action: Skip, Reason: "overlap: the previous run is still Running"})
		}
	}
	if len(out) == maxTicks {
		return out, now // more to decide at once
	}
	return out, t
}
