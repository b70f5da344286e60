package store_test

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wiz-run/wiz/core/ids"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// command opens the store as a short command does, writes a run record and
// closes it: badger flushes its memtable, one more level-0 table.
func command(t *testing.T, dir string) (level0 int, compacted int) {
	t.Helper()
	s, err := store.OpenWith(dir, hclog.NewNullLogger(), store.Options{Short: true})
	if err != nil {
		t.Fatal(err)
	}
	level0 = s.Level0()
	compacted, _ = s.Compacted()
	b := s.Batch()
	if err := b.PutRun(&wizpb.Run{Id: ids.NewString(), PipelineName: "p", State: wizpb.RunState_RUN_STATE_SUCCEEDED}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return level0, compacted
}

// Short commands do not compact what earlier ones wrote until ShortL0
// level-0 tables have built up; then the next one compacts first, before it
// goes on, and says so (Compacted). A long-lived process compacts in the
// background, as badger does.
func TestShortCommandsCompactOnlyPastShortL0(t *testing.T) {
	dir := t.TempDir()
	for i := range store.ShortL0 {
		l0, c := command(t, dir)
		if l0 != i || c != 0 {
			t.Fatalf("command %d found %d level-0 tables and compacted %d; want %d, none compacted", i+1, l0, c, i)
		}
	}
	l0, c := command(t, dir)
	if c != store.ShortL0 || l0 >= 8 {
		t.Fatalf("past ShortL0: the command found %d level-0 tables after its open, compacted %d; want fewer than 8 (badger's own threshold), %d compacted first", l0, c, store.ShortL0)
	}
	if l0, c := command(t, dir); c != 0 || l0 >= store.ShortL0 {
		t.Errorf("the next command found %d level-0 tables, compacted %d; want none compacted", l0, c)
	}

	// The daemon's open: badger's own threshold (8), in the background.
	for range 8 {
		command(t, dir)
	}
	s, err := store.Open(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for deadline := time.Now().Add(time.Minute); s.Level0() >= 8; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a long-lived process's store kept %d level-0 tables for a minute", s.Level0())
		}
	}
}
