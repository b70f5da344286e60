package executorserver

import "sync"

// workers runs functions on goroutines that are kept for the next one: a
// native task runs on one and its output copies on two more, and a reused
// goroutine has its stack grown already (a fresh one per task spent a tenth
// of the executor's CPU growing stacks, measured with WIZ_CPUPROFILE_DIR).
// A function never waits for a worker: with none idle, a new one starts.
type workers struct {
	work chan func() // unbuffered: a send succeeds only to an idle worker
	stop chan struct{}
	wg   sync.WaitGroup
}

func newWorkers() *workers {
	return &workers{work: make(chan func()), stop: make(chan struct{})}
}

// do runs f on an idle worker or a new one.
func (w *workers) do(f func()) {
	select {
	case w.work <- f:
	default:
		w.wg.Add(1)
		go w.loop(f)
	}
}

func (w *workers) loop(f func()) {
	defer w.wg.Done()
	for {
		f()
		select {
		case f = <-w.work:
		case <-w.stop:
			return
		}
	}
}

// close ends the idle workers and waits for busy ones to finish and end.
func (w *workers) close() {
	close(w.stop)
	w.wg.Wait()
}
