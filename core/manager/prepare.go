package manager

// This file prepares a run: what it reuses from earlier runs, how each
// processor is weighed for priority, the packs, configs and executors it
// needs, and the pipeline's own when and env.

import (
	"cmp"
	"fmt"
	"math"

	"github.com/wiz-run/wiz/core/expr"

	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// reusable returns the processors of a run that Succeeded, by name, but its
// finally processors: a resumed run runs its finally processors again.
func (m *Manager) reusable(runID string) (map[string]*wizpb.ProcessorRun, error) {
	procs, err := m.store.Processors(runID)
	if err != nil {
		return nil, err
	}
	return succeeded(procs), nil
}

// succeeded returns the records of procs whose outputs a new attempt at
// the run reuses: those that Succeeded, finally processors excepted.
func succeeded(procs map[string]*wizpb.ProcessorRun) map[string]*wizpb.ProcessorRun {
	out := map[string]*wizpb.ProcessorRun{}
	for name, pr := range procs {
		if pr.State == wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED && !pr.Finally {
			out[name] = pr
		}
	}
	return out
}

// carry counts on the attempts a processor of a continued run made before
// (ContinueRuns): the next one is the one after them.
func (r *run) carry(pr *proc) {
	if old := r.prev[pr.rec.Name]; old != nil && !pr.reused && old.Item == pr.rec.Item {
		pr.carried, pr.rec.Attempts = old.Attempts, old.Attempts
	}
}

// reusedRec is the record of a processor of run runID that reuses old's
// outputs. ReusedFrom names the run where they were made; a run continued in
// place (ContinueRuns) keeps its own records as they were.
func reusedRec(old *wizpb.ProcessorRun, runID string) *wizpb.ProcessorRun {
	rec := proto.Clone(old).(*wizpb.ProcessorRun)
	if old.RunId == runID {
		return rec
	}
	rec.RunId, rec.ReusedFrom, rec.CachedFrom = runID, cmp.Or(old.ReusedFrom, old.RunId), ""
	return rec
}

// latestRun returns the newest run of a pipeline version, or nil.
func (m *Manager) latestRun(versionID string) (*wizpb.Run, error) {
	runs, err := m.store.Runs(0)
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if r.PipelineVersionId == versionID {
			return r, nil
		}
	}
	return nil, nil
}

// durations returns how long each processor took, in microseconds, in the
// newest earlier run of a pipeline version that has ended (among the last
// 100 runs), or nil.
func (m *Manager) durations(p *pipeline.Pipeline, versionID, except string) []int {
	runs, err := m.store.Runs(100)
	if err != nil {
		return nil
	}
	out := make([]int, len(p.Processors))
	for _, r := range runs {
		if r.PipelineVersionId != versionID || r.Id == except || r.State == wizpb.RunState_RUN_STATE_RUNNING {
			continue
		}
		// Packed by the run's end, in file order (the version is the same file).
		if us, ok, err := m.store.Durations(r.Id); err == nil && ok && len(us) == len(out) {
			for i, d := range us {
				out[i] = int(min(d, math.MaxInt32))
			}
			return out
		}
		procs, err := m.store.Processors(r.Id) // recorded by an older wiz
		if err != nil {
			return nil
		}
		for name, rec := range procs {
			if n, ok := p.Node(name); ok && rec.Started != nil && rec.Ended != nil {
				out[n.ID()] = int(rec.Ended.AsTime().Sub(rec.Started.AsTime()).Microseconds()) + 1
			}
		}
		return out
	}
	return nil
}

// downstream returns n and every processor that depends on it.
func downstream(p *pipeline.Pipeline, n *pipeline.ProcessorNode) []*pipeline.ProcessorNode {
	seen := map[int64]bool{n.ID(): true}
	out := []*pipeline.ProcessorNode{n}
	for i := 0; i < len(out); i++ {
		succ := p.Graph.From(out[i].ID())
		for succ.Next() {
			id := succ.Node().ID()
			if !seen[id] {
				seen[id] = true
				out = append(out, p.Processors[id])
			}
		}
	}
	return out
}

// exprRun is the run as expressions see it.
func (r *run) exprRun() *expr.Run {
	return &expr.Run{ID: r.rec.Id, Pipeline: r.p.Name, Trigger: r.rec.Trigger, ScheduledTime: r.rec.ScheduledTime.AsTime()}
}

// prepare resolves packs and configs, evaluates the pipeline's when and env,
// and records which plugins the run uses.
func (r *run) prepare() error {
	var err error
	if r.exprInputs, err = exprInputs(r.p, r.rec.Inputs); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	vars := &expr.Vars{Inputs: r.exprInputs, Run: r.exprRun()}
	if w := r.p.When; w != nil {
		ok, err := w.Prog.EvalBool(vars)
		if err != nil {
			return fmt.Errorf("%w: %s: pipeline when: %v", ErrUsage, w.Pos, err)
		}
		if !ok {
			r.skipped = "skipped: " + w.Src
		}
	}
	if r.env, err = r.p.RenderEnv(vars); err != nil {
		return fmt.Errorf("%w: pipeline %s: %v", ErrUsage, r.p.Name, err)
	}
	seen := map[string]bool{}
	for _, n := range r.p.Processors {
		if n.Child != nil {
			// A sub-pipeline: the Manager runs it; no pack, no executor.
			pr := &proc{node: n, child: r.kids[n.Name], outputs: map[string]*wizpb.Data{},
				rec: &wizpb.ProcessorRun{RunId: r.rec.Id, Name: n.Name, Type: n.Uses, Finally: n.Finally}}
			if n.Templates == nil { // its with: the child's inputs
				rd, err := n.Render(nil)
				if err != nil {
					return fmt.Errorf("%s: processor %s: with: %w", n.Pos, n.Name, err)
				}
				pr.config = rd.Config
			}
			if pr.child == nil {
				return fmt.Errorf("%s: processor %s: sub-pipeline %s was not resolved", n.Pos, n.Name, n.Uses)
			}
			if old := r.reuse[n.Name]; old != nil {
				pr.rec = reusedRec(old, r.rec.Id)
				pr.outputs, pr.reused = pr.rec.Outputs, true
				if err := r.w.Batch().PutProcessor(pr.rec); err != nil {
					return err
				}
			}
			r.carry(pr)
			r.procs = append(r.procs, pr)
			continue
		}
		ref, native, err := r.m.catalog.Pack(n.Uses, n.UsesVersion)
		if err != nil {
			return fmt.Errorf("%w: %s: processor %s: %v", ErrUsage, n.Pos, n.Name, err)
		}
		var cfg []byte // rendered at dispatch when `with` holds expressions
		if n.Templates == nil {
			rd, err := n.Render(nil)
			if err != nil {
				return fmt.Errorf("%s: processor %s: config: %w", n.Pos, n.Name, err)
			}
			cfg = rd.Config
		}
		backend, excfg, err := executorOf(r.p, n)
		if err != nil {
			return fmt.Errorf("%s: processor %s: executor settings: %w", n.Pos, n.Name, err)
		}
		pr := &proc{
			node: n, config: cfg, pack: ref, native: native, exec: backend + string(excfg), backend: backend, excfg: excfg,
			outputs: map[string]*wizpb.Data{},
			rec:     &wizpb.ProcessorRun{RunId: r.rec.Id, Name: n.Name, Type: n.Uses, Finally: n.Finally},
		}
		if old := r.reuse[n.Name]; old != nil {
			pr.rec = reusedRec(old, r.rec.Id)
			pr.outputs = pr.rec.Outputs
			pr.reused = true
			if err := r.w.Batch().PutProcessor(pr.rec); err != nil {
				return err
			}
		}
		r.carry(pr)
		r.procs = append(r.procs, pr)
		if key := ref.Name + "@" + ref.Version; !seen[key] {
			seen[key] = true
			r.rec.Plugins = append(r.rec.Plugins, &wizpb.PluginUse{Name: ref.Name, Version: ref.Version, Sha256: ref.SHA256})
		}
		if br, ok := r.m.catalog.(BackendRefs); ok && !seen["backend "+backend] {
			seen["backend "+backend] = true
			bref, err := br.BackendRef(backend)
			if err != nil {
				return fmt.Errorf("%w: %s: processor %s: %v", ErrUsage, n.Pos, n.Name, err)
			}
			r.rec.Plugins = append(r.rec.Plugins, &wizpb.PluginUse{Name: bref.Name, Version: bref.Version, Sha256: bref.SHA256})
		}
	}
	return nil
}
