package executorserver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/internal/executorclient"
)

// orphanExecutor starts an executor with an orphan timeout; dial connects
// a new Manager to it; done receives what Run returned.
func orphanExecutor(t *testing.T, timeout time.Duration) (dial func() *executorclient.Client, ref manager.PackRef, done <-chan error, dir string) {
	return orphanExecutorWatching(t, timeout, nil)
}

// orphanExecutorWatching is orphanExecutor with Config.ParentGone.
func orphanExecutorWatching(t *testing.T, timeout time.Duration, parentGone <-chan struct{}) (dial func() *executorclient.Client, ref manager.PackRef, done <-chan error, dir string) {
	t.Helper()
	dir = t.TempDir()
	te := startTestExecutor(t, dir, Config{Listen: "127.0.0.1:0", Token: "t", Slots: 4, Version: "test", OrphanTimeout: timeout, ParentGone: parentGone})
	return func() *executorclient.Client { return te.dial(t) }, te.ref, te.done, dir
}

func shTask(ref manager.PackRef, id, script string) *manager.Task {
	cfg := `{"command":["/bin/sh","-c",` + strconv.Quote(script) + `]}`
	return &manager.Task{ID: id, Native: true, RunID: "r", Processor: id, Type: "std/exec", Pack: ref, Config: []byte(cfg)}
}

// waitFile waits until path exists and returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not written", path)
		}
		time.Sleep(10 * time.Millisecond) // the task runs in another process
	}
}

// waitGone waits until the process whose pid is in path has exited.
func waitGone(t *testing.T, path string) {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(waitFile(t, path)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("task process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond) // another process's end
	}
}

// A Manager killed mid-task (its stream breaks): the executor keeps the
// task running; a new Manager that attaches it collects its result, and the
// task ran once. A task the new Manager names that the executor does not
// hold ends Unknown; one it does not name is cancelled.
func TestOrphanReattach(t *testing.T) {
	dial, ref, _, dir := orphanExecutor(t, time.Minute)
	gate := filepath.Join(dir, "gate")
	runs := filepath.Join(dir, "runs")
	c1 := dial()
	kept := shTask(ref, "kept", `echo ran >> `+runs+`; while [ ! -e `+gate+` ]; do sleep 0.05; done; echo result`)
	other := shTask(ref, "other", `echo $$ > `+filepath.Join(dir, "other.pid")+`; exec sleep 600`)
	for _, task := range []*manager.Task{kept, other} {
		if err := c1.Submit(task); err != nil {
			t.Fatal(err)
		}
	}
	c1.Flush()
	waitFile(t, runs)
	waitFile(t, filepath.Join(dir, "other.pid"))
	c1.Drop() // the Manager is killed

	if err := os.WriteFile(gate, nil, 0o644); err != nil { // kept ends while orphaned
		t.Fatal(err)
	}
	c2 := dial()
	defer c2.Close(context.Background())
	if err := c2.Attach([]string{"kept", "ghost"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]*manager.TaskEvent{}
	outputs := map[string]string{}
	timeout := time.After(time.Minute)
	for len(got) < 2 {
		select {
		case ev := <-c2.Events():
			if ev.Kind == manager.EventFinished {
				got[ev.TaskID] = ev
				for n, d := range ev.Outputs {
					outputs[n] = string(d.GetInline())
				}
			}
			if ev.Kind == manager.EventOutput {
				outputs[ev.Name] = string(ev.Output.GetInline())
			}
		case <-timeout:
			t.Fatalf("attached tasks did not finish: %v", got)
		}
	}
	if ev := got["kept"]; ev.Outcome != manager.OutcomeSucceeded || ev.Unknown {
		t.Errorf("kept: outcome %v (%s), unknown %v; want Succeeded", ev.Outcome, ev.Message, ev.Unknown)
	} else if outputs["out"] != "result\n" {
		t.Errorf("kept: outputs %q, want out: result", outputs)
	}
	if ev := got["ghost"]; !ev.Unknown || ev.Outcome != manager.OutcomeFailed {
		t.Errorf("ghost: unknown %v outcome %v, want unknown", ev.Unknown, ev.Outcome)
	}
	if b, _ := os.ReadFile(runs); string(b) != "ran\n" {
		t.Errorf("kept ran %q times, want once", b)
	}
	waitGone(t, filepath.Join(dir, "other.pid")) // not named: cancelled
}

// With no Manager re-attaching within the orphan timeout, the executor
// cancels its tasks and exits with ErrOrphaned.
func TestOrphanTimeout(t *testing.T) {
	dial, ref, done, dir := orphanExecutor(t, 200*time.Millisecond)
	c := dial()
	if err := c.Submit(shTask(ref, "long", `echo $$ > `+filepath.Join(dir, "pid")+`; exec sleep 600`)); err != nil {
		t.Fatal(err)
	}
	c.Flush()
	waitFile(t, filepath.Join(dir, "pid"))
	c.Drop()
	select {
	case err := <-done:
		if !errors.Is(err, ErrOrphaned) {
			t.Fatalf("Run returned %v, want ErrOrphaned", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the orphaned executor did not exit")
	}
	waitGone(t, filepath.Join(dir, "pid"))
}

// A Manager that closes its stream (it is done, or shuts down) ends the
// tasks at once, orphan timeout or not; and if it does not tear the
// executor down then (it was killed in between), the executor exits by
// itself soon after (closedGrace), cleanly.
func TestOrphanNotOnClose(t *testing.T) {
	dial, ref, done, dir := orphanExecutor(t, time.Minute)
	c := dial()
	if err := c.Submit(shTask(ref, "long", `echo $$ > `+filepath.Join(dir, "pid")+`; exec sleep 600`)); err != nil {
		t.Fatal(err)
	}
	c.Flush()
	waitFile(t, filepath.Join(dir, "pid"))
	_ = c.Close(context.Background())
	waitGone(t, filepath.Join(dir, "pid"))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the executor whose Manager closed its stream exited with %v, want nil", err)
		}
	case <-time.After(time.Minute): // the orphan timeout; closedGrace is shorter
		t.Fatal("the executor whose Manager closed its stream did not exit")
	}
}

// An executor with an orphan timeout that no Manager ever connects to (it
// was killed while the executor started) exits after that timeout.
func TestOrphanNeverConnected(t *testing.T) {
	_, _, done, _ := orphanExecutor(t, 200*time.Millisecond)
	select {
	case err := <-done:
		if !errors.Is(err, ErrOrphaned) {
			t.Fatalf("Run returned %v, want ErrOrphaned", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the executor no Manager connected to did not exit")
	}
}

// A Manager killed while its executor runs nothing leaves nothing to wait
// for: the executor exits cleanly soon after (closedGrace), not after the
// orphan timeout.
func TestOrphanIdleBreak(t *testing.T) {
	dial, ref, done, _ := orphanExecutor(t, time.Hour)
	c := dial()
	events(t, c, shTask(ref, "quick", "true")) // its stream is up, and idle
	c.Drop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the idle executor exited with %v, want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the idle executor of a killed Manager did not exit within a minute")
	}
}

// A Manager killed again right after it re-attached: the next one still
// collects the task, which ran once.
func TestOrphanTwice(t *testing.T) {
	dial, ref, _, dir := orphanExecutor(t, time.Minute)
	gate, runs := filepath.Join(dir, "gate"), filepath.Join(dir, "runs")
	c1 := dial()
	if err := c1.Submit(shTask(ref, "kept", `echo ran >> `+runs+`; while [ ! -e `+gate+` ]; do sleep 0.05; done; echo result`)); err != nil {
		t.Fatal(err)
	}
	c1.Flush()
	waitFile(t, runs)
	c1.Drop()
	c2 := dial()
	if err := c2.Attach([]string{"kept"}); err != nil {
		t.Fatal(err)
	}
	c2.Drop()
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c3 := dial()
	defer c3.Close(context.Background())
	if err := c3.Attach([]string{"kept"}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(time.Minute)
	for {
		select {
		case ev := <-c3.Events():
			if ev.Kind != manager.EventFinished {
				continue
			}
			if ev.Unknown || ev.Outcome != manager.OutcomeSucceeded {
				t.Fatalf("kept: unknown %v, outcome %v (%s); want Succeeded", ev.Unknown, ev.Outcome, ev.Message)
			}
			if b, _ := os.ReadFile(runs); string(b) != "ran\n" {
				t.Errorf("kept ran %q times, want once", b)
			}
			return
		case <-timeout:
			t.Fatal("the twice re-attached task did not finish")
		}
	}
}

// The backend that started an executor died before any Manager connected
// (its service was killed while provisioning): the executor exits at once,
// cleanly. Once a Manager has connected, the backend's death changes
// nothing: the Manager's stream decides.
func TestOrphanParentGone(t *testing.T) {
	gone := make(chan struct{})
	_, _, done, _ := orphanExecutorWatching(t, time.Hour, gone)
	close(gone)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the executor whose backend died before any Manager connected did not exit")
	}

	gone2 := make(chan struct{})
	dial, ref, done2, _ := orphanExecutorWatching(t, time.Hour, gone2)
	c := dial()
	defer c.Close(context.Background())
	events(t, c, shTask(ref, "quick", "true")) // a Manager is connected
	close(gone2)
	if evs := events(t, c, shTask(ref, "after", "true")); evs[len(evs)-1].Outcome != manager.OutcomeSucceeded {
		t.Fatalf("a task after the backend died: %+v", evs[len(evs)-1])
	}
	select {
	case err := <-done2:
		t.Fatalf("the executor exited (%v) while its Manager was connected", err)
	default:
	}
}

// An Attach that names a task a stream still carries — the executor has not
// yet seen that stream break (its Manager was killed a moment ago) — takes
// the task over: its end goes to the new stream, and it ran once.
func TestOrphanTakeOver(t *testing.T) {
	dial, ref, _, dir := orphanExecutor(t, time.Minute)
	gate, runs := filepath.Join(dir, "gate"), filepath.Join(dir, "runs")
	c1 := dial() // not dropped: as if its break were not seen yet
	defer c1.Close(context.Background())
	if err := c1.Submit(shTask(ref, "kept", `echo ran >> `+runs+`; while [ ! -e `+gate+` ]; do sleep 0.05; done; echo result`)); err != nil {
		t.Fatal(err)
	}
	c1.Flush()
	waitFile(t, runs)
	c2 := dial()
	defer c2.Close(context.Background())
	if err := c2.Attach([]string{"kept"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(time.Minute)
	for {
		select {
		case ev := <-c2.Events():
			if ev.Kind != manager.EventFinished {
				continue
			}
			if ev.Unknown || ev.Outcome != manager.OutcomeSucceeded {
				t.Fatalf("kept: unknown %v, outcome %v (%s); want Succeeded on the new stream", ev.Unknown, ev.Outcome, ev.Message)
			}
			if b, _ := os.ReadFile(runs); string(b) != "ran\n" {
				t.Errorf("kept ran %q times, want once", b)
			}
			return
		case <-timeout:
			t.Fatal("the task taken over did not finish on the new stream")
		}
	}
}

// A restarted Manager re-attaches before the executor has seen the killed
// one's stream break: it takes over what it names, and what it does not
// name is cancelled when the break is seen, not held.
func TestOrphanLateBreak(t *testing.T) {
	dial, ref, _, dir := orphanExecutor(t, time.Hour)
	c1 := dial()
	if err := c1.Submit(shTask(ref, "other", `echo $$ > `+filepath.Join(dir, "other.pid")+`; exec sleep 600`)); err != nil {
		t.Fatal(err)
	}
	c1.Flush()
	waitFile(t, filepath.Join(dir, "other.pid"))
	c2 := dial()
	defer c2.Close(context.Background())
	if err := c2.Attach([]string{}); err != nil { // before c1's break
		t.Fatal(err)
	}
	events(t, c2, shTask(ref, "sync", "true")) // the Attach has been handled
	c1.Drop()
	waitGone(t, filepath.Join(dir, "other.pid"))
}
