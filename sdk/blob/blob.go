// Package blob is wiz's content-addressed blob store: the files behind Wiz
// Files. A blob is stored once under its sha256 digest, written atomically
// (temp file, fsync, rename) and verified by digest when read whole. The same
// layout is used by the Manager, `wiz executor` and processor packs, so that a
// local executor and its packs read blobs in place.
package blob

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrDigestMismatch is returned when a blob's content does not match its digest.
var ErrDigestMismatch = errors.New("blob digest mismatch")

// Store is a blob store rooted at a directory. It is safe for concurrent use by
// several goroutines and processes: writes go to a temp file renamed into place.
type Store struct {
	dir string
}

// Open returns the store rooted at dir, creating it when missing.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, fmt.Errorf("open blob store %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// Dir returns the store's root directory.
func (s *Store) Dir() string { return s.dir }

// ErrBadDigest is returned for a digest that is not "sha256:" and 64 lower-case
// hex digits.
var ErrBadDigest = errors.New("not a sha256 digest")

// ValidDigest reports whether digest is "sha256:" and 64 lower-case hex digits.
func ValidDigest(digest string) bool {
	hexd, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexd) != 64 {
		return false
	}
	for _, c := range hexd {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Path returns where the blob with the given digest ("sha256:<hex>") lives,
// whether or not it exists. An invalid digest gets a path inside dir that
// never exists, so that no digest from the wire can name a file elsewhere.
func Path(dir, digest string) string {
	if !ValidDigest(digest) {
		return filepath.Join(dir, "sha256", "invalid")
	}
	hexd := digest[len("sha256:"):]
	return filepath.Join(dir, "sha256", hexd[:2], hexd)
}

// Path returns where the blob with the given digest lives in s.
func (s *Store) Path(digest string) string { return Path(s.dir, digest) }

// Has reports whether s holds the blob.
func (s *Store) Has(digest string) bool {
	_, err := os.Stat(s.Path(digest))
	return err == nil
}

// Writer writes one blob. Close commits it; Abort discards it.
type Writer struct {
	s    *Store
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

// Create starts writing a new blob.
func (s *Store) Create() (*Writer, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "blob-*")
	if err != nil {
		return nil, fmt.Errorf("create blob: %w", err)
	}
	return &Writer{s: s, f: f, h: sha256.New()}, nil
}

// Write implements io.Writer.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("write blob: %w", err)
	}
	return n, nil
}

// Commit syncs the blob and moves it to its digest's path. It returns the
// digest ("sha256:<hex>") and size.
func (w *Writer) Commit() (digest string, size int64, err error) {
	if w.done {
		return "", 0, errors.New("blob already committed or aborted")
	}
	w.done = true
	defer os.Remove(w.f.Name())
	digest = "sha256:" + hex.EncodeToString(w.h.Sum(nil))
	dst := w.s.Path(digest)
	// Stored once: the same bytes already there need no sync. One of another
	// size was damaged on disk, and is replaced.
	if st, err := os.Stat(dst); err == nil && st.Size() == w.n {
		w.f.Close()
		return digest, w.n, nil
	}
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		return "", 0, fmt.Errorf("sync blob: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return "", 0, fmt.Errorf("close blob: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", 0, fmt.Errorf("store blob %s: %w", digest, err)
	}
	if err := os.Rename(w.f.Name(), dst); err != nil {
		return "", 0, fmt.Errorf("store blob %s: %w", digest, err)
	}
	return digest, w.n, nil
}

// CommitExpect is Commit for bytes whose digest is known in advance (a blob
// received from elsewhere): when the content hashes to something else it
// keeps nothing and returns ErrDigestMismatch.
func (w *Writer) CommitExpect(want string) (size int64, err error) {
	if w.done {
		return 0, errors.New("blob already committed or aborted")
	}
	if got := "sha256:" + hex.EncodeToString(w.h.Sum(nil)); got != want {
		w.Abort()
		return 0, fmt.Errorf("store blob %s: %w (received %d bytes hashing to %s)", want, ErrDigestMismatch, w.n, got)
	}
	_, size, err = w.Commit()
	return size, err
}

// Size returns how many bytes were written so far.
func (w *Writer) Size() int64 { return w.n }

// Abort discards the blob being written.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
}

// Put stores everything read from r as one blob.
func (s *Store) Put(r io.Reader) (digest string, size int64, err error) {
	w, err := s.Create()
	if err != nil {
		return "", 0, err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return "", 0, err
	}
	return w.Commit()
}

// PutFile stores the file at path as one blob.
func (s *Store) PutFile(path string) (digest string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	return s.Put(f)
}

// Open opens the blob for reading. The reader verifies the digest when it
// reaches the end and returns ErrDigestMismatch then if the content changed.
func (s *Store) Open(digest string) (io.ReadCloser, error) {
	if !ValidDigest(digest) {
		return nil, fmt.Errorf("open blob %q: %w", digest, ErrBadDigest)
	}
	f, err := os.Open(s.Path(digest))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("blob %s is missing from %s: %w", digest, s.dir, os.ErrNotExist)
		}
		return nil, fmt.Errorf("open blob %s: %w", digest, err)
	}
	return &verifier{f: f, h: sha256.New(), digest: digest}, nil
}

// OpenFile opens the file at path, which must hold the blob with the given
// digest, for reading. Like Store.Open, the reader verifies the digest when it
// reaches the end and returns ErrDigestMismatch then if the content changed.
// A processor pack uses it to read a Wiz File by the path it was given.
func OpenFile(path, digest string) (io.ReadCloser, error) {
	if !ValidDigest(digest) {
		return nil, fmt.Errorf("open blob %q: %w", digest, ErrBadDigest)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", digest, err)
	}
	return &verifier{f: f, h: sha256.New(), digest: digest}, nil
}

type verifier struct {
	f      *os.File
	h      hash.Hash
	digest string
	n      int64
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		if got := "sha256:" + hex.EncodeToString(v.h.Sum(nil)); got != v.digest {
			return n, fmt.Errorf("read blob %s (%s): %w: the file was changed on disk (its %d bytes hash to %s)", v.digest, v.f.Name(), ErrDigestMismatch, v.n, got)
		}
	}
	return n, err
}

func (v *verifier) Close() error { return v.f.Close() }
