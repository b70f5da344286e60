package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/sdk/blob"
)

// catalog serves one native type, "t/run", whose config field "fail" makes
// the fake executor fail the task with that exit code, and "sleep" delays it.
type catalog struct{}

func (catalog) Lookup(typ string) (*pipeline.TypeSpec, bool) {
	if typ != "t/run" {
		return nil, false
	}
	return &pipeline.TypeSpec{Type: "t/run", Fields: []pipeline.FieldSpec{
		{Name: "fail", Type: "int"}, {Name: "flaky", Type: "int"}, {Name: "sleep", Type: "duration"},
		{Name: "waitfor", Type: "string"}, {Name: "ms", Type: "int"}, {Name: "short", Type: "bool"},
		{Name: "flood_until", Type: "string"},
	}}, true
}
func (catalog) Types() []string { return []string{"t/run"} }
func (catalog) Pack(typ, _ string) (manager.PackRef, bool, error) {
	return manager.PackRef{Name: "t", Version: "1.0.0", SHA256: "00"}, true, nil
}

// backends provisions fake executors that run tasks in goroutines.
type backends struct {
	slots int
	mu    sync.Mutex
	peak  int
	tries map[string]int
	order []string // processors in the order their tasks started
	noop  bool     // provision noopExecs
	batch bool     // provision batchExecs
}

// noopExec is the in-process no-op executor of the kernel benchmarks: every
// task succeeds at once, with no goroutine, so what is measured is the
// Manager's scheduling and persisting.
type noopExec struct{ events chan *manager.TaskEvent }

func (e *noopExec) Name() string                      { return "no-op executor" }
func (e *noopExec) Slots() int                        { return 2 }
func (e *noopExec) Local() bool                       { return false }
func (e *noopExec) Resize(int) error                  { return nil }
func (e *noopExec) Events() <-chan *manager.TaskEvent { return e.events }
func (e *noopExec) Cancel(string, string) error       { return nil }
func (e *noopExec) Close(context.Context) error       { close(e.events); return nil }
func (e *noopExec) Submit(t *manager.Task) error {
	// The run keeps a few dozen tasks in flight at most, so this never blocks.
	e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventStarted}
	e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventFinished, Outcome: manager.OutcomeSucceeded, Started: true}
	return nil
}

func (b *backends) Provision(_ context.Context, req manager.ProvisionRequest) (manager.Executor, error) {
	if b.noop {
		return &noopExec{events: make(chan *manager.TaskEvent, 1<<16)}, nil
	}
	slots := b.slots
	if req.Slots > 0 {
		slots = req.Slots
	}
	e := &fakeExec{b: b, sem: make(chan struct{}, slots), slots: slots, events: make(chan *manager.TaskEvent, 1<<16), cancels: map[string]chan struct{}{}}
	if b.batch {
		return &batchExec{fakeExec: e}, nil
	}
	return e, nil
}

// batchExec is a fakeExec that holds submitted tasks until Flush, like the
// executor client; it cannot send the task of a processor named unsendable.
type batchExec struct {
	*fakeExec
	held []*manager.Task
}

func (e *batchExec) Submit(t *manager.Task) error {
	e.held = append(e.held, t)
	return nil
}

func (e *batchExec) Flush() map[string]error {
	var errs map[string]error
	for _, t := range e.held {
		if t.Processor == "unsendable" {
			errs = map[string]error{t.ID: errors.New("message larger than max")}
			continue
		}
		_ = e.fakeExec.Submit(t)
	}
	e.held = nil
	return errs
}

type fakeExec struct {
	b       *backends
	slots   int
	sem     chan struct{}
	events  chan *manager.TaskEvent
	mu      sync.Mutex
	running int
	cancels map[string]chan struct{}
	wg      sync.WaitGroup
}

func (e *fakeExec) Name() string                      { return "fake executor" }
func (e *fakeExec) Slots() int                        { return e.slots }
func (e *fakeExec) Local() bool                       { return false } // its slots are its own
func (e *fakeExec) Resize(int) error                  { return fmt.Errorf("fake executor: fixed slots") }
func (e *fakeExec) Events() <-chan *manager.TaskEvent { return e.events }

func (e *fakeExec) Submit(t *manager.Task) error {
	c := make(chan struct{})
	e.mu.Lock()
	e.cancels[t.ID] = c
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case e.sem <- struct{}{}:
		case <-c:
			e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventFinished, Outcome: manager.OutcomeCancelled}
			return
		}
		defer func() { <-e.sem }()
		e.mu.Lock()
		e.running++
		e.b.mu.Lock()
		e.b.peak = max(e.b.peak, e.running)
		e.b.tries[t.Processor]++
		e.b.order = append(e.b.order, t.Processor)
		tries := e.b.tries[t.Processor]
		e.b.mu.Unlock()
		e.mu.Unlock()
		defer func() { e.mu.Lock(); e.running--; e.mu.Unlock() }()
		cfg := string(t.Config)
		if strings.Contains(cfg, `"short":true`) {
			// As wiz executor reports a task that ended within a few
			// milliseconds: its Finished alone, with outputs and metrics.
			e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventFinished, Outcome: manager.OutcomeSucceeded, Started: true,
				Outputs: map[string]*wizpb.Data{"out": {Inline: []byte(t.Processor)}}, Metrics: &wizpb.Metrics{WallNs: int64(2 * time.Second)}}
			return
		}
		e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventStarted}
		if strings.Contains(cfg, `"waitfor":"slow"`) { // until slow has started
			for i := 0; i < 10000; i++ {
				e.b.mu.Lock()
				n := e.b.tries["slow"]
				e.b.mu.Unlock()
				if n > 0 {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		if strings.Contains(cfg, `"sleep"`) {
			select {
			case <-time.After(30 * time.Second):
			case <-c:
				e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventFinished, Outcome: manager.OutcomeCancelled, Started: true, Message: "cancelled"}
				return
			}
		}
		var ms struct {
			MS         int
			FloodUntil string `json:"flood_until"`
		}
		if json.Unmarshal(t.Config, &ms) == nil && ms.MS > 0 {
			time.Sleep(time.Duration(ms.MS) * time.Millisecond)
		}
		if ms.FloodUntil != "" { // a chatty task: logs until that processor has started (or 5 s)
			end := t.Processor + ":timed out"
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
				e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventLog, Stream: "stderr", Data: []byte("line\n")}
				e.b.mu.Lock()
				started := e.b.tries[ms.FloodUntil] > 0
				e.b.mu.Unlock()
				if started {
					end = t.Processor + ":saw " + ms.FloodUntil
					break
				}
			}
			e.b.mu.Lock()
			e.b.order = append(e.b.order, end)
			e.b.mu.Unlock()
		}
		if strings.Contains(cfg, `"fail":3`) {
			e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventFinished, Outcome: manager.OutcomeFailed, Code: 3, Started: true, Message: "exited with code 3"}
			return
		}
		if strings.Contains(cfg, `"flaky":2`) && tries <= 2 {
			e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventFinished, Outcome: manager.OutcomeFailed, Code: 1, Started: true, Message: "flaked"}
			return
		}
		e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventOutput, Name: "out", Output: &wizpb.Data{Inline: []byte(t.Processor)}}
		e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventFinished, Outcome: manager.OutcomeSucceeded, Started: true}
	}()
	return nil
}

func (e *fakeExec) Cancel(id, _ string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.cancels[id]; c != nil {
		close(c)
		delete(e.cancels, id)
	}
	return nil
}

func (e *fakeExec) Close(context.Context) error {
	// As a real executor's teardown: the tasks still going are stopped.
	e.mu.Lock()
	for id, c := range e.cancels {
		close(c)
		delete(e.cancels, id)
	}
	e.mu.Unlock()
	e.wg.Wait()
	close(e.events)
	return nil
}

func newManager(tb testing.TB, slots int) (*manager.Manager, *backends) {
	tb.Helper()
	return newManagerWith(tb, slots, nil)
}

// newManagerWith is newManager with set changing the Config first.
func newManagerWith(tb testing.TB, slots int, set func(*manager.Config)) (*manager.Manager, *backends) {
	tb.Helper()
	dir := tb.TempDir()
	st, err := store.Open(dir+"/store", hclog.NewNullLogger())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	blobs, err := blob.Open(dir + "/blobs")
	if err != nil {
		tb.Fatal(err)
	}
	b := &backends{slots: slots, tries: map[string]int{}}
	cfg := manager.Config{Store: st, Blobs: blobs, Catalog: catalog{}, Backends: b}
	if set != nil {
		set(&cfg)
	}
	m := manager.New(cfg)
	tb.Cleanup(m.WaitExecutors) // before the store closes (cleanups run last first)
	return m, b
}

func states(t *testing.T, m *manager.Manager, id string) string {
	t.Helper()
	d, err := m.RunDetail(id)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range d.Processors {
		fmt.Fprintf(&b, "%s=%s ", p.Name, strings.TrimPrefix(p.State.String(), "PROCESSOR_STATE_"))
	}
	return strings.TrimSpace(b.String())
}

func TestFailureRule(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, 4)
	src := `name: fail
processors:
  slow: {uses: t/run, with: {sleep: 1m}}
  bad:  {uses: t/run, with: {fail: 3, waitfor: slow}, after: [gate]}
  gate: {uses: t/run}
  down: {uses: t/run, after: [bad]}
`
	r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != wizpb.RunState_RUN_STATE_FAILED || !strings.Contains(r.Reason, "processor bad failed: exited with code 3") {
		t.Fatalf("run = %v %q, want Failed because bad exited with code 3", r.State, r.Reason)
	}
	if got, want := states(t, m, r.Id), "slow=FAILED bad=FAILED gate=SUCCEEDED down=IDLE"; got != want {
		t.Errorf("states = %s, want %s", got, want)
	}
}

func TestRetriesAndWarnOnly(t *testing.T) {
	t.Parallel()
	m, b := newManager(t, 2)
	src := `name: retry
processors:
  flaky: {uses: t/run, with: {flaky: 2}, retries: 2}
  soft:  {uses: t/run, with: {fail: 3}, on_error: warn}
  after_soft: {uses: t/run, inputs: {in: soft}}
  last:  {uses: t/run, inputs: {in: flaky}}
`
	r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != wizpb.RunState_RUN_STATE_SUCCEEDED || r.Warnings != 1 {
		t.Fatalf("run = %v, %d warnings (%s), want Succeeded with 1 warning", r.State, r.Warnings, r.Reason)
	}
	if got, want := states(t, m, r.Id), "flaky=SUCCEEDED soft=FAILED after_soft=IDLE last=SUCCEEDED"; got != want {
		t.Errorf("states = %s, want %s", got, want)
	}
	if b.tries["flaky"] != 3 {
		t.Errorf("flaky ran %d times, want 3", b.tries["flaky"])
	}
	d, _ := m.RunDetail(r.Id)
	if d.Processors[0].Attempts != 3 {
		t.Errorf("flaky attempts = %d, want 3", d.Processors[0].Attempts)
	}
}

// Tasks an executor holds (manager.Batcher) are sent before the run waits;
// one that cannot be sent fails its processor, naming the executor.
func TestBatchedSubmit(t *testing.T) {
	t.Parallel()
	m, b := newManager(t, 2)
	b.batch = true
	src := `name: batched
processors:
  a: {uses: t/run}
  unsendable: {uses: t/run, after: [a]}
  c: {uses: t/run, after: [unsendable]}
`
	r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != wizpb.RunState_RUN_STATE_FAILED || !strings.Contains(r.Reason, "processor unsendable failed: send to fake executor: message larger than max") {
		t.Fatalf("run = %v %q, want Failed because unsendable could not be sent", r.State, r.Reason)
	}
	if got, want := states(t, m, r.Id), "a=SUCCEEDED unsendable=FAILED c=IDLE"; got != want {
		t.Errorf("states = %s, want %s", got, want)
	}
}

// A stream of events (a task logging as fast as it can) does not hold back
// the tasks that other events free: a run sends its held tasks after a
// bounded number of events handled in a row. Here chatty logs until next has
// started; held back, next would start only when chatty gives up after 5 s.
func TestBatchedSubmitUnderLogFlood(t *testing.T) {
	t.Parallel()
	m, b := newManager(t, 2)
	b.batch = true
	src := `name: flood
processors:
  chatty: {uses: t/run, with: {flood_until: next}}
  a: {uses: t/run}
  next: {uses: t/run, after: [a]}
`
	r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src)}, nil)
	if err != nil || r.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
		t.Fatalf("run: %v %v", r.GetState(), err)
	}
	if !slices.Contains(b.order, "chatty:saw next") {
		t.Errorf("order %v: next did not start while chatty's logs flowed", b.order)
	}
}

func TestMaxParallel(t *testing.T) {
	t.Parallel()
	m, b := newManager(t, 8)
	var sb strings.Builder
	sb.WriteString("name: wide\nmax_parallel: 2\nprocessors:\n")
	for i := range 40 {
		fmt.Fprintf(&sb, "  n%d: {uses: t/run}\n", i)
	}
	r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(sb.String())}, nil)
	if err != nil || r.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
		t.Fatalf("run: %v %v", r.GetState(), err)
	}
	if b.peak > 2 {
		t.Errorf("%d processors ran at once, want at most 2", b.peak)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, 2)
	src := `name: cancel
processors:
  slow: {uses: t/run, with: {sleep: 1m}}
  next: {uses: t/run, after: [slow]}
`
	ctx, cancel := context.WithCancel(context.Background())
	r, err := m.Run(ctx, manager.RunRequest{File: "p.yaml", Source: []byte(src)}, func(u manager.Update) {
		if u.Processor != nil && u.Processor.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING {
			cancel()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != wizpb.RunState_RUN_STATE_FAILED || r.Reason != "cancelled" {
		t.Fatalf("run = %v %q, want Failed, cancelled", r.State, r.Reason)
	}
	if got, want := states(t, m, r.Id), "slow=FAILED next=IDLE"; got != want {
		t.Errorf("states = %s, want %s", got, want)
	}
}

// stuckRun starts a run that never ends within the test and returns its ID
// once its processor's Running state is committed: its Manager "dies" (the
// run's goroutine is abandoned, and ended by a cleanup).
func stuckRun(t *testing.T, m *manager.Manager) string {
	t.Helper()
	src := "name: stuck\nprocessors:\n  slow: {uses: t/run, with: {sleep: 1m}}\n"
	started := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	// The abandoned run must end before the store closes (cleanups run last first).
	t.Cleanup(func() { cancel(); <-ended })
	go func() {
		defer close(ended)
		m.Run(ctx, manager.RunRequest{File: "p.yaml", Source: []byte(src)}, func(u manager.Update) {
			if u.Processor != nil && u.Processor.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING {
				started <- u.Processor.RunId
			}
		})
	}()
	id := <-started
	for range 200 {
		if states(t, m, id) == "slow=RUNNING" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return id
}

func TestRecover(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, 2)
	id := stuckRun(t, m)
	settled, err := m.Recover()
	if err != nil || len(settled) != 1 || settled[0] != id {
		t.Fatalf("Recover = %v, %v; want [%s]", settled, err, id)
	}
	d, _ := m.RunDetail(id)
	want := manager.ReasonManagerExited + ": the wiz process running it was killed or crashed; `wiz runs resume " + id + "` continues it, reusing what succeeded"
	if d.Run.State != wizpb.RunState_RUN_STATE_FAILED || d.Run.Reason != want {
		t.Errorf("run = %v %q, want Failed, %q", d.Run.State, d.Run.Reason, want)
	}
	if d.Processors[0].Error != want {
		t.Errorf("processor error = %q", d.Processors[0].Error)
	}
}

// BenchmarkRun100k schedules a 100,000-processor pipeline (100 layers of
// 1,000, each with up to 3 parents) to completion with an in-process no-op
// executor and the real badger store, and reports the cost per task.
func BenchmarkRun100k(b *testing.B) {
	benchRun(b, 100, 1000)
}

// BenchmarkRun10k is the same with 10,000 processors.
func BenchmarkRun10k(b *testing.B) {
	benchRun(b, 100, 100)
}

func benchRun(b *testing.B, layers, width int) {
	var sb strings.Builder
	sb.WriteString("name: bench\nprocessors:\n")
	for l := range layers {
		for i := range width {
			fmt.Fprintf(&sb, "  n%d_%d: {uses: t/run", l, i)
			if l > 0 {
				fmt.Fprintf(&sb, ", after: [n%d_%d, n%d_%d, n%d_%d]", l-1, i, l-1, (i*7+1)%width, l-1, (i*13+5)%width)
			}
			sb.WriteString("}\n")
		}
	}
	src := []byte(sb.String())
	n := layers * width
	m, be := newManager(b, 2)
	be.noop = true
	// Planning (parse and validate) is BenchmarkParseValidate's in
	// core/pipeline; the Manager keeps the parsed form, so this measures
	// scheduling and persisting the run.
	if _, err := m.Apply("p.yaml", src); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: src}, nil)
		if err != nil || r.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
			b.Fatalf("run: %v %v", r.GetState(), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/task")
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "tasks/s")
}

func TestResumeAndFrom(t *testing.T) {
	t.Parallel()
	m, b := newManager(t, 2)
	src := `name: resume
processors:
  a:     {uses: t/run}
  flaky: {uses: t/run, with: {flaky: 2}, inputs: {in: a}}
  c:     {uses: t/run, inputs: {in: flaky}}
  side:  {uses: t/run, inputs: {in: a}}
`
	r1, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src)}, nil)
	if err != nil || r1.State != wizpb.RunState_RUN_STATE_FAILED {
		t.Fatalf("first run: %v %v, want Failed", r1.GetState(), err)
	}
	r2, err := m.Resume(context.Background(), r1.Id, nil)
	if err != nil || r2.State != wizpb.RunState_RUN_STATE_FAILED {
		t.Fatalf("resume 1: %v %v, want Failed (flaky fails twice)", r2.GetState(), err)
	}
	r3, err := m.Resume(context.Background(), r2.Id, nil)
	if err != nil || r3.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
		t.Fatalf("resume 2: %v %v, want Succeeded", r3.GetState(), err)
	}
	if r3.ResumedFrom != r2.Id {
		t.Errorf("resumed_from = %q, want %q", r3.ResumedFrom, r2.Id)
	}
	if b.tries["a"] != 1 || b.tries["flaky"] != 3 || b.tries["c"] != 1 {
		t.Errorf("tries = %v, want a once, flaky 3 times, c once", b.tries)
	}
	d, _ := m.RunDetail(r3.Id)
	if d.Processors[0].ReusedFrom != r1.Id {
		t.Errorf("a reused from %q, want %q (where it ran)", d.Processors[0].ReusedFrom, r1.Id)
	}
	// --from reruns c and what depends on it, reusing the rest of r3.
	r4, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src), From: "flaky"}, nil)
	if err != nil || r4.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
		t.Fatalf("--from: %v %v", r4.GetState(), err)
	}
	if b.tries["flaky"] != 4 || b.tries["c"] != 2 || b.tries["a"] != 1 || b.tries["side"] != 1 {
		t.Errorf("after --from flaky, tries = %v; want flaky and c again, a and side reused", b.tries)
	}
	if _, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src), From: "nope"}, nil); err == nil || !strings.Contains(err.Error(), `no processor "nope"`) {
		t.Errorf("--from nope: %v", err)
	}
}

// TestMissingOutput: a processor that names an output its upstream did not
// produce fails at once, naming the outputs there are, and is not retried.
func TestMissingOutput(t *testing.T) {
	t.Parallel()
	m, b := newManager(t, 2)
	src := `name: missing
processors:
  a: {uses: t/run}
  b: {uses: t/run, inputs: {in: a.nope}, retries: 2}
`
	r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != wizpb.RunState_RUN_STATE_FAILED || !strings.Contains(r.Reason, `processor a has no output "nope" (it has: out)`) {
		t.Fatalf("run = %v %q", r.State, r.Reason)
	}
	if b.tries["b"] != 0 {
		t.Errorf("b ran %d times, want 0", b.tries["b"])
	}
}

// Watchers that join a run at any moment see each processor's state only
// move forward (no change older than their snapshot is replayed) and see
// every processor end.
func TestWatchJoinsMidRun(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, 2)
	var src strings.Builder
	src.WriteString("name: chain\nprocessors:\n  p0: {uses: t/run}\n")
	const n = 300
	for i := 1; i < n; i++ {
		fmt.Fprintf(&src, "  p%d: {uses: t/run, after: [p%d]}\n", i, i-1)
	}
	started := make(chan string, 1)
	done := make(chan *wizpb.Run, 1)
	go func() {
		r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src.String())}, func(u manager.Update) {
			if u.Run != nil {
				select {
				case started <- u.Run.Id:
				default:
				}
			}
		})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	id := <-started
	rank := map[wizpb.ProcessorState]int{
		wizpb.ProcessorState_PROCESSOR_STATE_IDLE: 0, wizpb.ProcessorState_PROCESSOR_STATE_RUNNING: 1,
		wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED: 2, wizpb.ProcessorState_PROCESSOR_STATE_FAILED: 2,
	}
	var wg sync.WaitGroup
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(w) * time.Millisecond)
			last := map[string]wizpb.ProcessorState{}
			final, err := m.Watch(context.Background(), id, func(u manager.Update) {
				if p := u.Processor; p != nil {
					if prev, ok := last[p.Name]; ok && rank[p.State] < rank[prev] {
						t.Errorf("watcher %d: %s went from %v back to %v", w, p.Name, prev, p.State)
					}
					last[p.Name] = p.State
				}
			})
			if err != nil {
				t.Error(err)
				return
			}
			if final.State == wizpb.RunState_RUN_STATE_SUCCEEDED && len(last) > 0 && len(last) != n {
				t.Errorf("watcher %d saw %d of %d processors", w, len(last), n)
			}
			for name, s := range last {
				if s != wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED {
					t.Errorf("watcher %d: %s last seen %v, want Succeeded", w, name, s)
				}
			}
		}()
	}
	wg.Wait()
	if r := <-done; r.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
		t.Fatalf("run = %v", r.State)
	}
}

// The longest remaining path goes first, weighed by what each processor took
// in the newest earlier run of the same version: on the first run equal
// weights keep file order; on the second the slow processor starts first.
func TestCriticalPathFromEarlierDurations(t *testing.T) {
	t.Parallel()
	m, b := newManager(t, 1)
	src := `name: weights
max_parallel: 1
processors:
  quick1: {uses: t/run, with: {ms: 1}}
  quick2: {uses: t/run, with: {ms: 1}}
  slow:   {uses: t/run, with: {ms: 80}}
`
	// (The quick ones' order on the second run depends on their measured
	// times, so only the first start is checked there.)
	for run, want := range []string{"quick1 quick2 slow", "slow "} {
		b.mu.Lock()
		b.order = nil
		b.mu.Unlock()
		r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src)}, nil)
		if err != nil || r.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
			t.Fatalf("run %d: %v %v", run+1, r.GetState(), err)
		}
		b.mu.Lock()
		got := strings.Join(b.order, " ")
		b.mu.Unlock()
		if run == 0 && got != want || run == 1 && !strings.HasPrefix(got, want) {
			t.Errorf("run %d started %s; want %s…", run+1, got, want)
		}
	}
}

// Concurrent runs of one pipeline share its parsed, validated form.
func TestConcurrentRunsOfOnePipeline(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, 4)
	src := []byte("name: shared\nprocessors:\n  a: {uses: t/run}\n  b: {uses: t/run, after: [a]}\n  c: {uses: t/run, after: [a]}\n")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: src}, nil)
			if err != nil || r.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
				t.Errorf("run: %v %v", r.GetState(), err)
			}
		})
	}
	wg.Wait()
}

// A task reported by its Finished alone (no Started; outputs and metrics in
// the Finished) is shown to watchers as Running, then Succeeded, with its
// start time taken from its run time; its outputs reach the next processor.
func TestFinishedWithoutStarted(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, 2)
	src := `name: short
processors:
  a: {uses: t/run, with: {short: true}}
  b: {uses: t/run, inputs: {in: a.out}}
`
	var mu sync.Mutex
	var seen []string
	r, err := m.Run(context.Background(), manager.RunRequest{File: "p.yaml", Source: []byte(src)}, func(u manager.Update) {
		if u.Processor != nil && u.Processor.Name == "a" {
			mu.Lock()
			seen = append(seen, strings.TrimPrefix(u.Processor.State.String(), "PROCESSOR_STATE_"))
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
		t.Fatalf("run = %v %q, want Succeeded (b needs a's output)", r.State, r.Reason)
	}
	mu.Lock()
	got := strings.Join(seen, " ")
	mu.Unlock()
	if got != "RUNNING SUCCEEDED" {
		t.Errorf("a's states seen by the watcher = %q, want RUNNING SUCCEEDED", got)
	}
	d, err := m.RunDetail(r.Id)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Processors {
		if p.Name != "a" {
			continue
		}
		if p.Metrics.GetWallNs() != int64(2*time.Second) {
			t.Errorf("a's metrics = %v, want the ones in its Finished", p.Metrics)
		}
		if took := p.Ended.AsTime().Sub(p.Started.AsTime()); took < 2*time.Second || took > time.Minute {
			t.Errorf("a ran from %v to %v (%v), want about its 2 s run time", p.Started.AsTime(), p.Ended.AsTime(), took)
		}
		if string(p.Outputs["out"].GetInline()) != "a" {
			t.Errorf("a's output = %v, want the one in its Finished", p.Outputs)
		}
	}
}

// A client's pipeline brings its sub-pipeline files (ApplySent): they are
// read from what it sent, never from the Manager's host, even when the host
// has a file at that path.
func TestApplySentReadsNoHostFile(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, 2)
	dir := t.TempDir()
	parent := filepath.Join(dir, "parent.yaml")
	src := []byte("name: parent\nprocessors:\n  kid: {uses: ./kid.yaml}\n")
	kid := []byte("name: kid\nprocessors:\n  a: {uses: t/run}\n")
	if err := os.WriteFile(filepath.Join(dir, "kid.yaml"), kid, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ApplySent(parent, src, nil, ""); err == nil || !strings.Contains(err.Error(), "parent.yaml:3:15: uses ./kid.yaml: cannot read the sub-pipeline") || !strings.Contains(err.Error(), "the client did not send it") {
		t.Fatalf("ApplySent without the child = %v, want the child not sent, at its position", err)
	}
	a, err := m.ApplySent(parent, src, map[string][]byte{filepath.Join(dir, "kid.yaml"): kid}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Children["kid"].Parsed.Name; got != "kid" {
		t.Fatalf("child = %s, want kid", got)
	}
}
