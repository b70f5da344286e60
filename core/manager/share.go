package manager

import (
	"runtime"
	"sort"
	"sync"
)

// share divides the task slots of the Manager's machine among the runs whose
// executors run on it, so that concurrent runs — from one user or many
// clients of a daemon — get equal parts instead of each taking every CPU.
//
// Each run's fair part is computed by water-filling (max-min fairness): no
// run gets more than it can use (its max_parallel), what a capped run leaves
// goes to the others, and every run's part is at least one slot. A run is
// told how many slots its executors may use now: a part that shrinks takes
// effect at once (its executors start no new task beyond it), a part that
// grows only as slots are actually free — the tasks other runs still have
// running count until they finish — so the machine never runs more than its
// capacity at once. Runs beyond the capacity wait, oldest first.
type share struct {
	capacity int

	mu   sync.Mutex
	runs map[string]*shareRun
}

type shareRun struct {
	lent    int      // sub-pipeline runs it waits for: it lends them its part
	want    int      // most slots the run can use; 0: no limit
	part    int      // fair part
	slots   int      // what the run may use now (≤ part)
	running int      // tasks running, as the run reports
	ch      chan int // latest slots, for the run's loop (capacity 1)
}

func newShare(capacity int) *share {
	if capacity <= 0 {
		capacity = runtime.NumCPU()
	}
	return &share{capacity: capacity, runs: map[string]*shareRun{}}
}

// join adds a run that can use up to want slots (0: any number). It returns
// the slots the run may use now, possibly 0, and a channel that delivers the
// run's later slot counts.
func (s *share) join(id string, want int) (int, <-chan int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := &shareRun{want: want, ch: make(chan int, 1)}
	s.runs[id] = sr
	s.rebalance(id)
	return sr.slots, sr.ch
}

// lend records that a run starts (n = 1) or no longer waits for (n = -1) a
// sub-pipeline run: while it waits for one, its part is 0, so the slots
// the children need are never held by the parent waiting for them.
func (s *share) lend(id string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.runs[id]
	if sr == nil {
		return
	}
	sr.lent += n
	s.rebalance("")
}

// leave removes a run and gives its slots to the others.
func (s *share) leave(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.runs[id]; !ok {
		return
	}
	delete(s.runs, id)
	s.rebalance("")
}

// running records how many tasks a run has running; slots it no longer
// holds go to runs waiting for them.
func (s *share) running(id string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.runs[id]
	if sr == nil || sr.running == n {
		return
	}
	shrank := n < sr.running
	sr.running = n
	if shrank && s.waiting() {
		s.grow("")
	}
}

// waiting reports whether a run may use fewer slots than its part.
func (s *share) waiting() bool {
	for _, sr := range s.runs {
		if sr.slots < sr.part {
			return true
		}
	}
	return false
}

// held is how many slots a run occupies: what it may use, or more while
// tasks started under a larger part still run.
func (sr *shareRun) held() int { return max(sr.slots, sr.running) }

// rebalance recomputes the fair parts, shrinks runs above theirs at once and
// grows the others as far as free slots allow. skip is not notified (join
// returns its slots).
func (s *share) rebalance(skip string) {
	ids := s.order()
	// Water-filling: smallest demand first.
	sort.SliceStable(ids, func(i, j int) bool {
		return demand(s.runs[ids[i]].want, s.capacity) < demand(s.runs[ids[j]].want, s.capacity)
	})
	lending := 0
	for _, id := range ids {
		if s.runs[id].lent > 0 {
			lending++
		}
	}
	left := s.capacity
	k := 0 // runs given a part so far
	for _, id := range ids {
		sr := s.runs[id]
		if sr.lent > 0 {
			sr.part = 0
			if sr.slots > 0 {
				s.set(id, sr, 0, skip)
			}
			continue
		}
		part := min(max(left/(len(ids)-lending-k), 1), demand(sr.want, s.capacity))
		k++
		left = max(left-part, 0)
		sr.part = part
		if sr.slots > part {
			s.set(id, sr, part, skip)
		}
	}
	s.grow(skip)
}

// grow gives free slots to runs below their part, oldest run first.
func (s *share) grow(skip string) {
	free := s.capacity
	for _, sr := range s.runs {
		free -= sr.held()
	}
	for _, id := range s.order() {
		if free <= 0 {
			return
		}
		sr := s.runs[id]
		if sr.slots < sr.part {
			add := min(sr.part-sr.slots, free)
			free -= max(sr.slots+add, sr.running) - sr.held()
			s.set(id, sr, sr.slots+add, skip)
		}
	}
}

func (s *share) set(id string, sr *shareRun, slots int, skip string) {
	sr.slots = slots
	if id == skip {
		return
	}
	select { // keep only the latest count
	case <-sr.ch:
	default:
	}
	sr.ch <- slots
}

// order returns the run IDs oldest first (IDs are KSUIDs, which sort by time).
func (s *share) order() []string {
	ids := make([]string, 0, len(s.runs))
	for id := range s.runs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func demand(want, capacity int) int {
	if want <= 0 || want > capacity {
		return capacity
	}
	return want
}
