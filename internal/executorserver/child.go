package executorserver

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wiz-run/wiz/core/secrets"
)

// A native task's program is started with syscall.ForkExec rather than
// os/exec, and its output pipes are read lazily: most tasks in a large run
// are short, and for them this is the executor's whole cost per task.
//
//   - Until the program has run for startedDelay, nothing polls its stdout and
//     stderr: a program that ends sooner has its output read once it has
//     exited, straight from the pipes, without a goroutine or a poller
//     registration per pipe. When it runs longer, goroutines copy its output as
//     it comes (and a program that fills a pipe before then waits at most
//     startedDelay).
//   - Its exit is awaited on a pidfd in Go's poller, and it is reaped with one
//     wait4 that also gives its resource usage.

// outPipe is the executor's end of a program's stdout or stderr: a raw
// non-blocking descriptor until the task streams, then an *os.File that Go's
// poller serves.
type outPipe struct {
	fd int      // -1 once handed to f or closed
	f  *os.File // set when streaming
}

// newOutPipe makes a pipe for a program's output: the read end is the
// executor's (non-blocking, close-on-exec), the write end the child's (a
// plain blocking descriptor, close-on-exec in the executor; ForkExec dups it
// onto the child's 1 or 2).
func newOutPipe() (*outPipe, int, error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, -1, err
	}
	if err := syscall.SetNonblock(p[0], true); err != nil {
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, -1, err
	}
	return &outPipe{fd: p[0]}, p[1], nil
}

// file turns the pipe over to Go's poller, for a goroutine to copy from.
func (o *outPipe) file() *os.File {
	if o.f == nil {
		o.f = os.NewFile(uintptr(o.fd), "|0")
		o.fd = -1
	}
	return o.f
}

func (o *outPipe) close() {
	if o.f != nil {
		o.f.Close()
	} else if o.fd >= 0 {
		syscall.Close(o.fd)
		o.fd = -1
	}
}

// errWouldBlock says a drained pipe is empty but still open for writing: a
// process outside the program's group holds it.
var errWouldBlock = errors.New("pipe still open")

// Read reads what the exited program left in the pipe: io.EOF when it has
// all been read, errWouldBlock when the pipe is empty but something still
// holds its write end.
func (o *outPipe) Read(b []byte) (int, error) {
	for {
		n, err := syscall.Read(o.fd, b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// streamer starts a task's output copies when the task has run for
// startedDelay (or, when its program ended sooner, never): start is called
// once from the timer, and ended once by the task when its program exits.
type streamer struct {
	mu        sync.Mutex
	streaming bool
	ended     bool
	begin     func() // starts the copies; called with mu held, at most once
}

// start begins streaming unless the program ended first; it reports whether
// it did.
func (s *streamer) start() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.streaming {
		return false
	}
	s.streaming = true
	s.begin()
	return true
}

// end marks the program exited and reports whether the copies had started.
func (s *streamer) end() (streaming bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	return s.streaming
}

// reap waits for process pid (its exit already awaited, so at once) and
// returns its status and resource usage.
func reap(pid int) (syscall.WaitStatus, *syscall.Rusage, error) {
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	for {
		_, err := syscall.Wait4(pid, &ws, 0, &ru)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, nil, err
		}
		return ws, &ru, nil
	}
}

// statusText describes a wait status the way os.ProcessState does
// ("exit status 1", "signal: killed").
func statusText(ws syscall.WaitStatus) string {
	var s string
	switch {
	case ws.Exited():
		s = "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		s = "signal: " + ws.Signal().String()
	default:
		s = "wait status " + strconv.Itoa(int(ws))
	}
	if ws.CoreDump() {
		s += " (core dumped)"
	}
	return s
}

// planEnv makes a plan's environment ready for ForkExec, once per plan: the
// later of two entries for one name wins (as with os/exec), no entry may hold
// a NUL byte, and WIZ_RUN_ID is left out (every task appends its own).
func planEnv(env []string) ([]string, error) {
	env = dedupEnv(env)
	out := env[:0]
	for _, kv := range env {
		if strings.IndexByte(secrets.StripMarkers(kv), 0) >= 0 { // a secret's marker is replaced at start
			name, _, _ := strings.Cut(kv, "=")
			return nil, errors.New("environment variable " + strconv.Quote(name) + " contains a NUL byte")
		}
		if strings.HasPrefix(kv, "WIZ_RUN_ID=") {
			continue
		}
		out = append(out, kv)
	}
	return out, nil
}

// dedupEnv returns env without duplicate names, keeping the later value in
// the earlier one's place.
func dedupEnv(env []string) []string {
	idx := make(map[string]int, len(env))
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok {
			name = kv
		}
		if i, seen := idx[name]; seen {
			out[i] = kv
			continue
		}
		idx[name] = len(out)
		out = append(out, kv)
	}
	return out
}

// rssSampler samples the peak RSS of a program that runs long enough to be
// streamed: VmHWM of /proc/PID/status, the program's own pages from its exec
// on (unlike its rusage, which starts from the executor's). stop must be
// called once the program has exited and before it is reaped, so that the
// pid read is never another process's.
type rssSampler struct {
	pid     int
	mu      sync.Mutex
	stopped bool
	timer   *time.Timer
	peak    int64 // bytes; 0: no sample
}

// rssEvery is how often a running program's VmHWM is read.
const rssEvery = 50 * time.Millisecond

// start takes a first sample and then one every rssEvery, until stop.
func (r *rssSampler) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || r.timer != nil {
		return
	}
	r.sample()
	r.timer = time.AfterFunc(rssEvery, r.tick)
}

func (r *rssSampler) tick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	r.sample()
	r.timer.Reset(rssEvery)
}

// sample reads VmHWM; the caller holds mu.
func (r *rssSampler) sample() {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(r.pid) + "/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				r.peak = max(r.peak, kb*1024)
			}
			return
		}
	}
}

// stop ends the sampling and returns the highest VmHWM read (0: none).
func (r *rssSampler) stop() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
	}
	return r.peak
}
