package blob

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Walk calls fn with the digest and size of every blob in s. It is for
// garbage collection: a blob written meanwhile may or may not be seen.
func (s *Store) Walk(fn func(digest string, size int64) error) error {
	root := filepath.Join(s.dir, "sha256")
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipDir
			}
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		digest := "sha256:" + e.Name()
		if !ValidDigest(digest) || s.Path(digest) != p {
			return nil // not a blob of this store
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		return fn(digest, info.Size())
	})
	if err != nil {
		return fmt.Errorf("list blobs in %s: %w", s.dir, err)
	}
	return nil
}

// Remove deletes a blob. Removing a blob that is not there is no error.
func (s *Store) Remove(digest string) error {
	if !ValidDigest(digest) {
		return fmt.Errorf("remove blob %q: %w", digest, ErrBadDigest)
	}
	if err := os.Remove(s.Path(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove blob %s: %w", digest, err)
	}
	return nil
}

// RemoveTemp deletes the temp files of blobs that were never committed (left
// by a process killed mid-write) and returns how many bytes they held. Call
// it only when no process is writing to the store.
func (s *Store) RemoveTemp() (int64, error) {
	dir := filepath.Join(s.dir, "tmp")
	es, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("clean %s: %w", dir, err)
	}
	var n int64
	for _, e := range es {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
			n += info.Size()
		}
	}
	return n, nil
}
