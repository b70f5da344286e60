package manager

// This file records a run: its processors' states, events and end in the
// store, and the updates its watchers see; and tears its executors down.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wiz-run/wiz/core/ids"
	"google.golang.org/protobuf/types/known/timestamppb"

	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/core/scheduler"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// watchReq asks a run's goroutine to add a watcher.
type watchReq struct {
	q    *Queue
	snap chan []Update // receives the run's state at registration
}

// addWatcher registers a watcher with a snapshot of the run taken at the
// same moment, on the goroutine that makes every change.
func (r *run) addWatcher(req watchReq) {
	snap := []Update{{Run: proto.Clone(r.rec).(*wizpb.Run)}}
	for _, pr := range r.procs {
		if pr.rec.State != wizpb.ProcessorState_PROCESSOR_STATE_IDLE {
			snap = append(snap, Update{Processor: proto.Clone(pr.rec).(*wizpb.ProcessorRun)})
		}
	}
	r.live.mu.Lock()
	r.live.watchers[req.q] = true
	r.live.mu.Unlock()
	req.snap <- snap
}

func (r *run) notify(u Update) {
	if r.watch != nil {
		r.watch(u)
	}
	if r.live != nil {
		r.live.publish(u)
	}
}

// event records an event of the run: its start and end, and what is worth
// a line in its history — failures, retries, warnings. Routine processor
// state changes live in the processor records, not here, so that a
// 10,000-processor run does not write 20,000 events.
func (r *run) event(processor, kind, msg string) {
	_ = r.w.Batch().PutEvent(&wizpb.Event{
		Id: ids.NewString(), RunId: r.rec.Id, Processor: processor, Kind: kind, Message: msg, Time: timestamppb.Now(),
	})
}

// finish records how the run ended.
func (r *run) finish(res scheduler.Result, reason string) error {
	r.rec.Ended = timestamppb.Now()
	defer func() {
		r.m.obs.RunEnded(r.p.Name, r.rec.State)
		r.m.pokeRetention()
	}()
	if res == scheduler.RunSucceeded {
		r.rec.State = wizpb.RunState_RUN_STATE_SUCCEEDED
		r.rec.Reason = r.skipped
		var blocked []string
		for i, pr := range r.procs {
			if r.sched != nil && r.sched.Blocked(i) {
				blocked = append(blocked, pr.node.Name)
			}
		}
		if len(blocked) > 0 {
			r.rec.Reason = "not run, needing a failed processor: " + strings.Join(blocked, ", ")
		}
	} else {
		r.rec.State = wizpb.RunState_RUN_STATE_FAILED
		if reason == "" {
			reason = "failed"
		}
		r.rec.Reason = reason
	}
	end := "Succeeded"
	if r.rec.State == wizpb.RunState_RUN_STATE_FAILED {
		end = "Failed: " + r.rec.Reason
	}
	r.event("", "state", end)
	us := make([]uint64, len(r.p.Processors)) // instances are weighed with their processor
	for i, pr := range r.procs[:len(us)] {
		if pr.rec.Started != nil && pr.rec.Ended != nil {
			us[i] = uint64(max(pr.rec.Ended.AsTime().Sub(pr.rec.Started.AsTime()).Microseconds(), 0)) + 1
		}
	}
	r.w.Batch().PutDurations(r.rec.Id, us)
	if err := r.w.Batch().PutRun(r.rec); err != nil {
		return err
	}
	r.w.Batch().DeleteActive(r.rec.Id)
	r.w.Flush(true)
	if err := r.w.Err(); err != nil && (r.w.FinalErr() != nil || !r.storeFailed) {
		// The run's end is not recorded, or it is and does not say why
		// records before it are missing.
		return fmt.Errorf("record run %s: %w", r.rec.Id, err)
	}
	if err := r.m.store.Sync(); err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	r.notify(Update{Run: r.rec})
	return nil
}

// suspend leaves the run Running (Manager.SuspendAll): what it recorded is
// committed and synced, its sub-pipeline runs are suspended with it (their
// contexts carry the same cause), and its executors are torn down as the
// loop returns, which stops its tasks. The processors that were Running stay
// so, for ContinueRuns to run again.
func (r *run) suspend() error {
	for r.children > 0 {
		if ev := <-r.childEvents; ev.Kind == EventFinished && ev.Started {
			r.childEnded()
		}
	}
	r.suspended = true
	r.rec.Reason = ErrSuspended.Error() // says why it is Running with no Manager; cleared when continued
	r.rec.Executors = nil               // torn down as the loop returns: nothing to adopt
	if err := r.w.Batch().PutRun(r.rec); err != nil {
		return err
	}
	r.event("", "state", "Running: left for the next start of the daemon, which continues it")
	r.w.Flush(true)
	if err := r.w.Err(); err != nil {
		return fmt.Errorf("record run %s: %w", r.rec.Id, err)
	}
	if err := r.m.store.Sync(); err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	return ErrSuspended
}

// tearDown closes an ended run's executors in the background, so that the
// run's caller has its result without waiting for them: a CLI closes its
// store meanwhile. WaitExecutors waits for every teardown.
func (m *Manager) tearDown(r *run) {
	m.teardowns.Add(1)
	go func() {
		defer m.teardowns.Done()
		r.closeExecutors()
	}()
}

// WaitExecutors waits until the executors of every ended run are torn down
// (and what a dead executor left behind is killed). Call it before stopping
// the executor backends.
func (m *Manager) WaitExecutors() { m.teardowns.Wait() }

func (r *run) closeExecutors() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, ex := range r.execs {
		if err := ex.Close(ctx); err != nil {
			r.m.log.Warn("tear down executor", "executor", name, "error", err)
		}
		delete(r.execs, name)
	}
	// An executor that died mid-task could not kill its tasks' processes.
	r.m.killLeftovers(r.rec.Id)
}

func keys(m map[string]*wizpb.Data) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	if len(ks) == 0 {
		return "no outputs"
	}
	return strings.Join(ks, ", ")
}
