package blob_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/wiz-run/wiz/sdk/blob"
)

// A blob is stored once under its digest and verified when read back.
func ExampleStore_Open() {
	dir, _ := os.MkdirTemp("", "wiz-blobs")
	defer os.RemoveAll(dir)
	s, err := blob.Open(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	digest, size, err := s.Put(strings.NewReader("hello"))
	fmt.Println(digest, size, err)
	r, err := s.Open(digest)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := io.ReadAll(r)
	r.Close()
	fmt.Printf("%q %v\n", b, err)

	// Bytes changed on disk fail the read at its end.
	os.WriteFile(s.Path(digest), []byte("HELLO"), 0o644)
	r, _ = blob.OpenFile(s.Path(digest), digest)
	_, err = io.ReadAll(r)
	r.Close()
	fmt.Println(errors.Is(err, blob.ErrDigestMismatch))
	// Output:
	// sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 5 <nil>
	// "hello" <nil>
	// true
}

// Walk and Remove are what garbage collection needs: every blob, by digest
// and size, and a way to delete one.
func ExampleStore_Walk() {
	dir, _ := os.MkdirTemp("", "wiz-blobs")
	defer os.RemoveAll(dir)
	s, _ := blob.Open(dir)
	keep, _, _ := s.Put(strings.NewReader("keep me"))
	s.Put(strings.NewReader("garbage"))
	var freed int64
	s.Walk(func(digest string, size int64) error {
		if digest == keep {
			return nil
		}
		freed += size
		return s.Remove(digest)
	})
	fmt.Println(freed, s.Has(keep))
	// Output:
	// 7 true
}
