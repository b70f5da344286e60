package manager

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/wiz-run/wiz/core/expr"
	"github.com/wiz-run/wiz/core/ids"
	"google.golang.org/protobuf/types/known/timestamppb"

	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/scheduler"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// RunRequest asks for a run of a pipeline file or of a stored pipeline.
type RunRequest struct {
	// File and Source give a pipeline file, applied before the run. When
	// Source is nil, Pipeline names a stored pipeline.
	File     string
	Source   []byte
	Pipeline string
	Inputs   map[string]InputValue
	// From reruns this processor and everything downstream of it, reusing the
	// outputs of the others from the newest earlier run of the same pipeline
	// version (and its inputs, when Inputs is empty).
	From string
	// KeepTemp keeps the temporary working directory of a native task that
	// fails, and says where in its log.
	KeepTemp bool
}

// Update reports a change in a run to a watcher.
type Update struct {
	Run       *wizpb.Run // set when the run starts and when it ends
	Processor *wizpb.ProcessorRun
	Warning   string
}

// flushEvery bounds how many state writes wait in a batch.
const flushEvery = 1024

// commitGap is the least time between the starts of two of a run's commits
// (the final one excepted): when tasks end faster than that, their records
// share a commit rather than cost one each. A record reaches the store at
// most this much later than it would otherwise; watchers see every change at
// once, from memory.
const commitGap = 4 * time.Millisecond

// Run runs a pipeline to the end and returns the run. Cancelling ctx cancels
// the run (it ends Failed, "cancelled"). watch, when not nil, is called from
// the run's goroutine for every state change. The returned error is for
// problems before the run exists (validation, inputs) or with the store; a
// run that fails is not an error.
func (m *Manager) Run(ctx context.Context, req RunRequest, watch func(Update)) (*wizpb.Run, error) {
	defer m.HoldBlobs()() // it stores inputs and outputs: no blob sweep meanwhile
	var (
		a   *Applied
		err error
	)
	if req.Source != nil {
		a, err = m.Apply(req.File, req.Source)
	} else {
		a, err = m.Resolve(req.Pipeline)
	}
	if err != nil {
		return nil, err
	}
	m.log.Debug("pipeline resolved", "pipeline", a.Pipeline.Name, "version", a.Version.Number)
	p := a.Parsed
	var (
		base  *wizpb.Run
		reuse map[string]*wizpb.ProcessorRun
	)
	if req.From != "" {
		from, ok := p.Node(req.From)
		if !ok {
			return nil, fmt.Errorf("%w: --from %s: pipeline %s has no processor %q", ErrUsage, req.From, p.Name, req.From)
		}
		if base, err = m.latestRun(a.Version.Id); err != nil {
			return nil, err
		}
		if base == nil {
			return nil, fmt.Errorf("%w: --from %s: pipeline %s v%d has no earlier run to reuse outputs from; run it whole first", ErrUsage, req.From, p.Name, a.Version.Number)
		}
		if reuse, err = m.reusable(base.Id); err != nil {
			return nil, err
		}
		for _, n := range downstream(p, from) {
			delete(reuse, n.Name)
		}
	}
	var inputs map[string]*wizpb.Data
	if base != nil && len(req.Inputs) == 0 {
		inputs = base.Inputs
	} else if inputs, _, err = m.inputs(p, req.Inputs); err != nil {
		return nil, err
	}
	return m.start(ctx, a, inputs, reuse, base.GetId(), req.KeepTemp, watch)
}

// Resume starts a new run of a run's pipeline version with its inputs, which
// reuses the outputs of the processors that Succeeded in it and runs the
// others. The new run records which run it resumed.
func (m *Manager) Resume(ctx context.Context, id string, watch func(Update)) (*wizpb.Run, error) {
	defer m.HoldBlobs()()
	old, err := m.findRun(id)
	if err != nil {
		return nil, err
	}
	if old.State == wizpb.RunState_RUN_STATE_RUNNING {
		return nil, fmt.Errorf("%w: run %s is still Running; resume it once it has ended", ErrUsage, old.Id)
	}
	pl, err := m.store.Pipeline(old.PipelineName)
	if err != nil {
		return nil, err
	}
	v, err := m.store.PipelineVersion(old.PipelineId, old.PipelineVersionId)
	if err != nil {
		return nil, err
	}
	p, err := m.parse(v.File, v.Source)
	if err != nil {
		return nil, err
	}
	reuse, err := m.reusable(old.Id)
	if err != nil {
		return nil, err
	}
	a := &Applied{Pipeline: pl, Version: v, Parsed: p}
	return m.start(ctx, a, old.Inputs, reuse, old.Id, false, watch)
}

// reusable returns the processors of a run that Succeeded, by name, but its
// finally processors: a resumed run runs its finally processors again.
func (m *Manager) reusable(runID string) (map[string]*wizpb.ProcessorRun, error) {
	procs, err := m.store.Processors(runID)
	if err != nil {
		return nil, err
	}
	out := map[string]*wizpb.ProcessorRun{}
	for name, pr := range procs {
		if pr.State == wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED && !pr.Finally {
			out[name] = pr
		}
	}
	return out, nil
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

// start creates a run and runs it to the end. reuse holds processors whose
// outputs are taken from run resumedFrom instead of running them again.
func (m *Manager) start(ctx context.Context, a *Applied, inputs map[string]*wizpb.Data,
	reuse map[string]*wizpb.ProcessorRun, resumedFrom string, keepTemp bool, watch func(Update)) (*wizpb.Run, error) {
	p := a.Parsed
	r := &run{m: m, p: p, watch: watch, batch: m.store.Batch(), tasks: map[string]int{}, wdone: make(chan error, 1), reuse: reuse, keepTemp: keepTemp}
	r.rec = &wizpb.Run{
		Id: ids.NewString(), PipelineId: a.Pipeline.Id, PipelineName: p.Name,
		PipelineVersionId: a.Version.Id, PipelineVersion: a.Version.Number,
		State: wizpb.RunState_RUN_STATE_RUNNING, Inputs: inputs, Started: timestamppb.Now(),
		Executor: p.Executor, ProcessorCount: int32(len(p.Processors)), ResumedFrom: resumedFrom,
	}
	if err := r.prepare(); err != nil {
		return nil, err
	}
	// The backends start while the run is recorded and planned.
	if pw, ok := m.backends.(Prewarmer); ok {
		warmed := map[string]bool{}
		for _, pr := range r.procs {
			if !pr.reused && !warmed[pr.backend] {
				warmed[pr.backend] = true
				pw.Prewarm(pr.backend)
			}
		}
	}
	if err := r.batch.PutRun(r.rec); err != nil {
		return nil, err
	}
	r.batch.PutActive(r.rec.Id)
	r.event("", "state", "Running")
	if err := r.batch.Commit(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.live = m.register(r.rec.Id, cancel)
	r.notify(Update{Run: r.rec})
	err := r.loop(ctx)
	m.unregister(r.rec.Id, r.live, r.rec)
	return r.rec, err
}

// run is one run in progress, owned by one goroutine.
type run struct {
	m     *Manager
	p     *pipeline.Pipeline
	rec   *wizpb.Run
	watch func(Update)
	batch *store.Batch // writes staged since the last commit started
	// One commit at a time runs in the background while the loop goes on
	// staging the next batch; wdone reports its result.
	wbusy   bool
	wdone   chan error
	wlast   time.Time   // when the newest background commit started
	wtimer  *time.Timer // fires when the next commit may start
	wwait   bool        // wtimer is armed
	werr    error
	procs   []*proc
	tasks   map[string]int // task ID → node
	sched   *scheduler.Scheduler
	execs   map[string]Executor
	logSeq  uint64
	reason  string
	over    bool                           // the scheduler said Done
	reuse   map[string]*wizpb.ProcessorRun // processors taken from an earlier run
	live    *liveRun                       // how other goroutines watch and cancel it
	running int                            // tasks started and not finished
	shared  bool                           // its executors share the machine's slots (Manager.share)

	t0         time.Time      // logical time 0 of the scheduler
	wake       *time.Timer    // wakes the scheduler at the logical time it asked for
	exprInputs map[string]any // the inputs as expressions see them
	env        map[string]string
	skipped    string // the pipeline's when was false: the run's reason
	keepTemp   bool
}

// proc is one processor's state in the run.
type proc struct {
	node    *pipeline.ProcessorNode
	rec     *wizpb.ProcessorRun
	config  []byte
	pack    PackRef
	native  bool
	reused  bool   // outputs taken from an earlier run; never dispatched
	noRetry bool   // failed by the Manager before running: retrying cannot help
	running bool   // its task started and has not finished
	exec    string // executor key: backend name, and its settings when any
	backend string // executor backend name
	excfg   []byte // the backend's settings as JSON; nil when none
	outputs map[string]*wizpb.Data
	taskID  string
	warns   []string
	// skipReason is the reason of a skip for a false condition.
	skipReason string
	// retryWait: it waits for its next attempt. dropped: cancelled before
	// its pending Dispatch was carried out, which is then dropped.
	retryWait, dropped bool
}

// prepare resolves packs and configs, evaluates the pipeline's when and env,
// and records which plugins the run uses.
func (r *run) prepare() error {
	var err error
	if r.exprInputs, err = exprInputs(r.p, r.rec.Inputs); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	vars := &expr.Vars{Inputs: r.exprInputs, Run: &expr.Run{ID: r.rec.Id, Pipeline: r.p.Name}}
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
			pr.rec = proto.Clone(old).(*wizpb.ProcessorRun)
			// ReusedFrom names the run where the outputs were made.
			pr.rec.RunId, pr.rec.ReusedFrom = r.rec.Id, old.RunId
			if old.ReusedFrom != "" {
				pr.rec.ReusedFrom = old.ReusedFrom
			}
			pr.outputs = pr.rec.Outputs
			pr.reused = true
			if err := r.batch.PutProcessor(pr.rec); err != nil {
				return err
			}
		}
		r.procs = append(r.procs, pr)
		if key := ref.Name + "@" + ref.Version; !seen[key] {
			seen[key] = true
			r.rec.Plugins = append(r.rec.Plugins, &wizpb.PluginUse{Name: ref.Name, Version: ref.Version, Sha256: ref.SHA256})
		}
	}
	return nil
}

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
	_ = r.batch.PutEvent(&wizpb.Event{
		Id: ids.NewString(), RunId: r.rec.Id, Processor: processor, Kind: kind, Message: msg, Time: timestamppb.Now(),
	})
}

// loop provisions executors, schedules the DAG and records every change.
func (r *run) loop(ctx context.Context) error {
	n := len(r.procs)
	spec := scheduler.Spec{N: n, Priority: make([]int, n), WarnOnly: make([]bool, n)}
	// Longest remaining critical path first: each processor weighs what it
	// took in the newest earlier run of this version (in microseconds), or 1
	// when that is not known.
	weight := r.m.durations(r.p, r.rec.PipelineVersionId, r.rec.Id)
	w := func(id int) int {
		if weight != nil && weight[id] > 0 {
			return weight[id]
		}
		return 1
	}
	for id := range spec.Priority {
		spec.Priority[id] = w(id) // a node without successors
	}
	// Edges come grouped by their source, sources in topological order: walked
	// backwards, every successor's priority is final before its source's.
	spec.Edges = r.p.Edges()
	for k := len(spec.Edges) - 1; k >= 0; {
		from, best := spec.Edges[k][0], 0
		for ; k >= 0 && spec.Edges[k][0] == from; k-- {
			best = max(best, spec.Priority[spec.Edges[k][1]])
		}
		spec.Priority[from] = best + w(from)
	}
	spec.Done = make([]bool, n)
	need := map[string]bool{} // executors that will run something
	for i, pr := range r.procs {
		spec.Done[i] = pr.reused
		if !pr.reused {
			need[pr.exec] = true
		}
	}
	r.ruleSpec(&spec)
	if r.skipped != "" {
		// The pipeline's when is false: nothing runs.
		return r.finish(scheduler.RunSucceeded, "")
	}

	// One executor per backend the pipeline uses.
	r.execs = map[string]Executor{}
	events := make(chan *TaskEvent, 1024)
	done := make(chan struct{})
	defer close(done)
	slots := 0
	for _, pr := range r.procs {
		if r.execs[pr.exec] != nil || !need[pr.exec] {
			continue
		}
		ex, err := r.m.backends.Provision(ctx, ProvisionRequest{
			Backend: pr.backend, Config: pr.excfg, RunID: r.rec.Id, Slots: r.p.MaxParallel, BlobDir: r.m.blobs.Dir(), CacheDir: r.m.cacheDir, TaskDir: r.m.taskDir,
		})
		if err != nil {
			r.closeExecutors()
			return r.finish(scheduler.RunFailed, fmt.Sprintf("provision %s executor: %v", pr.backend, err))
		}
		r.execs[pr.exec] = ex
		slots += ex.Slots()
		r.m.log.Debug("executor ready", "executor", ex.Name(), "slots", ex.Slots())
	}
	defer r.m.tearDown(r)
	// With one executor the loop reads its events itself: a forwarding
	// goroutine would cost a wake-up per event.
	var evc <-chan *TaskEvent = events
	for _, ex := range r.execs {
		if len(r.execs) == 1 {
			evc = ex.Events()
			break
		}
		go func(ch <-chan *TaskEvent) { // forwards one executor's events until it closes or the run ends
			for ev := range ch {
				select {
				case events <- ev:
				case <-done:
					return
				}
			}
		}(ex.Events())
	}
	// Executors on this machine share its capacity with other runs: this
	// run gets a part, resized as runs come and go.
	var parts <-chan int
	for _, ex := range r.execs {
		if ex.Local() {
			var part int
			part, parts = r.m.share.join(r.rec.Id, r.p.MaxParallel)
			r.shared = true
			defer r.m.share.leave(r.rec.Id)
			slots = r.resize(part)
			break
		}
	}
	spec.Window = r.window(slots)
	r.sched = scheduler.New(spec)
	r.t0 = time.Now()
	defer func() {
		if r.wake != nil {
			r.wake.Stop()
		}
	}()

	cancelled := false
	var second <-chan struct{} // a second cancel, which kills finally processors too
	drained := 0               // events handled since the executors' held tasks were sent
	if r.act(r.sched.Start()) {
		return r.finish(r.sched.Result(), r.reason)
	}
	for {
		r.flush(false)
		if r.werr != nil && !cancelled {
			// The store failed: end the run rather than run on unrecorded.
			cancelled = true
			r.reason = fmt.Sprintf("state store: %v", r.werr)
			if r.act(r.sched.Cancel()) {
				return r.finish(r.sched.Result(), r.reason)
			}
		}
		// Events already here are handled before the tasks they free are
		// sent (Batcher): a burst of ends is answered by one burst of tasks.
		// At most drainMax in a row, so that a stream of events (a task's
		// logs) delays neither the sends nor the other cases below.
		if drained < drainMax {
			select {
			case ev, ok := <-evc:
				drained++
				if !ok { // the executor is gone: its client failed its tasks before closing
					evc = nil
					continue
				}
				if r.handle(ev) || r.over {
					return r.finish(r.sched.Result(), r.reason)
				}
				continue
			default:
			}
		}
		drained = 0
		if r.sendHeld() {
			if r.over {
				return r.finish(r.sched.Result(), r.reason)
			}
			continue
		}
		select {
		case req := <-r.live.watch:
			r.addWatcher(req)
		case err := <-r.wdone:
			r.wbusy = false
			if err != nil && r.werr == nil {
				r.werr = err
			}
		case <-r.commitDue():
			r.wwait = false
		case ev, ok := <-evc:
			if !ok { // the executor is gone: its client failed its tasks before closing
				evc = nil
				continue
			}
			if r.handle(ev) || r.over {
				return r.finish(r.sched.Result(), r.reason)
			}
		case part := <-parts:
			if r.act(r.sched.SetWindow(r.window(r.resize(part)))) {
				return r.finish(r.sched.Result(), r.reason)
			}
		case <-r.wakeC():
			if r.act(r.sched.Advance(r.now())) {
				return r.finish(r.sched.Result(), r.reason)
			}
		case <-ctx.Done():
			if !cancelled {
				cancelled = true
				if r.reason == "" {
					r.reason = "cancelled"
				}
				if r.act(r.sched.Cancel()) {
					return r.finish(r.sched.Result(), r.reason)
				}
				second = r.live.again
			}
		case <-second:
			second = nil
			if r.act(r.sched.Cancel()) {
				return r.finish(r.sched.Result(), r.reason)
			}
		}
	}
}

// drainMax bounds how many received events a run handles before it sends
// the tasks they freed (loop).
const drainMax = 64

// sendHeld sends the tasks the run's executors hold (Batcher). It reports
// whether some could not be sent: those are failed, which may free more
// tasks or end the run.
func (r *run) sendHeld() bool {
	failed := false
	for _, ex := range r.execs {
		b, ok := ex.(Batcher)
		if !ok {
			continue
		}
		errs := b.Flush()
		for _, id := range slices.Sorted(maps.Keys(errs)) {
			i, ok := r.tasks[id]
			if !ok {
				continue
			}
			failed = true
			delete(r.tasks, id)
			r.procs[i].taskID = ""
			r.fail(i, fmt.Sprintf("send to %s: %v", ex.Name(), errs[id]), 0)
		}
	}
	return failed
}

// resize gives the run's local executors part slots each (0: the run waits
// for a free slot) and returns the run's slots in all.
func (r *run) resize(part int) int {
	slots := 0
	for name, ex := range r.execs {
		if !ex.Local() {
			slots += ex.Slots()
			continue
		}
		if n := max(part, 1); ex.Slots() != n {
			if err := ex.Resize(n); err != nil {
				r.m.log.Warn("resize executor", "executor", name, "error", err)
			}
		}
		slots += part
	}
	return slots
}

// window is how many tasks the run keeps in flight: four times its slots
// and 24 more, so that the next task waits at the executor when a slot
// frees, and the executor can hold back the Finished events of tasks that
// ended while others still wait, to send them together (executorserver);
// max_parallel caps it. No slots: nothing is dispatched until the run gets
// some.
func (r *run) window(slots int) int {
	if slots == 0 {
		return scheduler.Hold
	}
	w := 4*slots + 24
	if r.p.MaxParallel > 0 && r.p.MaxParallel < w {
		return r.p.MaxParallel
	}
	return w
}

// setRunning records how many of the run's tasks run, for the machine's
// share of slots among runs.
func (r *run) setRunning(n int) {
	r.running = n
	if r.shared {
		r.m.share.running(r.rec.Id, n)
	}
}

// act carries out scheduler actions; it reports whether the run is over. It
// may be re-entered (a dispatch that fails at once finishes its processor), so
// it copies the actions, which the scheduler reuses.
func (r *run) act(acts []scheduler.Action) bool {
	acts = append([]scheduler.Action(nil), acts...)
	for _, a := range acts {
		switch a.Kind {
		case scheduler.Dispatch:
			if pr := r.procs[a.Node]; pr.dropped {
				pr.dropped = false // cancelled while its dispatch was pending
				continue
			}
			r.dispatch(a.Node)
		case scheduler.CancelTask:
			pr := r.procs[a.Node]
			switch {
			case pr.taskID != "":
				_ = r.execs[pr.exec].Cancel(pr.taskID, r.reason)
			case !pr.retryWait:
				// Its Dispatch is pending in an outer batch of actions (a
				// dispatch that failed at once ended the run): it never
				// starts and stays Idle.
				pr.dropped = true
				r.act(r.sched.Finished(a.Node, scheduler.Cancelled))
			default: // waiting for a retry: nothing runs, so it ends now
				pr.retryWait = false
				pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_FAILED
				pr.rec.Ended = timestamppb.Now()
				pr.rec.Error = "cancelled: " + r.reason + " (waiting to retry after: " + pr.rec.Error + ")"
				_ = r.batch.PutProcessor(pr.rec)
				r.notify(Update{Processor: pr.rec})
				r.act(r.sched.Finished(a.Node, scheduler.Cancelled))
			}
		case scheduler.Evaluate:
			r.evaluate(a.Node)
		case scheduler.Skip:
			r.skip(a)
		case scheduler.Retrying:
			r.retrying(a)
		case scheduler.Wake:
			r.wakeAt(a.At)
		case scheduler.TimedOut:
			r.reason = fmt.Sprintf("run timed out after %s", r.p.Timeout)
		case scheduler.Finally:
			r.event("", "finally", "running the finally processors")
		case scheduler.Done:
			r.over = true
		}
	}
	return r.over
}

// dispatch sends processor i's task to its executor.
func (r *run) dispatch(i int) {
	pr := r.procs[i]
	inputs := make(map[string]*wizpb.Data, len(pr.node.Inputs))
	for _, b := range pr.node.Inputs {
		if b.From.Input != "" {
			inputs[b.Name] = r.rec.Inputs[b.From.Input]
			continue
		}
		up, _ := r.p.Node(b.From.Processor)
		d := r.procs[up.ID()].outputs[b.From.Output]
		if d == nil {
			r.fail(i, fmt.Sprintf("input %s: processor %s has no output %q (it has: %s)", b.Name, b.From.Processor, b.From.Output, keys(r.procs[up.ID()].outputs)), 0)
			return
		}
		inputs[b.Name] = d
	}
	pr.rec.Attempts++
	pr.retryWait = false
	task := &Task{
		Native: pr.native, RunID: r.rec.Id, Processor: pr.node.Name, Type: pr.node.Uses, Pack: pr.pack,
		Config: pr.config, Inputs: inputs, Timeout: pr.node.Timeout, InlineMax: r.p.InlineMax, MaxOutput: pr.node.MaxOutput,
		KeepTemp: r.keepTemp,
	}
	if pr.native {
		task.Env = r.env
	}
	if t := pr.node.Templates; t != nil {
		// Values of upstream outputs are read now, at dispatch.
		v, err := r.vars(t.Refs, t.Outputs, pr.node.Finally)
		var rd *pipeline.Rendered
		if err == nil {
			rd, err = pr.node.Render(v)
		}
		if err != nil {
			r.fail(i, "config: "+err.Error(), 0)
			return
		}
		task.Config, task.ExprEnv, task.FileEnv = rd.Config, rd.Env, rd.FileEnv
	}
	pr.taskID = r.rec.Id + "/" + pr.node.Name + "/" + strconv.Itoa(int(pr.rec.Attempts))
	task.ID = pr.taskID
	r.tasks[pr.taskID] = i
	err := r.execs[pr.exec].Submit(task)
	if err != nil {
		delete(r.tasks, pr.taskID)
		pr.taskID = ""
		r.fail(i, fmt.Sprintf("send to %s: %v", r.execs[pr.exec].Name(), err), 0)
	}
}

// fail ends processor i as Failed without it having run (a problem found by
// the Manager), through the same path as an executor's report.
func (r *run) fail(i int, msg string, code int) {
	pr := r.procs[i]
	id := "manager/" + pr.node.Name
	r.tasks[id] = i
	pr.taskID = id
	pr.noRetry = true // the same inputs would fail the same way
	r.handle(&TaskEvent{TaskID: id, Kind: EventFinished, Outcome: OutcomeFailed, Message: msg, Code: code})
}

// handle applies one task event; it reports whether the run is over.
func (r *run) handle(ev *TaskEvent) bool {
	i, ok := r.tasks[ev.TaskID]
	if !ok {
		return false
	}
	pr := r.procs[i]
	switch ev.Kind {
	case EventStarted:
		if !pr.running {
			pr.running = true
			r.setRunning(r.running + 1)
		}
		pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_RUNNING
		pr.rec.Started = timestamppb.Now()
		pr.rec.Ended = nil
		_ = r.batch.PutProcessor(pr.rec)
		r.notify(Update{Processor: pr.rec})
	case EventLog:
		r.logSeq++
		_ = r.batch.PutLog(r.rec.Id, r.logSeq, &wizpb.LogChunk{Processor: pr.node.Name, Stream: ev.Stream, Data: ev.Data, Time: timestamppb.Now()})
	case EventWarning:
		pr.rec.Warnings = append(pr.rec.Warnings, ev.Message)
		r.rec.Warnings++
		r.event(pr.node.Name, "warning", ev.Message)
		r.notify(Update{Processor: pr.rec, Warning: ev.Message})
	case EventOutput:
		pr.outputs[ev.Name] = ev.Output
	case EventMetrics:
		pr.rec.Metrics = ev.Metrics
	case EventFinished:
		delete(r.tasks, ev.TaskID)
		pr.taskID = ""
		if pr.running {
			pr.running = false
			r.setRunning(r.running - 1)
		} else if ev.Started {
			r.startedLate(pr, ev)
		}
		for name, d := range ev.Outputs {
			pr.outputs[name] = d
		}
		if ev.Metrics != nil {
			pr.rec.Metrics = ev.Metrics
		}
		return r.finished(i, ev)
	}
	return false
}

// startedLate shows watchers the Running state of a task that ended before
// its executor reported it started, with the start time its run time gives.
// The record is written once, in its final state, by finished.
func (r *run) startedLate(pr *proc, ev *TaskEvent) {
	now := time.Now()
	if ev.Metrics != nil && ev.Metrics.WallNs > 0 {
		now = now.Add(-time.Duration(ev.Metrics.WallNs))
	}
	pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_RUNNING
	pr.rec.Started = timestamppb.New(now)
	pr.rec.Ended = nil
	r.notify(Update{Processor: pr.rec})
}

func (r *run) finished(i int, ev *TaskEvent) bool {
	pr := r.procs[i]
	if ev.Outcome == OutcomeCancelled && !ev.Started {
		// Never started: it stays Idle.
		return r.act(r.sched.Finished(i, scheduler.Cancelled))
	}
	now := timestamppb.Now()
	if pr.rec.Started == nil {
		pr.rec.Started = now
	}
	pr.rec.Ended = now
	pr.rec.ExitCode = int32(ev.Code)
	switch ev.Outcome {
	case OutcomeSucceeded:
		pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED
		pr.rec.Error = ""
		pr.rec.Outputs = pr.outputs
		_ = r.batch.PutProcessor(pr.rec)
		r.notify(Update{Processor: pr.rec})
		return r.act(r.sched.Finished(i, scheduler.Succeeded))
	case OutcomeCancelled:
		pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_FAILED
		pr.rec.Error = ev.Message
		_ = r.batch.PutProcessor(pr.rec)
		r.event(pr.node.Name, "state", "Failed: "+ev.Message)
		r.notify(Update{Processor: pr.rec})
		return r.act(r.sched.Finished(i, scheduler.Cancelled))
	}
	// Failed: the scheduler decides whether it is retried. Its time is
	// brought up to now first, so that the wait is counted from now.
	end := scheduler.End{Outcome: scheduler.Failed, Code: ev.Code, HasCode: ev.Code != 0, Lost: ev.Lost, NoRetry: pr.noRetry}
	if r.act(r.sched.Advance(r.now())) {
		return true
	}
	acts := append([]scheduler.Action(nil), r.sched.Ended(i, end)...)
	pr.rec.Error = ev.Message
	if slices.ContainsFunc(acts, func(a scheduler.Action) bool { return a.Kind == scheduler.Retrying && a.Node == i }) {
		pr.rec.ExitCode = int32(ev.Code)
		return r.act(acts)
	}
	r.failed(pr, ev.Message, ev.Code)
	return r.act(acts)
}

// commitDue is the channel that says the next commit may start; nil (never
// ready) when no commit waits.
func (r *run) commitDue() <-chan time.Time {
	if !r.wwait {
		return nil
	}
	return r.wtimer.C
}

// flush starts committing the staged writes in the background when no commit
// is running and commitGap has passed since the last one started; with final
// it waits for the running one and commits the rest. Too many staged writes
// make it wait too, so memory stays bounded.
func (r *run) flush(final bool) {
	if r.wbusy && (final || r.batch.Len() >= flushEvery*16) {
		if err := <-r.wdone; err != nil && r.werr == nil {
			r.werr = err
		}
		r.wbusy = false
	}
	if r.wbusy || r.batch.Len() == 0 {
		return
	}
	if final {
		if r.wwait {
			r.wtimer.Stop() // Go 1.23 timers: no stale tick is left to drain
			r.wwait = false
		}
		if err := r.batch.Commit(); err != nil && r.werr == nil {
			r.werr = err
		}
		return
	}
	if wait := commitGap - time.Since(r.wlast); wait > 0 && r.batch.Len() < flushEvery {
		if !r.wwait {
			if r.wtimer == nil {
				r.wtimer = time.NewTimer(wait)
			} else {
				r.wtimer.Reset(wait)
			}
			r.wwait = true
		}
		return
	}
	r.wlast = time.Now()
	b := r.batch
	if err := b.Seal(); err != nil && r.werr == nil { // records are this goroutine's
		r.werr = err
	}
	r.batch = r.m.store.Batch()
	r.wbusy = true
	go func() { r.wdone <- b.Commit() }() // the run waits for it in flush before it ends
}

// finish records how the run ended.
func (r *run) finish(res scheduler.Result, reason string) error {
	r.rec.Ended = timestamppb.Now()
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
	us := make([]uint64, len(r.procs))
	for i, pr := range r.procs {
		if pr.rec.Started != nil && pr.rec.Ended != nil {
			us[i] = uint64(max(pr.rec.Ended.AsTime().Sub(pr.rec.Started.AsTime()).Microseconds(), 0)) + 1
		}
	}
	r.batch.PutDurations(r.rec.Id, us)
	if err := r.batch.PutRun(r.rec); err != nil {
		return err
	}
	r.batch.DeleteActive(r.rec.Id)
	r.flush(true)
	if r.werr != nil {
		return fmt.Errorf("record run %s: %w", r.rec.Id, r.werr)
	}
	if err := r.m.store.Sync(); err != nil {
		return fmt.Errorf("sync store: %w", err)
	}
	r.notify(Update{Run: r.rec})
	return nil
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
