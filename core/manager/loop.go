package manager

// This file is the run's loop: it carries out the scheduler's actions —
// dispatching tasks, cancelling them — and feeds the scheduler the events
// of the executors, the logical time and cancels.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/scheduler"
	"github.com/wiz-run/wiz/proto/wizpb"
)

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
		if !pr.reused && pr.child == nil {
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
	var uses []*wizpb.ExecutorUse
	for _, pr := range r.procs {
		if r.execs[pr.exec] != nil || !need[pr.exec] {
			continue
		}
		req := ProvisionRequest{
			Backend: pr.backend, Config: pr.excfg, RunID: r.rec.Id, Slots: r.p.MaxParallel, BlobDir: r.m.blobs.Dir(), CacheDir: r.m.cacheDir, TaskDir: r.m.taskDir,
		}
		if r.m.continues {
			req.OrphanTimeout = OrphanTimeout
		}
		ex := r.adopt(ctx, pr.exec, req)
		var err error
		if ex == nil {
			ex, err = r.m.backends.Provision(ctx, req)
		}
		if err != nil {
			r.closeExecutors()
			if errors.Is(context.Cause(ctx), ErrSuspended) {
				return r.suspend()
			}
			return r.finish(scheduler.RunFailed, fmt.Sprintf("provision %s executor: %v", pr.backend, err))
		}
		r.execs[pr.exec] = ex
		slots += ex.Slots()
		r.m.log.Debug("executor ready", "executor", ex.Name(), "slots", ex.Slots())
		if id, ok := ex.(ExecutorIDer); ok && r.m.continues {
			uses = append(uses, &wizpb.ExecutorUse{Key: pr.exec, Backend: pr.backend, ExecutorId: id.ExecutorID()})
		}
	}
	r.releaseUnadopted(r.rec.Executors)
	if r.m.continues {
		// Recorded with the run, for a restarted Manager to adopt them, and
		// committed before any task goes to them: an executor the record
		// does not name would be left to its orphan timeout, its tasks run
		// again.
		r.rec.Executors = uses
		_ = r.w.Batch().PutRun(r.rec)
		r.w.Flush(true)
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
		r.w.Flush(false)
		if r.w.Err() != nil && !cancelled {
			// The store failed: end the run rather than run on unrecorded.
			cancelled = true
			r.storeFailed = true
			r.reason = fmt.Sprintf("state store: %v", r.w.Err())
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
		case err := <-r.w.Committed():
			r.w.Settle(err)
		case <-r.w.Due():
			r.w.Woken()
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
		case ev := <-r.childEvents:
			if ev.Kind == EventFinished && ev.Started {
				r.childEnded()
			}
			if r.handle(ev) || r.over {
				return r.finish(r.sched.Result(), r.reason)
			}
		case <-r.wakeC():
			if r.act(r.sched.Advance(r.now())) {
				return r.finish(r.sched.Result(), r.reason)
			}
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrSuspended) {
				return r.suspend()
			}
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
	if len(r.execs) == 0 {
		return 0 // only sub-pipelines: their runs have their own executors
	}
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
	r.m.tasks.running.Add(int64(n - r.running))
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
			case pr.taskID != "" && pr.child != nil:
				if pr.childCancel != nil {
					pr.childCancel() // the sub-pipeline's run ends cancelled, and then its processor
				} // else its end is already on its way (it failed to start)
			case pr.taskID != "":
				pr.cancelAsked = true
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
				_ = r.w.Batch().PutProcessor(pr.rec)
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
		case scheduler.Expand:
			r.expand(a.Node)
		case scheduler.Gathered:
			r.gather(a)
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
	if pr.attached != "" {
		// Its task runs on an adopted executor already: nothing to send.
		pr.attached = ""
		if ev := pr.early; ev != nil {
			pr.early = nil
			r.handle(ev)
		} else if pr.startedEarly && !pr.running {
			pr.running = true
			r.setRunning(r.running + 1)
		}
		return
	}
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
	pr.retryWait = false
	task := &Task{
		Native: pr.native, RunID: r.rec.Id, Processor: pr.rec.Name, Type: pr.node.Uses, Pack: pr.pack,
		Config: pr.config, Inputs: inputs, Timeout: pr.node.Timeout, InlineMax: r.p.InlineMax, MaxOutput: pr.node.MaxOutput, MaxLog: cmp.Or(pr.node.MaxLog, pipeline.DefaultMaxLog),
		KeepTemp: r.keepTemp,
	}
	if pr.native {
		task.Env = r.env
		if names := r.p.Secrets(pr.node); len(names) > 0 {
			vals, err := r.m.resolveSecrets(names)
			if err != nil {
				pr.rec.Attempts++
				r.fail(i, err.Error(), 0)
				return
			}
			task.Secrets, task.SecretFiles = vals, pr.node.SecretFiles
		}
	}
	if t := pr.node.Templates; t != nil {
		// Values of upstream outputs are read now, at dispatch.
		v, err := r.vars(t.Refs, t.Outputs, pr.node.Finally, pr.inst)
		var rd *pipeline.Rendered
		if err == nil {
			rd, err = pr.node.Render(v)
		}
		if err != nil {
			pr.rec.Attempts++
			r.fail(i, "config: "+err.Error(), 0)
			return
		}
		task.Config, task.ExprEnv, task.FileEnv = rd.Config, rd.Env, rd.FileEnv
	}
	if pr.child != nil {
		pr.rec.Attempts++
		pr.taskID = r.rec.Id + "/" + pr.rec.Name + "/" + strconv.Itoa(int(pr.rec.Attempts))
		task.ID = pr.taskID
		r.tasks[pr.taskID] = i
		r.startChild(i, pr, task)
		return
	}
	if pr.node.Cache != nil && !r.noCache && pr.rec.Attempts == pr.carried {
		pr.cacheKey = r.cacheKey(pr, task)
		if e := r.cacheEntry(pr); pr.cacheKey != "" && e != nil {
			if !pr.native {
				r.cacheHit(i, e)
				return
			}
			// The executor confirms that the program is unchanged.
			if e.ProgramSha256 != "" {
				pr.cached, task.ReuseProgram = e, e.ProgramSha256
			}
		}
		task.ReportProgram = pr.native
	}
	pr.rec.Attempts++
	if !pr.rec.Skipped {
		pr.rec.Reason = "" // a retry's, now that it runs again
	}
	pr.taskID = r.rec.Id + "/" + pr.rec.Name + "/" + strconv.Itoa(int(pr.rec.Attempts))
	task.ID = pr.taskID
	r.tasks[pr.taskID] = i
	err := r.execs[pr.exec].Submit(task)
	if err != nil {
		delete(r.tasks, pr.taskID)
		pr.taskID = ""
		r.fail(i, fmt.Sprintf("send to %s: %v", r.execs[pr.exec].Name(), err), 0)
		return
	}
	pr.queued = true
	r.m.tasks.queued.Add(1)
}

// fail ends processor i as Failed without it having run (a problem found by
// the Manager), through the same path as an executor's report.
func (r *run) fail(i int, msg string, code int) {
	pr := r.procs[i]
	id := "manager/" + pr.rec.Name
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
	if pr.queued && (ev.Kind == EventStarted || ev.Kind == EventFinished) {
		pr.queued = false
		r.m.tasks.queued.Add(-1)
	}
	switch ev.Kind {
	case EventStarted:
		if pr.attached != "" {
			// Not dispatched yet: counted once it is (dispatch), so that
			// the machine's share waits on no task the run cannot end.
			pr.startedEarly = true
		} else if !pr.running {
			pr.running = true
			r.setRunning(r.running + 1)
		}
		pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_RUNNING
		pr.rec.Started = timestamppb.Now()
		pr.rec.Ended = nil
		_ = r.w.Batch().PutProcessor(pr.rec)
		r.notify(Update{Processor: pr.rec})
	case EventLog:
		r.logSeq++
		_ = r.w.Batch().PutLog(r.rec.Id, r.logSeq, &wizpb.LogChunk{Processor: pr.rec.Name, Stream: ev.Stream, Data: ev.Data, Time: timestamppb.Now()})
	case EventWarning:
		pr.rec.Warnings = append(pr.rec.Warnings, ev.Message)
		r.rec.Warnings++
		r.event(pr.rec.Name, "warning", ev.Message)
		r.notify(Update{Processor: pr.rec, Warning: ev.Message})
	case EventOutput:
		pr.outputs[ev.Name] = ev.Output
	case EventMetrics:
		pr.rec.Metrics = ev.Metrics
	case EventFinished:
		if ev.Unknown {
			// The adopted executor does not hold it: it runs, when the
			// scheduler dispatches it (or now, if it has and has not
			// cancelled it since: then it ends as never started).
			pr.rec.Attempts = pr.carried // the attempt asked for did not happen
			r.rec.Reattached--
			r.m.log.Debug("a task the adopted executor does not hold runs as usual", "run", r.rec.Id, "processor", pr.rec.Name)
			if pr.attached == "" && pr.cancelAsked {
				ev = &TaskEvent{TaskID: ev.TaskID, Kind: EventFinished, Outcome: OutcomeCancelled}
			} else {
				delete(r.tasks, ev.TaskID)
				pr.taskID = ""
				if pr.attached == "" {
					r.dispatch(i)
				}
				pr.attached = ""
				return false
			}
		}
		if pr.attached != "" {
			pr.early = ev // the scheduler has not dispatched it yet
			return false
		}
		delete(r.tasks, ev.TaskID)
		pr.taskID = ""
		pr.program = ev.Program
		if e := pr.cached; e != nil {
			pr.cached = nil
			if ev.Reused && ev.Outcome == OutcomeSucceeded {
				pr.rec.Attempts-- // it did not run
				pr.rec.CachedFrom = e.RunId
				ev.Outputs, ev.Metrics = e.Outputs, e.Metrics
			}
		}
		if pr.running {
			pr.running = false
			r.setRunning(r.running - 1)
		} else if ev.Started && pr.child == nil {
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
	r.m.obs.TaskEnded(r.p.Name, pr.node.Uses, outcomeWord(ev.Outcome), now.AsTime().Sub(pr.rec.Started.AsTime()))
	switch ev.Outcome {
	case OutcomeSucceeded:
		pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED
		pr.rec.Error = ""
		pr.rec.Outputs = pr.outputs
		if pr.cacheKey != "" && pr.rec.CachedFrom == "" {
			r.remember(pr)
		}
		_ = r.w.Batch().PutProcessor(pr.rec)
		r.notify(Update{Processor: pr.rec})
		return r.act(r.sched.Finished(i, scheduler.Succeeded))
	case OutcomeCancelled:
		pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_FAILED
		pr.rec.Error = ev.Message
		_ = r.w.Batch().PutProcessor(pr.rec)
		r.event(pr.rec.Name, "state", "Failed: "+ev.Message)
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

func outcomeWord(o Outcome) string {
	switch o {
	case OutcomeSucceeded:
		return "succeeded"
	case OutcomeCancelled:
		return "cancelled"
	}
	return "failed"
}
