package executorserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// errCancelled marks a task cancelled by the Manager.
var errCancelled = errors.New("cancelled")

// Execute implements wizrpc.ExecutorServer: tasks and cancels come in on one
// long-lived stream; events go out on it. Up to Slots tasks run at once; the
// rest wait for a slot, so the Manager can send tasks ahead of free slots.
// When the stream ends, every task it carried is cancelled.
func (s *Server) Execute(stream wizrpc.Executor_ExecuteServer) error {
	ctx, cancelAll := context.WithCancel(stream.Context())
	defer cancelAll()

	out := make(chan *wizrpc.ExecuteEvent, 256)
	sendErr := make(chan error, 1)
	go func() { // the only goroutine that sends on the stream
		for ev := range out {
			if err := stream.Send(ev); err != nil {
				sendErr <- err
				cancelAll()
				for range out { // drain so task goroutines never block
				}
				return
			}
		}
		sendErr <- nil
	}()

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		cancels = map[string]context.CancelCauseFunc{}
	)
	var recvErr error
	for {
		req, err := stream.Recv()
		if err != nil {
			if err != io.EOF {
				recvErr = err
			}
			break
		}
		switch m := req.Msg.(type) {
		case *wizrpc.ExecuteRequest_Task:
			t := m.Task
			tctx, cancel := context.WithCancelCause(ctx)
			mu.Lock()
			cancels[t.Id] = cancel
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.runTask(tctx, t, func(ev *wizrpc.ExecuteEvent) { ev.TaskId = t.Id; out <- ev })
				mu.Lock()
				delete(cancels, t.Id)
				mu.Unlock()
				cancel(nil)
			}()
		case *wizrpc.ExecuteRequest_Cancel:
			mu.Lock()
			if c := cancels[m.Cancel.TaskId]; c != nil {
				if r := m.Cancel.Reason; r == "" || r == errCancelled.Error() {
					c(errCancelled)
				} else {
					c(fmt.Errorf("%w: %s", errCancelled, r))
				}
			}
			mu.Unlock()
		case *wizrpc.ExecuteRequest_SetSlots:
			s.slots.resize(int(m.SetSlots.Slots))
			s.log.Debug("slots changed", "slots", m.SetSlots.Slots)
		}
	}
	cancelAll()
	wg.Wait()
	close(out)
	if err := <-sendErr; err != nil {
		return err
	}
	return recvErr
}

// runTask waits for a slot, runs one task and reports its events. It always
// ends with a Finished event.
func (s *Server) runTask(ctx context.Context, t *wizrpc.Task, emit func(*wizrpc.ExecuteEvent)) {
	if !s.slots.acquire(ctx) {
		emit(finished(wizrpc.Outcome_OUTCOME_CANCELLED, 0, cause(ctx), false))
		return
	}
	defer s.slots.release()
	if t.TimeoutNs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, durationNs(t.TimeoutNs), fmt.Errorf("timed out after %s", durationNs(t.TimeoutNs)))
		defer cancel()
	}
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
		s.runData(ctx, t, e.pack, emit)
	default:
		emit(finished(wizrpc.Outcome_OUTCOME_FAILED, 0, fmt.Sprintf("pack %s@%s has no processor type %q", t.Pack.Name, t.Pack.Version, t.Type), false))
	}
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
