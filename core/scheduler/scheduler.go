// Package scheduler is wiz's DAG scheduler as a deterministic state machine.
// It does no I/O and reads no clock: the host feeds it events (a task ended,
// a condition's verdict, the logical time, a cancel) and carries out the
// actions it returns (dispatch, cancel, evaluate a condition, skip, wake me
// at T, done). Every run rule is a transition here: dependencies and their
// outcomes, conditions, the failure rule and fail_fast, retries and their
// backoff, the run's timeout, and finally. Nodes are numbered 0..n-1.
//
// The failure rule: a fatal error in any processor fails the run; with
// FailFast the tasks in flight are cancelled and never-started processors
// stay Idle; without it every processor not downstream of the failure still
// runs. A warn-only processor's failure (on_error: warn, or handled by an
// after: {NAME: failed|ended} entry) is not fatal: the run goes on.
//
// A processor whose dependencies have all ended runs when each of its edges
// allows how its upstream ended (Allow) and its condition (Cond) holds;
// otherwise it is skipped, which its successors see in turn.
package scheduler

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Outcome is how a task ended.
type Outcome uint8

const (
	// Succeeded: the task did its work.
	Succeeded Outcome = iota + 1
	// Failed: a fatal error.
	Failed
	// Cancelled: stopped by a Cancel action or before it started.
	Cancelled
)

// End is how a task's attempt ended, with what the retry rule needs.
type End struct {
	Outcome Outcome
	// Code is the program's exit code; HasCode says there was one (not a
	// timeout, a signal or an output limit).
	Code    int
	HasCode bool
	// Lost: the executor was lost; it is retried whatever ExitCodes say.
	Lost bool
	// NoRetry: the same attempt would fail the same way (a problem the
	// Manager found before running it).
	NoRetry bool
}

// ActionKind says what the host must do.
type ActionKind uint8

const (
	// Dispatch: send node's task to an executor.
	Dispatch ActionKind = iota + 1
	// CancelTask: cancel node's task, which is in flight or waits to be
	// retried; the host reports its end with Ended (Cancelled).
	CancelTask
	// Done: the run is over; Result says how.
	Done
	// Evaluate: evaluate node's condition and report it with Evaluated.
	Evaluate
	// Skip: node will not run; Cause and CauseState say which upstream
	// processor and how it ended (Cause is -1 for a false condition).
	Skip
	// Retrying: node's attempt failed and will be dispatched again at At.
	Retrying
	// Wake: call Advance when the logical time reaches At.
	Wake
	// TimedOut: the run's timeout passed; what is in flight is cancelled.
	TimedOut
	// Finally: every main processor has ended; the finally processors start.
	Finally
	// Expand: evaluate node's for_each and report how many instances it has
	// with Expanded.
	Expand
	// Gathered: every instance of node, a for_each, has ended; the node
	// ends as CauseState says (its successors are decided next).
	Gathered
)

// State is how a node ended, as its successors see it.
type State uint8

const (
	// NotRun: never started (the run failed or was cancelled first).
	NotRun State = iota
	// StateSucceeded: it succeeded.
	StateSucceeded
	// StateFailed: it failed.
	StateFailed
	// StateSkipped: it was skipped.
	StateSkipped
)

// Allow is a set of upstream end states an edge lets its successor run after.
type Allow uint8

// Allow bits.
const (
	AllowSucceeded Allow = 1 << iota
	AllowFailed
	AllowSkipped
	AllowNotRun
	// AllowData is a data edge: the upstream's output is needed.
	AllowData = AllowSucceeded
	// AllowAfter is a plain after: entry.
	AllowAfter = AllowSucceeded | AllowSkipped
	// AllowEnded is after: {NAME: ended}.
	AllowEnded = AllowSucceeded | AllowFailed | AllowSkipped | AllowNotRun
)

func (a Allow) allows(s State) bool {
	switch s {
	case StateSucceeded:
		return a&AllowSucceeded != 0
	case StateFailed:
		return a&AllowFailed != 0
	case StateSkipped:
		return a&AllowSkipped != 0
	}
	return a&AllowNotRun != 0
}

// Action is one thing for the host to do.
type Action struct {
	Kind ActionKind
	Node int
	// Cause and CauseState: for Skip, the upstream node that made it skip
	// and how it ended; Cause is -1 when the condition was false.
	Cause      int
	CauseState State
	// At is the logical time of a Retry's next attempt or of a Wake.
	At time.Duration
}

// Result is how a run ended.
type Result uint8

const (
	// Running: not over yet.
	Running Result = iota
	// RunSucceeded: every processor that could run succeeded.
	RunSucceeded
	// RunFailed: a fatal error, a timeout or a cancel.
	RunFailed
)

// Verdict is a condition's value, as the host reports it.
type Verdict uint8

const (
	// Run: the condition holds.
	Run Verdict = iota + 1
	// SkipIt: the condition is false.
	SkipIt
	// Error: the condition could not be evaluated; the node fails.
	Error
)

// Retry is a node's retry policy.
type Retry struct {
	// Limit counts retries: at most Limit+1 attempts.
	Limit int
	// The wait before retry n (from 1) is min(Backoff·Factorⁿ⁻¹,
	// MaxBackoff) × (1 ± Jitter·U), U uniform in [0, 1).
	Backoff    time.Duration
	Factor     float64
	MaxBackoff time.Duration
	Jitter     float64
	// MaxDuration: no retry starts later than this after the first
	// attempt's dispatch; 0: no bound.
	MaxDuration time.Duration
	// ExitCodes, when not empty, retries only these exit codes.
	ExitCodes []int
}

type nodeState uint8

const (
	idle       nodeState = iota // waiting for its dependencies
	evaluating                  // its condition is being evaluated
	expanding                   // its for_each is being evaluated
	expanded                    // its instances run; it ends when they all have
	ready                       // in the ready queue
	inFlight                    // dispatched, not ended
	retrying                    // waiting for its next attempt
	succeeded
	failed
	skipped
	notRun // ended without running: cancelled before it started
)

// Spec describes a DAG to schedule.
type Spec struct {
	// N is the number of nodes.
	N int
	// Edges are (from, to): to waits for from.
	Edges [][2]int
	// Allow holds, per edge, the upstream end states that let the edge's
	// successor run. Nil: AllowData for every edge.
	Allow []Allow
	// Priority orders ready nodes: higher first (e.g. the longest remaining
	// path). Nil: all equal, lower node numbers first.
	Priority []int
	// WarnOnly marks nodes whose failure is only a warning.
	WarnOnly []bool
	// Cond marks nodes with a condition, evaluated (Evaluate) once their
	// dependencies have ended and allow them to run.
	Cond []bool
	// Retry holds each node's retry policy; nil: none.
	Retry []Retry
	// Finally marks the finally nodes: they start once every other node has
	// ended or will not run, whatever the run's outcome.
	Finally []bool
	// ForEach marks the for_each nodes: once their dependencies allow them
	// to run, the host evaluates their list (Expand) and the node becomes
	// that many instances (Expanded), numbered from N on, each with the
	// node's condition, retry policy and failure rule; the node ends when
	// they all have: Failed when one failed, else Succeeded.
	ForEach []bool
	// MaxParallel bounds, per for_each node, how many of its instances are
	// in flight at once; 0: no bound but the window.
	MaxParallel []int
	// KeepGoing (fail_fast: false): a fatal failure cancels nothing; only
	// the failure's downstream is skipped, and the run fails once everything
	// else has ended. False: the default rule, fail fast.
	KeepGoing bool
	// Timeout bounds the run from Start; 0: none.
	Timeout time.Duration
	// Seed seeds the jitter of retries.
	Seed uint64
	// Window is how many tasks may be in flight (dispatched and not finished)
	// at once; executors run fewer when they have fewer slots. 0: unlimited;
	// Hold: none until SetWindow.
	Window int
	// Done marks nodes that already succeeded (their outputs are reused): they
	// are never dispatched and count as Succeeded for their successors.
	Done []bool
}

// Scheduler schedules one run. It is not safe for concurrent use: one
// goroutine owns a run.
type Scheduler struct {
	spec Spec
	// Successors of node n are succ[succOff[n]:succOff[n+1]], and the Allow
	// of that edge allow[succOff[n]+i] (flat arrays: no allocation per node).
	succOff []int
	succ    []int
	allow   []Allow
	indeg   []int
	state   []nodeState
	// doom is the first upstream that forbids the node to run, +1 (0: none).
	doom []int32
	// base is, for an instance, its for_each node; for others the node
	// itself. Instances (ids from spec.N on) take their rules from it.
	base []int32
	// Per for_each node: instances not yet ended, whether one failed or did
	// not run, instances in flight, and ready instances held back by
	// MaxParallel.
	left      map[int]int
	instFail  map[int]State // StateFailed, or NotRun; absent: all succeeded
	ginflight map[int]int
	gwait     map[int][]int
	// inst holds, per expanded node, its first instance and their number.
	inst     map[int][2]int
	attempts []int
	first    []time.Duration // dispatch time of the first attempt
	due      []time.Duration // when a retrying node is dispatched again
	window   int
	ready    readyHeap
	inflight int
	waiting  int // nodes retrying
	evals    int // nodes evaluating
	open     int // main nodes not yet ended
	fopen    int // finally nodes not yet ended
	now      time.Duration
	woken    time.Duration // the At of the last Wake, or -1
	retries  retryHeap     // retrying nodes by due time (stale entries skipped)
	rng      *rand.Rand

	failing   bool // nothing new starts in this phase
	fatal     bool // the run will fail
	cancels   int
	timedOut  bool
	inFinally bool
	done      bool
	result    Result
	warned    int
	acts      []Action
}

// New makes a scheduler for spec. Edges must form a DAG.
func New(spec Spec) *Scheduler {
	n := spec.N
	s := &Scheduler{
		spec:     spec,
		succOff:  make([]int, n+1),
		succ:     make([]int, len(spec.Edges)),
		allow:    make([]Allow, len(spec.Edges)),
		indeg:    make([]int, n),
		state:    make([]nodeState, n),
		doom:     make([]int32, n),
		base:     make([]int32, n),
		attempts: make([]int, n),
		window:   spec.Window,
		woken:    -1,
	}
	if spec.Retry != nil {
		s.first = make([]time.Duration, n)
		s.due = make([]time.Duration, n)
		s.rng = rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15))
	}
	for _, e := range spec.Edges {
		s.succOff[e[0]+1]++
		s.indeg[e[1]]++
	}
	for i := 0; i < n; i++ {
		s.succOff[i+1] += s.succOff[i]
	}
	fill := append([]int(nil), s.succOff[:n]...)
	for k, e := range spec.Edges {
		s.succ[fill[e[0]]] = e[1]
		s.allow[fill[e[0]]] = AllowData
		if spec.Allow != nil {
			s.allow[fill[e[0]]] = spec.Allow[k]
		}
		fill[e[0]]++
	}
	if spec.Priority != nil {
		s.ready.prio = slices.Clone(spec.Priority) // instances add theirs
	}
	for i := range s.base {
		s.base[i] = int32(i)
	}
	if spec.ForEach != nil {
		s.left, s.instFail, s.ginflight, s.gwait, s.inst = map[int]int{}, map[int]State{}, map[int]int{}, map[int][]int{}, map[int][2]int{}
	}
	for i := 0; i < n; i++ {
		if s.isFinally(i) {
			s.fopen++
		} else {
			s.open++
		}
	}
	return s
}

func (s *Scheduler) isFinally(n int) bool {
	return s.spec.Finally != nil && s.spec.Finally[s.base[n]]
}
func (s *Scheduler) warnOnly(n int) bool { return s.spec.WarnOnly != nil && s.spec.WarnOnly[s.base[n]] }
func (s *Scheduler) hasCond(n int) bool  { return s.spec.Cond != nil && s.spec.Cond[s.base[n]] }
func (s *Scheduler) isForEach(n int) bool {
	return s.spec.ForEach != nil && n < s.spec.N && s.spec.ForEach[n]
}

// group returns the for_each node whose instance n is, or -1.
func (s *Scheduler) group(n int) int {
	if b := int(s.base[n]); b != n {
		return b
	}
	return -1
}

// successors returns node's successors and the Allow of each edge.
func (s *Scheduler) successors(node int) ([]int, []Allow) {
	if node >= s.spec.N {
		return nil, nil // an instance: its for_each node's successors wait for that
	}
	lo, hi := s.succOff[node], s.succOff[node+1]
	return s.succ[lo:hi], s.allow[lo:hi]
}

// Start returns the first actions. The logical time is 0.
func (s *Scheduler) Start() []Action {
	s.acts = s.acts[:0]
	// Reused nodes first: they count as Succeeded for their successors. All
	// are marked before any successor is decided, as one may be reused too.
	if s.spec.Done != nil {
		for i, d := range s.spec.Done {
			if d {
				s.state[i] = succeeded
			}
		}
		for i, d := range s.spec.Done {
			if d {
				s.end(i, succeeded)
			}
		}
	}
	for i := 0; i < s.spec.N; i++ {
		if s.indeg[i] == 0 && s.state[i] == idle && !s.isFinally(i) {
			s.decide(i)
		}
	}
	if s.spec.Timeout > 0 {
		s.wake()
	}
	s.step()
	return s.acts
}

// Finished records that node's task ended with outcome o; it is Ended
// without an exit code.
func (s *Scheduler) Finished(node int, o Outcome) []Action {
	return s.Ended(node, End{Outcome: o})
}

// Ended records how node's attempt ended and returns what to do next. The
// returned slice is reused by the next call.
func (s *Scheduler) Ended(node int, e End) []Action {
	s.acts = s.acts[:0]
	st := s.state[node]
	if st != inFlight && st != retrying {
		return s.acts
	}
	if st == inFlight {
		s.inflight--
		s.leaveGroup(node)
	} else {
		s.waiting--
	}
	switch e.Outcome {
	case Succeeded:
		s.end(node, succeeded)
	case Cancelled:
		// Cancelled before or while running: only a cancel does that, so
		// the phase is failing.
		s.end(node, notRun)
		if !s.failing {
			s.fatal = true
			s.failing = true
			s.cancelAll()
		}
	default: // Failed, or an outcome this version does not know: a failure
		if s.retry(node, e) {
			break
		}
		s.state[node] = failed
		s.failed(node) // before end: under fail-fast, its successors stay Idle
		s.end(node, failed)
	}
	s.step()
	return s.acts
}

// failed applies the failure rule to node, which ended Failed.
func (s *Scheduler) failed(node int) {
	switch {
	case s.failing:
		// Already failing: the tasks in flight were cancelled then.
	case s.warnOnly(node):
		s.warned++
	default:
		s.fatal = true
		if !s.spec.KeepGoing || s.inFinally {
			s.failing = true
			s.cancelAll()
		}
	}
}

// retry decides whether node's failed attempt is retried, and if so
// schedules the retry.
func (s *Scheduler) retry(node int, e End) bool {
	if s.spec.Retry == nil || s.failing || e.NoRetry {
		return false
	}
	r := s.spec.Retry[s.base[node]]
	n := s.attempts[node] // retry number n follows attempt n
	if n > r.Limit {
		return false
	}
	if len(r.ExitCodes) > 0 && !e.Lost {
		ok := false
		for _, c := range r.ExitCodes {
			ok = ok || e.HasCode && c == e.Code
		}
		if !ok {
			return false
		}
	}
	if r.MaxDuration > 0 && s.now-s.first[node] >= r.MaxDuration {
		return false
	}
	wait := float64(r.Backoff) * math.Pow(max(r.Factor, 1), float64(n-1))
	if r.MaxBackoff > 0 {
		wait = min(wait, float64(r.MaxBackoff))
	}
	if r.Jitter > 0 {
		wait *= 1 + r.Jitter*(2*s.rng.Float64()-1)
	}
	at := s.now + time.Duration(wait)
	if r.MaxDuration > 0 && at-s.first[node] > r.MaxDuration {
		return false
	}
	s.state[node] = retrying
	s.waiting++
	s.due[node] = at
	heap.Push(&s.retries, retryEntry{at: at, node: node})
	s.acts = append(s.acts, Action{Kind: Retrying, Node: node, At: at})
	return true
}

// Evaluated reports node's condition.
func (s *Scheduler) Evaluated(node int, v Verdict) []Action {
	s.acts = s.acts[:0]
	if s.state[node] != evaluating {
		return s.acts
	}
	s.evals--
	switch {
	case s.failing:
		s.end(node, notRun)
	case v == Run:
		s.state[node] = ready
		s.ready.push(node)
	case v == SkipIt:
		s.skip(node, -1, NotRun)
	default:
		s.state[node] = failed
		s.failed(node)
		s.end(node, failed)
	}
	s.step()
	return s.acts
}

// Advance sets the logical time, since Start, and returns what is due: the
// retries whose wait has passed, and the run's timeout.
func (s *Scheduler) Advance(now time.Duration) []Action {
	s.acts = s.acts[:0]
	if now > s.now {
		s.now = now
	}
	if s.done {
		return s.acts
	}
	if s.woken >= 0 && s.woken <= s.now {
		s.woken = -1
	}
	if s.spec.Timeout > 0 && s.now >= s.spec.Timeout && !s.timedOut {
		s.timedOut = true
		s.fatal = true
		s.acts = append(s.acts, Action{Kind: TimedOut})
		if !s.failing {
			s.failing = true
			s.cancelAll()
		}
	}
	for !s.failing {
		e, ok := s.nextRetry()
		if !ok || e.at > s.now {
			break
		}
		heap.Pop(&s.retries)
		s.waiting--
		s.state[e.node] = ready
		s.ready.push(e.node)
	}
	s.step()
	return s.acts
}

// retryEntry is a retrying node and when it is due.
type retryEntry struct {
	at   time.Duration
	node int
}

// retryHeap orders retrying nodes by due time, then node.
type retryHeap []retryEntry

func (h retryHeap) Len() int { return len(h) }
func (h retryHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].node < h[j].node
}
func (h retryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)   { *h = append(*h, x.(retryEntry)) }
func (h *retryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// nextRetry returns the earliest retry still waiting, dropping entries of
// nodes that no longer wait (cancelled meanwhile).
func (s *Scheduler) nextRetry() (retryEntry, bool) {
	for len(s.retries) > 0 {
		e := s.retries[0]
		if s.state[e.node] == retrying && s.due[e.node] == e.at {
			return e, true
		}
		heap.Pop(&s.retries)
	}
	return retryEntry{}, false
}

// Cancel fails the run: tasks in flight are cancelled, nothing new starts.
// The finally processors still run; a second Cancel cancels them too, or
// skips them when they have not started.
func (s *Scheduler) Cancel() []Action {
	s.acts = s.acts[:0]
	if s.done {
		return s.acts
	}
	s.cancels++
	s.fatal = true
	if !s.failing || s.cancels > 1 && s.inFinally {
		s.failing = true
		s.cancelAll()
	}
	s.step()
	return s.acts
}

// Now returns the logical time.
func (s *Scheduler) Now() time.Duration { return s.now }

// Result says how the run ended, or Running.
func (s *Scheduler) Result() Result { return s.result }

// Fatal reports whether the run will fail (so far): a fatal failure, a
// timeout or a cancel.
func (s *Scheduler) Fatal() bool { return s.fatal }

// Warned is how many warn-only processors failed.
func (s *Scheduler) Warned() int { return s.warned }

// Blocked reports whether node was skipped because a processor it depends
// on, directly or through skipped ones, failed.
func (s *Scheduler) Blocked(node int) bool {
	if s.state[node] != skipped {
		return false
	}
	for s.state[node] == skipped && s.doom[node] > 0 {
		node = int(s.doom[node]) - 1
	}
	return s.state[node] == failed
}

// Skipped reports whether node was skipped.
func (s *Scheduler) Skipped(node int) bool { return s.state[node] == skipped }

// Attempts returns how many times node was dispatched.
func (s *Scheduler) Attempts(node int) int { return s.attempts[node] }

// SetWindow changes how many tasks may be in flight (0: unlimited) and
// returns the dispatches a larger window allows. A smaller window stops
// nothing in flight; fewer are dispatched until below it.
func (s *Scheduler) SetWindow(w int) []Action {
	s.acts = s.acts[:0]
	s.window = w
	s.step()
	return s.acts
}

// Hold is a window that dispatches nothing: the run waits for capacity.
const Hold = -1

// end records that node ended in state st and tells its successors.
func (s *Scheduler) end(node int, st nodeState) {
	s.state[node] = st
	if s.isFinally(node) {
		s.fopen--
	} else {
		s.open--
	}
	if g := s.group(node); g >= 0 {
		switch {
		case st == failed:
			s.instFail[g] = StateFailed
		case st == notRun && s.instFail[g] != StateFailed:
			s.instFail[g] = NotRun
		}
		if s.left[g]--; s.left[g] == 0 {
			s.endForEach(g)
		}
		return
	}
	es := endState(st)
	succ, allow := s.successors(node)
	for k, n := range succ {
		if !allow[k].allows(es) && s.doom[n] == 0 {
			s.doom[n] = int32(node) + 1
		}
		s.indeg[n]--
		if s.indeg[n] == 0 && s.state[n] == idle && s.isFinally(n) == s.inFinally {
			s.decide(n) // main nodes in the main phase, finally ones in theirs
		}
	}
}

func endState(st nodeState) State {
	switch st {
	case succeeded:
		return StateSucceeded
	case failed:
		return StateFailed
	case skipped:
		return StateSkipped
	}
	return NotRun
}

// decide handles a node whose dependencies have all ended.
func (s *Scheduler) decide(n int) {
	switch {
	case s.failing:
		// Nothing new starts: it stays Idle (or ends, in the finally phase).
		if s.inFinally {
			s.end(n, notRun)
		}
	case s.doom[n] > 0:
		cause := int(s.doom[n]) - 1
		s.skip(n, cause, endState(s.state[cause]))
	case s.isForEach(n):
		s.state[n] = expanding
		s.evals++
		s.acts = append(s.acts, Action{Kind: Expand, Node: n})
	case s.hasCond(n):
		s.state[n] = evaluating
		s.evals++
		s.acts = append(s.acts, Action{Kind: Evaluate, Node: n})
	default:
		s.state[n] = ready
		s.ready.push(n)
	}
}

// skip ends node as skipped, for a reason.
func (s *Scheduler) skip(n, cause int, cs State) {
	s.acts = append(s.acts, Action{Kind: Skip, Node: n, Cause: cause, CauseState: cs})
	s.end(n, skipped)
}

// cancelAll cancels what is in flight or waiting to retry, and empties the
// ready queue (those nodes stay Idle, or end in the finally phase).
func (s *Scheduler) cancelAll() {
	for _, n := range s.ready.nodes {
		s.state[n] = idle
		if s.inFinally {
			s.end(n, notRun)
		}
	}
	s.ready.nodes = s.ready.nodes[:0]
	for g, held := range s.gwait {
		for _, n := range held {
			s.state[n] = idle
			if s.inFinally {
				s.end(n, notRun)
			}
		}
		delete(s.gwait, g)
	}
	for n, st := range s.state {
		if st == inFlight || st == retrying {
			s.acts = append(s.acts, Action{Kind: CancelTask, Node: n})
		}
	}
}

// step dispatches what the window allows, moves to the finally phase and
// then to Done when their time has come, and asks for a wake-up.
func (s *Scheduler) step() {
	for !s.done {
		if !s.failing {
			for s.ready.Len() > 0 && (s.window == 0 || s.window > 0 && s.inflight < s.window) {
				n := s.ready.pop()
				if !s.enterGroup(n) {
					continue // held back by its for_each's max_parallel
				}
				s.state[n] = inFlight
				s.inflight++
				if s.attempts[n] == 0 && s.first != nil {
					s.first[n] = s.now
				}
				s.attempts[n]++
				s.acts = append(s.acts, Action{Kind: Dispatch, Node: n})
			}
		}
		if s.inflight > 0 || s.waiting > 0 || s.evals > 0 || s.ready.Len() > 0 && !s.failing {
			break
		}
		if !s.inFinally && s.fopen > 0 && s.cancels < 2 {
			s.startFinally()
			continue
		}
		s.done = true
		s.result = RunSucceeded
		if s.fatal {
			s.result = RunFailed
		}
		s.acts = append(s.acts, Action{Kind: Done})
	}
	s.wake()
}

// startFinally ends the main phase: main nodes that did not end never ran,
// and the finally nodes whose dependencies have ended are decided.
func (s *Scheduler) startFinally() {
	s.inFinally = true
	s.failing = false
	s.acts = append(s.acts, Action{Kind: Finally})
	for n := 0; n < len(s.state); n++ {
		if !s.isFinally(n) && s.state[n] == idle {
			s.end(n, notRun)
		}
	}
	for n := 0; n < s.spec.N; n++ {
		if s.isFinally(n) && s.indeg[n] == 0 && s.state[n] == idle {
			s.decide(n)
		}
	}
}

// Expanded reports node's for_each: n instances (ids Instances(node)
// returns), or n < 0 when it could not be evaluated (the node fails). done,
// when not nil, marks instances that already succeeded (reused from an
// earlier run): they are not dispatched.
func (s *Scheduler) Expanded(node, n int, done []bool) []Action {
	s.acts = s.acts[:0]
	if s.state[node] != expanding {
		return s.acts
	}
	s.evals--
	switch {
	case s.failing:
		s.end(node, notRun)
	case n < 0:
		s.state[node] = failed
		s.failed(node)
		s.end(node, failed)
	case n == 0: // an empty list: nothing to do
		s.acts = append(s.acts, Action{Kind: Gathered, Node: node, CauseState: StateSucceeded})
		s.end(node, succeeded)
	default:
		s.expand(node, n, done)
	}
	s.step()
	return s.acts
}

// expand makes node's n instances and decides each.
func (s *Scheduler) expand(node, n int, done []bool) {
	s.state[node] = expanded
	first := len(s.state)
	s.inst[node] = [2]int{first, n}
	s.left[node] = n
	for range n {
		s.state = append(s.state, idle)
		s.indeg = append(s.indeg, 0)
		s.doom = append(s.doom, 0)
		s.base = append(s.base, int32(node))
		s.attempts = append(s.attempts, 0)
		if s.first != nil {
			s.first = append(s.first, 0)
			s.due = append(s.due, 0)
		}
		if s.ready.prio != nil {
			s.ready.prio = append(s.ready.prio, s.ready.prio[node])
		}
		if s.isFinally(node) {
			s.fopen++
		} else {
			s.open++
		}
	}
	for i := range n {
		if done != nil && done[i] {
			s.state[first+i] = succeeded
		}
	}
	for i := range n {
		if done != nil && done[i] {
			s.end(first+i, succeeded)
		} else if s.state[first+i] == idle {
			s.decide(first + i)
		}
	}
}

// endForEach ends a for_each node whose instances have all ended.
func (s *Scheduler) endForEach(g int) {
	st, ok := s.instFail[g]
	end := succeeded
	switch {
	case !ok:
	case st == StateFailed:
		end = failed
	default:
		end = notRun
	}
	s.acts = append(s.acts, Action{Kind: Gathered, Node: g, CauseState: endState(end)})
	s.end(g, end)
}

// Instances returns the first instance of an expanded for_each node and
// their number.
func (s *Scheduler) Instances(node int) (first, n int) {
	in := s.inst[node]
	return in[0], in[1]
}

// enterGroup reports whether instance n may go in flight under its
// for_each's max_parallel, and counts it; one that may not is held back.
func (s *Scheduler) enterGroup(n int) bool {
	g := s.group(n)
	if g < 0 {
		return true
	}
	limit := 0
	if s.spec.MaxParallel != nil {
		limit = s.spec.MaxParallel[g]
	}
	if limit > 0 && s.ginflight[g] >= limit {
		s.gwait[g] = append(s.gwait[g], n)
		return false
	}
	s.ginflight[g]++
	return true
}

// leaveGroup uncounts instance n, which left flight, and readies one held
// back.
func (s *Scheduler) leaveGroup(n int) {
	g := s.group(n)
	if g < 0 {
		return
	}
	s.ginflight[g]--
	if held := s.gwait[g]; len(held) > 0 {
		s.gwait[g] = held[1:]
		s.ready.push(held[0])
	}
}

// wake asks the host for a wake-up at the earliest pending deadline, once.
func (s *Scheduler) wake() {
	next := time.Duration(-1)
	if s.spec.Timeout > 0 && !s.timedOut && !s.done {
		next = s.spec.Timeout
	}
	if !s.failing {
		if e, ok := s.nextRetry(); ok && (next < 0 || e.at < next) {
			next = e.at
		}
	}
	if next >= 0 && next != s.woken {
		s.woken = next
		s.acts = append(s.acts, Action{Kind: Wake, At: next})
	}
}

// readyHeap orders ready nodes by priority, then node number. It is a binary
// heap of ints written out, so pushing and popping allocate nothing.
type readyHeap struct {
	nodes []int
	prio  []int
}

func (h *readyHeap) Len() int { return len(h.nodes) }

// before reports whether node a goes before node b.
func (h *readyHeap) before(a, b int) bool {
	if h.prio != nil && h.prio[a] != h.prio[b] {
		return h.prio[a] > h.prio[b]
	}
	return a < b
}

func (h *readyHeap) push(n int) {
	h.nodes = append(h.nodes, n)
	i := len(h.nodes) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.before(h.nodes[i], h.nodes[p]) {
			break
		}
		h.nodes[i], h.nodes[p] = h.nodes[p], h.nodes[i]
		i = p
	}
}

func (h *readyHeap) pop() int {
	top := h.nodes[0]
	last := len(h.nodes) - 1
	h.nodes[0] = h.nodes[last]
	h.nodes = h.nodes[:last]
	h.down(0)
	return top
}

func (h *readyHeap) down(i int) {
	n := len(h.nodes)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.before(h.nodes[r], h.nodes[l]) {
			m = r
		}
		if !h.before(h.nodes[m], h.nodes[i]) {
			return
		}
		h.nodes[i], h.nodes[m] = h.nodes[m], h.nodes[i]
		i = m
	}
}
