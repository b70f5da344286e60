package blob_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wiz-run/wiz/sdk/blob"
)

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func openStore(t *testing.T) *blob.Store {
	t.Helper()
	s, err := blob.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// files lists the regular files under dir/sub, relative to dir.
func files(t *testing.T, dir, sub string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(dir, sub), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func readBlob(s *blob.Store, digest string) ([]byte, error) {
	r, err := s.Open(digest)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestPutOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"small", []byte("hello, wiz\n")},
		{"binary", []byte{0, 1, 2, 0xff, 0xfe, 0}},
		{"1 MiB", bytes.Repeat([]byte("0123456789abcdef"), 1<<16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			digest, size, err := s.Put(bytes.NewReader(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if want := digestOf(tt.data); digest != want {
				t.Errorf("digest %s, want %s", digest, want)
			}
			if size != int64(len(tt.data)) {
				t.Errorf("size %d, want %d", size, len(tt.data))
			}
			if !s.Has(digest) {
				t.Errorf("Has(%s) = false after Put", digest)
			}
			hexd := strings.TrimPrefix(digest, "sha256:")
			if want := filepath.Join(s.Dir(), "sha256", hexd[:2], hexd); s.Path(digest) != want {
				t.Errorf("Path = %s, want %s", s.Path(digest), want)
			}
			got, err := readBlob(s, digest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("read %d bytes back, want the %d put", len(got), len(tt.data))
			}
			if tmp := files(t, s.Dir(), "tmp"); tmp != nil {
				t.Errorf("tmp/ holds %v after Put", tmp)
			}
		})
	}
}

func TestStoredOnce(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	data := []byte("same content")
	d1, _, err := s.Put(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	d2, size, err := s.PutFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 || size != int64(len(data)) {
		t.Errorf("PutFile = %s, %d; want %s, %d", d2, size, d1, len(data))
	}
	// Many writers of one content at once.
	var wg sync.WaitGroup
	digests := make([]string, 8)
	for i := range digests {
		wg.Go(func() {
			d, _, err := s.Put(bytes.NewReader(data))
			if err != nil {
				t.Error(err)
			}
			digests[i] = d
		})
	}
	wg.Wait()
	for _, d := range digests {
		if d != d1 {
			t.Errorf("concurrent Put = %s, want %s", d, d1)
		}
	}
	hexd := strings.TrimPrefix(d1, "sha256:")
	if got, want := files(t, s.Dir(), "sha256"), []string{"sha256/" + hexd[:2] + "/" + hexd}; !slices.Equal(got, want) {
		t.Errorf("blobs on disk %v, want one: %v", got, want)
	}
	if tmp := files(t, s.Dir(), "tmp"); tmp != nil {
		t.Errorf("tmp/ holds %v", tmp)
	}
	if got, err := readBlob(s, d1); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read back %q, %v", got, err)
	}
}

func TestDigestVerifiedOnRead(t *testing.T) {
	t.Parallel()
	data := []byte("the original content of the blob")
	tests := []struct {
		name    string
		corrupt func(path string) error
	}{
		{"changed", func(p string) error { return os.WriteFile(p, []byte("the 0riginal content of the blob"), 0o644) }},
		{"truncated", func(p string) error { return os.Truncate(p, 5) }},
		{"emptied", func(p string) error { return os.Truncate(p, 0) }},
		{"grown", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString("!")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			digest, _, err := s.Put(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(s.Path(digest), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tt.corrupt(s.Path(digest)); err != nil {
				t.Fatal(err)
			}
			r, err := s.Open(digest) // opening does not read: no error yet
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, err = io.ReadAll(r)
			if !errors.Is(err, blob.ErrDigestMismatch) {
				t.Fatalf("reading a corrupt blob to EOF: %v, want ErrDigestMismatch", err)
			}
			if !strings.Contains(err.Error(), digest) {
				t.Errorf("error %q does not name the digest %s", err, digest)
			}
		})
	}
}

func TestAbort(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half a blob")); err != nil {
		t.Fatal(err)
	}
	if tmp := files(t, s.Dir(), "tmp"); len(tmp) != 1 {
		t.Fatalf("tmp/ holds %v while writing, want one temp file", tmp)
	}
	w.Abort()
	w.Abort() // a second Abort is harmless
	if tmp := files(t, s.Dir(), "tmp"); tmp != nil {
		t.Errorf("tmp/ holds %v after Abort", tmp)
	}
	if got := files(t, s.Dir(), "sha256"); got != nil {
		t.Errorf("blobs %v after Abort, want none", got)
	}
	if _, _, err := w.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}

func TestCommitTwice(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "x"); err != nil {
		t.Fatal(err)
	}
	d, n, err := w.Commit()
	if err != nil || d != digestOf([]byte("x")) || n != 1 {
		t.Fatalf("Commit = %s, %d, %v", d, n, err)
	}
	if _, _, err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	w.Abort() // after Commit: does nothing
	if !s.Has(d) {
		t.Error("Abort after Commit removed the blob")
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("disk on fire")
	}
	r.n--
	return copy(p, "data"), nil
}

func TestPutReadError(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	_, _, err := s.Put(&failingReader{n: 3})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Put = %v, want the reader's error", err)
	}
	if tmp := files(t, s.Dir(), "tmp"); tmp != nil {
		t.Errorf("tmp/ holds %v after a failed Put", tmp)
	}
	if got := files(t, s.Dir(), "sha256"); got != nil {
		t.Errorf("blobs %v after a failed Put", got)
	}
}

func TestMissing(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	digest := digestOf([]byte("never stored"))
	if s.Has(digest) {
		t.Error("Has reports a blob never stored")
	}
	_, err := s.Open(digest)
	if err == nil {
		t.Fatal("Open of a missing blob succeeded")
	}
	if !strings.Contains(err.Error(), digest) {
		t.Errorf("error %q does not name the digest %s", err, digest)
	}
}

func TestPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		digest string
		want   string
	}{
		{"sha256:" + strings.Repeat("ab", 32), filepath.Join("root", "sha256", "ab", strings.Repeat("ab", 32))},
		// Anything else — no prefix, short, upper case, a path — names a file that never exists.
		{strings.Repeat("ab", 32), filepath.Join("root", "sha256", "invalid")},
		{"sha256:a", filepath.Join("root", "sha256", "invalid")},
		{"sha256:../../" + strings.Repeat("a", 58), filepath.Join("root", "sha256", "invalid")},
		{"sha256:" + strings.Repeat("AB", 32), filepath.Join("root", "sha256", "invalid")},
		{"", filepath.Join("root", "sha256", "invalid")},
	}
	for _, tt := range tests {
		if got := blob.Path("root", tt.digest); got != tt.want {
			t.Errorf("Path(root, %q) = %s, want %s", tt.digest, got, tt.want)
		}
	}
}
