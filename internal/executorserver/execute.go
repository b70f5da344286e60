package executorserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// errCancelled marks a task cancelled by the Manager.
var errCancelled = errors.New("cancelled")

// Execute implements wizrpc.ExecutorServer: tasks and cancels come in on one
// long-lived stream; events go out on it. Up to Slots tasks run at once; the
// rest wait for a slot, so the Manager can send tasks ahead of free slots.
// When the stream is closed, every task it carried is cancelled; when it
// breaks (its Manager was killed) and the executor has an orphan timeout,
// its tasks run on for a later stream to Attach (orphan.go).
func (s *Server) Execute(stream wizrpc.Executor_ExecuteServer) error {
	// Tasks do not end with the stream: it cancels them when it is closed,
	// or leaves them to the orphans when it breaks.
	base := s.base
	if s.cfg.OrphanTimeout <= 0 {
		base = stream.Context()
	}
	st := &streamTasks{routes: map[string]*taskRoute{}}
	out := &eventSender{stream: stream, slots: s.slots, cancel: func() {}}
	out.spill = func(ev *wizrpc.ExecuteEvent) { st.spill(out, ev) }
	s.streamStarted(st)
	if s.cfg.OrphanTimeout <= 0 {
		// Events after a failed send are dropped; the tasks are cancelled.
		out.cancel, out.spill = st.cancelAll, func(*wizrpc.ExecuteEvent) {}
	}
	defer out.stop()

	var recvErr error
	for first := true; ; first = false {
		req, err := stream.Recv()
		if err != nil {
			if err != io.EOF {
				recvErr = err
			}
			break
		}
		switch m := req.Msg.(type) {
		case *wizrpc.ExecuteRequest_Attach:
			if !first {
				s.log.Warn("an Attach after the stream's first message is ignored")
				continue
			}
			s.attach(st, out, m.Attach.TaskIds)
		case *wizrpc.ExecuteRequest_Task:
			t := m.Task
			tctx, cancel := context.WithCancelCause(base)
			r := &taskRoute{id: t.Id, out: out, owner: st, cancel: cancel, ended: make(chan struct{})}
			st.add(r)
			s.workers.do(func() {
				s.runTask(tctx, t, func(ev *wizrpc.ExecuteEvent) { ev.TaskId = t.Id; r.emit(ev) })
				cancel(nil)
				r.end()
				st.remove(t.Id)
			})
		case *wizrpc.ExecuteRequest_Cancel:
			if r := st.get(m.Cancel.TaskId); r != nil {
				if c := m.Cancel.Reason; c == "" || c == errCancelled.Error() {
					r.cancel(errCancelled)
				} else {
					r.cancel(fmt.Errorf("%w: %s", errCancelled, c))
				}
			}
		case *wizrpc.ExecuteRequest_SetSlots:
			s.slots.resize(int(m.SetSlots.Slots))
			s.log.Debug("slots changed", "slots", m.SetSlots.Slots)
		}
	}
	if s.cfg.OrphanTimeout > 0 && (recvErr != nil || out.failed()) {
		// Broken, not closed: the tasks run on, for a restarted Manager.
		// Events it could not send are held first.
		_ = out.flush()
		s.orphan(st, out)
		return recvErr
	}
	s.streamEnded(st)
	st.cancelAll()
	st.wait()
	if err := out.flush(); err != nil {
		return err
	}
	return recvErr
}

// Finished events are held back a little while the executor has tasks
// waiting for a slot, and then sent together: the Manager learns of several
// ends with one wake-up of its receiving goroutines, and answers with the
// tasks they free, together too. While tasks wait, holding an end back
// delays no work here; when few or none wait, every event goes out at once
// (a chain of tasks waits for each end), as does every event that is not a
// Finished one.
const (
	holdFinished    = 5 * time.Millisecond // at most this long
	holdFinishedMax = 32                   // events held at most
	holdWhileWaits  = 2                    // tasks waiting for a slot, at least
)

// eventSender sends a stream's events: the tasks' goroutines call send
// themselves, one at a time (a goroutine in between cost a hand-off per
// event). After a failed send the stream is done: every task is cancelled
// and later events are dropped.
type eventSender struct {
	stream wizrpc.Executor_ExecuteServer
	slots  *slotPool
	cancel func()
	// spill takes the events this stream could not send (orphan mode:
	// they are held for the stream that attaches their task next).
	spill func(*wizrpc.ExecuteEvent)

	mu    sync.Mutex
	held  []*wizrpc.ExecuteEvent
	timer *time.Timer // flushes held events; armed while there are some
	err   error
}

func (o *eventSender) send(ev *wizrpc.ExecuteEvent) {
	o.mu.Lock()
	if o.err != nil {
		o.mu.Unlock()
		o.spill(ev)
		return
	}
	defer o.mu.Unlock()
	o.held = append(o.held, ev)
	if _, fin := ev.Event.(*wizrpc.ExecuteEvent_Finished); fin && len(o.held) < holdFinishedMax && o.slots.waiting() >= holdWhileWaits {
		if len(o.held) == 1 {
			if o.timer == nil {
				o.timer = time.AfterFunc(holdFinished, func() { _ = o.flush() })
			} else {
				o.timer.Reset(holdFinished)
			}
		}
		return
	}
	o.flushLocked()
}

// flush sends the held events; it returns the error that ended the stream.
func (o *eventSender) flush() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.flushLocked()
	return o.err
}

func (o *eventSender) flushLocked() {
	if o.timer != nil && len(o.held) > 0 {
		o.timer.Stop()
	}
	var unsent []*wizrpc.ExecuteEvent
	for i, ev := range o.held {
		o.held[i] = nil
		if o.err != nil {
			unsent = append(unsent, ev)
			continue
		}
		if err := o.stream.Send(ev); err != nil {
			o.err = err
			o.cancel()
			unsent = append(unsent, ev)
		}
	}
	o.held = o.held[:0]
	if len(unsent) > 0 {
		// Not under o.mu: a spilled event may go on to another stream.
		o.mu.Unlock()
		for _, ev := range unsent {
			o.spill(ev)
		}
		o.mu.Lock()
	}
}

// failed reports whether a send failed: the stream is broken.
func (o *eventSender) failed() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err != nil
}

// stop ends the timer; call it once the stream's tasks are done.
func (o *eventSender) stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.timer != nil {
		o.timer.Stop()
	}
}

// runTask runs one task when a slot is free and reports its events. It always
// ends with a Finished event. A native task takes its slot only to run its
// program (runNative); a data task for all its work.
func (s *Server) runTask(ctx context.Context, t *wizrpc.Task, emit func(*wizrpc.ExecuteEvent)) {
	if t.Kind == wizrpc.TypeKind_TYPE_KIND_NATIVE {
		// The hot path: a cached plan needs no pack at all.
		plan, err := s.plan(ctx, t)
		if err != nil {
			emit(finished(wizrpc.Outcome_OUTCOME_FAILED, 0, err.Error(), false))
			return
		}
		s.runNative(ctx, t, plan, emit)
		return
	}
	e, err := s.pack(t.Pack)
	if err != nil {
		emit(finished(wizrpc.Outcome_OUTCOME_FAILED, 0, err.Error(), false))
		return
	}
	switch e.kinds[typeName(t.Type)] {
	case wizrpc.TypeKind_TYPE_KIND_NATIVE:
		plan, err := s.plan(ctx, t)
		if err != nil {
			emit(finished(wizrpc.Outcome_OUTCOME_FAILED, 0, err.Error(), false))
			return
		}
		s.runNative(ctx, t, plan, emit)
	case wizrpc.TypeKind_TYPE_KIND_DATA:
		ctx, release, stop, ok := s.takeSlot(ctx, t)
		if !ok {
			emit(finished(wizrpc.Outcome_OUTCOME_CANCELLED, 0, cause(ctx), false))
			return
		}
		defer stop()
		defer release()
		s.runData(ctx, t, e.pack, emit)
	default:
		emit(finished(wizrpc.Outcome_OUTCOME_FAILED, 0, fmt.Sprintf("pack %s@%s has no processor type %q", t.Pack.Name, t.Pack.Version, t.Type), false))
	}
}

// takeSlot waits for a slot; ok is false when ctx ended first. The task's
// timeout starts once it has its slot: the returned ctx carries it. release
// gives the slot back (once, however often it is called); stop ends the
// timeout's context, after the task is done with ctx.
func (s *Server) takeSlot(ctx context.Context, t *wizrpc.Task) (_ context.Context, release, stop func(), ok bool) {
	if !s.slots.acquire(ctx) {
		return ctx, func() {}, func() {}, false
	}
	release = sync.OnceFunc(s.slots.release)
	if t.TimeoutNs <= 0 {
		return ctx, release, func() {}, true
	}
	ctx, cancel := context.WithTimeoutCause(ctx, durationNs(t.TimeoutNs), fmt.Errorf("timed out after %s", durationNs(t.TimeoutNs)))
	return ctx, release, cancel, true
}

func finished(o wizrpc.Outcome, code int32, msg string, started bool) *wizrpc.ExecuteEvent {
	return &wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Finished{Finished: &wizrpc.Finished{
		Outcome: o, ExitCode: code, Error: msg, Started: started,
	}}}
}

// cause says why ctx ended, in words for the user.
func cause(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil {
		return c.Error()
	}
	return "cancelled"
}

// outcomeOf classifies a task that ended because its context did.
func outcomeOf(ctx context.Context) wizrpc.Outcome {
	if errors.Is(context.Cause(ctx), errCancelled) || errors.Is(context.Cause(ctx), context.Canceled) {
		return wizrpc.Outcome_OUTCOME_CANCELLED
	}
	return wizrpc.Outcome_OUTCOME_FAILED // timed out
}

func dataSize(m map[string]*wizpb.Data) int64 {
	var n int64
	for _, d := range m {
		n += int64(len(d.GetInline()))
		for _, f := range d.GetFiles() {
			n += f.Size
		}
	}
	return n
}
