package manager_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/manager"
)

// fakeClock is a Clock the test moves by hand.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

// set moves the clock to t and wakes the waiters that are due.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(t) {
			w.ch <- t
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// scheduledTicks returns the scheduled times of the pipeline's runs, in
// UTC, sorted, once there are want of them (and no more arrive at once).
func scheduledTicks(t *testing.T, m *manager.Manager, pipeline string, want int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rs, err := m.Runs(manager.RunFilter{Pipeline: pipeline})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		ended := 0
		for _, r := range rs {
			got = append(got, r.ScheduledTime.AsTime().UTC().Format(time.RFC3339))
			if r.Ended != nil {
				ended++
			}
		}
		slices.Sort(got)
		if len(got) >= want && ended == len(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: runs at %v, want %d ended", pipeline, got, want)
		}
		time.Sleep(10 * time.Millisecond) // the loop runs in its own goroutine
	}
}

// TestScheduleLoopDSTAndRestart drives the schedules' loop with a fake
// clock: a Berlin 02:30 schedule fires once on the night that skips 02:30
// (at 03:30 CEST); the loop stopped for three days (a dead daemon) catches up
// on the ticks younger than catchup, skips the older one with its reason,
// and a loop started again at the same time fires nothing twice.
func TestScheduleLoopDSTAndRestart(t *testing.T) {
	t.Parallel()
	berlin, _ := time.LoadLocation("Europe/Berlin")
	// 2027-03-28: Berlin's clocks jump from 02:00 to 03:00.
	clk := &fakeClock{now: time.Date(2027, 3, 27, 12, 0, 0, 0, berlin)}
	m, _ := newManagerWith(t, 4, func(c *manager.Config) { c.Clock = clk })
	src := `name: nightly
schedules:
  n:
    cron: "30 2 * * *"
    timezone: Europe/Berlin
    catchup: 48h
processors:
  a: {uses: t/run}
`
	if _, err := m.Apply("p.yaml", []byte(src)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := m.ServeSchedules(ctx)
	clk.set(time.Date(2027, 3, 28, 12, 0, 0, 0, berlin))
	got := scheduledTicks(t, m, "nightly", 1)
	if want := []string{"2027-03-28T01:30:00Z"}; !slices.Equal(got, want) {
		t.Fatalf("the DST night: runs at %v, want %v (03:30 CEST)", got, want)
	}
	cancel()
	wait()

	// Down for three days: 29th and 30th and 31st at 02:30 CEST (00:30Z)
	// were missed; at 12:00 on the 31st, the 29th is older than 48h.
	clk.set(time.Date(2027, 3, 31, 12, 0, 0, 0, berlin))
	for range 2 { // and a second start at the same time: nothing twice
		ctx, cancel = context.WithCancel(context.Background())
		wait = m.ServeSchedules(ctx)
		got = scheduledTicks(t, m, "nightly", 3)
		cancel()
		wait()
	}
	if want := []string{"2027-03-28T01:30:00Z", "2027-03-30T00:30:00Z", "2027-03-31T00:30:00Z"}; !slices.Equal(got, want) {
		t.Fatalf("after the downtime: runs at %v, want %v", got, want)
	}
	is, err := m.Schedules()
	if err != nil || len(is) != 1 {
		t.Fatalf("Schedules = %v, %v", is, err)
	}
	sk := is[0].State.Skipped
	if len(sk) != 1 || sk[0].Tick.AsTime().UTC().Format(time.RFC3339) != "2027-03-29T00:30:00Z" || !strings.Contains(sk[0].Reason, "older than catchup 48h0m0s") {
		t.Fatalf("skipped = %v, want the 29th, older than catchup", sk)
	}
	if r := is[0].State.LastRun; r == "" {
		t.Error("the schedule's state names no last run")
	}

	// Paused for three nights, with the loop running: no run; on resume the
	// three ticks are recorded skipped, "paused", and none is caught up.
	ctx, cancel = context.WithCancel(context.Background())
	wait = m.ServeSchedules(ctx)
	defer func() { cancel(); wait() }()
	if _, err := m.PauseSchedule("nightly", "n", true); err != nil {
		t.Fatal(err)
	}
	clk.set(time.Date(2027, 4, 3, 12, 0, 0, 0, berlin))
	if _, err := m.PauseSchedule("nightly", "n", false); err != nil {
		t.Fatal(err)
	}
	clk.set(time.Date(2027, 4, 3, 12, 0, 1, 0, berlin))
	if got = scheduledTicks(t, m, "nightly", 3); len(got) != 3 {
		t.Fatalf("paused: runs at %v, want still 3", got)
	}
	is, _ = m.Schedules()
	var paused []string
	for _, sk := range is[0].State.Skipped {
		if sk.Reason == "paused" {
			paused = append(paused, sk.Tick.AsTime().UTC().Format("01-02"))
		}
	}
	if want := []string{"04-01", "04-02", "04-03"}; !slices.Equal(paused, want) {
		t.Errorf("ticks skipped while paused: %v, want %v", paused, want)
	}
}
