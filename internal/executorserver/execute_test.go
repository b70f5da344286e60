package executorserver

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// events submits t to c and returns its events up to its Finished.
func events(tb testing.TB, c interface {
	manager.Executor
	manager.Batcher
}, t *manager.Task) []*manager.TaskEvent {
	tb.Helper()
	if err := c.Submit(t); err != nil {
		tb.Fatal(err)
	}
	if err := c.Flush()[t.ID]; err != nil { // as a run does before it waits
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
	// then Started may be sent, rightly (its timer starts after the fork). A
	// try that ran shorter than startedDelay must send its Finished alone;
	// when none of ten did (a busy machine), each may have sent Started.
	var evs []*manager.TaskEvent
	short := false
	for i := 0; i < 10 && !short; i++ {
		evs = events(t, c, task(fmt.Sprintf("short-%d", i), `{"command":["/bin/echo","hi"]}`))
		f := evs[len(evs)-1]
		short = f.Metrics.GetWallNs() < int64(startedDelay)
		if k := kinds(evs); short && len(k) != 1 || !short && len(k) == 2 && k[0] != manager.EventStarted || len(k) > 2 {
			t.Fatalf("short task: events %v after it ran %v (Started is sent after %v)", k, time.Duration(f.Metrics.GetWallNs()), startedDelay)
		}
	}
	if !short {
		t.Logf("no try ran shorter than %v (a busy machine)", startedDelay)
	}
	f := evs[len(evs)-1]
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

	// A task that logs while it runs is reported Started before its log; one
	// that ends sooner is read after its end, its logs then its Finished.
	evs = events(t, c, task("logs", `{"command":["/bin/sh","-c","echo to-stderr >&2; sleep 0.1"],"stdout":false}`))
	if k := kinds(evs); len(k) != 3 || k[0] != manager.EventStarted || k[1] != manager.EventLog || k[2] != manager.EventFinished {
		t.Errorf("logging task: events %v, want Started, Log, Finished", k)
	}
	short = false
	for i := 0; i < 10 && !short; i++ {
		evs = events(t, c, task(fmt.Sprintf("short-logs-%d", i), `{"command":["/bin/sh","-c","echo to-stderr >&2"],"stdout":false}`))
		f := evs[len(evs)-1]
		short = f.Metrics.GetWallNs() < int64(startedDelay)
		k := kinds(evs)
		switch {
		case short && (len(k) != 2 || k[0] != manager.EventLog || k[1] != manager.EventFinished):
			t.Errorf("short logging task: events %v after it ran %v, want Log, Finished", k, time.Duration(f.Metrics.GetWallNs()))
		case !short && !(len(k) == 3 && k[0] == manager.EventStarted || len(k) == 2 && k[0] == manager.EventLog):
			t.Errorf("logging task that ran %v: events %v, want Log, Finished, with or without Started first", time.Duration(f.Metrics.GetWallNs()), k)
		}
	}
	if !short {
		t.Logf("no logging try ran shorter than %v (a busy machine)", startedDelay)
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
	// The program ends once its child has left its process group (the
	// marker), so that killing the group does not reach the child.
	marker := filepath.Join(t.TempDir(), "escaped")
	script := fmt.Sprintf(`echo first; setsid /bin/sh -c 'touch %[1]s; sleep 0.5; echo second' & while [ ! -e %[1]s ]; do sleep 0.01; done`, marker)
	cfg, _ := json.Marshal(map[string]any{"command": []string{"/bin/sh", "-c", script}})
	task := &manager.Task{ID: "escaped", Native: true, RunID: "testrun", Processor: "escaped", Type: "std/exec", Pack: ref, Config: cfg}
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

// fakeEventStream records what an Execute stream sends.
type fakeEventStream struct {
	wizrpc.Executor_ExecuteServer
	mu   sync.Mutex
	sent []string
}

func (f *fakeEventStream) Send(ev *wizrpc.ExecuteEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	kind := "finished"
	if ev.GetFinished() == nil {
		kind = "log"
	}
	f.sent = append(f.sent, ev.TaskId+":"+kind)
	return nil
}

func (f *fakeEventStream) got() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.sent, " ")
}

// While tasks wait for a slot, Finished events are held back (up to
// holdFinished) and sent together; any other event, or too few waiting
// tasks, sends what is held at once, in order.
func TestEventSenderHoldsFinished(t *testing.T) {
	slots := newSlotPool(1)
	stream := &fakeEventStream{}
	o := &eventSender{stream: stream, slots: slots, cancel: func() {}}
	defer o.stop()
	fin := func(id string) *wizrpc.ExecuteEvent {
		ev := finished(wizrpc.Outcome_OUTCOME_SUCCEEDED, 0, "", true)
		ev.TaskId = id
		return ev
	}
	log := &wizrpc.ExecuteEvent{TaskId: "c", Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: "stderr", Data: []byte("x")}}}

	o.send(fin("a")) // nothing waits: at once
	if got := stream.got(); got != "a:finished" {
		t.Fatalf("sent %q, want a's Finished at once", got)
	}
	slots.wait = make([]chan struct{}, holdWhileWaits) // tasks wait for the slot
	o.send(fin("b"))
	if got := stream.got(); got != "a:finished" {
		t.Fatalf("sent %q, want b's Finished held", got)
	}
	o.send(log) // not a Finished: it and what is held go now, in order
	if got := stream.got(); got != "a:finished b:finished c:log" {
		t.Fatalf("sent %q, want b's Finished, then c's log", got)
	}
	o.send(fin("d"))
	deadline := time.Now().Add(10 * time.Second)
	for stream.got() != "a:finished b:finished c:log d:finished" {
		if time.Now().After(deadline) {
			t.Fatalf("sent %q, want d's Finished after at most %v", stream.got(), holdFinished)
		}
		time.Sleep(time.Millisecond)
	}
}
