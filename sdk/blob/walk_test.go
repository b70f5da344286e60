package blob_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWalkRemove(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	if err := s.Walk(func(string, int64) error { t.Error("an empty store has blobs"); return nil }); err != nil {
		t.Fatal(err)
	}
	a, _, err := s.Put(strings.NewReader("aaa"))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.Put(strings.NewReader("bbbbb"))
	if err != nil {
		t.Fatal(err)
	}
	// A stray file is not a blob.
	if err := os.WriteFile(filepath.Join(s.Dir(), "sha256", "stray"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	if err := s.Walk(func(d string, n int64) error { got[d] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[a] != 3 || got[b] != 5 {
		t.Fatalf("Walk = %v", got)
	}
	if err := s.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(a); err != nil {
		t.Errorf("removing a missing blob: %v", err)
	}
	if s.Has(a) || !s.Has(b) {
		t.Errorf("after Remove: has a %v, has b %v", s.Has(a), s.Has(b))
	}
	if err := s.Remove("../../etc"); err == nil {
		t.Error("Remove took a path for a digest")
	}
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("left behind")); err != nil {
		t.Fatal(err)
	}
	n, err := s.RemoveTemp()
	if err != nil || n != int64(len("left behind")) {
		t.Fatalf("RemoveTemp = %d, %v", n, err)
	}
	if tmp := files(t, s.Dir(), "tmp"); tmp != nil {
		t.Errorf("tmp/ holds %v", tmp)
	}
}

// A blob damaged to another size is replaced when the same bytes are stored
// again; one of the right size is kept (stored once, no sync).
func TestCommitReplacesDamaged(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	d, _, err := s.Put(strings.NewReader("the content"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(s.Path(d), 3); err != nil {
		t.Fatal(err)
	}
	if d2, _, err := s.Put(strings.NewReader("the content")); err != nil || d2 != d {
		t.Fatalf("Put again: %s, %v", d2, err)
	}
	if got, err := readBlob(s, d); err != nil || string(got) != "the content" {
		t.Fatalf("after storing again: %q, %v", got, err)
	}
	if tmp := files(t, s.Dir(), "tmp"); tmp != nil {
		t.Errorf("tmp/ holds %v", tmp)
	}
}
