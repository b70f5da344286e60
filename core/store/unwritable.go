package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// A disk can stop taking writes under a running wiz: ext4 turns itself
// read-only after an I/O error (errors=remount-ro), a failing device
// returns EIO, a network mount goes away. Badger then retries its flushes
// every second, forever, and a write stalls once its memtables are full. So
// the store notices: it probes its directory (a file made and removed) at
// most every probeEvery before a write, and at once when badger reports an
// error or a sync fails; once the disk refuses, every write and the close
// fail with an UnwritableError, and Close gives badger closeFailedMax, not
// forever.
const (
	probeEvery     = time.Second
	closeFailedMax = 3 * time.Second
)

// CloseMax bounds Close on a healthy disk: past it the store is left as a
// crash leaves it, which the next open recovers.
var CloseMax = time.Minute

// UnwritableError is a write the store refused, or a close it gave up,
// because its disk refuses writes.
type UnwritableError struct {
	Dir   string
	Cause error
	// Unreadable: opening it read-only failed too (badger must replay a
	// log, which writes); why.
	Unreadable error
}

func (e *UnwritableError) Error() string {
	also := ""
	if e.Unreadable != nil {
		also = fmt.Sprintf(" (it cannot be read until then either: %v)", e.Unreadable)
	}
	return fmt.Sprintf("store %s: cannot write: %v: its disk turned read-only or fails (see `dmesg`); what was committed before is kept: repair or remount that disk (or move the wiz home) and run the command again, which carries on from there%s",
		e.Dir, e.Cause, also)
}

func (e *UnwritableError) Unwrap() error { return e.Cause }

// ErrUnwritable matches every UnwritableError (errors.Is).
var ErrUnwritable = errors.New("store unwritable")

// Is makes errors.Is(err, ErrUnwritable) true.
func (e *UnwritableError) Is(target error) bool { return target == ErrUnwritable }

// refusing reports whether err says that the file system refuses writes
// (not that it is full: space.go sees to that).
func refusing(err error) bool {
	return errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO) ||
		errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

// Unwritable returns a channel closed once the store has found its disk
// refusing writes; Failed then returns the error.
func (s *Store) Unwritable() <-chan struct{} { return s.failedCh }

// Failed returns the UnwritableError the store found, or nil.
func (s *Store) Failed() error {
	if f := s.failed.Load(); f != nil {
		return f
	}
	return nil
}

// fail records that the disk refuses writes (the first cause only).
func (s *Store) fail(cause error) error {
	s.failOnce.Do(func() {
		s.failed.Store(&UnwritableError{Dir: s.dir, Cause: cause})
		s.log.Debug("the store's disk refuses writes", "dir", s.dir, "error", cause) // the error says it
		close(s.failedCh)
	})
	return s.failed.Load()
}

// writable returns the store's UnwritableError, probing the disk first when
// it was last probed longer than probeEvery ago.
func (s *Store) writable() error {
	if f := s.failed.Load(); f != nil {
		return f
	}
	now := time.Now().UnixNano()
	last := s.probed.Load()
	if now-last < int64(probeEvery) || !s.probed.CompareAndSwap(last, now) {
		return nil
	}
	return s.probe()
}

// probe makes and removes a file in the store's directory.
func (s *Store) probe() error {
	if err := probeDir(s.dir); err != nil && refusing(err) {
		return s.fail(err)
	}
	return nil
}

func probeDir(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	err = f.Close()
	if rerr := os.Remove(f.Name()); err == nil {
		err = rerr
	}
	return err
}

// checked turns an error of a write or sync that the disk refused into the
// store's UnwritableError. Badger's errors do not always wrap the system's,
// so any error makes the store probe its disk.
func (s *Store) checked(err error) error {
	if err == nil {
		return nil
	}
	if refusing(err) {
		return s.fail(err)
	}
	if perr := s.writableNow(); perr != nil {
		return perr
	}
	return err
}
