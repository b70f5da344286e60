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
	// Likewise for files (inodes): badger makes a file for each new table,
	// memtable and value log, and one it cannot make stalls its flushes for
	// good. A file system that does not count files (Files 0) is not held
	// to these.
	ReserveFiles int64 = 64
	FloorFiles   int64 = 16
)

// DiskFullError is a write the store refused, or an open it made read-only,
// because its disk is (nearly) full, of bytes or of files.
type DiskFullError struct {
	Dir   string
	Free  int64 // bytes available
	Files int64 // files (inodes) available; -1: not counted
	// ReadOnly: the store was opened read-only; it can be read, not written.
	ReadOnly bool
}

func (e *DiskFullError) Error() string {
	free := fmt.Sprintf("%.1f MiB free", float64(e.Free)/(1<<20))
	if e.Files >= 0 && e.Files < ReserveFiles {
		free = fmt.Sprintf("%d free files (inodes)", e.Files)
	}
	if e.ReadOnly {
		return fmt.Sprintf("store %s: disk full (%s), so it is open read-only; free space on that disk: wiz needs %d MiB and %d files free to delete old runs (`wiz gc --older-than 30d`) and %d MiB and %d files to write",
			e.Dir, free, Floor>>20, FloorFiles, Reserve>>20, ReserveFiles)
	}
	return fmt.Sprintf("store %s: disk full (%s; wiz keeps %d MiB and %d files free so that its store always writes safely); free space on that disk, or delete old runs and their data with `wiz gc --older-than 30d` (or `retention:`)",
		e.Dir, free, Reserve>>20, ReserveFiles)
}

// ErrDiskFull matches every DiskFullError (errors.Is).
var ErrDiskFull = errors.New("disk full")

// Is makes errors.Is(err, ErrDiskFull) true.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

// space is what dir's file system has available to this process.
type space struct {
	bytes, files int64 // files -1: not counted
}

func freeSpace(dir string) (space, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return space{}, fmt.Errorf("store %s: free space: %w", dir, err)
	}
	sp := space{bytes: int64(st.Bavail) * int64(st.Bsize), files: -1}
	if st.Files > 0 {
		sp.files = int64(st.Ffree)
	}
	return sp, nil
}

// below reports whether sp, less size bytes, is under bytes or files.
func (sp space) below(size, bytes, files int64) bool {
	return sp.bytes-size < bytes || sp.files >= 0 && sp.files < files
}

func (sp space) full(dir string, readOnly bool) *DiskFullError {
	return &DiskFullError{Dir: dir, Free: sp.bytes, Files: sp.files, ReadOnly: readOnly}
}

// room checks that the disk takes writes (unwritable.go) and that size more
// bytes may be written: at least Reserve and ReserveFiles (Floor and
// FloorFiles when freeing) must stay free.
func (s *Store) room(size int, freeing bool) error {
	if s.readOnly {
		// Opened read-only: no probe, the open said why.
		if f := s.Failed(); f != nil {
			return f
		}
		sp, _ := freeSpace(s.dir)
		return sp.full(s.dir, true)
	}
	if err := s.writable(); err != nil {
		return err
	}
	sp, err := freeSpace(s.dir)
	if err != nil {
		return err
	}
	bytes, files := Reserve, ReserveFiles
	if freeing {
		bytes, files = Floor, FloorFiles
	}
	if sp.below(int64(size), bytes, files) {
		return sp.full(s.dir, false)
	}
	return nil
}

// ReadOnly reports whether the store was opened read-only for want of space.
func (s *Store) ReadOnly() bool { return s.readOnly }
