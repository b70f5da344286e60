package main

import (
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOthersShare(t *testing.T) {
	n := time.Duration(runtime.NumCPU())
	a := cpuMark{at: time.Unix(0, 0), ok: true}
	// 10 s of wall: the machine was busy for 5 s × CPUs, 1 s × CPUs of it
	// ours; the hypervisor stole 1 s × CPUs.
	b := cpuMark{at: time.Unix(10, 0), busy: 5 * time.Second * n, steal: time.Second * n, ours: time.Second * n, ok: true}
	if got := othersShare(a, b); got < 0.499 || got > 0.501 {
		t.Errorf("othersShare = %v, want 0.5", got)
	}
	// All of it ours: nobody else.
	b = cpuMark{at: time.Unix(10, 0), busy: 5 * time.Second * n, ours: 5 * time.Second * n, ok: true}
	if got := othersShare(a, b); got != 0 {
		t.Errorf("othersShare = %v, want 0", got)
	}
	if got := othersShare(a, cpuMark{}); got != -1 {
		t.Errorf("othersShare of an unread mark = %v, want -1", got)
	}
}

// A busy machine, an unknown one or too few pairs never give PASS (or
// MISS): the figure is not measured.
func TestQuietVerdict(t *testing.T) {
	for _, c := range []struct {
		ok     bool
		others float64
		pairs  int
		want   string
		why    string
	}{
		{true, 0.02, 7, "PASS", ""},
		{false, 0.02, 7, "MISS", ""},
		{true, 0.35, 7, "SKIP", "others used 35% of the machine's CPU"},
		{false, 0.35, 7, "SKIP", "others used 35%"},
		{true, -1, 7, "SKIP", "could not be read"},
		{true, 0.02, 1, "SKIP", "1 pair(s); a verdict needs 5"},
	} {
		got, why := quietVerdict(c.ok, c.others, c.pairs)
		if got != c.want || !strings.Contains(why, c.why) || (c.why == "") != (why == "") {
			t.Errorf("quietVerdict(%v, %v, %d) = %s, %q; want %s, %q", c.ok, c.others, c.pairs, got, why, c.want, c.why)
		}
	}
}

// spinCPU spins until this process has used d more CPU time, by its own
// rusage (not wall time: on a busy machine 200 ms of wall may be 10 ms of
// CPU), within a minute.
func spinCPU(t *testing.T, d time.Duration) {
	t.Helper()
	self := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start, deadline := self(), time.Now().Add(time.Minute)
	for self()-start < d {
		if time.Now().After(deadline) {
			t.Fatalf("could not use %v of CPU within a minute", d)
		}
	}
}

// markCPU reads this machine: the harness's own CPU time counts as ours.
func TestMarkCPU(t *testing.T) {
	a := markCPU()
	spinCPU(t, 200*time.Millisecond)
	b := markCPU()
	if !a.ok || !b.ok {
		t.Fatal("cannot read /proc/stat or getrusage")
	}
	if b.ours-a.ours < 150*time.Millisecond {
		t.Errorf("200 ms of CPU spinning counted as %v of our CPU", b.ours-a.ours)
	}
	if s := othersShare(a, b); s < 0 || s > 1 {
		t.Errorf("othersShare = %v, want within [0, 1]", s)
	}
}

// treeCPU counts this process's own CPU time (it is its own tree).
func TestTreeCPU(t *testing.T) {
	before := treeCPU(os.Getpid())
	spinCPU(t, 200*time.Millisecond)
	if got := treeCPU(os.Getpid()) - before; got < 150*time.Millisecond { // /proc counts in 10 ms ticks
		t.Errorf("200 ms of CPU spinning counted as %v", got)
	}
}
