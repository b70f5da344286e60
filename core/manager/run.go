package manager

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/wiz-run/wiz/core/expr"
	"github.com/wiz-run/wiz/core/ids"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

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
	// Sent says File and Source came from a client with the sub-pipeline
	// files they use in Files (see ApplySent); else those are read from this
	// host.
	Sent   bool
	Files  map[string][]byte
	Origin string // with Sent: the file's absolute path on the client
	Inputs map[string]InputValue
	// From reruns this processor and everything downstream of it, reusing the
	// outputs of the others from the newest earlier run of the same pipeline
	// version (and its inputs, when Inputs is empty).
	From string
	// KeepTemp keeps the temporary working directory of a native task that
	// fails, and says where in its log.
	KeepTemp bool
	// NoCache runs every processor, reusing no cached result.
	NoCache bool
	// Trigger says what started the run ("schedule/NAME", …; "" is
	// "manual"); ScheduledTime the tick it stands for (zero: the start).
	Trigger       string
	ScheduledTime time.Time

	// fire records the run as a tick's (schedules and backfill).
	fire *fireReq

	// For a sub-pipeline's run (set by the Manager): its ID, chosen by the
	// parent, and the parent run and processor.
	runID, parent, parentProcessor string

	// cont is the record of a run a Manager left Running, continued in place
	// (same ID) by this run (ContinueRuns); prev its processors' records then.
	cont *wizpb.Run
	prev map[string]*wizpb.ProcessorRun
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
	switch {
	case req.Source != nil && req.Sent:
		a, err = m.ApplySent(req.File, req.Source, req.Files, req.Origin)
	case req.Source != nil:
		a, err = m.Apply(req.File, req.Source)
	default:
		a, err = m.Resolve(req.Pipeline)
	}
	if err != nil {
		return nil, err
	}
	m.log.Debug("pipeline resolved", "pipeline", a.Pipeline.Name, "version", a.Version.Number)
	if a.Warning != "" && watch != nil {
		watch(Update{Warning: a.Warning})
	}
	p := a.Parsed
	var (
		base  *wizpb.Run
		reuse map[string]*wizpb.ProcessorRun
	)
	if req.From != "" {
		from, ok := p.Node(req.From)
		if !ok {
			return nil, notFoundf("--from %s: pipeline %s has no processor %q", req.From, p.Name, req.From)
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
	return m.start(ctx, a, inputs, reuse, base.GetId(), req, watch)
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
	if old.Parent != "" {
		return nil, fmt.Errorf("%w: run %s is a sub-pipeline of run %s; resume the parent, which resumes it", ErrUsage, old.Id, old.Parent)
	}
	a, err := m.pinned(old.PipelineId+"/"+old.PipelineVersionId, nil)
	if err != nil {
		return nil, err
	}
	reuse, err := m.reusable(old.Id)
	if err != nil {
		return nil, err
	}
	return m.start(ctx, a, old.Inputs, reuse, old.Id, RunRequest{}, watch)
}

// start creates a run and runs it to the end. reuse holds processors whose
// outputs are taken from run resumedFrom instead of running them again.
func (m *Manager) start(ctx context.Context, a *Applied, inputs map[string]*wizpb.Data,
	reuse map[string]*wizpb.ProcessorRun, resumedFrom string, opts RunRequest, watch func(Update)) (*wizpb.Run, error) {
	r, err := m.begin(ctx, a, inputs, reuse, resumedFrom, opts, watch)
	if err != nil {
		return nil, err
	}
	return r.toEnd()
}

// begin creates a run, records it and makes it live (watchers and Cancel
// find it); toEnd runs it.
func (m *Manager) begin(ctx context.Context, a *Applied, inputs map[string]*wizpb.Data,
	reuse map[string]*wizpb.ProcessorRun, resumedFrom string, opts RunRequest, watch func(Update)) (*run, error) {
	p := a.Parsed
	r := &run{m: m, p: p, watch: watch, w: m.store.NewWriter(commitGap, flushEvery), tasks: map[string]int{}, reuse: reuse, keepTemp: opts.KeepTemp, noCache: opts.NoCache, kids: a.Children,
		childEvents: make(chan *TaskEvent, 16)}
	r.rec = &wizpb.Run{
		Id: cmp.Or(opts.runID, ids.NewString()), Parent: opts.parent, ParentProcessor: opts.parentProcessor, PipelineId: a.Pipeline.Id, PipelineName: p.Name,
		PipelineVersionId: a.Version.Id, PipelineVersion: a.Version.Number,
		State: wizpb.RunState_RUN_STATE_RUNNING, Inputs: inputs, Started: timestamppb.Now(),
		Executor: p.Executor, ProcessorCount: int32(len(p.Processors)), ResumedFrom: resumedFrom,
		Trigger: cmp.Or(opts.Trigger, "manual"), Owner: m.owner, OwnerBoot: m.boot,
	}
	r.rec.ScheduledTime = r.rec.Started
	if !opts.ScheduledTime.IsZero() {
		r.rec.ScheduledTime = timestamppb.New(opts.ScheduledTime)
	}
	if c := opts.cont; c != nil {
		// Continued: the same run, now this Manager's.
		r.rec = proto.Clone(c).(*wizpb.Run)
		r.rec.State, r.rec.Reason, r.rec.Ended, r.rec.Plugins = wizpb.RunState_RUN_STATE_RUNNING, "", nil, nil
		r.rec.Owner, r.rec.OwnerBoot, r.rec.Continued = m.owner, m.boot, c.Continued+1
		r.prev = opts.prev
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
	if f := opts.fire; f != nil {
		// The tick's record goes in the transaction that creates the run.
		err := m.recordFire(r.w.Batch(), f, r.rec.Id)
		defer func() { f.unlock() }() // released at the commit, below, or here
		if err != nil {
			return nil, err
		}
	}
	if err := r.w.Batch().PutRun(r.rec); err != nil {
		return nil, err
	}
	r.w.Batch().PutActive(r.rec.Id)
	if opts.cont != nil {
		r.event("", "state", fmt.Sprintf("Running: continued after its Manager stopped; %d processors keep their outputs, the rest run (again)", len(reuse)))
	} else {
		r.event("", "state", "Running")
	}
	if err := r.w.Batch().Commit(); err != nil {
		return nil, err
	}
	m.obs.RunStarted(p.Name)
	if f := opts.fire; f != nil {
		f.unlock()
		f.unlock = func() {}
		if f.started != nil {
			f.started(r.rec.Id)
		}
	}
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	r.live = m.register(r.rec.Id, r.rec.Parent == "", r.cancel)
	r.notify(Update{Run: r.rec})
	return r, nil
}

// toEnd runs a run begun to its end, on the calling goroutine, which owns it.
func (r *run) toEnd() (*wizpb.Run, error) {
	defer r.cancel(nil)
	err := r.loop(r.ctx)
	r.m.unregister(r.rec.Id, r.live, r.rec)
	return r.rec, err
}

// run is one run in progress, owned by one goroutine.
type run struct {
	m      *Manager
	p      *pipeline.Pipeline
	rec    *wizpb.Run
	watch  func(Update)
	w      *store.Writer // stages the run's records, commits them in the background
	procs  []*proc
	tasks  map[string]int // task ID → node
	sched  *scheduler.Scheduler
	execs  map[string]Executor
	logSeq uint64
	reason string
	// storeFailed: the run was cancelled because its records could not be
	// written, and reason says so.
	storeFailed bool
	suspended   bool                           // left Running for the service's next start (suspend)
	over        bool                           // the scheduler said Done
	reuse       map[string]*wizpb.ProcessorRun // processors taken from an earlier run
	prev        map[string]*wizpb.ProcessorRun // a continued run's processors before (ContinueRuns)
	live        *liveRun                       // how other goroutines watch and cancel it
	running     int                            // tasks started and not finished
	shared      bool                           // its executors share the machine's slots (Manager.share)

	t0         time.Time      // logical time 0 of the scheduler
	wake       *time.Timer    // wakes the scheduler at the logical time it asked for
	exprInputs map[string]any // the inputs as expressions see them
	env        map[string]string
	skipped    string // the pipeline's when was false: the run's reason
	keepTemp   bool
	noCache    bool

	ctx         context.Context // the run's: sub-pipeline runs are cancelled with it
	cancel      context.CancelCauseFunc
	kids        map[string]*Applied // the sub-pipelines its processors run
	childEvents chan *TaskEvent     // the ends of sub-pipeline runs
	children    int                 // sub-pipeline runs in progress
}

// proc is one processor's state in the run.
type proc struct {
	carried int32 // attempts it made before its run was continued (ContinueRuns)
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
	// inst is set for an instance of a for_each processor (node is that
	// processor's).
	inst *expr.Instance
	// cacheKey is the digest of what determines its result, when its
	// result may be reused (cache:). cached is the entry under that key a
	// native task asks its executor to confirm (its program unchanged);
	// program is the program's sha256 its executor reported.
	cacheKey string
	cached   *wizpb.CacheEntry
	program  string
	// queued: its task was sent and has not started or ended (Stats).
	queued bool
	// child is the sub-pipeline it runs; childCancel cancels that run.
	child       *Applied
	childCancel context.CancelFunc
	// attached is the task of a killed Manager that an adopted executor
	// still runs for it (ContinueRuns), until the scheduler dispatches it;
	// early is that task's end, when it came before. The scheduler
	// dispatches it within the run's window, like any task: its end waits
	// until then.
	attached     string
	early        *TaskEvent
	startedEarly bool // that task reported it started
	cancelAsked  bool // its executor was asked to cancel its task
}
