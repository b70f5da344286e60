// Package scheduler is wiz's DAG scheduler as a deterministic state machine.
// It does no I/O: the host feeds it events (a task started, a task finished,
// cancel) and carries out the actions it returns (dispatch, cancel, done).
// Nodes are numbered 0..n-1.
//
// The v1.0 failure rule: a fatal error in any processor fails the run; tasks
// in flight are cancelled; never-started ones stay Idle. A processor marked
// warn-only turns its failure into a warning: the run goes on without the
// processors downstream of it, which stay Idle.
package scheduler

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

// ActionKind says what the host must do.
type ActionKind uint8

const (
	// Dispatch: send node's task to an executor.
	Dispatch ActionKind = iota + 1
	// CancelTask: cancel node's task, which is in flight.
	CancelTask
	// Done: the run is over; Result says how.
	Done
)

// Action is one thing for the host to do.
type Action struct {
	Kind ActionKind
	Node int
}

// Result is how a run ended.
type Result uint8

const (
	// Running: not over yet.
	Running Result = iota
	// RunSucceeded: every processor that could run succeeded.
	RunSucceeded
	// RunFailed: a fatal error or a cancel.
	RunFailed
)

type nodeState uint8

const (
	idle nodeState = iota
	inFlight
	succeeded
	failed
	blocked // downstream of a warn-only failure
)

// Spec describes a DAG to schedule.
type Spec struct {
	// N is the number of nodes.
	N int
	// Edges are (from, to): to waits for from.
	Edges [][2]int
	// Priority orders ready nodes: higher first (e.g. the longest remaining
	// path). Nil: all equal, lower node numbers first.
	Priority []int
	// WarnOnly marks nodes whose failure is only a warning.
	WarnOnly []bool
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
	// Successors of node n are succ[succOff[n]:succOff[n+1]] (one flat
	// array: no allocation per node).
	succOff  []int
	succ     []int
	indeg    []int
	state    []nodeState
	prio     []int
	warnOnly []bool
	window   int
	ready    readyHeap
	inflight int
	open     int // nodes not yet finished or blocked
	failing  bool
	done     bool
	result   Result
	warned   int
	acts     []Action
}

// New makes a scheduler for spec. Edges must form a DAG.
func New(spec Spec) *Scheduler {
	s := &Scheduler{
		succOff:  make([]int, spec.N+1),
		succ:     make([]int, len(spec.Edges)),
		indeg:    make([]int, spec.N),
		state:    make([]nodeState, spec.N),
		prio:     spec.Priority,
		warnOnly: spec.WarnOnly,
		window:   spec.Window,
		open:     spec.N,
	}
	for _, e := range spec.Edges {
		s.succOff[e[0]+1]++
		s.indeg[e[1]]++
	}
	for i := 0; i < spec.N; i++ {
		s.succOff[i+1] += s.succOff[i]
	}
	fill := append([]int(nil), s.succOff[:spec.N]...)
	for _, e := range spec.Edges {
		s.succ[fill[e[0]]] = e[1]
		fill[e[0]]++
	}
	s.ready.prio = s.prio
	for i := 0; i < spec.N; i++ {
		if spec.Done != nil && spec.Done[i] {
			s.state[i] = succeeded
			s.open--
			for _, n := range s.successors(i) {
				s.indeg[n]--
			}
		}
	}
	for i := 0; i < spec.N; i++ {
		if s.indeg[i] == 0 && s.state[i] == idle {
			s.ready.nodes = append(s.ready.nodes, i)
		}
	}
	s.ready.init()
	return s
}

// successors returns node's successors.
func (s *Scheduler) successors(node int) []int {
	return s.succ[s.succOff[node]:s.succOff[node+1]]
}

// Start returns the first actions.
func (s *Scheduler) Start() []Action {
	s.acts = s.acts[:0]
	s.fill()
	s.checkDone()
	return s.acts
}

// Finished records that node's task ended and returns what to do next. The
// returned slice is reused by the next call.
func (s *Scheduler) Finished(node int, o Outcome) []Action {
	s.acts = s.acts[:0]
	if s.state[node] != inFlight {
		return s.acts
	}
	s.inflight--
	switch o {
	case Succeeded:
		s.state[node] = succeeded
		s.open--
		for _, n := range s.successors(node) {
			s.indeg[n]--
			if s.indeg[n] == 0 && s.state[n] == idle {
				s.ready.push(n)
			}
		}
	default: // Failed, or an outcome this version does not know: a failure
		s.state[node] = failed
		s.open--
		switch {
		case s.failing:
			// Already failing: the tasks in flight were cancelled then.
		case s.warnOnly != nil && s.warnOnly[node]:
			s.warned++
			s.block(node)
		default:
			s.fail()
		}
	case Cancelled:
		// Cancelled before or while running: only a cancel does that, so the run is failing.
		s.state[node] = idle
		s.open--
		if !s.failing {
			s.fail()
		}
	}
	if !s.failing {
		s.fill()
	}
	s.checkDone()
	return s.acts
}

// Hold is a window that dispatches nothing: the run waits for capacity.
const Hold = -1

// SetWindow changes how many tasks may be in flight (0: unlimited) and
// returns the dispatches a larger window allows. A smaller window stops
// nothing in flight; fewer are dispatched until below it.
func (s *Scheduler) SetWindow(w int) []Action {
	s.acts = s.acts[:0]
	s.window = w
	if !s.failing && !s.done {
		s.fill()
	}
	return s.acts
}

// Cancel fails the run: tasks in flight are cancelled, nothing new starts.
func (s *Scheduler) Cancel() []Action {
	s.acts = s.acts[:0]
	if !s.failing && !s.done {
		s.fail()
	}
	s.checkDone()
	return s.acts
}

// Result says how the run ended, or Running.
func (s *Scheduler) Result() Result { return s.result }

// Warned is how many warn-only processors failed.
func (s *Scheduler) Warned() int { return s.warned }

// Blocked reports whether node was left Idle because a warn-only processor it
// depends on failed.
func (s *Scheduler) Blocked(node int) bool { return s.state[node] == blocked }

func (s *Scheduler) fill() {
	for s.ready.Len() > 0 && (s.window == 0 || s.inflight < s.window) {
		n := s.ready.pop()
		s.state[n] = inFlight
		s.inflight++
		s.acts = append(s.acts, Action{Kind: Dispatch, Node: n})
	}
}

func (s *Scheduler) fail() {
	s.failing = true
	s.ready.nodes = s.ready.nodes[:0]
	for n, st := range s.state {
		if st == inFlight {
			s.acts = append(s.acts, Action{Kind: CancelTask, Node: n})
		}
	}
}

// block marks everything downstream of node as never to run.
func (s *Scheduler) block(node int) {
	stack := append([]int(nil), s.successors(node)...)
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s.state[n] != idle {
			continue
		}
		s.state[n] = blocked
		s.open--
		stack = append(stack, s.successors(n)...)
	}
}

func (s *Scheduler) checkDone() {
	if s.done || s.inflight > 0 {
		return
	}
	if s.failing || s.open == 0 || s.ready.Len() == 0 {
		s.done = true
		s.result = RunSucceeded
		if s.failing {
			s.result = RunFailed
		}
		s.acts = append(s.acts, Action{Kind: Done})
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

func (h *readyHeap) init() {
	for i := len(h.nodes)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
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
