package manager

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// ContinueRuns carries on, in this Manager, the runs an earlier service
// Manager left Running (it was killed, crashed, or the machine was lost):
// each keeps its ID, the processors that Succeeded keep their outputs, and
// the rest run, those that were Running again, as their next attempt
// (at-least-once). A sub-pipeline run is continued by its parent, in place,
// when the parent dispatches its processor again. An executor the run
// recorded that still runs (it outlives a killed Manager for its orphan
// timeout) is adopted and its tasks re-attached: they are collected, not
// run again (adopt.go). Otherwise the task processes the earlier Manager's
// executors left on this machine are killed first.
//
// It is for a service Manager made with Config.Continue, after Recover; the
// store's lock makes it the only Manager that continues them. It returns the
// IDs of the runs it continues, which run on goroutines until they end or
// ctx is done; wait waits for them.
func (m *Manager) ContinueRuns(ctx context.Context) (ids []string, wait func(), err error) {
	var wg sync.WaitGroup
	if !m.continues || m.store.ReadOnly() {
		return nil, wg.Wait, nil
	}
	active, err := m.store.ActiveRuns()
	if err != nil {
		return nil, wg.Wait, fmt.Errorf("find unfinished runs: %w", err)
	}
	var tops []*wizpb.Run
	for _, id := range active {
		r, err := m.store.Run(id)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			return nil, wg.Wait, err
		}
		if r.State != wizpb.RunState_RUN_STATE_RUNNING || r.OwnerBoot == m.boot {
			continue
		}
		if r.Parent != "" {
			// Its parent continues it; one whose parent has ended is settled.
			if p, err := m.store.Run(r.Parent); err == nil && p.State == wizpb.RunState_RUN_STATE_RUNNING {
				continue
			}
			if err := m.settle(r, fmt.Sprintf("%s: its parent run %s had ended", ReasonManagerExited, r.Parent)); err != nil {
				return nil, wg.Wait, err
			}
			continue
		}
		tops = append(tops, r)
	}
	for _, rec := range tops {
		if _, ok := m.backends.(Adopter); !ok || len(rec.Executors) == 0 {
			m.killLeftoversUnder(rec.Id)
		} // else its executors may still run its tasks: the run adopts them (adopt.go)
		release := m.HoldBlobs()
		r, err := m.beginContinued(ctx, rec)
		if err != nil {
			release()
			// A run that cannot start again (its pipeline version or a
			// plugin it needs is gone) is settled, with the reason.
			m.log.Error("continue a run", "run", rec.Id, "error", err)
			m.settleLeft(rec.Id, fmt.Sprintf("%s: a restarted daemon could not continue it: %v; fix that, then `wiz runs resume %s`", ReasonManagerExited, err, rec.Id))
			continue
		}
		ids = append(ids, rec.Id)
		wg.Add(1)
		go func() { // owned by the caller, through wait
			defer wg.Done()
			defer release()
			if _, err := r.toEnd(); err != nil && !errors.Is(err, ErrSuspended) {
				m.log.Error("continued run", "run", rec.Id, "error", err)
			}
			// Sub-pipeline runs it did not continue are settled (not when
			// it was left for the next start again).
			if !r.suspended {
				m.settleLeft(rec.Id, "")
			}
		}()
	}
	return ids, wg.Wait, nil
}

// beginContinued begins run rec again, live in this Manager.
func (m *Manager) beginContinued(ctx context.Context, rec *wizpb.Run) (*run, error) {
	m.log.Info("continuing a run its manager left running", "run", rec.Id, "pipeline", rec.PipelineName)
	prev, err := m.store.Processors(rec.Id)
	if err != nil {
		return nil, err
	}
	a, err := m.pinned(rec.PipelineId+"/"+rec.PipelineVersionId, nil)
	if err != nil {
		return nil, err
	}
	return m.begin(ctx, a, rec.Inputs, succeeded(prev), rec.ResumedFrom, RunRequest{cont: rec, prev: prev}, nil)
}

// settleLeft settles run id (unless reason is "") and the sub-pipeline runs
// under it that are still Running for an earlier Manager (none, once a
// continued run has ended, unless a child was never dispatched again).
func (m *Manager) settleLeft(id, reason string) {
	r, err := m.store.Run(id)
	if err != nil {
		return
	}
	if r.State == wizpb.RunState_RUN_STATE_RUNNING && r.OwnerBoot != m.boot && reason != "" {
		if err := m.settle(r, reason); err != nil {
			m.log.Error("settle a run", "run", id, "error", err)
		}
	}
	procs, err := m.store.Processors(id)
	if err != nil {
		return
	}
	for _, p := range procs {
		if p.ChildRun != "" {
			m.settleLeft(p.ChildRun, fmt.Sprintf("%s: its parent run %s ended without continuing it", ReasonManagerExited, id))
		}
	}
}

// killLeftoversUnder kills the task processes left for run id and the
// sub-pipeline runs under it.
func (m *Manager) killLeftoversUnder(id string) {
	m.killLeftovers(id)
	procs, err := m.store.Processors(id)
	if err != nil {
		return
	}
	for _, p := range procs {
		if p.ChildRun != "" {
			m.killLeftoversUnder(p.ChildRun)
		}
	}
}
