package manager

import (
	"context"
	"errors"
	"time"

	"github.com/wiz-run/wiz/core/pipeline"
)

// retentionEvery is how often a service process applies retention besides
// after each run: ages pass without runs ending.
const retentionEvery = 10 * time.Minute

// Retain deletes, per pipeline, the top-level runs beyond its retention
// (its newest version's `retention:`, else def) with their sub-pipeline
// runs, logs and events, then the blobs nothing refers to. Runs that have
// not ended are kept. A zero def keeps the runs of pipelines without one.
func (m *Manager) Retain(def pipeline.Retention) (*GCResult, error) {
	pls, err := m.store.Pipelines()
	if err != nil {
		return nil, err
	}
	policy := map[string]pipeline.Retention{}
	for _, pl := range pls {
		pol := def
		if p, err := m.latestParsed(pl); err == nil && p.Retention != nil {
			pol = *p.Retention
		}
		policy[pl.Name] = pol
	}
	runs, err := m.store.Runs(0) // newest first
	if err != nil {
		return nil, err
	}
	active, err := m.activeSet()
	if err != nil {
		return nil, err
	}
	res := &GCResult{}
	now := m.clock.Now()
	seen := map[string]int{} // top-level runs of each pipeline so far
	doomed := map[string]bool{}
	for _, r := range runs {
		if r.Parent != "" {
			continue // goes with its parent
		}
		pol := policy[r.PipelineName]
		seen[r.PipelineName]++
		old := pol.Runs > 0 && seen[r.PipelineName] > pol.Runs
		if pol.Age > 0 && r.Ended != nil && now.Sub(r.Ended.AsTime()) > pol.Age {
			old = true
		}
		m.doom(r, old, active, doomed, res)
	}
	// A sub-pipeline run goes with its parent, at any depth (children are
	// newer than their parents: walk oldest first).
	for i := len(runs) - 1; i >= 0; i-- {
		if r := runs[i]; r.Parent != "" && doomed[r.Parent] && !active[r.Id] {
			doomed[r.Id] = true
		}
	}
	if res.Runs == 0 {
		return res, nil
	}
	return res, m.sweep(runs, doomed, false, res)
}

// ServeRetention applies retention (Retain with def) after runs end, and
// every retentionEvery, until ctx is done; it returns a function that waits
// for it to stop. Only a service process calls it.
func (m *Manager) ServeRetention(ctx context.Context, def pipeline.Retention) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if res, err := m.Retain(def); err != nil {
				if !errors.Is(err, context.Canceled) {
					m.log.Error("retention", "error", err)
				}
			} else if res.Runs > 0 {
				m.log.Info("retention: deleted old runs", "runs", res.Runs, "blobs", res.Blobs, "bytes", res.Bytes, "swept", res.Swept)
			}
			select {
			case <-ctx.Done():
				return
			case <-m.retainPoke:
			case <-m.clock.After(retentionEvery):
			}
		}
	}()
	return func() { <-done }
}

// pokeRetention wakes the retention loop (a run ended).
func (m *Manager) pokeRetention() {
	select {
	case m.retainPoke <- struct{}{}:
	default:
	}
}
