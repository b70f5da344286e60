package manager

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// latest returns the last count sent on ch, or -1 when none was.
func latest(ch <-chan int) int {
	select {
	case v := <-ch:
		return v
	default:
		return -1
	}
}

func TestShareSplitsCapacity(t *testing.T) {
	s := newShare(8)
	a, ach := s.join("a", 0)
	if a != 8 {
		t.Fatalf("a alone gets %d, want 8", a)
	}
	s.running("a", 8)
	// b joins: a shrinks to 4 at once, but b only gets slots as a's tasks end.
	b, bch := s.join("b", 0)
	if b != 0 || latest(ach) != 4 {
		t.Fatalf("b gets %d while a runs 8 tasks (want 0), and a must shrink to 4", b)
	}
	s.running("a", 6)
	if got := latest(bch); got != 2 {
		t.Fatalf("two of a's tasks ended: b gets %d, want 2", got)
	}
	s.running("a", 4)
	if got := latest(bch); got != 4 {
		t.Fatalf("a is down to its part: b gets %d, want 4", got)
	}
	s.running("b", 4)
	// c can use only 2: a and b share the rest.
	c, cch := s.join("c", 2)
	if c != 0 || latest(ach) != 3 || latest(bch) != 3 {
		t.Fatalf("c joins: c %d (want 0 until slots free), a and b must shrink to 3", c)
	}
	s.running("a", 3)
	s.running("b", 3)
	if got := latest(cch); got != 2 {
		t.Fatalf("c gets %d, want 2", got)
	}
	s.leave("b")
	if got := latest(ach); got != 6 {
		t.Errorf("after b left, a gets %d, want 6", got)
	}
	if got := latest(cch); got != -1 {
		t.Errorf("c's part changed to %d, want it to stay 2", got)
	}
}

func TestShareNeverOverCapacity(t *testing.T) {
	s := newShare(2)
	chans := map[string]<-chan int{}
	slots := map[string]int{}
	for _, id := range []string{"a", "b", "c", "d"} {
		n, ch := s.join(id, 0)
		slots[id], chans[id] = n, ch
		total := 0
		for changed := true; changed; { // tasks end down to each run's slots; freed slots move on
			changed = false
			for id, ch := range chans {
				if v := latest(ch); v >= 0 {
					slots[id], changed = v, true
				}
				s.running(id, slots[id])
			}
		}
		for id := range chans {
			total += slots[id]
		}
		if total > 2 {
			t.Fatalf("after %s joined, runs may use %d slots in all; capacity is 2", id, total)
		}
	}
	// a and b hold the two slots; c and d wait, oldest first.
	if slots["a"] != 1 || slots["b"] != 1 || slots["c"] != 0 || slots["d"] != 0 {
		t.Fatalf("slots = %v; want a and b one each, c and d waiting", slots)
	}
	s.leave("a")
	if got := latest(chans["c"]); got != 1 {
		t.Errorf("a left: c gets %d, want 1", got)
	}
	if got := latest(chans["d"]); got != -1 {
		t.Errorf("d got %d; it must wait for the next free slot", got)
	}
}

func TestLeftGroups(t *testing.T) {
	dir := t.TempDir()
	// Two executors' journals; the second was cut short mid-line by a crash.
	os.WriteFile(filepath.Join(dir, "100.journal"), []byte("+10\n+11\n-10\n+12\n-12\n+10\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "200.journal"), []byte("+20\n-2"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes"), []byte("+30\n"), 0o644)
	ents, _ := os.ReadDir(dir)
	got := fmt.Sprint(leftGroups(dir, ents))
	if got != "[10 11 20]" {
		t.Errorf("leftGroups = %s; want [10 11 20] (started and not ended)", got)
	}
}
