package main

import (
	"runtime/debug"
	"testing"

	"github.com/alecthomas/kong"
)

// TestSetGC: the Manager's commands collect garbage at 50% heap growth (the
// 10,000-processor RSS target), `wiz executor` at Go's default, and GOGC
// overrides both. Not parallel: the GC percent is process-wide.
func TestSetGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct {
		args []string
		gogc string
		want int
	}{
		{[]string{"run", "p.yaml"}, "", 50},
		{[]string{"daemon"}, "", 50},
		{[]string{"executor", "--slots", "2"}, "", 100},
		{[]string{"run", "p.yaml"}, "100", 100},
	} {
		t.Setenv("GOGC", tc.gogc)
		var cli CLI
		parser, err := kong.New(&cli, kong.Name("wiz"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, err := parser.Parse(tc.args)
		if err != nil {
			t.Fatalf("parse %q: %v", tc.args, err)
		}
		debug.SetGCPercent(100)
		setGC(ctx.Command())
		if got := debug.SetGCPercent(100); got != tc.want {
			t.Errorf("wiz %q with GOGC=%q: GC percent %d, want %d", tc.args, tc.gogc, got, tc.want)
		}
	}
}

// `wiz run` of a small pipeline file collects at smallRunGC; a large file,
// a stored pipeline (size 0) or GOGC keeps the Manager's setting.
func TestLoosenGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	unlimited := debug.SetMemoryLimit(-1) // -1 reads it
	defer debug.SetMemoryLimit(unlimited) // the test binary's own, after
	for _, tc := range []struct {
		size int
		gogc string
		want int
	}{
		{10 << 10, "", smallRunGC},
		{smallPipeline, "", 50},
		{0, "", 50},
		{10 << 10, "50", 50},
	} {
		t.Setenv("GOGC", tc.gogc)
		debug.SetGCPercent(50)
		loosenGC(tc.size)
		if got := debug.SetGCPercent(50); got != tc.want {
			t.Errorf("loosenGC(%d) with GOGC=%q: GC percent %d, want %d", tc.size, tc.gogc, got, tc.want)
		}
		// A small run also gets a soft memory limit, so that a flood of
		// logs cannot triple its heap.
		wantLimit := unlimited
		if tc.want == smallRunGC {
			wantLimit = smallRunMemLimit
		}
		if got := debug.SetMemoryLimit(unlimited); got != wantLimit {
			t.Errorf("loosenGC(%d) with GOGC=%q: memory limit %d, want %d", tc.size, tc.gogc, got, wantLimit)
		}
	}
}
