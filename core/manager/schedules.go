package manager

// This file is the schedules' service loop: in a service process (wiz
// daemon) it wakes at each schedule's next tick, has core/schedule decide
// what each due tick does, and carries that out: a run whose tick is
// recorded in the transaction that creates it, or a skip with its reason.
// Schedule state (pause, the last tick handled, the skipped ticks) is in the
// store by PIPELINE/NAME.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/ids"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/schedule"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// Clock is the time the schedules' loop sees; tests give it a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// skippedKept is how many skipped ticks a schedule's state keeps.
const skippedKept = 100

// pausedEvery is how often the loop records a paused schedule's ticks.
const pausedEvery = time.Minute

// errFired is a tick whose run was already recorded (a restart, a race).
var errFired = errors.New("the tick already started its run")

// fireReq makes a run the run of an event (RunRequest.fire): a schedule's
// tick, or a trigger's event.
type fireReq struct {
	pipeline, schedule string
	tick               time.Time
	// event keys the event when it is not a tick (a trigger's file): no
	// schedule state is kept.
	event    string
	backfill bool // another run of a tick that has runs is allowed
	// started is called once the run is recorded, with its ID.
	started func(id string)
	unlock  func() // releases schedMu, taken by recordFire, once committed
}

// recordFire stages the record of f's tick and, for the scheduler's fires,
// the schedule's state, in b: the transaction that creates run id. It holds
// the Manager's schedule lock until f.unlock (after the commit).
func (m *Manager) recordFire(b *store.Batch, f *fireReq, id string) error {
	m.schedMu.Lock()
	f.unlock = m.schedMu.Unlock
	key := f.event
	if key == "" {
		key = store.TickKey(f.tick)
	}
	old, err := m.store.Fire(f.pipeline, f.schedule, key)
	switch {
	case err == nil:
		if !f.backfill {
			return errFired
		}
	case errors.Is(err, store.ErrNotFound):
		old = &wizpb.Fire{}
	default:
		return err
	}
	old.RunIds = append(old.RunIds, id)
	if err := b.PutFire(f.pipeline, f.schedule, key, old); err != nil {
		return err
	}
	if f.backfill || f.event != "" {
		return nil
	}
	st, err := m.scheduleState(f.pipeline, f.schedule, m.clock.Now())
	if err != nil {
		return err
	}
	tick := timestamppb.New(f.tick)
	st.LastTick, st.LastFire, st.LastRun = tick, tick, id
	return b.PutScheduleState(st)
}

// scheduleState returns the state of PIPELINE/NAME, a new one (first
// applied now) when there is none.
func (m *Manager) scheduleState(pipeline, name string, now time.Time) (*wizpb.ScheduleState, error) {
	st, err := m.store.ScheduleState(pipeline, name)
	if errors.Is(err, store.ErrNotFound) {
		return &wizpb.ScheduleState{Pipeline: pipeline, Name: name, FirstApplied: timestamppb.New(now)}, nil
	}
	return st, err
}

// noteSchedules records the first apply of each schedule of p that has no
// state yet (applyFrom wakes the loop once the version is stored).
func (m *Manager) noteSchedules(p *pipeline.Pipeline) error {
	if len(p.Schedules) == 0 {
		return nil
	}
	m.schedMu.Lock()
	defer m.schedMu.Unlock()
	for _, sc := range p.Schedules {
		if _, err := m.store.ScheduleState(p.Name, sc.Name); errors.Is(err, store.ErrNotFound) {
			st := &wizpb.ScheduleState{Pipeline: p.Name, Name: sc.Name, FirstApplied: timestamppb.New(m.clock.Now())}
			if err := m.store.PutScheduleState(st); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	return nil
}

// pokeSchedules wakes the schedules' and the file triggers' loops (a
// pipeline was applied).
func (m *Manager) pokeSchedules() {
	for _, ch := range []chan struct{}{m.schedPoke, m.trigPoke} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// ScheduleInfo is a schedule as `wiz schedules list` shows it.
type ScheduleInfo struct {
	// Kind is "schedule", or "files" for a file trigger (Watch: its
	// PATH/PATTERN; Error: why it cannot read its directory).
	Kind, Watch, Error                      string
	Pipeline, Name, Cron, Timezone, Overlap string
	Catchup                                 time.Duration
	State                                   *wizpb.ScheduleState
	Next                                    time.Time // zero while paused, or never
}

func newScheduleInfo(pipelineName string, sc *pipeline.Schedule, st *wizpb.ScheduleState) *ScheduleInfo {
	return &ScheduleInfo{Kind: "schedule", Pipeline: pipelineName, Name: sc.Name, Cron: sc.Cron, Timezone: sc.Timezone, Overlap: sc.Overlap, Catchup: sc.Catchup, State: st}
}

// Schedules lists the schedules of every pipeline's newest version.
func (m *Manager) Schedules() ([]*ScheduleInfo, error) {
	pls, err := m.store.Pipelines()
	if err != nil {
		return nil, err
	}
	now := m.clock.Now()
	var out []*ScheduleInfo
	for _, pl := range pls {
		p, err := m.latestParsed(pl)
		if err != nil {
			m.log.Warn("a pipeline's schedules cannot be read", "pipeline", pl.Name, "error", err)
			continue
		}
		for _, sc := range p.Schedules {
			st, err := m.scheduleState(pl.Name, sc.Name, now)
			if err != nil {
				return nil, err
			}
			info := newScheduleInfo(pl.Name, sc, st)
			if !st.Paused {
				from := now
				if lt := st.LastTick.AsTime(); st.LastTick != nil && lt.After(from) {
					from = lt
				}
				info.Next = sc.Spec.Next(from)
			}
			out = append(out, info)
		}
		for _, tr := range p.Triggers {
			if tr.Files != nil {
				out = append(out, &ScheduleInfo{Kind: "files", Pipeline: pl.Name, Name: tr.Name, State: &wizpb.ScheduleState{},
					Watch: filepath.Join(tr.Files.Path, tr.Files.Pattern), Error: m.triggers.get(pl.Name + "/" + tr.Name)})
			}
		}
	}
	return out, nil
}

// latestParsed returns the parsed newest version of pl.
func (m *Manager) latestParsed(pl *wizpb.Pipeline) (*pipeline.Pipeline, error) {
	v, err := m.store.PipelineVersion(pl.Id, pl.LatestVersionId)
	if err != nil {
		return nil, err
	}
	return m.parse(v.File, v.Source)
}

// findSchedule returns the schedule NAME of the newest version of PIPELINE.
func (m *Manager) findSchedule(pipelineName, name string) (*pipeline.Schedule, error) {
	pl, err := m.store.Pipeline(pipelineName)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFoundf("pipeline %s does not exist (wiz pipeline list shows them)", pipelineName)
	}
	if err != nil {
		return nil, err
	}
	p, err := m.latestParsed(pl)
	if err != nil {
		return nil, err
	}
	sc, ok := p.Schedule(name)
	if !ok {
		have := "it has none"
		if len(p.Schedules) > 0 {
			var names []string
			for _, s := range p.Schedules {
				names = append(names, s.Name)
			}
			have = "it has: " + fmt.Sprint(names)
		}
		return nil, notFoundf("pipeline %s has no schedule %q (%s)", pipelineName, name, have)
	}
	return sc, nil
}

// PauseSchedule pauses (or, with pause false, resumes) PIPELINE/NAME. A
// pause outlives re-applies and restarts; ticks while paused are recorded
// skipped, and a resume does not catch up on them.
func (m *Manager) PauseSchedule(pipelineName, name string, pause bool) (*ScheduleInfo, error) {
	sc, err := m.findSchedule(pipelineName, name)
	if err != nil {
		return nil, err
	}
	m.schedMu.Lock()
	now := m.clock.Now()
	st, err := m.scheduleState(pipelineName, name, now)
	if err == nil && st.Paused != pause {
		st.Paused = pause
		if !pause {
			// The ticks while paused that the loop has not recorded yet
			// (it records them a minute at a time).
			from := st.FirstApplied.AsTime()
			for _, t := range []*timestamppb.Timestamp{st.Resumed, st.LastTick} {
				if t != nil && t.AsTime().After(from) {
					from = t.AsTime()
				}
			}
			var ticks []*wizpb.SkippedTick
			for t := sc.Spec.Next(from); !t.IsZero() && !t.After(now) && len(ticks) < skippedKept; t = sc.Spec.Next(t) {
				ticks = append(ticks, &wizpb.SkippedTick{Tick: timestamppb.New(t), Reason: "paused"})
			}
			m.addSkipped(st, ticks)
			st.Resumed = timestamppb.New(now)
		}
		err = m.store.PutScheduleState(st)
	}
	m.schedMu.Unlock()
	if err != nil {
		return nil, err
	}
	m.pokeSchedules()
	info := newScheduleInfo(pipelineName, sc, st)
	if !st.Paused {
		info.Next = sc.Spec.Next(now)
	}
	return info, nil
}

// ServeSchedules fires the schedules of every pipeline until ctx is done,
// on the Manager's clock. It returns a function that waits for the loop and
// the runs it started to end. Only a service process calls it.
func (m *Manager) ServeSchedules(ctx context.Context) (wait func()) {
	clk := m.clock
	l := &schedLoop{m: m, clk: clk, boot: clk.Now(), running: map[string]map[string]bool{}, ended: make(chan ended, 16), done: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(l.done)
		l.serve(ctx)
		m.stopOnce.Do(func() { close(m.stopBackfills) }) // the service stops: no new backfill runs
	}()
	return l.wg.Wait
}

type ended struct{ key, id string }

// schedLoop is the schedules' loop, owned by its goroutine.
type schedLoop struct {
	m       *Manager
	entries map[string]*schedEntry // PIPELINE/NAME → its schedule
	clk     Clock
	boot    time.Time
	running map[string]map[string]bool // PIPELINE/NAME → its Running runs
	ended   chan ended
	done    chan struct{} // closed when the loop returns
	wg      sync.WaitGroup
}

func (l *schedLoop) serve(ctx context.Context) {
	full := true // read every pipeline's schedules (else: the known ones)
	for {
		next := l.pass(ctx, full)
		full = false
		var wake <-chan time.Time
		if !next.IsZero() {
			wake = l.clk.After(next.Sub(l.clk.Now()))
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-l.m.schedPoke: // an apply, a pause or a resume
			full = true
		case e := <-l.ended:
			delete(l.running[e.key], e.id)
			if se := l.entries[e.key]; se != nil {
				se.next = l.clk.Now() // a queued tick may start now
			}
		}
	}
}

// schedEntry is a schedule the loop knows, and when it is next due (zero:
// not until something happens to it).
type schedEntry struct {
	pipeline string
	sc       *pipeline.Schedule
	next     time.Time
}

// pass handles the due ticks of the schedules (of every pipeline's newest
// version when full, else of those it knows that are due) and returns when
// the next one is due (zero: none). A wake on time reads no pipeline and
// the state of the due schedules alone: an idle daemon with many schedules
// stays idle.
func (l *schedLoop) pass(ctx context.Context, full bool) time.Time {
	if full {
		pls, err := l.m.store.Pipelines()
		if err != nil {
			l.m.log.Error("schedules: list pipelines", "error", err)
			return l.clk.Now().Add(time.Minute)
		}
		entries := map[string]*schedEntry{}
		for _, pl := range pls {
			p, err := l.m.latestParsed(pl)
			if err != nil {
				continue // listed as such by Schedules
			}
			for _, sc := range p.Schedules {
				entries[pl.Name+"/"+sc.Name] = &schedEntry{pipeline: pl.Name, sc: sc}
			}
		}
		l.entries = entries
	}
	now := l.clk.Now()
	var next time.Time
	for _, key := range slices.Sorted(maps.Keys(l.entries)) {
		se := l.entries[key]
		if ctx.Err() != nil {
			return time.Time{}
		}
		if full || !se.next.IsZero() && !se.next.After(now) {
			se.next = l.schedule(ctx, se.pipeline, se.sc)
		}
		if n := se.next; !n.IsZero() && (next.IsZero() || n.Before(next)) {
			next = n
		}
	}
	return next
}

// schedule handles the due ticks of one schedule.
func (l *schedLoop) schedule(ctx context.Context, pipelineName string, sc *pipeline.Schedule) time.Time {
	key := pipelineName + "/" + sc.Name
	now := l.clk.Now()
	l.m.schedMu.Lock()
	st, err := l.m.scheduleState(pipelineName, sc.Name, now)
	l.m.schedMu.Unlock()
	if err != nil {
		l.m.log.Error("schedules: read state", "schedule", key, "error", err)
		return now.Add(time.Minute)
	}
	since := st.FirstApplied.AsTime()
	if st.Resumed != nil && st.Resumed.AsTime().After(since) {
		since = st.Resumed.AsTime()
	}
	var last time.Time
	if st.LastTick != nil {
		last = st.LastTick.AsTime()
	}
	ds, next := schedule.Due(sc.Spec, schedule.Policy{Overlap: sc.Overlap, Catchup: sc.Catchup},
		schedule.State{Since: since, Last: last, Paused: st.Paused, Running: len(l.running[key])}, l.boot, now)
	var skipped []*wizpb.SkippedTick
	flush := func() {
		if len(skipped) > 0 {
			l.skip(pipelineName, sc.Name, skipped)
			skipped = nil
		}
	}
	for _, d := range ds {
		switch d.Action {
		case schedule.Skip:
			skipped = append(skipped, &wizpb.SkippedTick{Tick: timestamppb.New(d.Tick), Reason: d.Reason})
			continue
		case schedule.Wait:
			flush()
			return next
		case schedule.CancelAndFire:
			for id := range l.running[key] {
				if _, err := l.m.Cancel(id); err != nil && !errors.Is(err, ErrNotRunning) {
					l.m.log.Warn("schedules: cancel the previous run", "schedule", key, "run", id, "error", err)
				}
			}
		}
		flush()
		if reason := l.fire(ctx, pipelineName, sc, d.Tick); reason != "" {
			skipped = append(skipped, &wizpb.SkippedTick{Tick: timestamppb.New(d.Tick), Reason: reason})
		}
	}
	flush()
	if st.Paused && !next.IsZero() && next.Before(now.Add(pausedEvery)) {
		// Paused: its ticks are recorded skipped a minute at a time, not one
		// wake per tick, so that a daemon whose schedules are paused idles.
		next = now.Add(pausedEvery)
	}
	return next
}

// skip records ticks that start no run.
func (l *schedLoop) skip(pipelineName, name string, ticks []*wizpb.SkippedTick) {
	l.m.schedMu.Lock()
	defer l.m.schedMu.Unlock()
	st, err := l.m.scheduleState(pipelineName, name, l.clk.Now())
	if err != nil {
		l.m.log.Error("schedules: read state", "schedule", pipelineName+"/"+name, "error", err)
		return
	}
	l.m.addSkipped(st, ticks)
	// Not synced: after a crash the same ticks are decided skipped again.
	if err := l.m.store.PutScheduleStateLazy(st); err != nil {
		l.m.log.Error("schedules: record skipped ticks", "schedule", pipelineName+"/"+name, "error", err)
	}
}

// addSkipped records skipped ticks in st (the newest skippedKept are
// kept) and moves its last handled tick. Ticks at or before the last
// handled one are dropped: the loop decides on a state read before a
// resume may have recorded the same ticks.
func (m *Manager) addSkipped(st *wizpb.ScheduleState, ticks []*wizpb.SkippedTick) {
	if st.LastTick != nil {
		last := st.LastTick.AsTime()
		ticks = slices.DeleteFunc(slices.Clone(ticks), func(t *wizpb.SkippedTick) bool { return !t.Tick.AsTime().After(last) })
	}
	if len(ticks) == 0 {
		return
	}
	for _, t := range ticks {
		m.obs.TickSkipped(st.Pipeline, st.Name, skipClass(t.Reason))
	}
	st.Skipped = append(st.Skipped, ticks...)
	if n := len(st.Skipped); n > skippedKept {
		st.Skipped = slices.Clone(st.Skipped[n-skippedKept:])
	}
	if lt := ticks[len(ticks)-1].Tick; st.LastTick == nil || lt.AsTime().After(st.LastTick.AsTime()) {
		st.LastTick = lt
	}
}

// fire starts the run of a tick and returns once it is recorded; a reason
// when it started none.
func (l *schedLoop) fire(ctx context.Context, pipelineName string, sc *pipeline.Schedule, tick time.Time) string {
	key := pipelineName + "/" + sc.Name
	req := RunRequest{Pipeline: pipelineName, Inputs: textInputs(sc.Inputs), Trigger: "schedule/" + sc.Name, ScheduledTime: tick,
		fire: &fireReq{pipeline: pipelineName, schedule: sc.Name, tick: tick}}
	id, err := l.m.startFired(ctx, &l.wg, req, func(r *wizpb.Run, err error) {
		if err != nil {
			l.m.log.Warn("schedules: run", "schedule", key, "run", r.Id, "error", err)
		}
		select {
		case l.ended <- ended{key, r.Id}:
		case <-l.done:
		}
	})
	switch {
	case err == nil:
		if l.running[key] == nil {
			l.running[key] = map[string]bool{}
		}
		l.running[key][id] = true
		lag := l.clk.Now().Sub(tick)
		l.m.obs.TickFired(pipelineName, sc.Name, lag)
		l.m.log.Info("schedules: fired", "schedule", key, "tick", tick, "run", id, "lag", lag)
		return ""
	case errors.Is(err, errFired):
		return "" // its run exists: recorded by an earlier fire
	}
	l.m.log.Warn("schedules: the tick started no run", "schedule", key, "tick", tick, "error", err)
	return "could not start: " + err.Error()
}

// startFired runs req (a fire's run) in a goroutine that wg owns, and
// returns once the run is recorded, with its ID, or could not start, with
// why (errFired: the event's run exists). ended, when set, gets the run
// when it has ended.
func (m *Manager) startFired(ctx context.Context, wg *sync.WaitGroup, req RunRequest, ended func(*wizpb.Run, error)) (string, error) {
	started := make(chan string, 1)
	failed := make(chan error, 1)
	req.fire.started = func(id string) { started <- id }
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, err := m.Run(context.WithoutCancel(ctx), req, nil)
		if r == nil {
			failed <- err
			return
		}
		if ended != nil {
			ended(r, err)
		}
	}()
	select {
	case id := <-started:
		return id, nil
	case err := <-failed:
		return "", err
	}
}

// textInputs turns a schedule's inputs into --input values.
func textInputs(in map[string]string) map[string]InputValue {
	out := make(map[string]InputValue, len(in))
	for k, v := range in {
		out[k] = InputValue{Text: v}
	}
	return out
}

// BackfillTick is a tick of a backfill: the run it started, or why none.
type BackfillTick struct {
	Tick    time.Time
	RunID   string
	Skipped string
}

// Backfill starts one run of PIPELINE/NAME per tick in [from, to], at most
// maxParallel at once, and returns at once with the run IDs (runs not yet
// started have their IDs already). A tick whose newest run Succeeded or is
// Running is skipped; a Failed one runs again. It ignores overlap and
// pause. dryRun starts nothing. wait, when set, is called when all ended.
func (m *Manager) Backfill(pipelineName, name string, from, to time.Time, maxParallel int, dryRun bool) ([]BackfillTick, func(), error) {
	sc, err := m.findSchedule(pipelineName, name)
	if err != nil {
		return nil, nil, err
	}
	if to.Before(from) {
		return nil, nil, fmt.Errorf("%w: --to %s is before --from %s", ErrUsage, to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	ticks, err := sc.Spec.Ticks(from, to, 10_000)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	out := make([]BackfillTick, len(ticks))
	var pending []int
	for i, t := range ticks {
		out[i].Tick = t
		f, err := m.store.Fire(pipelineName, name, store.TickKey(t))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, nil, err
		}
		if f != nil && len(f.RunIds) > 0 {
			last := f.RunIds[len(f.RunIds)-1]
			if r, err := m.store.Run(last); err == nil && r.State != wizpb.RunState_RUN_STATE_FAILED {
				out[i].Skipped = fmt.Sprintf("its run %s %s", last, stateWord(r.State))
				continue
			}
		}
		pending = append(pending, i)
	}
	if dryRun {
		return out, func() {}, nil
	}
	for _, i := range pending {
		out[i].RunID = ids.NewString()
	}
	maxParallel = max(maxParallel, 1)
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxParallel)
	wg.Add(1)
	m.backfills.Add(1)
	go func() { // owns the backfill's runs; StopBackfills stops it
		defer m.backfills.Done()
		defer wg.Done()
		var runs sync.WaitGroup
		defer runs.Wait()
		for _, i := range pending {
			select {
			case slots <- struct{}{}:
			case <-m.stopBackfills:
				m.log.Warn("backfill: stopped with the Manager; its later ticks did not start", "schedule", pipelineName+"/"+name, "from", out[i].Tick)
				return
			}
			runs.Add(1)
			go func(bt BackfillTick) {
				defer runs.Done()
				defer func() { <-slots }()
				req := RunRequest{Pipeline: pipelineName, Inputs: textInputs(sc.Inputs), Trigger: "schedule/" + name, ScheduledTime: bt.Tick,
					runID: bt.RunID, fire: &fireReq{pipeline: pipelineName, schedule: name, tick: bt.Tick, backfill: true}}
				if _, err := m.Run(context.Background(), req, nil); err != nil {
					m.log.Warn("backfill: run", "schedule", pipelineName+"/"+name, "tick", bt.Tick, "run", bt.RunID, "error", err)
				}
			}(out[i])
		}
	}()
	return out, wg.Wait, nil
}

// StopBackfills starts no more backfill runs (nor does a stopped schedules'
// loop) and waits for those running to end: a service process calls it when
// it stops, before its store closes.
func (m *Manager) StopBackfills() {
	m.stopOnce.Do(func() { close(m.stopBackfills) })
	m.backfills.Wait()
}

func stateWord(s wizpb.RunState) string {
	switch s {
	case wizpb.RunState_RUN_STATE_RUNNING:
		return "is Running"
	case wizpb.RunState_RUN_STATE_SUCCEEDED:
		return "Succeeded"
	}
	return "Failed"
}
