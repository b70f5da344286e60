package store_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

func files(digests ...string) *wizpb.Data {
	d := &wizpb.Data{}
	for _, x := range digests {
		d.Files = append(d.Files, &wizpb.FileRef{Digest: x, Name: x})
	}
	return d
}

func TestDeleteRunAndBlobRefs(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	gone, kept, active := id(t, 1), id(t, 2), id(t, 3)
	b := s.Batch()
	for _, r := range []string{gone, kept, active} {
		if err := b.PutRun(&wizpb.Run{Id: r, Inputs: map[string]*wizpb.Data{"in": files("in-" + r)}}); err != nil {
			t.Fatal(err)
		}
		for _, err := range []error{
			b.PutProcessor(&wizpb.ProcessorRun{RunId: r, Name: "p", Outputs: map[string]*wizpb.Data{"out": files("out-"+r, "shared"), "text": {Inline: []byte("x")}}}),
			b.PutEvent(&wizpb.Event{Id: id(t, 4), RunId: r, Kind: "state"}),
			b.PutLog(r, 0, &wizpb.LogChunk{Processor: "p", Data: []byte("log")}),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	b.PutActive(active)
	commit(t, b)

	if err := s.DeleteRun(active); err == nil {
		t.Fatal("DeleteRun of an active run succeeded")
	}
	if err := s.DeleteRun(gone); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(gone); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Run after delete: %v, want ErrNotFound", err)
	}
	if procs, err := s.Processors(gone); err != nil || len(procs) != 0 {
		t.Errorf("Processors after delete: %v, %v", procs, err)
	}
	if evs, err := s.Events(gone); err != nil || len(evs) != 0 {
		t.Errorf("Events after delete: %v, %v", evs, err)
	}
	n := 0
	if err := s.Logs(gone, "", func(*wizpb.LogChunk) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("Logs after delete: %d chunks, %v", n, err)
	}
	// The other runs are whole.
	for _, r := range []string{kept, active} {
		procs, err := s.Processors(r)
		evs, _ := s.Events(r)
		if err != nil || len(procs) != 1 || len(evs) != 1 {
			t.Errorf("run %s after deleting another: %d processors, %d events, %v", r, len(procs), len(evs), err)
		}
	}

	var refs []string
	if err := s.BlobRefs(func(d string) { refs = append(refs, d) }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(refs)
	refs = slices.Compact(refs)
	want := []string{"in-" + active, "in-" + kept, "out-" + active, "out-" + kept, "shared"}
	slices.Sort(want)
	if !slices.Equal(refs, want) {
		t.Errorf("BlobRefs = %v, want %v", refs, want)
	}
	s.Compact()
}
