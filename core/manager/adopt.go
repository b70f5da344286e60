package manager

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// OrphanTimeout is how long the executors of a service Manager keep
// running their tasks after it is killed, for the next start to adopt them
// (shared/DESIGN.md: process lifetimes).
var OrphanTimeout = 60 * time.Second

// adopt takes over, for a continued run, the executor under key that the
// killed Manager provisioned, and re-attaches the tasks it holds for the
// run's processors: they are collected, not run again. It returns nil when
// there is none to adopt or it cannot be (the backend cannot adopt, the
// executor is gone): then the executor is provisioned anew and the
// processors that were Running run again. (A dead executor's leftover task
// processes are then killed for the whole run, also those of another
// executor of the run that was adopted: runs with two executor backends,
// one of which cannot adopt, are not handled finely.)
func (r *run) adopt(ctx context.Context, key string, req ProvisionRequest) Executor {
	a, ok := r.m.backends.(Adopter)
	if r.prev == nil || !ok {
		return nil
	}
	var use *wizpb.ExecutorUse
	for _, u := range r.rec.Executors {
		if u.Key == key && u.ExecutorId != "" {
			use = u
		}
	}
	if use == nil {
		return nil
	}
	// The task of each processor that had not Succeeded and may have been
	// sent: a Running one's recorded attempt, and for the others the
	// attempt after their recorded ones (sent before its Running record
	// was committed, or queued at the executor). The executor says which
	// it holds; the rest run as usual.
	ids := []string{}
	idx := map[string]int{}
	attempt := map[string]int32{}
	for i, pr := range r.procs {
		if pr.exec != key || pr.reused || pr.child != nil {
			continue
		}
		a := pr.carried + 1
		if old := r.prev[pr.rec.Name]; old != nil && old.Item == pr.rec.Item && old.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING {
			a = old.Attempts
		}
		id := r.rec.Id + "/" + pr.rec.Name + "/" + strconv.Itoa(int(a))
		ids = append(ids, id)
		idx[id], attempt[id] = i, a
	}
	ex, err := a.Adopt(ctx, req, use.ExecutorId, ids)
	if err != nil {
		// Its tasks run again: what the dead executor left of them on
		// this machine goes first.
		r.m.killLeftovers(r.rec.Id)
		r.m.log.Warn("could not re-attach the executor of a continued run; its tasks run again", "run", r.rec.Id, "executor", use.ExecutorId, "error", err)
		r.event("", "warning", fmt.Sprintf("could not re-attach %s executor %s (%v); the processors that were Running run again", use.Backend, use.ExecutorId, err))
		return nil
	}
	for id, i := range idx {
		pr := r.procs[i]
		pr.attached, pr.taskID, pr.queued = id, id, true
		pr.rec.Attempts = attempt[id]
		r.tasks[id] = i
		r.m.tasks.queued.Add(1)
	}
	r.rec.Reattached += int32(len(ids)) // less those it does not hold (handle)
	r.event("", "state", fmt.Sprintf("re-attached %s; asked it for the %d tasks that may have been sent to it", ex.Name(), len(ids)))
	r.m.log.Info("re-attached an executor of a continued run", "run", r.rec.Id, "executor", ex.Name(), "tasks", len(ids))
	return ex
}

// releaseUnadopted ends the executors the killed Manager provisioned for
// this run that the continued run did not adopt (it needs none of their
// tasks: they all ended). Without this they would wait out their orphan
// timeout.
func (r *run) releaseUnadopted(old []*wizpb.ExecutorUse) {
	if r.prev == nil {
		return
	}
	for _, use := range old {
		if r.execs[use.Key] != nil {
			continue
		}
		var cfg []byte
		for _, pr := range r.procs {
			if pr.exec == use.Key {
				cfg = pr.excfg
			}
		}
		r.m.release(r.rec.Id, use, cfg)
	}
}

// release ends an executor that a killed service Manager provisioned for
// run runID and that no run adopts: adopted with no task named, it cancels
// the tasks it holds; then it is torn down. In the background: WaitExecutors
// waits for it. Nothing happens when the backends cannot adopt or the
// executor is gone.
func (m *Manager) release(runID string, use *wizpb.ExecutorUse, cfg []byte) {
	a, ok := m.backends.(Adopter)
	if !ok || use.ExecutorId == "" {
		return
	}
	req := ProvisionRequest{Backend: use.Backend, Config: cfg, RunID: runID, BlobDir: m.blobs.Dir(), CacheDir: m.cacheDir, TaskDir: m.taskDir}
	m.teardowns.Add(1)
	go func() { // owned by the Manager: WaitExecutors waits for it
		defer m.teardowns.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ex, err := a.Adopt(ctx, req, use.ExecutorId, []string{})
		if err != nil {
			return // gone already
		}
		go func() { // drains its events until Close ends them
			for range ex.Events() {
			}
		}()
		if err := ex.Close(ctx); err != nil {
			m.log.Warn("tear down an executor a stopped daemon left", "run", runID, "executor", use.ExecutorId, "error", err)
		}
	}()
}
