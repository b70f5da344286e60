package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// DeleteRun deletes a run and everything recorded under it: its processors,
// events and logs. It refuses a run still marked active. Deleting is atomic
// per transaction; a very large run is deleted in several, the run record
// last, so that an interrupted delete leaves a run that can be deleted again.
func (s *Store) DeleteRun(id string) error {
	active, err := s.ActiveRuns()
	if err != nil {
		return err
	}
	for _, a := range active {
		if a == id {
			return fmt.Errorf("delete run %s: it has not ended", id)
		}
	}
	var keys [][]byte
	for _, prefix := range []string{pProcessor + id + "/", pEvent + id + "/", pLog + id + "/"} {
		err := s.db.View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			opts.Prefix = []byte(prefix)
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("delete run %s: %w", id, err)
		}
	}
	keys = append(keys, []byte(pDurations+id), []byte(pRun+id))
	if err := s.room(0, true); err != nil {
		return fmt.Errorf("delete run %s: %w", id, err)
	}
	txn := s.db.NewTransaction(true)
	for _, k := range keys {
		err := txn.Delete(k)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return fmt.Errorf("delete run %s: %w", id, err)
			}
			txn = s.db.NewTransaction(true)
			err = txn.Delete(k)
		}
		if err != nil {
			txn.Discard()
			return fmt.Errorf("delete run %s: %w", id, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("delete run %s: %w", id, err)
	}
	return nil
}

// BlobRefs calls fn with the digest of every Wiz File the store refers to:
// runs' file inputs, processors' outputs and cache entries' outputs. A blob it does not name is
// garbage.
func (s *Store) BlobRefs(fn func(digest string)) error {
	each := func(d *wizpb.Data) {
		for _, f := range d.GetFiles() {
			fn(f.Digest)
		}
	}
	err := s.scan(pRun, false, func(_, v []byte) (bool, error) {
		r := &wizpb.Run{}
		if err := proto.Unmarshal(v, r); err != nil {
			return false, err
		}
		for _, d := range r.Inputs {
			each(d)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("find referenced blobs: %w", err)
	}
	err = s.scan(pProcessor, false, func(_, v []byte) (bool, error) {
		p := &wizpb.ProcessorRun{}
		if err := proto.Unmarshal(v, p); err != nil {
			return false, err
		}
		for _, d := range p.Outputs {
			each(d)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("find referenced blobs: %w", err)
	}
	// Cache entries outlive the runs that made them.
	err = s.CacheEntries(func(e *wizpb.CacheEntry) bool {
		for _, d := range e.Outputs {
			each(d)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("find referenced blobs: %w", err)
	}
	return nil
}

// Compact gives the space of deleted records back to the file system as far
// as badger can: it compacts every level into one (deleted records are
// dropped only there) and collects the value log. It is best effort, and
// takes time on a large store: `wiz gc` calls it, not runs.
func (s *Store) Compact() {
	if s.readOnly || s.Failed() != nil {
		return
	}
	// Compaction writes new tables through memory maps: it needs room for
	// a copy of the tables, beside the reserve (space.go).
	lsm, _ := s.db.Size()
	if sp, err := freeSpace(s.dir); err != nil || sp.below(lsm, Reserve, ReserveFiles) {
		s.log.Info("not compacting the store: too little free space for a copy of its tables", "dir", s.dir)
	} else if err := s.db.Flatten(2); err != nil {
		s.log.Warn("compact the store", "error", s.checked(err))
	}
	for s.db.RunValueLogGC(0.5) == nil {
	}
}

// waitCompacted waits, up to compactWaitMax from start, until badger's
// compactors have left no level that needs compacting (a score of 1 or
// more: level 0's is its tables over 8, the others' their size over their
// target).
func (s *Store) waitCompacted(start time.Time) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for s.compacting() && time.Since(start) < compactWaitMax {
		<-t.C // badger's compactors do the work; nothing tells when
	}
}

func (s *Store) compacting() bool {
	for _, l := range s.db.Levels() {
		if l.Score >= 1 {
			return true
		}
	}
	return false
}

func (s *Store) level0() int {
	for _, l := range s.db.Levels() {
		if l.Level == 0 {
			return l.NumTables
		}
	}
	return 0
}

// compacted is what a short command's open compacted first.
type compacted struct {
	Tables int           // level-0 tables there were
	Took   time.Duration // how long it waited
}

// Compacted returns how many level-0 tables a short command's open found
// and compacted first, and how long that took; 0 when it did not.
func (s *Store) Compacted() (tables int, took time.Duration) {
	return s.compacted.Tables, s.compacted.Took
}

// Level0 returns the number of tables in the store's level 0 (for tests
// and the harness).
func (s *Store) Level0() int { return s.level0() }
