package store

import (
	"errors"
	"fmt"
	"syscall"
)

// Badger maps its write-ahead log, value log and new tables into memory as
// sparse files; a write into one on a full disk is a SIGBUS that kills the
// process with a fault trace, not an error. So the store checks the free
// space of its file system before it writes, and refuses a write that would
// leave less than Reserve: room for what badger writes on its own (memtable
// flushes, compactions) after the writes it was given. Writes that end runs
// and deletes (gc, retention, clearing the cache), which free space, may go
// on down to Floor.
var (
	Reserve int64 = 64 << 20
	Floor   int64 = 16 << 20
)

// DiskFullError is a write the store refused, or an open it made read-only,
// because its disk is (nearly) full.
type DiskFullError struct {
	Dir  string
	Free int64 // bytes available
	// ReadOnly: the store was opened read-only; it can be read, not written.
	ReadOnly bool
}

func (e *DiskFullError) Error() string {
	free := float64(e.Free) / (1 << 20)
	if e.ReadOnly {
		return fmt.Sprintf("store %s: disk full (%.1f MiB free), so it is open read-only; free space on that disk: wiz needs %d MiB free to delete old runs (`wiz gc --older-than 30d`) and %d MiB to write",
			e.Dir, free, Floor>>20, Reserve>>20)
	}
	return fmt.Sprintf("store %s: disk full (%.1f MiB free; wiz keeps %d MiB free so that its store always writes safely); free space on that disk, or delete old runs and their data with `wiz gc --older-than 30d` (or `retention:`)",
		e.Dir, free, Reserve>>20)
}

// ErrDiskFull matches every DiskFullError (errors.Is).
var ErrDiskFull = errors.New("disk full")

// Is makes errors.Is(err, ErrDiskFull) true.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

// freeSpace returns the bytes available to this process in dir's file system.
func freeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("store %s: free space: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// room checks that size more bytes may be written: at least Reserve (Floor
// when freeing) must stay free.
func (s *Store) room(size int, freeing bool) error {
	if s.readOnly {
		free, _ := freeSpace(s.dir)
		return &DiskFullError{Dir: s.dir, Free: free, ReadOnly: true}
	}
	free, err := freeSpace(s.dir)
	if err != nil {
		return err
	}
	keep := Reserve
	if freeing {
		keep = Floor
	}
	if free-int64(size) < keep {
		return &DiskFullError{Dir: s.dir, Free: free}
	}
	return nil
}

// ReadOnly reports whether the store was opened read-only for want of space.
func (s *Store) ReadOnly() bool { return s.readOnly }
