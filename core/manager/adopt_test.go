package manager_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// idExec is a fakeExec a backend provisioned: it has an executor ID.
type idExec struct{ *fakeExec }

func (idExec) ExecutorID() string { return "fake-1" }

type idBackends struct{ *backends }

func (b idBackends) Provision(ctx context.Context, req manager.ProvisionRequest) (manager.Executor, error) {
	e, err := b.backends.Provision(ctx, req)
	if err != nil {
		return nil, err
	}
	return idExec{e.(*fakeExec)}, nil
}

// adoptBackends adopts executor fake-1: of the tasks asked for, it holds
// those whose processor is in held (each ends Succeeded with output
// "adopted"); the rest are Unknown. Tasks submitted to it succeed at once
// with output "again".
type adoptBackends struct {
	idBackends
	held []string

	mu      sync.Mutex
	adopted []string // executor IDs
	asked   []string // task IDs
	again   []string // processors submitted to the adopted executor
}

func (b *adoptBackends) Adopt(_ context.Context, _ manager.ProvisionRequest, id string, ids []string) (manager.Executor, error) {
	b.mu.Lock()
	b.adopted, b.asked = append(b.adopted, id), append(b.asked, ids...)
	b.mu.Unlock()
	e := &adoptedExec{b: b, events: make(chan *manager.TaskEvent, 64)}
	for _, t := range ids {
		parts := strings.Split(t, "/")
		if slices.Contains(b.held, parts[1]) {
			e.events <- &manager.TaskEvent{TaskID: t, Kind: manager.EventOutput, Name: "out", Output: &wizpb.Data{Inline: []byte("adopted")}}
			e.events <- &manager.TaskEvent{TaskID: t, Kind: manager.EventFinished, Outcome: manager.OutcomeSucceeded, Started: true}
		} else {
			e.events <- &manager.TaskEvent{TaskID: t, Kind: manager.EventFinished, Outcome: manager.OutcomeFailed, Unknown: true}
		}
	}
	return e, nil
}

type adoptedExec struct {
	b      *adoptBackends
	events chan *manager.TaskEvent
}

func (e *adoptedExec) Name() string                      { return "adopted executor" }
func (e *adoptedExec) Slots() int                        { return 4 }
func (e *adoptedExec) Local() bool                       { return false }
func (e *adoptedExec) Resize(int) error                  { return nil }
func (e *adoptedExec) Events() <-chan *manager.TaskEvent { return e.events }
func (e *adoptedExec) Cancel(string, string) error       { return nil }
func (e *adoptedExec) Close(context.Context) error       { close(e.events); return nil }
func (e *adoptedExec) Submit(t *manager.Task) error {
	e.b.mu.Lock()
	e.b.again = append(e.b.again, t.Processor)
	e.b.mu.Unlock()
	e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventOutput, Name: "out", Output: &wizpb.Data{Inline: []byte("again")}}
	e.events <- &manager.TaskEvent{TaskID: t.ID, Kind: manager.EventFinished, Outcome: manager.OutcomeSucceeded, Started: true}
	return nil
}

// A restarted service Manager adopts the executor its runs recorded and
// re-attaches the tasks that were Running: a task the executor still holds
// is collected, not run again (attempts stay 1); one it does not hold runs
// again (attempt 2).
func TestContinueAdoptsExecutor(t *testing.T) {
	t.Parallel()
	var cfg manager.Config
	m, b := newManagerWith(t, 4, func(c *manager.Config) { c.Service, c.Continue = true, true; cfg = *c })
	m = manager.New(func() manager.Config { c := cfg; c.Backends = idBackends{b}; return c }())
	src := "name: two\nprocessors:\n  kept: {uses: t/run, with: {sleep: 1m}}\n  lost: {uses: t/run, with: {sleep: 1m}}\n  after: {uses: t/run, inputs: {a: kept, b: lost}}\n"
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	t.Cleanup(func() { cancel(); <-ended })
	started := make(chan string, 4)
	go func() { // the Manager that is "killed": its run is abandoned
		defer close(ended)
		m.Run(ctx, manager.RunRequest{File: "p.yaml", Source: []byte(src)}, func(u manager.Update) {
			if u.Processor != nil && u.Processor.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING {
				started <- u.Processor.RunId
			}
		})
	}()
	id := <-started
	// Until the store holds both Running and the run's executor.
	for deadline := time.Now().Add(30 * time.Second); ; {
		r, err1 := cfg.Store.Run(id)
		ps, err2 := cfg.Store.Processors(id)
		if err1 == nil && err2 == nil && len(r.Executors) == 1 && ps["kept"] != nil && ps["lost"] != nil &&
			ps["kept"].State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING && ps["lost"].State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING {
			if r.Executors[0].ExecutorId != "fake-1" {
				t.Fatalf("recorded executor %v, want fake-1", r.Executors[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run's Running processors and executor were not committed within 30 s")
		}
		time.Sleep(10 * time.Millisecond) // the run's writer commits in the background
	}

	ab := &adoptBackends{idBackends: idBackends{b}, held: []string{"kept"}}
	cfg2 := cfg
	cfg2.Backends = ab
	m2 := manager.New(cfg2)
	ids, wait, err := m2.ContinueRuns(context.Background())
	wait()
	if err != nil || len(ids) != 1 {
		t.Fatalf("ContinueRuns = %v, %v", ids, err)
	}
	d, err := m2.RunDetail(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Run.State != wizpb.RunState_RUN_STATE_SUCCEEDED || d.Run.Reattached != 1 {
		t.Fatalf("continued run %v %q, %d re-attached; want Succeeded, 1 (kept)", d.Run.State, d.Run.Reason, d.Run.Reattached)
	}
	slices.Sort(ab.asked)
	if !slices.Equal(ab.adopted, []string{"fake-1"}) || !slices.Equal(ab.asked, []string{id + "/after/1", id + "/kept/1", id + "/lost/1"}) {
		t.Errorf("adopted %v, asked for %v; want fake-1, the tasks that may have been sent: of kept, lost (Running) and after (not yet)", ab.adopted, ab.asked)
	}
	got := map[string]string{}
	for _, p := range d.Processors {
		got[p.Name] = p.State.String() + " " + string(p.Outputs["out"].GetInline()) + " " + string(rune('0'+p.Attempts))
	}
	want := map[string]string{
		"kept":  "PROCESSOR_STATE_SUCCEEDED adopted 1", // collected, not run again
		"lost":  "PROCESSOR_STATE_SUCCEEDED again 2",   // not held: run again
		"after": "PROCESSOR_STATE_SUCCEEDED again 1",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if !slices.Equal(ab.again, []string{"lost", "after"}) {
		t.Errorf("submitted after the adoption: %v, want lost, then after", ab.again)
	}
	var said bool
	for _, ev := range d.Events {
		said = said || strings.Contains(ev.Message, "re-attached adopted executor; asked it for the 3 tasks that may have been sent to it")
	}
	if !said {
		t.Errorf("no event says the executor was re-attached: %v", d.Events)
	}
}
