// Package store keeps the Manager's state in badger: pipelines and their
// versions, runs, processor states, events and logs, as protobuf values under
// KSUID-ordered keys. Writes go through a Batch that commits atomically, so a
// crash never leaves a half-written transition visible.
package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// ErrNotFound is returned when a pipeline, version or run does not exist.
var ErrNotFound = errors.New("not found")

// ErrLocked is returned by Open when another process holds the store.
var ErrLocked = errors.New("the store is in use by another wiz process")

// Key prefixes. Keys are prefix + ids joined by "/"; KSUIDs sort by time.
const (
	pPipeline  = "p/" // p/<name>
	pVersion   = "v/" // v/<pipeline id>/<version id>
	pRun       = "r/" // r/<run id>
	pProcessor = "s/" // s/<run id>/<processor name>
	pEvent     = "e/" // e/<run id>/<event id>
	pLog       = "l/" // l/<run id>/<seq>: every processor's chunks in the order they came
	pActive    = "a/" // a/<run id>: runs not yet ended
	pDurations = "u/" // u/<run id>: each processor's duration, packed (PutDurations)
)

// PutDurations stages what each processor of a run took, in microseconds,
// indexed by the processor's place in its pipeline file (0: unknown), packed
// as varints in one value: the next run of the same version weighs its
// priorities with them without reading every processor record.
func (b *Batch) PutDurations(runID string, us []uint64) {
	v := make([]byte, 0, len(us)*3)
	for _, d := range us {
		v = binary.AppendUvarint(v, d)
	}
	key := pDurations + runID
	if _, ok := b.vals[key]; !ok {
		b.keys = append(b.keys, key)
	}
	b.vals[key] = v
}

// Durations returns what PutDurations stored for a run; ok is false when
// nothing was (a run recorded by an older wiz).
func (s *Store) Durations(runID string) (us []uint64, ok bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(pDurations + runID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		return it.Value(func(v []byte) error {
			for len(v) > 0 {
				d, n := binary.Uvarint(v)
				if n <= 0 {
					return fmt.Errorf("durations of run %s: corrupt value", runID)
				}
				us = append(us, d)
				v = v[n:]
			}
			return nil
		})
	})
	return us, ok, err
}

// Store is the Manager's state store. It is safe for concurrent use.
type Store struct {
	db       *badger.DB
	dir      string
	readOnly bool // opened read-only: its disk was full (space.go) or refused writes (Failed)
	log      hclog.Logger

	// The disk refusing writes (unwritable.go): failed, once set, is
	// returned by every write; failedCh is closed then.
	failed   atomic.Pointer[UnwritableError]
	failOnce sync.Once
	failedCh chan struct{}
	probed   atomic.Int64 // when the disk was last probed, in Unix ns

	compacted compacted // what a short command's open compacted first
}

// Options are how a process uses the store.
type Options struct {
	// Short: a short command (wiz run, wiz runs …), which should not pay
	// for compacting what earlier commands wrote. A store whose level 0
	// holds ShortL0 tables or more at open is compacted first (Open waits,
	// Compacted says so); below that, badger compacts only what the command
	// itself pushes past shortL0Run. Long-lived processes (the daemon)
	// compact in the background, past 8 tables.
	Short bool
	// CompactFirst, when not nil, compacts a short command's store first
	// instead of this process (the store is closed meanwhile): wiz runs
	// CompactFirst in a child process, so that the compaction's memory (badger's
	// table builders take tens of MiB) is not the command's.
	CompactFirst func(dir string) error
}

// ShortL0 is how many level-0 tables a short command finds at open before
// it compacts them first. While it runs, badger compacts only past
// shortL0Run tables (stalling writes at shortL0Stall): room for what a large
// run writes (a 10,000-node run leaves a few tables), so that compaction
// stays out of the run.
const (
	ShortL0      = 15
	shortL0Run   = 2 * ShortL0
	shortL0Stall = shortL0Run + 10
	defaultL0    = 8 // for long-lived processes
	// compactWaitMax bounds the wait for compaction at open.
	compactWaitMax = 5 * time.Minute
)

// Open opens (creating when missing) the store in dir, sized for a laptop,
// for a long-lived process (OpenWith).
func Open(dir string, log hclog.Logger) (*Store, error) {
	return OpenWith(dir, log, Options{})
}

// OpenWith opens (creating when missing) the store in dir, sized for a
// laptop. On a disk with less than Floor free it opens the store read-only,
// so that it can still be read; every write then fails with a DiskFullError.
func OpenWith(dir string, log hclog.Logger, o Options) (*Store, error) {
	s, err := open(dir, log, o)
	if err != nil || !o.Short || s.readOnly {
		return s, err
	}
	n := s.level0()
	if n < ShortL0 {
		return s, nil
	}
	// Built up: compacted first, then opened again for the command.
	log.Info("compacting the store before the command", "level0_tables", n)
	start := time.Now()
	if err := s.Close(); err != nil {
		return nil, err
	}
	compact := o.CompactFirst
	if compact == nil {
		compact = func(dir string) error { return CompactFirst(dir, log) }
	}
	if err := compact(dir); err != nil {
		return nil, fmt.Errorf("compact store %s: %w", dir, err)
	}
	if s, err = open(dir, log, o); err != nil {
		return nil, err
	}
	s.compacted = compacted{Tables: n, Took: time.Since(start)}
	return s, nil
}

// CompactFirst opens the store in dir as a long-lived process does, so that
// badger compacts it at once, waits until no level needs compacting (at
// most compactWaitMax), and closes it: the command that opens it next does
// not compact.
func CompactFirst(dir string, log hclog.Logger) error {
	s, err := open(dir, log, Options{})
	if err != nil {
		return err
	}
	s.waitCompacted(time.Now())
	return s.Close()
}

// open is OpenWith without the compaction first.
func open(dir string, log hclog.Logger, o Options) (*Store, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	readOnly := false
	if sp, err := freeSpace(dir); err == nil && sp.below(0, Floor, FloorFiles) {
		readOnly = true
		log.Info("the store's disk is full: opening it read-only", "dir", dir, "free_mib", sp.bytes>>20, "free_files", sp.files)
	}
	bl := &badgerLogger{l: log}
	opts := badger.DefaultOptions(dir).
		WithReadOnly(readOnly).
		WithLogger(bl).
		WithMemTableSize(2 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(defaultL0).
		WithNumLevelZeroTablesStall(16).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(64 << 10).
		WithNumCompactors(2).
		WithSyncWrites(false)
	if o.Short {
		opts = opts.WithNumLevelZeroTables(shortL0Run).WithNumLevelZeroTablesStall(shortL0Stall)
	}
	db, err := badger.Open(opts)
	var unwritable *UnwritableError
	if err != nil && !readOnly {
		// A disk that refuses writes (badger's errors do not always wrap
		// the system's, so the directory is probed): read-only, the store
		// can still be read, unless a crash left a log to replay.
		if perr := probeDir(dir); perr != nil && refusing(perr) {
			unwritable = &UnwritableError{Dir: dir, Cause: perr}
			if db, err = badger.Open(opts.WithReadOnly(true)); err != nil {
				unwritable.Unreadable = err
				return nil, unwritable
			}
			readOnly = true
			log.Info("the store's disk refuses writes: opened it read-only", "dir", dir, "error", unwritable.Cause)
		}
	}
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("open store %s: %w", dir, ErrLocked)
		}
		if sp, ferr := freeSpace(dir); readOnly || ferr == nil && sp.below(0, Reserve, ReserveFiles) || errors.Is(err, syscall.ENOSPC) {
			// Opening read-write writes (a new memtable, flushes); read-only
			// fails when a crash left a log to replay.
			return nil, fmt.Errorf("open store %s: %w (%v)", dir, sp.full(dir, readOnly), err)
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{db: db, dir: dir, readOnly: readOnly, log: log, failedCh: make(chan struct{})}
	if unwritable != nil {
		s.fail(unwritable.Cause)
	}
	bl.s.Store(s)
	return s, nil
}

// Close flushes and closes the store. On a disk that refuses writes it
// gives badger closeFailedMax to close (CloseMax on a healthy one) and then
// returns, leaving the store as a crash would, which the next open recovers
// from: what was committed before is kept.
func (s *Store) Close() error {
	var err error
	if !s.readOnly {
		if err = s.writableNow(); err == nil {
			if err = s.checked(s.db.Sync()); err != nil && !errors.Is(err, ErrUnwritable) {
				err = fmt.Errorf("sync store %s: %w", s.dir, err)
			}
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- s.db.Close() }() // left running only when the process is about to exit
	bound := CloseMax
	if s.Failed() != nil {
		bound = closeFailedMax
	}
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case cerr := <-closed:
		if err == nil && cerr != nil {
			err = s.checked(cerr)
		}
	case <-t.C:
		if err == nil {
			err = fmt.Errorf("store %s: badger did not close within %v; it is left as after a crash, which the next open recovers", s.dir, bound)
		}
	}
	return err
}

// writableNow probes the disk now.
func (s *Store) writableNow() error {
	if f := s.Failed(); f != nil {
		return f
	}
	return s.probe()
}

// Sync makes every committed write durable.
func (s *Store) Sync() error {
	if s.readOnly {
		return nil // nothing was written
	}
	if f := s.Failed(); f != nil {
		return f
	}
	return s.checked(s.db.Sync())
}

func get(txn *badger.Txn, key string, m proto.Message) error {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(v []byte) error { return proto.Unmarshal(v, m) })
}

func (s *Store) get(key string, m proto.Message) error {
	return s.db.View(func(txn *badger.Txn) error { return get(txn, key, m) })
}

// scan calls fn for every value under prefix, in key order (reverse when asked).
func (s *Store) scan(prefix string, reverse bool, fn func(key, val []byte) (bool, error)) error {
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		opts.Reverse = reverse
		it := txn.NewIterator(opts)
		defer it.Close()
		start := []byte(prefix)
		if reverse {
			start = append([]byte(prefix), 0xff)
		}
		for it.Seek(start); it.ValidForPrefix([]byte(prefix)); it.Next() {
			var more bool
			err := it.Item().Value(func(v []byte) error {
				var err error
				more, err = fn(it.Item().Key(), v)
				return err
			})
			if err != nil {
				return err
			}
			if !more {
				return nil
			}
		}
		return nil
	})
}

// Batch collects writes and commits them atomically. Writes to the same key
// coalesce: the last one wins. A Batch is owned by one goroutine.
type Batch struct {
	s    *Store
	seq  uint32 // orders events staged in this batch
	keys []string
	vals map[string][]byte
	size int // bytes of the values staged
	// ending: the batch ends a run (DeleteActive), a write allowed down to
	// Floor free.
	ending bool
	// lazy holds processor records staged by pointer, encoded by Seal: a
	// processor that starts and ends within one batch is encoded once, in
	// its latest state.
	lazy map[string]proto.Message
}

// Batch starts a batch of writes.
func (s *Store) Batch() *Batch {
	return &Batch{s: s, vals: map[string][]byte{}, lazy: map[string]proto.Message{}}
}

// Seal encodes the records staged by pointer (PutProcessor) as they are now.
// Call it on the goroutine that changes them before handing the batch to
// another goroutine to Commit; Commit seals what is left itself.
func (b *Batch) Seal() error {
	for k, m := range b.lazy {
		v, err := proto.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode %s: %w", k, err)
		}
		b.vals[k] = v
		delete(b.lazy, k)
	}
	return nil
}

// Len is the number of pending writes.
func (b *Batch) Len() int { return len(b.keys) }

// Size returns the bytes of the values staged (those staged by pointer
// not counted).
func (b *Batch) Size() int { return b.size }

func (b *Batch) put(key string, m proto.Message) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if old, ok := b.vals[key]; !ok {
		b.keys = append(b.keys, key)
	} else {
		b.size -= len(old)
	}
	b.vals[key] = v
	b.size += len(v)
	return nil
}

// PutRun stages a run record.
func (b *Batch) PutRun(r *wizpb.Run) error { return b.put(pRun+r.Id, r) }

// PutProcessor stages a processor's state in a run. The record is encoded
// when the batch is sealed, in the state it has then; until then the caller
// may go on changing it (and must not from another goroutine).
func (b *Batch) PutProcessor(p *wizpb.ProcessorRun) error {
	key := pProcessor + p.RunId + "/" + p.Name
	if _, ok := b.vals[key]; !ok {
		if _, ok := b.lazy[key]; !ok {
			b.keys = append(b.keys, key)
		}
	}
	delete(b.vals, key)
	b.lazy[key] = p
	return nil
}

// PutActive marks a run as not yet ended, so that a Manager that restarts
// after a crash finds it without scanning every run.
func (b *Batch) PutActive(runID string) {
	if _, ok := b.vals[pActive+runID]; !ok {
		b.keys = append(b.keys, pActive+runID)
	}
	b.vals[pActive+runID] = []byte{}
}

// DeleteActive stages the removal of a run's active mark. A batch that
// ends a run may be written on a disk too full for others (space.go).
func (b *Batch) DeleteActive(runID string) {
	b.ending = true
	if _, ok := b.vals[pActive+runID]; !ok {
		b.keys = append(b.keys, pActive+runID)
	}
	b.vals[pActive+runID] = nil
}

// ActiveRuns returns the IDs of runs marked active.
func (s *Store) ActiveRuns() ([]string, error) {
	var out []string
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(pActive)
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, strings.TrimPrefix(string(it.Item().Key()), pActive))
		}
		return nil
	})
	return out, err
}

// PutEvent stages an event. Events are keyed by their time (nanoseconds) and
// their order in the batch, so a run's events list in the order they
// happened; a KSUID alone sorts randomly within its one-second resolution.
func (b *Batch) PutEvent(e *wizpb.Event) error {
	var ns int64
	if e.Time != nil {
		ns = e.Time.AsTime().UnixNano()
	}
	b.seq++
	return b.put(fmt.Sprintf("%s%s/%016x%08x", pEvent, e.RunId, uint64(ns), b.seq), e)
}

// PutLog stages a log chunk; seq orders a run's chunks.
func (b *Batch) PutLog(runID string, seq uint64, c *wizpb.LogChunk) error {
	return b.put(fmt.Sprintf("%s%s/%016x", pLog, runID, seq), c)
}

// Commit writes everything staged in one transaction (several when it is too
// big for one; each staged value is written whole) and empties the batch.
func (b *Batch) Commit() error {
	if len(b.keys) == 0 {
		return nil
	}
	if err := b.Seal(); err != nil {
		return err
	}
	if err := b.s.room(b.size, b.ending); err != nil {
		return err
	}
	txn := b.s.db.NewTransaction(true)
	write := func(txn *badger.Txn, k string) error {
		if v := b.vals[k]; v != nil {
			return txn.Set([]byte(k), v)
		}
		return txn.Delete([]byte(k))
	}
	for _, k := range b.keys {
		err := write(txn, k)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return fmt.Errorf("commit state: %w", b.s.checked(err))
			}
			txn = b.s.db.NewTransaction(true)
			err = write(txn, k)
		}
		if err != nil {
			txn.Discard()
			return fmt.Errorf("stage %s: %w", k, err)
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("commit state: %w", b.s.checked(err))
	}
	b.keys = b.keys[:0]
	clear(b.vals)
	b.size = 0
	b.ending = false
	return nil
}

// PutPipelineVersion stores a pipeline version and makes it the newest.
func (s *Store) PutPipelineVersion(p *wizpb.Pipeline, v *wizpb.PipelineVersion) error {
	if err := s.room(len(v.Source), false); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		pb, err := proto.Marshal(p)
		if err != nil {
			return err
		}
		vb, err := proto.Marshal(v)
		if err != nil {
			return err
		}
		if err := txn.Set([]byte(pPipeline+p.Name), pb); err != nil {
			return err
		}
		return txn.Set([]byte(pVersion+p.Id+"/"+v.Id), vb)
	})
}

// Pipeline returns a pipeline by name.
func (s *Store) Pipeline(name string) (*wizpb.Pipeline, error) {
	p := &wizpb.Pipeline{}
	if err := s.get(pPipeline+name, p); err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", name, err)
	}
	return p, nil
}

// Pipelines lists pipelines by name.
func (s *Store) Pipelines() ([]*wizpb.Pipeline, error) {
	var out []*wizpb.Pipeline
	err := s.scan(pPipeline, false, func(_, v []byte) (bool, error) {
		p := &wizpb.Pipeline{}
		out = append(out, p)
		return true, proto.Unmarshal(v, p)
	})
	return out, err
}

// PipelineVersion returns one version of a pipeline.
func (s *Store) PipelineVersion(pipelineID, versionID string) (*wizpb.PipelineVersion, error) {
	v := &wizpb.PipelineVersion{}
	if err := s.get(pVersion+pipelineID+"/"+versionID, v); err != nil {
		return nil, fmt.Errorf("pipeline version %s: %w", versionID, err)
	}
	return v, nil
}

// PipelineVersions lists a pipeline's versions, oldest (number 1) first.
func (s *Store) PipelineVersions(pipelineID string) ([]*wizpb.PipelineVersion, error) {
	var out []*wizpb.PipelineVersion
	err := s.scan(pVersion+pipelineID+"/", false, func(_, v []byte) (bool, error) {
		pv := &wizpb.PipelineVersion{}
		out = append(out, pv)
		return true, proto.Unmarshal(v, pv)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, err
}

// Run returns a run.
func (s *Store) Run(id string) (*wizpb.Run, error) {
	r := &wizpb.Run{}
	if err := s.get(pRun+id, r); err != nil {
		return nil, fmt.Errorf("run %s: %w", id, err)
	}
	return r, nil
}

// Runs lists runs, newest first, at most limit (0: all).
func (s *Store) Runs(limit int) ([]*wizpb.Run, error) {
	var out []*wizpb.Run
	err := s.scan(pRun, true, func(_, v []byte) (bool, error) {
		r := &wizpb.Run{}
		if err := proto.Unmarshal(v, r); err != nil {
			return false, err
		}
		out = append(out, r)
		return limit <= 0 || len(out) < limit, nil
	})
	return out, err
}

// Processors returns the recorded processor states of a run. Processors that
// never left Idle have no record.
func (s *Store) Processors(runID string) (map[string]*wizpb.ProcessorRun, error) {
	out := map[string]*wizpb.ProcessorRun{}
	err := s.scan(pProcessor+runID+"/", false, func(_, v []byte) (bool, error) {
		p := &wizpb.ProcessorRun{}
		if err := proto.Unmarshal(v, p); err != nil {
			return false, err
		}
		out[p.Name] = p
		return true, nil
	})
	return out, err
}

// Events returns a run's events in order.
func (s *Store) Events(runID string) ([]*wizpb.Event, error) {
	var out []*wizpb.Event
	err := s.scan(pEvent+runID+"/", false, func(_, v []byte) (bool, error) {
		e := &wizpb.Event{}
		out = append(out, e)
		return true, proto.Unmarshal(v, e)
	})
	return out, err
}

// Logs calls fn for a run's log chunks in the order they came; processor ""
// means every processor's.
func (s *Store) Logs(runID, processor string, fn func(*wizpb.LogChunk) error) error {
	_, err := s.LogsFrom(runID, processor, 0, fn)
	return err
}

// LogsFrom calls fn for a run's log chunks with a sequence number of at least
// from, in order, and returns the sequence number to ask from next time.
func (s *Store) LogsFrom(runID, processor string, from uint64, fn func(*wizpb.LogChunk) error) (uint64, error) {
	next := from
	prefix := pLog + runID + "/"
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek([]byte(fmt.Sprintf("%s%016x", prefix, from))); it.ValidForPrefix([]byte(prefix)); it.Next() {
			var seq uint64
			if _, err := fmt.Sscanf(string(it.Item().Key()[len(prefix):]), "%016x", &seq); err == nil {
				next = seq + 1
			}
			c := &wizpb.LogChunk{}
			if err := it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, c) }); err != nil {
				return err
			}
			if processor != "" && c.Processor != processor {
				continue
			}
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	})
	return next, err
}

// badgerLogger sends badger's logs to hclog, errors and warnings only. An
// error makes the store probe its disk (a failed flush is only logged).
type badgerLogger struct {
	l hclog.Logger
	s atomic.Pointer[Store]
}

func (b *badgerLogger) Errorf(f string, a ...any) {
	if s := b.s.Load(); s != nil {
		if s.Failed() != nil {
			return // said once, by fail; badger retries every second
		}
		_ = s.writableNow()
	}
	if b.l != nil {
		b.l.Error(string(bytes.TrimSpace([]byte(fmt.Sprintf(f, a...)))))
	}
}
func (b *badgerLogger) Warningf(f string, a ...any) {
	if b.l != nil {
		b.l.Warn(string(bytes.TrimSpace([]byte(fmt.Sprintf(f, a...)))))
	}
}
func (*badgerLogger) Infof(string, ...any)  {}
func (*badgerLogger) Debugf(string, ...any) {}

// Size returns the bytes the store's files take on disk (its tables, value
// log and manifest), read from the directory now: badger's own count is
// refreshed only every minute.
func (s *Store) Size() int64 {
	opts := s.db.Opts()
	var n int64
	for _, dir := range slices.Compact([]string{opts.Dir, opts.ValueDir}) {
		es, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range es {
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
				n += info.Size()
			}
		}
	}
	return n
}
