package executorserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/wiz-run/wiz/proto/wizrpc"
)

// Orphans. An executor started with an orphan timeout (a service Manager's:
// wiz daemon) keeps running the tasks of a stream that breaks — its Manager
// was killed — and holds their events, so that the restarted Manager can
// collect them: it opens a stream whose first message is an Attach naming
// the tasks it knows of. Held tasks it does not name are cancelled. When no
// stream attaches within the timeout, the held tasks are cancelled and the
// executor exits (Run returns ErrOrphaned).

// ErrOrphaned is returned by Run when the executor's Manager went away and
// none re-attached within the orphan timeout.
var ErrOrphaned = errors.New("no Manager re-attached within the orphan timeout")

// orphanLogMax bounds the log bytes held per orphaned task; beyond it, log
// events are counted, not kept.
const orphanLogMax = 1 << 20

// taskRoute carries one task's events to the stream that has the task now,
// or holds them while none has it.
type taskRoute struct {
	id     string
	cancel context.CancelCauseFunc
	ended  chan struct{} // closed once the task has emitted its last event

	mu      sync.Mutex
	out     *eventSender // nil while orphaned
	owner   *streamTasks // the stream that has the task (or had it, when orphaned)
	discard bool         // no Manager wants its events
	held    []*wizrpc.ExecuteEvent
	logHeld int
	dropped int64 // log bytes not held
}

func (r *taskRoute) emit(ev *wizrpc.ExecuteEvent) {
	r.mu.Lock()
	out := r.out
	if out == nil {
		r.holdLocked(ev)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	out.send(ev) // a failed send spills it back (respill)
}

// respill takes an event its stream could not send: it goes to the stream
// that attached the task since, or is held.
func (r *taskRoute) respill(from *eventSender, ev *wizrpc.ExecuteEvent) {
	r.mu.Lock()
	out := r.out
	if out == nil || out == from {
		r.holdLocked(ev)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	out.send(ev)
}

func (r *taskRoute) holdLocked(ev *wizrpc.ExecuteEvent) {
	if r.discard {
		return
	}
	if l, ok := ev.Event.(*wizrpc.ExecuteEvent_Log); ok {
		if r.logHeld+len(l.Log.Data) > orphanLogMax {
			r.dropped += int64(len(l.Log.Data))
			return
		}
		r.logHeld += len(l.Log.Data)
	}
	r.held = append(r.held, ev)
}

// take makes st the task's stream; its events are held until attach.
func (r *taskRoute) take(st *streamTasks) {
	r.mu.Lock()
	r.owner, r.out = st, nil
	r.mu.Unlock()
}

// attach sends the held events on out, then routes the task's events to it;
// discard drops them instead, now and from now on. r.mu is not held while
// sending (a failed send spills back into the route): events the task emits
// meanwhile are held, and sent in the next round, so that order is kept. If
// out fails, the events stay held for the next attach.
func (r *taskRoute) attach(out *eventSender, discard bool) {
	r.mu.Lock()
	r.discard = discard
	if discard {
		r.held, r.logHeld, r.dropped, r.out = nil, 0, 0, nil
		r.mu.Unlock()
		return
	}
	dropped := r.dropped
	r.dropped = 0
	r.mu.Unlock()
	if dropped > 0 {
		out.send(&wizrpc.ExecuteEvent{TaskId: r.id, Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{
			Stream: "stderr", Data: fmt.Appendf(nil, "… %d bytes of logs dropped while no Manager was attached …\n", dropped)}}})
	}
	for {
		r.mu.Lock()
		if out.failed() {
			r.mu.Unlock()
			return // still held (out stays nil)
		}
		held := r.held
		r.held, r.logHeld = nil, 0
		if len(held) == 0 {
			r.out = out
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		for _, ev := range held {
			out.send(ev)
		}
	}
}

func (r *taskRoute) end() { close(r.ended) }

// streamTasks are the tasks a stream carries.
type streamTasks struct {
	mu     sync.Mutex
	routes map[string]*taskRoute
	// attached: it began with an Attach (a restarted Manager's); under
	// orphans.mu.
	attached bool
}

func (st *streamTasks) add(r *taskRoute) {
	st.mu.Lock()
	st.routes[r.id] = r
	st.mu.Unlock()
}

func (st *streamTasks) get(id string) *taskRoute {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.routes[id]
}

func (st *streamTasks) remove(id string) {
	st.mu.Lock()
	delete(st.routes, id)
	st.mu.Unlock()
}

// all returns the tasks st carries (a broken stream keeps them, so that
// its late events still find their tasks).
func (st *streamTasks) all() map[string]*taskRoute {
	st.mu.Lock()
	defer st.mu.Unlock()
	return maps.Clone(st.routes)
}

// mine returns the tasks st carries that no other stream took over.
func (st *streamTasks) mine() []*taskRoute {
	st.mu.Lock()
	defer st.mu.Unlock()
	rs := make([]*taskRoute, 0, len(st.routes))
	for _, r := range st.routes {
		r.mu.Lock()
		if r.owner == st || r.owner == nil {
			rs = append(rs, r)
		}
		r.mu.Unlock()
	}
	return rs
}

func (st *streamTasks) cancelAll() {
	for _, r := range st.mine() {
		r.cancel(errCancelled)
	}
}

// wait waits until every task the stream carries has ended.
func (st *streamTasks) wait() {
	rs := st.mine()
	for _, r := range rs {
		<-r.ended
	}
}

// spill takes an event of one of the stream's tasks that the stream (from)
// could not send.
func (st *streamTasks) spill(from *eventSender, ev *wizrpc.ExecuteEvent) {
	if r := st.get(ev.TaskId); r != nil {
		r.respill(from, ev)
	}
}

// orphans are the tasks of broken streams, until a stream attaches them or
// the orphan timeout ends them.
type orphans struct {
	mu      sync.Mutex
	routes  map[string]*taskRoute
	live    map[*streamTasks]bool // the streams open now
	streams int                   // streams open now
	timer   *time.Timer           // armed while no stream is open after one broke
	expired chan struct{}
	once    sync.Once
	closed  bool // the last stream ended with no task held: nothing waits
	used    bool // a stream has been opened
}

// parentGone ends an executor whose parent died before any Manager
// connected to it: nothing will.
func (s *Server) parentGone() {
	o := &s.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.used {
		return // the Manager's stream, or its orphan timeout, decides
	}
	s.log.Debug("exiting: the backend that started this executor died before a Manager connected")
	o.closed = true
	o.timer.Reset(0)
}

// closedGrace is how long an executor with an orphan timeout lives on
// after its Manager closed its stream, when nothing else connects.
const closedGrace = 5 * time.Second

// done reports, once expired is closed, whether the executor ends with
// nothing left waiting (no task was held when its last stream ended).
func (o *orphans) done() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}

func (s *Server) streamStarted(st *streamTasks) {
	o := &s.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.live == nil {
		o.live = map[*streamTasks]bool{}
	}
	o.live[st] = true
	o.streams++
	o.closed, o.used = false, true
	if o.timer != nil {
		o.timer.Stop()
	}
}

func (s *Server) streamEnded(st *streamTasks) {
	o := &s.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.live, st)
	o.streams--
	if o.streams == 0 && o.timer != nil {
		// No Manager is connected: the executor waits for one (and its
		// orphans, if any, for it) no longer than the orphan timeout; after
		// a Manager closed its stream (it is done with the executor, whose
		// teardown comes next), briefly, in case that Manager was killed
		// before it could tear the executor down.
		d := s.cfg.OrphanTimeout
		if len(o.routes) == 0 {
			d = min(d, closedGrace)
			o.closed = true
		}
		o.timer.Reset(d)
	}
}

// orphan keeps a broken stream's tasks running, holding their events, and
// starts the orphan timeout when no other stream is open.
func (s *Server) orphan(st *streamTasks, out *eventSender) {
	rs := st.all()
	o := &s.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.routes == nil {
		o.routes = map[string]*taskRoute{}
	}
	// A restarted Manager that re-attached already, before this break was
	// seen, has asked for what it wants: the rest is cancelled, not held.
	claimed := false
	for l := range o.live {
		claimed = claimed || l != st && l.attached
	}
	for id, r := range rs {
		// Not the tasks a new stream took over meanwhile (attach).
		r.mu.Lock()
		mine := r.owner == st
		if mine {
			r.out = nil
		}
		r.mu.Unlock()
		switch {
		case mine && claimed:
			r.cancel(fmt.Errorf("%w: its restarted Manager did not ask for it", errCancelled))
			r.attach(nil, true)
		case mine:
			o.routes[id] = r
		}
	}
	delete(o.live, st)
	o.streams--
	s.log.Warn("the Manager's stream broke; tasks run on for a Manager to re-attach", "tasks", len(rs), "orphan_timeout", s.cfg.OrphanTimeout)
	if o.streams > 0 {
		return
	}
	// With no task held, nothing waits for a Manager: the executor ends as
	// soon as after a close (its run may have ended just before its Manager
	// was killed, before the teardown).
	d := s.cfg.OrphanTimeout
	o.closed = len(o.routes) == 0
	if o.closed {
		d = min(d, closedGrace)
	}
	if o.timer == nil {
		o.timer = time.AfterFunc(d, s.expire)
	} else {
		o.timer.Reset(d)
	}
}

// expire ends the orphans: no Manager re-attached them in time.
func (s *Server) expire() {
	o := &s.orphans
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.streams > 0 {
		return
	}
	for _, r := range o.routes {
		r.cancel(fmt.Errorf("%w (%s)", ErrOrphaned, s.cfg.OrphanTimeout))
		r.attach(nil, true)
	}
	s.log.Warn("no Manager re-attached; cancelled its tasks and exiting", "tasks", len(o.routes), "orphan_timeout", s.cfg.OrphanTimeout)
	o.routes = nil
	o.once.Do(func() { close(o.expired) })
}

// attach gives the stream st the held tasks named by ids; each named task
// the executor does not hold ends at once, unknown. Held tasks not named are
// cancelled, their events dropped.
func (s *Server) attach(st *streamTasks, out *eventSender, ids []string) {
	o := &s.orphans
	o.mu.Lock()
	st.attached = true
	rs := o.routes
	o.routes = nil
	var live []*streamTasks
	for l := range o.live {
		if l != st {
			live = append(live, l)
		}
	}
	o.mu.Unlock()
	for _, id := range ids {
		r := rs[id]
		if r == nil {
			// A stream this executor has not seen break yet (its Manager
			// was killed a moment ago) may still carry it: the new
			// Manager takes it over, as if it had been orphaned.
			for _, l := range live {
				if lr := l.get(id); lr != nil {
					r = lr
					break
				}
			}
		}
		if r == nil {
			out.send(&wizrpc.ExecuteEvent{TaskId: id, Event: &wizrpc.ExecuteEvent_Finished{Finished: &wizrpc.Finished{
				Outcome: wizrpc.Outcome_OUTCOME_FAILED, Error: "the executor holds no such task", Unknown: true}}})
			continue
		}
		delete(rs, id)
		st.add(r)
		r.take(st)
		r.attach(out, false)
		select {
		case <-r.ended:
			st.remove(id) // it ended while orphaned: its events are sent
		default:
		}
	}
	for id, r := range rs {
		r.cancel(fmt.Errorf("%w: its restarted Manager did not ask for it", errCancelled))
		r.take(st)
		r.attach(nil, true)
		st.add(r) // the stream waits for it to end
		s.log.Info("cancelled a task its restarted Manager did not ask for", "task", id)
	}
	s.log.Info("a Manager re-attached", "tasks", len(ids))
}
