package store_test

import (
	"testing"
	"time"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// TestWriter: records staged within the gap wait for it and then share one
// background commit; Flush(true) commits the rest at once; every record is
// readable afterwards.
func TestWriter(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	w := s.NewWriter(time.Hour, 1000) // a gap no test waits for
	put := func(id string) {
		if err := w.Batch().PutRun(&wizpb.Run{Id: id, PipelineName: "p"}); err != nil {
			t.Fatal(err)
		}
	}
	put("r1")
	w.Flush(false) // the first commit may start at once
	if w.Committed() == nil {
		t.Fatal("no commit started")
	}
	w.Settle(<-w.Committed())
	put("r2")
	w.Flush(false) // within the gap: it waits
	if w.Committed() != nil || w.Due() == nil {
		t.Fatalf("a second commit started within the gap (committed %v, due %v)", w.Committed() != nil, w.Due() != nil)
	}
	w.Flush(true)
	if w.Due() != nil || w.Err() != nil {
		t.Fatalf("after the final flush: due %v, err %v", w.Due() != nil, w.Err())
	}
	for _, id := range []string{"r1", "r2"} {
		if _, err := s.Run(id); err != nil {
			t.Errorf("run %s: %v", id, err)
		}
	}

	// max staged records start a commit without waiting for the gap.
	w = s.NewWriter(time.Hour, 2)
	put("r3")
	w.Flush(false)
	w.Settle(<-w.Committed())
	put("r4")
	put("r5")
	w.Flush(false)
	if w.Committed() == nil {
		t.Fatal("max records did not start a commit")
	}
	w.Flush(true)
	if _, err := s.Run("r5"); err != nil {
		t.Errorf("run r5: %v", err)
	}
}
