package manager

import (
	"fmt"
	"time"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// GCRequest says which runs gc deletes: those beyond the newest KeepLast, or
// those that ended more than OlderThan ago. Runs that have not ended are
// never deleted.
type GCRequest struct {
	KeepLast  int
	OlderThan time.Duration
	DryRun    bool // say what would go; delete nothing
}

// GCResult says what gc deleted (or, for a dry run, would delete).
type GCResult struct {
	Runs    int   // runs deleted
	Kept    int   // runs kept by the policy
	Skipped int   // runs the policy selects that have not ended
	Blobs   int64 // blobs deleted
	Bytes   int64 // bytes freed, blobs and stray temp files
	// Swept is false when blobs were left alone because runs or uploads were
	// in progress: they may be writing blobs no record names yet.
	Swept bool
}

// GC deletes runs beyond the policy with their processors, events and logs,
// then every blob that nothing left refers to. The blob sweep runs only when
// no run or upload is in progress in this Manager; otherwise runs are deleted
// and the result says the blobs were not swept.
func (m *Manager) GC(req GCRequest) (*GCResult, error) {
	if req.KeepLast < 0 || req.OlderThan < 0 || req.KeepLast == 0 && req.OlderThan == 0 {
		return nil, fmt.Errorf("%w: gc needs a policy: --keep-last N or --older-than AGE (e.g. 30d)", ErrUsage)
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
	cutoff := time.Now().Add(-req.OlderThan)
	doomed := map[string]bool{}
	for i, r := range runs {
		old := req.KeepLast > 0 && i >= req.KeepLast
		if req.OlderThan > 0 {
			end := r.Ended
			if end == nil {
				end = r.Started
			}
			old = end != nil && end.AsTime().Before(cutoff)
		}
		m.doom(r, old, active, doomed, res)
	}
	return res, m.sweep(runs, doomed, req.DryRun, res)
}

// activeSet returns the IDs of the runs that have not ended.
func (m *Manager) activeSet() (map[string]bool, error) {
	ids, err := m.store.ActiveRuns()
	if err != nil {
		return nil, err
	}
	active := make(map[string]bool, len(ids))
	for _, id := range ids {
		active[id] = true
	}
	return active, nil
}

// doom adds r to doomed when a policy found it old and it has ended, and
// counts it in res.
func (m *Manager) doom(r *wizpb.Run, old bool, active, doomed map[string]bool, res *GCResult) {
	switch {
	case !old:
		res.Kept++
	case active[r.Id] || r.State == wizpb.RunState_RUN_STATE_RUNNING || m.liveRun(r.Id) != nil:
		res.Skipped++
	default:
		doomed[r.Id] = true
		res.Runs++
	}
}

// sweep deletes the doomed runs (unless dryRun), then the blobs nothing
// left refers to, counting them in res.
func (m *Manager) sweep(runs []*wizpb.Run, doomed map[string]bool, dryRun bool, res *GCResult) error {
	if !dryRun {
		for _, r := range runs {
			if doomed[r.Id] {
				if err := m.store.DeleteRun(r.Id); err != nil {
					return fmt.Errorf("gc: %w", err)
				}
			}
		}
	}
	// Runs and uploads hold gcMu for reading while they may write blobs.
	if !m.gcMu.TryLock() {
		return nil
	}
	defer m.gcMu.Unlock()
	res.Swept = true
	refs := map[string]bool{}
	if dryRun {
		// Nothing was deleted: what the kept runs refer to.
		for _, r := range runs {
			if doomed[r.Id] {
				continue
			}
			if err := m.runRefs(r, refs); err != nil {
				return err
			}
		}
		// Cache entries keep their outputs' blobs (store.BlobRefs).
		err := m.store.CacheEntries(func(e *wizpb.CacheEntry) bool {
			for _, d := range e.Outputs {
				for _, f := range d.Files {
					refs[f.Digest] = true
				}
			}
			return true
		})
		if err != nil {
			return err
		}
	} else if err := m.store.BlobRefs(func(d string) { refs[d] = true }); err != nil {
		return err
	}
	err := m.blobs.Walk(func(digest string, size int64) error {
		if refs[digest] {
			return nil
		}
		if !dryRun {
			if err := m.blobs.Remove(digest); err != nil {
				return err
			}
		}
		res.Blobs++
		res.Bytes += size
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	if !dryRun {
		tmp, err := m.blobs.RemoveTemp()
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		res.Bytes += tmp
		m.store.Compact()
	}
	return nil
}

// runRefs adds the blobs a run's inputs and outputs refer to.
func (m *Manager) runRefs(r *wizpb.Run, refs map[string]bool) error {
	for _, d := range r.Inputs {
		for _, f := range d.Files {
			refs[f.Digest] = true
		}
	}
	procs, err := m.store.Processors(r.Id)
	if err != nil {
		return err
	}
	for _, p := range procs {
		for _, d := range p.Outputs {
			for _, f := range d.Files {
				refs[f.Digest] = true
			}
		}
	}
	return nil
}

// HoldBlobs keeps gc from sweeping blobs until the returned func is called:
// for a write of blobs that no record names yet (a client's upload).
func (m *Manager) HoldBlobs() (release func()) {
	m.gcMu.RLock()
	return m.gcMu.RUnlock
}
