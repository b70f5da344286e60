package schedule_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/schedule"
)

func must(t *testing.T, expr, tz string) *schedule.Spec {
	t.Helper()
	s, err := schedule.Parse(expr, tz)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ticks(s *schedule.Spec, from time.Time, n int) []string {
	var out []string
	for t := from; len(out) < n; {
		t = s.Next(t)
		out = append(out, t.Format(time.RFC3339))
	}
	return out
}

// A nightly 02:30 in Berlin fires once on the night that skips 02:00-03:00
// (at 03:30 CEST, 01:30 UTC, one hour after the 02:30 CET it stands for),
// and once on the night that repeats it (the first 02:30).
func TestDaylightSavingGapAndOverlapFireOnce(t *testing.T) {
	s := must(t, "30 2 * * *", "Europe/Berlin")
	berlin := s.Location()
	got := ticks(s, time.Date(2026, 3, 28, 12, 0, 0, 0, berlin), 2)
	want := []string{"2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("spring forward: got %v, want %v", got, want)
	}
	got = ticks(s, time.Date(2026, 10, 24, 12, 0, 0, 0, berlin), 2)
	want = []string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("fall back: got %v, want %v", got, want)
	}
	// Hourly on the night that repeats 02:00-03:00: 02:00 once.
	h := must(t, "0 * * * *", "Europe/Berlin")
	got = ticks(h, time.Date(2026, 10, 25, 0, 30, 0, 0, berlin), 4)
	want = []string{"2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00", "2026-10-25T04:00:00+01:00"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("hourly, fall back: got %v, want %v", got, want)
	}
}

func TestSecondsFieldDescriptorsAndEvery(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 1, 500, time.UTC)
	if got := ticks(must(t, "*/15 * * * * *", ""), at, 3); strings.Join(got, " ") != "2026-12-07T10:00:15Z 2026-12-07T10:00:30Z 2026-12-07T10:00:45Z" {
		t.Errorf("seconds: %v", got)
	}
	if got := ticks(must(t, "@hourly", "UTC"), at, 1); got[0] != "2026-12-07T11:00:00Z" {
		t.Errorf("@hourly: %v", got)
	}
	// @every is aligned to multiples of D since the epoch, whatever the zone.
	e := must(t, "@every 7s", "Asia/Kolkata")
	t1 := e.Next(at)
	t2 := e.Next(t1)
	if t1.UnixNano()%int64(7*time.Second) != 0 || !t1.After(at) || t1.Sub(at) > 7*time.Second || t2.Sub(t1) != 7*time.Second {
		t.Errorf("@every 7s after %v: %v, %v", at, t1, t2)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ expr, tz, want string }{
		{"61 * * * *", "", `cron "61 * * * *": `},
		{"* * *", "", "5 fields"},
		{"@every 1.5s", "", "whole number of seconds"},
		{"@daily", "Mars/Olympus", `timezone "Mars/Olympus" is not an IANA time zone name`},
		{"CRON_TZ=UTC * * * * *", "", "give the zone with timezone:"},
	} {
		if _, err := schedule.Parse(c.expr, c.tz); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q, %q) = %v, want an error with %q", c.expr, c.tz, err, c.want)
		}
	}
}

func summary(ds []schedule.Decision) string {
	var b []string
	for _, d := range ds {
		s := d.Tick.UTC().Format("15:04:05") + " "
		switch d.Action {
		case schedule.Fire:
			s += "fire"
		case schedule.Wait:
			s += "wait"
		case schedule.CancelAndFire:
			s += "cancel+fire"
		case schedule.Skip:
			s += "skip(" + d.Reason + ")"
		}
		b = append(b, s)
	}
	return strings.Join(b, "; ")
}

func TestDueCatchupAfterDowntime(t *testing.T) {
	s := must(t, "0 */10 * * * *", "") // every 10 minutes
	day := func(h, m int) time.Time { return time.Date(2026, 12, 7, h, m, 0, 0, time.UTC) }
	st := schedule.State{Since: day(8, 0), Last: day(9, 0)}
	// Down from 09:05 to 10:03: 09:10 … 10:00 were missed; catchup 25m runs
	// 09:40, 09:50, 10:00 (at most 25m old at 10:03) and skips the others.
	ds, next := schedule.Due(s, schedule.Policy{Overlap: "skip", Catchup: 25 * time.Minute}, st, day(10, 3), day(10, 3))
	// Caught-up ticks run one after the other, oldest first: the next waits
	// for the one running.
	want := "09:10:00 skip(missed while no wiz daemon ran, older than catchup 25m0s); 09:20:00 skip(missed while no wiz daemon ran, older than catchup 25m0s); 09:30:00 skip(missed while no wiz daemon ran, older than catchup 25m0s); 09:40:00 fire; 09:50:00 wait"
	if got := summary(ds); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !next.IsZero() {
		t.Errorf("next %v, want none until the run ends", next)
	}
	// When it has ended, the next ones.
	st.Last = day(9, 40)
	ds, next = schedule.Due(s, schedule.Policy{Overlap: "skip", Catchup: 25 * time.Minute}, st, day(10, 3), day(10, 4))
	if got := summary(ds); got != "09:50:00 fire; 10:00:00 wait" {
		t.Errorf("after the first: %s", got)
	}
	// catchup 0: all skipped. A tick after boot is never "missed".
	ds, _ = schedule.Due(s, schedule.Policy{Overlap: "allow"}, st, day(9, 55), day(10, 3))
	if got := summary(ds); !strings.HasSuffix(got, "09:50:00 skip(missed while no wiz daemon ran (catchup is 0)); 10:00:00 fire") {
		t.Errorf("catchup 0: %s", got)
	}
	// Never before Since (the first apply, or the last resume).
	st2 := schedule.State{Since: day(9, 45)}
	ds, _ = schedule.Due(s, schedule.Policy{Catchup: time.Hour}, st2, day(10, 3), day(10, 3))
	if got := summary(ds); got != "09:50:00 fire; 10:00:00 wait" {
		t.Errorf("since: %s", got)
	}
}

func TestDuePausedAndOverlap(t *testing.T) {
	s := must(t, "*/10 * * * * *", "")
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	boot := t0.Add(-time.Hour)
	st := schedule.State{Since: t0, Paused: true}
	if got := summary(first(schedule.Due(s, schedule.Policy{}, st, boot, t0.Add(20*time.Second)))); got != "10:00:10 skip(paused); 10:00:20 skip(paused)" {
		t.Errorf("paused: %s", got)
	}
	st = schedule.State{Since: t0, Running: 1}
	for _, c := range []struct{ policy, want string }{
		{"skip", "10:00:10 skip(overlap: the previous run is still Running); 10:00:20 skip(overlap: the previous run is still Running)"},
		{"queue", "10:00:10 wait"},
		{"cancel_previous", "10:00:10 cancel+fire; 10:00:20 cancel+fire"},
		{"allow", "10:00:10 fire; 10:00:20 fire"},
	} {
		if got := summary(first(schedule.Due(s, schedule.Policy{Overlap: c.policy}, st, boot, t0.Add(20*time.Second)))); got != c.want {
			t.Errorf("%s: got %s, want %s", c.policy, got, c.want)
		}
	}
	// Not running: skip fires the first, then skips the second while the
	// first is still running.
	st.Running = 0
	if got := summary(first(schedule.Due(s, schedule.Policy{Overlap: "skip"}, st, boot, t0.Add(20*time.Second)))); got != "10:00:10 fire; 10:00:20 skip(overlap: the previous run is still Running)" {
		t.Errorf("skip, two due: %s", got)
	}
}

func first(ds []schedule.Decision, _ time.Time) []schedule.Decision { return ds }

func TestTicksInclusiveRange(t *testing.T) {
	s := must(t, "@hourly", "")
	from := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ts, err := s.Ticks(from, from.Add(23*time.Hour), 100)
	if err != nil || len(ts) != 24 || !ts[0].Equal(from) || !ts[23].Equal(from.Add(23*time.Hour)) {
		t.Fatalf("Ticks = %d ticks %v, %v", len(ts), ts, err)
	}
	if _, err := s.Ticks(from, from.Add(1000*time.Hour), 100); err == nil {
		t.Fatal("more than max ticks: want an error")
	}
}
