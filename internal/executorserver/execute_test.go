package executorserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/manager"
)

// events submits t to c and returns its events up to its Finished.
func events(tb testing.TB, c interface {
	Submit(*manager.Task) error
	Events() <-chan *manager.TaskEvent
}, t *manager.Task) []*manager.TaskEvent {
	tb.Helper()
	if err := c.Submit(t); err != nil {
		tb.Fatal(err)
	}
	var out []*manager.TaskEvent
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				tb.Fatal("the executor's event stream ended")
			}
			if ev.TaskID != t.ID {
				continue
			}
			out = append(out, ev)
			if ev.Kind == manager.EventFinished {
				return out
			}
		case <-timeout:
			tb.Fatalf("task %s did not finish within a minute", t.ID)
		}
	}
}

func kinds(evs []*manager.TaskEvent) []manager.EventKind {
	var out []manager.EventKind
	for _, ev := range evs {
		out = append(out, ev.Kind)
	}
	return out
}

// A native task that ends at once is reported by one event, its Finished,
// with its output and metrics in it; one still running after startedDelay,
// or one that logs first, is reported Started first.
func TestNativeTaskEvents(t *testing.T) {
	c, ref := benchExecutor(t, true)
	task := func(id, config string) *manager.Task {
		return &manager.Task{ID: id, Native: true, RunID: "testrun", Processor: id, Type: "std/exec", Pack: ref, Config: []byte(config)}
	}
	events(t, c, task("warm-up", `{"command":["/bin/true"]}`)) // asks the pack for the plan

	// On a loaded machine a fork/exec can take longer than startedDelay;
	// then Started is sent, rightly. One of ten tries is enough.
	var evs []*manager.TaskEvent
	for i := 0; i < 10; i++ {
		evs = events(t, c, task(fmt.Sprintf("short-%d", i), `{"command":["/bin/echo","hi"]}`))
		f := evs[len(evs)-1]
		if len(evs) == 1 {
			break
		}
		if f.Metrics.GetWallNs() < int64(startedDelay) {
			t.Fatalf("short task: events %v though it ran %v, less than %v", kinds(evs), time.Duration(f.Metrics.GetWallNs()), startedDelay)
		}
	}
	if len(evs) != 1 {
		t.Fatalf("short task: events %v ten times, want only Finished", kinds(evs))
	}
	f := evs[0]
	if f.Outcome != manager.OutcomeSucceeded || !f.Started {
		t.Errorf("short task: outcome %d started %v (%s), want Succeeded and started", f.Outcome, f.Started, f.Message)
	}
	if f.Metrics == nil || f.Metrics.WallNs <= 0 {
		t.Errorf("short task: metrics %v, want its run time in the Finished", f.Metrics)
	}
	if got := string(f.Outputs["out"].GetInline()); got != "hi\n" {
		t.Errorf("short task: output out = %q, want %q in the Finished", got, "hi\n")
	}

	evs = events(t, c, task("long", `{"command":["/bin/sleep","0.2"],"stdout":false}`))
	if k := kinds(evs); len(k) != 2 || k[0] != manager.EventStarted || k[1] != manager.EventFinished {
		t.Errorf("long task: events %v, want Started, Finished", k)
	}

	evs = events(t, c, task("logs", `{"command":["/bin/sh","-c","echo to-stderr >&2"],"stdout":false}`))
	if k := kinds(evs); len(k) != 3 || k[0] != manager.EventStarted || k[1] != manager.EventLog || k[2] != manager.EventFinished {
		t.Errorf("logging task: events %v, want Started, Log, Finished", k)
	}
}

// A short program's output is read after it exits; a process it left
// outside its group that still holds the pipe makes the executor copy the
// rest as it comes, as for a long task, until that process lets go.
func TestNativeTaskOutputHeldByEscapedChild(t *testing.T) {
	// Nothing streams: the program (which waits for its child to leave its
	// process group) is read only once it has exited.
	old := startedDelay
	startedDelay = time.Hour
	t.Cleanup(func() { startedDelay = old }) // after the executor's own cleanup
	c, ref := benchExecutor(t, true)
	task := &manager.Task{ID: "escaped", Native: true, RunID: "testrun", Processor: "escaped", Type: "std/exec", Pack: ref,
		Config: []byte(`{"command":["/bin/sh","-c","echo first; setsid /bin/sh -c 'sleep 0.5; echo second' & sleep 0.1"]}`)}
	start := time.Now()
	evs := events(t, c, task)
	f := evs[len(evs)-1]
	if f.Outcome != manager.OutcomeSucceeded {
		t.Fatalf("outcome %d (%s), want Succeeded", f.Outcome, f.Message)
	}
	if got := string(f.Outputs["out"].GetInline()); got != "first\nsecond\n" {
		t.Errorf("output out = %q, want both lines: the one written after the program exited too", got)
	}
	if d := time.Since(start); d >= KillGrace {
		t.Errorf("the task took %v, want it to end when the escaped child closed the pipe, well before KillGrace (%v)", d, KillGrace)
	}
}
