package store

import (
	"time"
)

// Writer stages one writer's records (a run's) in batches and commits them
// in the background, one commit at a time, while the writer goes on staging
// the next batch. Commits start at most once per gap (but the final one), so
// that records arriving faster than that share a commit rather than cost one
// each; too many staged records make Flush wait, so memory stays bounded.
//
// A Writer is owned by one goroutine. Its host loop selects on Committed
// (then calls Settle) and on Due, and calls Flush after each change.
type Writer struct {
	store *Store
	batch *Batch // records staged since the last commit started
	gap   time.Duration
	max   int // staged records that start a commit without waiting for gap

	busy  bool       // a commit runs in the background
	done  chan error // its result
	last  time.Time  // when the newest background commit started
	timer *time.Timer
	wait  bool // timer is armed
	err   error
	final error // the result of the last Flush(true)'s own commit
}

// A batch of writerFullBytes starts its commit without waiting for the gap;
// with writerWaitBytes staged while a commit runs, Flush waits for it: what
// a run stages (logs above all) stays within a few MiB.
const (
	writerFullBytes = 2 << 20
	writerWaitBytes = 8 << 20
)

// NewWriter returns a Writer committing at most once per gap, or at once
// when max records are staged.
func (s *Store) NewWriter(gap time.Duration, max int) *Writer {
	return &Writer{store: s, batch: s.Batch(), gap: gap, max: max, done: make(chan error, 1)}
}

// Batch is the batch records are staged in now.
func (w *Writer) Batch() *Batch { return w.batch }

// Err is the first commit error; records staged after it may be lost.
func (w *Writer) Err() error { return w.err }

// FinalErr is the result of the commit of the last Flush(true): nil when
// what was staged last (a run's end) is in the store, even after an earlier
// commit failed.
func (w *Writer) FinalErr() error { return w.final }

// Committed delivers the result of the commit running in the background;
// nil (never ready) when none runs. Pass the result to Settle.
func (w *Writer) Committed() <-chan error {
	if !w.busy {
		return nil
	}
	return w.done
}

// Settle records the end of the background commit.
func (w *Writer) Settle(err error) {
	w.busy = false
	if err != nil && w.err == nil {
		w.err = err
	}
}

// Due says that the next commit may start; nil (never ready) when no commit
// waits. After receiving from it, call Flush.
func (w *Writer) Due() <-chan time.Time {
	if !w.wait {
		return nil
	}
	return w.timer.C
}

// Woken records that Due fired.
func (w *Writer) Woken() { w.wait = false }

// Flush starts committing the staged records in the background when no
// commit is running and gap has passed since the last one started; with
// final it waits for the running one and commits the rest. Too many staged
// records make it wait too.
func (w *Writer) Flush(final bool) {
	if w.busy && (final || w.batch.Len() >= w.max*16 || w.batch.Size() >= writerWaitBytes) {
		w.Settle(<-w.done)
	}
	if w.busy || w.batch.Len() == 0 {
		return
	}
	if final {
		if w.wait {
			w.timer.Stop() // Go 1.23 timers: no stale tick is left to drain
			w.wait = false
		}
		w.final = w.batch.Commit()
		if w.final != nil && w.err == nil {
			w.err = w.final
		}
		return
	}
	if wait := w.gap - time.Since(w.last); wait > 0 && w.batch.Len() < w.max && w.batch.Size() < writerFullBytes {
		if !w.wait {
			if w.timer == nil {
				w.timer = time.NewTimer(wait)
			} else {
				w.timer.Reset(wait)
			}
			w.wait = true
		}
		return
	}
	w.last = time.Now()
	b := w.batch
	if err := b.Seal(); err != nil && w.err == nil { // records are this goroutine's
		w.err = err
	}
	w.batch = w.store.Batch()
	w.busy = true
	go func() { w.done <- b.Commit() }() // Flush(true) waits for it before the writer ends
}
