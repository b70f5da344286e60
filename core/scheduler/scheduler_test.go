package scheduler_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/wiz-run/wiz/core/scheduler"
)

// host is a simulated host loop: it carries out the scheduler's actions,
// keeps the tasks in flight, finishes them in the order pick chooses with the
// outcome outcome chooses, and checks the scheduler's invariants as it goes.
type host struct {
	t    testing.TB
	spec scheduler.Spec
	s    *scheduler.Scheduler

	pick    func(inflight []int) int                         // index into inflight of the next task to finish
	outcome func(node int, cancelled bool) scheduler.Outcome // how it ends; cancelled: CancelTask was received
	cancel  func() bool                                      // before each finish: call Cancel now?

	preds       [][]int
	inflight    []int
	cancelSent  []bool
	dispatches  []int // nodes in dispatch order
	count       []int // dispatches per node
	succeeded   []bool
	failed      []bool
	stopped     bool // a fatal failure, a Cancelled report or Cancel: nothing may start
	dones       int
	maxInflight int
}

func newHost(t testing.TB, spec scheduler.Spec) *host {
	h := &host{
		t: t, spec: spec, s: scheduler.New(spec),
		pick:       func([]int) int { return 0 }, // FIFO
		outcome:    func(int, bool) scheduler.Outcome { return scheduler.Succeeded },
		cancel:     func() bool { return false },
		preds:      make([][]int, spec.N),
		cancelSent: make([]bool, spec.N),
		count:      make([]int, spec.N),
		succeeded:  make([]bool, spec.N),
		failed:     make([]bool, spec.N),
	}
	for _, e := range spec.Edges {
		h.preds[e[1]] = append(h.preds[e[1]], e[0])
	}
	return h
}

func (h *host) warnOnly(n int) bool { return h.spec.WarnOnly != nil && h.spec.WarnOnly[n] }

// apply carries out actions, checking each.
func (h *host) apply(acts []scheduler.Action) {
	h.t.Helper()
	for i, a := range acts {
		if h.dones > 0 {
			h.t.Fatalf("action %+v after Done", a)
		}
		switch a.Kind {
		case scheduler.Dispatch:
			n := a.Node
			if h.stopped {
				h.t.Fatalf("dispatch %d after the run began failing", n)
			}
			if h.count[n]++; h.count[n] > 1 {
				h.t.Fatalf("node %d dispatched %d times", n, h.count[n])
			}
			for _, p := range h.preds[n] {
				if !h.succeeded[p] {
					h.t.Fatalf("node %d dispatched before its predecessor %d succeeded", n, p)
				}
			}
			h.dispatches = append(h.dispatches, n)
			h.inflight = append(h.inflight, n)
			h.maxInflight = max(h.maxInflight, len(h.inflight))
			if h.spec.Window > 0 && len(h.inflight) > h.spec.Window {
				h.t.Fatalf("%d tasks in flight, window %d", len(h.inflight), h.spec.Window)
			}
		case scheduler.CancelTask:
			n := a.Node
			if !slices.Contains(h.inflight, n) {
				h.t.Fatalf("cancel-task %d, which is not in flight", n)
			}
			if h.cancelSent[n] {
				h.t.Fatalf("cancel-task %d twice", n)
			}
			h.cancelSent[n] = true
		case scheduler.Skip:
			// Data edges: a node is skipped only after an upstream failed
			// or was skipped, and never runs.
			n, c := a.Node, a.Cause
			if h.count[n] > 0 || c < 0 || !slices.Contains(h.preds[n], c) {
				h.t.Fatalf("skip %d because of %d: dispatched %d times, preds %v", n, c, h.count[n], h.preds[n])
			}
			if !h.failed[c] && !h.s.Skipped(c) {
				h.t.Fatalf("skip %d because of %d, which neither failed nor was skipped", n, c)
			}
		case scheduler.Done:
			h.dones++
			if i != len(acts)-1 {
				h.t.Fatalf("Done is not the last action: %v", acts)
			}
			if len(h.inflight) > 0 {
				h.t.Fatalf("Done with %v in flight", h.inflight)
			}
			if h.s.Result() == scheduler.Running {
				h.t.Fatal("Done, but Result is Running")
			}
		default:
			h.t.Fatalf("unknown action %+v", a)
		}
	}
}

// run starts the scheduler and finishes tasks until none is in flight.
func (h *host) run() {
	h.t.Helper()
	h.apply(h.s.Start())
	for len(h.inflight) > 0 {
		if !h.stopped && h.cancel() {
			h.stopped = true
			h.apply(h.s.Cancel())
		}
		i := h.pick(h.inflight)
		n := h.inflight[i]
		h.inflight = slices.Delete(h.inflight, i, i+1)
		o := h.outcome(n, h.cancelSent[n])
		switch o {
		case scheduler.Succeeded:
			h.succeeded[n] = true
		case scheduler.Failed:
			h.failed[n] = true
			if !h.warnOnly(n) {
				h.stopped = true
			}
		case scheduler.Cancelled:
			h.stopped = true
		}
		h.apply(h.s.Finished(n, o))
	}
	if h.dones != 1 {
		h.t.Fatalf("Done %d times, want once", h.dones)
	}
}

func (h *host) blocked() []int {
	var out []int
	for n := range h.spec.N {
		if h.s.Blocked(n) {
			out = append(out, n)
		}
	}
	return out
}

func (h *host) never() []int {
	var out []int
	for n, c := range h.count {
		if c == 0 {
			out = append(out, n)
		}
	}
	return out
}

func warnOnly(n int, nodes ...int) []bool {
	w := make([]bool, n)
	for _, i := range nodes {
		w[i] = true
	}
	return w
}

func TestRun(t *testing.T) {
	t.Parallel()
	// 0 -> 1,2,3 -> 4 -> 5
	diamond := [][2]int{{0, 1}, {0, 2}, {0, 3}, {1, 4}, {2, 4}, {3, 4}, {4, 5}}
	tests := []struct {
		name        string
		spec        scheduler.Spec
		fail        []int // tasks that fail (when not cancelled)
		lifo        bool  // finish the newest task first
		cancelAfter int   // call Cancel after this many finishes; 0: never
		wantOrder   []int
		wantNever   []int
		wantBlocked []int
		wantResult  scheduler.Result
		wantWarned  int
	}{
		{
			name:       "chain",
			spec:       scheduler.Spec{N: 4, Edges: [][2]int{{0, 1}, {1, 2}, {2, 3}}},
			wantOrder:  []int{0, 1, 2, 3},
			wantResult: scheduler.RunSucceeded,
		},
		{
			name:       "chain numbered backwards",
			spec:       scheduler.Spec{N: 4, Edges: [][2]int{{3, 2}, {2, 1}, {1, 0}}},
			wantOrder:  []int{3, 2, 1, 0},
			wantResult: scheduler.RunSucceeded,
		},
		{
			name:       "fan-out fan-in",
			spec:       scheduler.Spec{N: 6, Edges: diamond},
			wantOrder:  []int{0, 1, 2, 3, 4, 5},
			wantResult: scheduler.RunSucceeded,
		},
		{
			name:       "fan-out fan-in, newest first",
			spec:       scheduler.Spec{N: 6, Edges: diamond},
			lifo:       true,
			wantOrder:  []int{0, 1, 2, 3, 4, 5},
			wantResult: scheduler.RunSucceeded,
		},
		{
			name:       "priority, higher first",
			spec:       scheduler.Spec{N: 5, Priority: []int{0, 10, 5, 10, -1}, Window: 1},
			wantOrder:  []int{1, 3, 2, 0, 4},
			wantResult: scheduler.RunSucceeded,
		},
		{
			name:       "window 2, independent tasks",
			spec:       scheduler.Spec{N: 5, Window: 2},
			lifo:       true,
			wantOrder:  []int{0, 1, 2, 3, 4},
			wantResult: scheduler.RunSucceeded,
		},
		{
			name:       "empty DAG",
			spec:       scheduler.Spec{N: 0},
			wantNever:  nil,
			wantResult: scheduler.RunSucceeded,
		},
		{
			name:       "fatal failure: descendants and waiting roots never start",
			spec:       scheduler.Spec{N: 6, Edges: diamond},
			fail:       []int{2},
			wantOrder:  []int{0, 1, 2, 3},
			wantNever:  []int{4, 5},
			wantResult: scheduler.RunFailed,
		},
		{
			name:       "fatal failure with a window: the rest never start",
			spec:       scheduler.Spec{N: 6, Window: 2},
			fail:       []int{0},
			wantOrder:  []int{0, 1},
			wantNever:  []int{2, 3, 4, 5},
			wantResult: scheduler.RunFailed,
		},
		{
			name:        "warn-only failure blocks descendants only",
			spec:        scheduler.Spec{N: 6, Edges: [][2]int{{0, 1}, {1, 2}, {3, 4}, {4, 5}}, WarnOnly: warnOnly(6, 0)},
			fail:        []int{0},
			wantOrder:   []int{0, 3, 4, 5},
			wantNever:   []int{1, 2},
			wantBlocked: []int{1, 2},
			wantResult:  scheduler.RunSucceeded,
			wantWarned:  1,
		},
		{
			name:        "warn-only failure blocks a node with another, succeeded parent",
			spec:        scheduler.Spec{N: 3, Edges: [][2]int{{0, 2}, {1, 2}}, WarnOnly: warnOnly(3, 1)},
			fail:        []int{1},
			wantOrder:   []int{0, 1},
			wantNever:   []int{2},
			wantBlocked: []int{2},
			wantResult:  scheduler.RunSucceeded,
			wantWarned:  1,
		},
		{
			name:       "two warn-only failures",
			spec:       scheduler.Spec{N: 3, WarnOnly: warnOnly(3, 0, 1)},
			fail:       []int{0, 1},
			wantOrder:  []int{0, 1, 2},
			wantResult: scheduler.RunSucceeded,
			wantWarned: 2,
		},
		{
			name:        "cancel",
			spec:        scheduler.Spec{N: 4, Edges: [][2]int{{0, 1}, {1, 2}, {0, 3}}},
			cancelAfter: 1,
			wantOrder:   []int{0, 1, 3},
			wantNever:   []int{2},
			wantResult:  scheduler.RunFailed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHost(t, tt.spec)
			if tt.lifo {
				h.pick = func(in []int) int { return len(in) - 1 }
			}
			h.outcome = func(n int, cancelled bool) scheduler.Outcome {
				switch {
				case cancelled:
					return scheduler.Cancelled
				case slices.Contains(tt.fail, n):
					return scheduler.Failed
				}
				return scheduler.Succeeded
			}
			finishes := 0
			h.cancel = func() bool {
				finishes++
				return tt.cancelAfter > 0 && finishes == tt.cancelAfter+1
			}
			h.run()
			if tt.wantOrder != nil && !slices.Equal(h.dispatches, tt.wantOrder) {
				t.Errorf("dispatch order %v, want %v", h.dispatches, tt.wantOrder)
			}
			if got := h.never(); !slices.Equal(got, tt.wantNever) {
				t.Errorf("never dispatched %v, want %v", got, tt.wantNever)
			}
			if got := h.blocked(); !slices.Equal(got, tt.wantBlocked) {
				t.Errorf("Blocked %v, want %v", got, tt.wantBlocked)
			}
			if got := h.s.Result(); got != tt.wantResult {
				t.Errorf("Result %d, want %d", got, tt.wantResult)
			}
			if got := h.s.Warned(); got != tt.wantWarned {
				t.Errorf("Warned %d, want %d", got, tt.wantWarned)
			}
		})
	}
}

// TestWindow runs DAGs with a window under several finish orders and checks
// that the window is never exceeded and is filled whenever work is ready.
func TestWindow(t *testing.T) {
	t.Parallel()
	layered := func(layers, width int) scheduler.Spec {
		spec := scheduler.Spec{N: layers * width}
		for l := 1; l < layers; l++ {
			for i := range width {
				spec.Edges = append(spec.Edges, [2]int{(l-1)*width + i, l*width + i}, [2]int{(l-1)*width + (i+1)%width, l*width + i})
			}
		}
		return spec
	}
	orders := map[string]func(r *rand.Rand) func([]int) int{
		"fifo":   func(*rand.Rand) func([]int) int { return func([]int) int { return 0 } },
		"lifo":   func(*rand.Rand) func([]int) int { return func(in []int) int { return len(in) - 1 } },
		"random": func(r *rand.Rand) func([]int) int { return func(in []int) int { return r.IntN(len(in)) } },
	}
	tests := []struct {
		name   string
		spec   scheduler.Spec
		window int
	}{
		{"independent, window 1", scheduler.Spec{N: 20}, 1},
		{"independent, window 3", scheduler.Spec{N: 20}, 3},
		{"independent, window larger than the DAG", scheduler.Spec{N: 5}, 10},
		{"layered, window 2", layered(5, 6), 2},
		{"layered, window 4", layered(5, 6), 4},
		{"layered, unlimited", layered(5, 6), 0},
	}
	for _, tt := range tests {
		for oname, order := range orders {
			t.Run(tt.name+"/"+oname, func(t *testing.T) {
				t.Parallel()
				spec := tt.spec
				spec.Window = tt.window
				h := newHost(t, spec) // fails the test if the window is exceeded
				h.pick = order(rand.New(rand.NewPCG(1, uint64(tt.window))))
				h.run()
				if len(h.dispatches) != spec.N {
					t.Errorf("%d dispatched, want all %d", len(h.dispatches), spec.N)
				}
				wantMax := spec.N
				if tt.window > 0 {
					wantMax = min(tt.window, spec.N)
				}
				if len(spec.Edges) == 0 && h.maxInflight != wantMax {
					t.Errorf("at most %d in flight, want %d", h.maxInflight, wantMax)
				}
			})
		}
	}
}

// randomSpec makes a random DAG: edges go from lower to higher rank, and
// nodes are numbered by a random permutation of ranks, so the scheduler
// cannot rely on edges pointing to higher node numbers.
func randomSpec(r *rand.Rand) scheduler.Spec {
	n := r.IntN(30)
	perm := r.Perm(n)
	spec := scheduler.Spec{N: n, Window: r.IntN(5)}
	density := r.Float64() * 0.3
	for i := range n {
		for j := i + 1; j < n; j++ {
			if r.Float64() < density {
				spec.Edges = append(spec.Edges, [2]int{perm[i], perm[j]})
			}
		}
	}
	if r.IntN(2) == 0 {
		spec.Priority = make([]int, n)
		for i := range spec.Priority {
			spec.Priority[i] = r.IntN(4)
		}
	}
	if r.IntN(2) == 0 {
		spec.WarnOnly = make([]bool, n)
		for i := range spec.WarnOnly {
			spec.WarnOnly[i] = r.IntN(4) == 0
		}
	}
	return spec
}

// TestRandomAllSucceed: with every task succeeding, every node is dispatched
// exactly once, after its predecessors, and the run succeeds.
func TestRandomAllSucceed(t *testing.T) {
	t.Parallel()
	for seed := range uint64(500) {
		r := rand.New(rand.NewPCG(seed, 42))
		spec := randomSpec(r)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			h := newHost(t, spec) // checks at most once, predecessors first, window, one Done
			h.pick = func(in []int) int { return r.IntN(len(in)) }
			h.run()
			if len(h.dispatches) != spec.N {
				t.Fatalf("%d of %d nodes dispatched; never: %v", len(h.dispatches), spec.N, h.never())
			}
			if h.s.Result() != scheduler.RunSucceeded || h.s.Warned() != 0 || h.blocked() != nil {
				t.Fatalf("Result %d, Warned %d, Blocked %v; want success, 0, none", h.s.Result(), h.s.Warned(), h.blocked())
			}
		})
	}
}

// TestRandomOutcomes: random failures (fatal and warn-only), cancels and
// cancelled tasks that finish anyway. Besides the host's checks: the run
// fails exactly when something fatal happened; in a successful run a node is
// Blocked exactly when it descends from a failed warn-only node, and every
// other node was dispatched.
func TestRandomOutcomes(t *testing.T) {
	t.Parallel()
	for seed := range uint64(2000) {
		r := rand.New(rand.NewPCG(seed, 7))
		spec := randomSpec(r)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			h := newHost(t, spec)
			h.pick = func(in []int) int { return r.IntN(len(in)) }
			h.outcome = func(n int, cancelled bool) scheduler.Outcome {
				x := r.IntN(100)
				switch {
				case cancelled && x < 70:
					return scheduler.Cancelled
				case cancelled && x < 85:
					return scheduler.Failed
				case x < 8:
					return scheduler.Failed
				}
				return scheduler.Succeeded
			}
			h.cancel = func() bool { return r.IntN(100) < 2 }
			warned := 0
			outcome := h.outcome
			h.outcome = func(n int, cancelled bool) scheduler.Outcome {
				o := outcome(n, cancelled)
				if o == scheduler.Failed && h.warnOnly(n) && !h.stopped {
					warned++
				}
				return o
			}
			h.run()

			if want := map[bool]scheduler.Result{false: scheduler.RunSucceeded, true: scheduler.RunFailed}[h.stopped]; h.s.Result() != want {
				t.Fatalf("Result %d, want %d (something fatal: %v)", h.s.Result(), want, h.stopped)
			}
			if h.s.Warned() != warned {
				t.Fatalf("Warned %d, want %d", h.s.Warned(), warned)
			}
			if h.stopped {
				return
			}
			// Nodes downstream of a failed (warn-only) node.
			succ := make([][]int, spec.N)
			for _, e := range spec.Edges {
				succ[e[0]] = append(succ[e[0]], e[1])
			}
			down := make([]bool, spec.N)
			var mark func(int)
			mark = func(n int) {
				for _, s := range succ[n] {
					if !down[s] {
						down[s] = true
						mark(s)
					}
				}
			}
			for n, f := range h.failed {
				if f {
					mark(n)
				}
			}
			for n := range spec.N {
				if h.s.Blocked(n) != down[n] {
					t.Fatalf("Blocked(%d) = %v, want %v", n, h.s.Blocked(n), down[n])
				}
				if !down[n] && h.count[n] != 1 {
					t.Fatalf("node %d dispatched %d times in a successful run, want 1", n, h.count[n])
				}
			}
		})
	}
}

// TestActionsReused documents that the returned slice is reused: a host must
// copy it before calling the scheduler again.
func TestActionsReused(t *testing.T) {
	t.Parallel()
	s := scheduler.New(scheduler.Spec{N: 3, Edges: [][2]int{{0, 1}, {0, 2}}})
	first := s.Start()
	saved := slices.Clone(first)
	second := s.Finished(0, scheduler.Succeeded)
	want := []scheduler.Action{{Kind: scheduler.Dispatch, Node: 1}, {Kind: scheduler.Dispatch, Node: 2}}
	if !reflect.DeepEqual(second, want) {
		t.Fatalf("Finished(0) = %v, want %v", second, want)
	}
	if !reflect.DeepEqual(saved, []scheduler.Action{{Kind: scheduler.Dispatch, Node: 0}}) {
		t.Fatalf("Start() = %v", saved)
	}
}

// BenchmarkScheduler100k schedules a 100,000-node DAG (layers of 100 nodes,
// each with 3 random parents in the layer above) to completion with a host
// whose tasks finish at once.
func BenchmarkScheduler100k(b *testing.B) {
	const n, width = 100_000, 100
	r := rand.New(rand.NewPCG(1, 2))
	spec := scheduler.Spec{N: n, Edges: make([][2]int, 0, 3*n)}
	for v := width; v < n; v++ {
		layer := v / width
		for _, p := range r.Perm(width)[:3] {
			spec.Edges = append(spec.Edges, [2]int{(layer-1)*width + p, v})
		}
	}
	queue := make([]int, 0, n)
	b.ReportAllocs()
	for b.Loop() {
		s := scheduler.New(spec)
		queue = queue[:0]
		done := false
		take := func(acts []scheduler.Action) {
			for _, a := range acts {
				switch a.Kind {
				case scheduler.Dispatch:
					queue = append(queue, a.Node)
				case scheduler.Done:
					done = true
				}
			}
		}
		take(s.Start())
		for i := 0; i < len(queue); i++ {
			take(s.Finished(queue[i], scheduler.Succeeded))
		}
		if !done || len(queue) != n || s.Result() != scheduler.RunSucceeded {
			b.Fatalf("done %v, %d dispatched, result %d", done, len(queue), s.Result())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/task")
}

func TestSetWindow(t *testing.T) {
	// Ten independent nodes, window 2: growing the window dispatches more at
	// once; shrinking it holds new dispatches until below it.
	s := scheduler.New(scheduler.Spec{N: 10, Window: 2})
	if got := len(s.Start()); got != 2 {
		t.Fatalf("Start dispatched %d, want 2", got)
	}
	if got := len(s.SetWindow(5)); got != 3 {
		t.Fatalf("SetWindow(5) dispatched %d, want 3 more", got)
	}
	if got := len(s.SetWindow(1)); got != 0 {
		t.Fatalf("SetWindow(1) dispatched %d, want 0", got)
	}
	// 5 in flight, window 1: finishing four dispatches nothing; the fifth one
	// brings it below the window.
	dispatched := 0
	for n := 0; n < 5; n++ {
		for _, a := range s.Finished(n, scheduler.Succeeded) {
			if a.Kind == scheduler.Dispatch {
				dispatched++
			}
		}
		if n < 4 && dispatched != 0 {
			t.Fatalf("after %d finished with window 1, %d dispatched", n+1, dispatched)
		}
	}
	if dispatched != 1 {
		t.Errorf("after all five finished, %d dispatched; want 1", dispatched)
	}
}
