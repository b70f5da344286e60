package pipeline

import (
	"runtime/debug"
	"testing"
)

// Large parses lower the GC target while they run, overlapping ones share
// the lowering, and the last to end restores the process's setting; small
// files and a process already at a lower target are left alone.
func TestCollectHarder(t *testing.T) {
	old := debug.SetGCPercent(50)
	defer debug.SetGCPercent(old)
	gc := func() int { v := debug.SetGCPercent(-1); debug.SetGCPercent(v); return v }

	collectHarder(parseGCMinSize - 1)()
	if got := gc(); got != 50 {
		t.Fatalf("after a small parse GOGC = %d, want 50", got)
	}
	a := collectHarder(parseGCMinSize)
	b := collectHarder(parseGCMinSize)
	if got := gc(); got != parseGCPercent {
		t.Fatalf("during large parses GOGC = %d, want %d", got, parseGCPercent)
	}
	a()
	if got := gc(); got != parseGCPercent {
		t.Fatalf("while one large parse still runs GOGC = %d, want %d", got, parseGCPercent)
	}
	b()
	if got := gc(); got != 50 {
		t.Fatalf("after the large parses GOGC = %d, want 50 again", got)
	}
	debug.SetGCPercent(10)
	collectHarder(parseGCMinSize)()
	if got := gc(); got != 10 {
		t.Fatalf("a process at GOGC=10: after a large parse GOGC = %d, want 10", got)
	}
}

// With the collector off (GOGC=off), a large parse leaves it off.
func TestCollectHarderGCOff(t *testing.T) {
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	restore := collectHarder(parseGCMinSize)
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Errorf("during a large parse with GOGC=off, GOGC = %d, want off", got)
	}
	restore()
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Errorf("after a large parse with GOGC=off, GOGC = %d, want off", got)
	}
}

// However large parses overlap, the process's setting comes back.
func TestCollectHarderConcurrent(t *testing.T) {
	old := debug.SetGCPercent(50)
	defer debug.SetGCPercent(old)
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 20; i++ {
				collectHarder(parseGCMinSize)()
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
	if got := debug.SetGCPercent(50); got != 50 {
		t.Errorf("after overlapping large parses GOGC = %d, want 50 again", got)
	}
}
