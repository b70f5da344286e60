package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// API is what wiz commands ask of a Manager. *Manager implements it in
// process; the Manager API's gRPC client implements it for a Manager in
// another process (behind the wiz home's socket, or a daemon), so every
// command is written once.
type API interface {
	Apply(file string, src []byte) (*Applied, error)
	Pipelines() ([]*wizpb.Pipeline, error)
	PipelineVersions(name string) (*wizpb.Pipeline, []*wizpb.PipelineVersion, error)
	// Run runs a pipeline and calls watch with every change until it ends.
	// Cancelling ctx cancels the run.
	Run(ctx context.Context, req RunRequest, watch func(Update)) (*wizpb.Run, error)
	Resume(ctx context.Context, id string, watch func(Update)) (*wizpb.Run, error)
	// Watch calls watch with a run's changes until it ends, then returns it.
	// Cancelling ctx stops watching, not the run.
	Watch(ctx context.Context, id string, watch func(Update)) (*wizpb.Run, error)
	// Cancel cancels a running run; it ends Failed, "cancelled".
	Cancel(id string) (*wizpb.Run, error)
	Runs(f RunFilter) ([]*wizpb.Run, error)
	RunDetail(id string) (*RunDetail, error)
	// Logs calls fn for a run's logs; with follow, it waits for more until
	// the run ends.
	Logs(ctx context.Context, id, processor string, follow bool, fn func(*wizpb.LogChunk) error) error
	Output(id, processor, name string, w io.Writer) error
	// GC deletes runs beyond a policy and the blobs nothing refers to.
	GC(req GCRequest) (*GCResult, error)
	// CacheEntries lists the results runs may reuse (cache:).
	CacheEntries() ([]*wizpb.CacheEntry, error)
	// ClearCache deletes the cache entries of a pipeline, or all when
	// pipeline is empty, and says how many.
	ClearCache(pipeline string) (int, error)
	// SetSecret stores a secret's value, encrypted; created is false when
	// it replaced one. Secrets lists them, and DeleteSecret removes one;
	// neither ever returns a value.
	SetSecret(name string, value []byte) (sec *wizpb.Secret, created bool, err error)
	Secrets() ([]*wizpb.Secret, error)
	DeleteSecret(name string) error
	// Schedules lists the schedules of the pipelines; PauseSchedule pauses
	// or resumes one; Backfill starts the runs of a range of its ticks and
	// returns at once (its runs go on in the Manager's process).
	Schedules() ([]*ScheduleInfo, error)
	PauseSchedule(pipeline, name string, pause bool) (*ScheduleInfo, error)
	Backfill(pipeline, name string, from, to time.Time, maxParallel int, dryRun bool) ([]BackfillTick, func(), error)
	// TriggerURL returns a webhook trigger's URL and, when it had none or
	// rotate, its new secret ("" otherwise). Only wiz daemon serves them.
	TriggerURL(pipeline, name string, rotate bool) (url, secret string, err error)
}

var _ API = (*Manager)(nil)

// ErrNotRunning is returned when cancelling a run that has ended.
var ErrNotRunning = errors.New("run is not running")

// liveRun is a run in progress, as other goroutines see it.
type liveRun struct {
	cancel context.CancelCauseFunc
	top    bool // a top-level run (no parent)
	// again is closed by a second Cancel: the finally processors, which a
	// first cancel lets run, are cancelled (or skipped) too.
	again   chan struct{}
	cancels atomic.Int32
	done    chan struct{} // closed when the run has ended and is recorded
	// watch carries new watchers to the run's goroutine, which registers
	// each together with a snapshot of where the run is, so that a watcher
	// sees every later change once, in order, and nothing older.
	watch chan watchReq

	mu       sync.Mutex
	watchers map[*Queue]bool
	final    *wizpb.Run
}

func (m *Manager) register(id string, top bool, cancel context.CancelCauseFunc) *liveRun {
	lr := &liveRun{cancel: cancel, top: top, again: make(chan struct{}), done: make(chan struct{}), watch: make(chan watchReq), watchers: map[*Queue]bool{}}
	m.liveMu.Lock()
	m.live[id] = lr
	m.liveMu.Unlock()
	return lr
}

// publish hands an update to every watcher; it never blocks the run.
func (lr *liveRun) publish(u Update) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if len(lr.watchers) == 0 {
		return
	}
	u = u.clone()
	for q := range lr.watchers {
		q.Push(u)
	}
}

func (m *Manager) unregister(id string, lr *liveRun, final *wizpb.Run) {
	lr.mu.Lock()
	lr.final = proto.Clone(final).(*wizpb.Run)
	for q := range lr.watchers {
		q.Close()
	}
	lr.watchers = nil
	lr.mu.Unlock()
	m.liveMu.Lock()
	delete(m.live, id)
	m.liveMu.Unlock()
	close(lr.done)
}

// Live returns the IDs of the runs in progress in this Manager.
func (m *Manager) Live() []string {
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	out := make([]string, 0, len(m.live))
	for id := range m.live {
		out = append(out, id)
	}
	return out
}

// WaitIdle waits until no run is in progress or ctx is done.
func (m *Manager) WaitIdle(ctx context.Context) error {
	for {
		m.liveMu.Lock()
		var lr *liveRun
		for _, l := range m.live {
			lr = l
			break
		}
		m.liveMu.Unlock()
		if lr == nil {
			return nil
		}
		select {
		case <-lr.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *Manager) liveRun(id string) *liveRun {
	m.liveMu.Lock()
	defer m.liveMu.Unlock()
	return m.live[id]
}

// Cancel implements API.
func (m *Manager) Cancel(id string) (*wizpb.Run, error) {
	r, err := m.findRun(id)
	if err != nil {
		return nil, err
	}
	lr := m.liveRun(r.Id)
	if lr == nil {
		return r, fmt.Errorf("%w: run %s is %s", ErrNotRunning, r.Id, RunStateName(r.State))
	}
	switch lr.cancels.Add(1) {
	case 1:
		lr.cancel(errCancelled)
	case 2:
		close(lr.again)
	}
	<-lr.done
	return lr.final, nil
}

// errCancelled is the cause of a run cancelled by a user.
var errCancelled = errors.New("cancelled")

// ErrSuspended is the error of a run that a stopping service left Running
// (SuspendAll) for its next start to continue (ContinueRuns).
var ErrSuspended = errors.New("the daemon stopped before the run ended; its next start continues the run")

// SuspendAll stops the runs in progress without ending them: their tasks
// are stopped with their executors, and they stay Running in the store,
// with what they had recorded, for the next start of a service
// (Config.Continue) to continue. It is how a service stops the runs that
// outlast its grace period. Their Run returns ErrSuspended. Sub-pipeline runs
// are suspended with their parents. It returns the IDs of the runs.
func (m *Manager) SuspendAll() []string {
	m.liveMu.Lock()
	var ids []string
	var lrs []*liveRun
	for id, lr := range m.live {
		if lr.top {
			ids, lrs = append(ids, id), append(lrs, lr)
		}
	}
	m.liveMu.Unlock()
	for _, lr := range lrs {
		lr.cancel(ErrSuspended)
	}
	for _, lr := range lrs {
		<-lr.done
	}
	return ids
}

// Continues reports whether this Manager leaves runs to the next start of
// its service (Config.Continue).
func (m *Manager) Continues() bool { return m.continues }

// Watch implements API.
func (m *Manager) Watch(ctx context.Context, id string, watch func(Update)) (*wizpb.Run, error) {
	r, err := m.findRun(id)
	if err != nil {
		return nil, err
	}
	lr := m.liveRun(r.Id)
	if lr == nil {
		watch(Update{Run: r})
		return r, nil
	}
	req := watchReq{q: NewQueue(), snap: make(chan []Update, 1)}
	select {
	case lr.watch <- req: // the run's goroutine registers it
	case <-lr.done:
		watch(Update{Run: lr.final})
		return lr.final, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	q := req.q
	defer func() {
		lr.mu.Lock()
		delete(lr.watchers, q)
		lr.mu.Unlock()
	}()
	for _, u := range <-req.snap { // where it is now
		watch(u)
	}
	for {
		u, ok := q.Next(ctx)
		if !ok {
			break
		}
		watch(u)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	<-lr.done
	return lr.final, nil
}

// Logs implements API.
func (m *Manager) Logs(ctx context.Context, id, processor string, follow bool, fn func(*wizpb.LogChunk) error) error {
	r, err := m.findRun(id)
	if err != nil {
		return err
	}
	if err := m.checkProcessor(r, processor); err != nil {
		return err
	}
	var next uint64
	for {
		lr := m.liveRun(r.Id)
		if next, err = m.store.LogsFrom(r.Id, processor, next, fn); err != nil {
			return err
		}
		if !follow || lr == nil {
			return nil
		}
		select {
		case <-lr.done: // one more pass picks up the last chunks
			follow = false
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}
}

// Queue is an unbounded queue of updates between a run and one watcher, so
// that a slow watcher never slows the run.
type Queue struct {
	mu     sync.Mutex
	items  []Update
	closed bool
	signal chan struct{}
}

// NewQueue returns an empty queue.
func NewQueue() *Queue { return &Queue{signal: make(chan struct{}, 1)} }

// Push adds an update; after Close it does nothing.
func (q *Queue) Push(u Update) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, u)
	}
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// Close ends the queue; Next returns what is left, then false.
func (q *Queue) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// Next returns the next update, waiting for one; false when the queue is
// closed and empty or ctx is done.
func (q *Queue) Next(ctx context.Context) (Update, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			u := q.items[0]
			q.items[0] = Update{}
			q.items = q.items[1:]
			q.mu.Unlock()
			return u, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return Update{}, false
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			return Update{}, false
		}
	}
}

// clone copies an update so that another goroutine may keep it while the run
// goes on changing its records.
func (u Update) clone() Update {
	if u.Run != nil {
		u.Run = proto.Clone(u.Run).(*wizpb.Run)
	}
	if u.Processor != nil {
		u.Processor = proto.Clone(u.Processor).(*wizpb.ProcessorRun)
	}
	return u
}

// Clone copies an update (see clone).
func (u Update) Clone() Update { return u.clone() }

// RunStateName is a run state as users read it: Running, Failed, Succeeded.
func RunStateName(s wizpb.RunState) string {
	switch s {
	case wizpb.RunState_RUN_STATE_RUNNING:
		return "Running"
	case wizpb.RunState_RUN_STATE_FAILED:
		return "Failed"
	case wizpb.RunState_RUN_STATE_SUCCEEDED:
		return "Succeeded"
	}
	return "Unknown"
}
