package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/internal/managerapi"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// DaemonResult is the daemon benchmark: many clients starting runs of a
// one-processor pipeline on one `wiz daemon`.
type DaemonResult struct {
	Clients, PerClient int
	Load               string        // load average when the measured phase started
	Wall               time.Duration // first StartRun call → last run ended
	StartWall          time.Duration // first StartRun call → last StartRun returned
	Start              []time.Duration
	Total              []time.Duration // StartRun call → the run ended Succeeded
	Failed             []string        // runs that did not end Succeeded, or calls that failed
	CPU                time.Duration   // the daemon's whole process tree, measured phase and warm-up included
	CPUTop             time.Duration   // the daemon process alone
	WindowCPU          time.Duration   // the daemon's process tree over the timed window
	Others             float64         // the share of the machine's CPU others took meanwhile (busy.go)
	RSS                int64           // the daemon's VmHWM, KiB
	Err                string          // the benchmark could not run
}

const daemonPipeline = `name: bench-daemon
processors:
  n0:
    uses: std/exec
    with: {command: [/bin/true], stdout: false}
`

var (
	daemonListening = regexp.MustCompile(`(?m)^wiz daemon: listening on (\S+)$`)
	daemonAdmin     = regexp.MustCompile(`(?m)^wiz daemon: admin token \(shown once; keep it safe\): (wiz_\S+)$`)
)

// lockedBuf is a buffer a process writes while the harness reads it.
type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// measureDaemon starts `wiz daemon` on 127.0.0.1 with a data dir of its own
// (self-signed TLS, the admin token it prints), makes a runner token, applies
// the one-processor pipeline, warms up with a few sequential runs, then lets
// clients goroutines — each with its own TLS connection, made before the
// clock starts — start perClient runs each, back to back, all at once. Each
// run is timed from the StartRun call to its first update (the run is
// recorded and started: what `wiz run` waits for before it can print the
// run's ID) and to its end.
func measureDaemon(o options, tmp string) *DaemonResult {
	res := &DaemonResult{Clients: o.daemonClients, PerClient: o.daemonRuns}
	fmt.Printf("\n== daemon: %d clients × %d runs of a one-processor pipeline (load average %s)\n", res.Clients, res.PerClient, loadAvg())
	fail := func(format string, a ...any) *DaemonResult {
		res.Err = fmt.Sprintf(format, a...)
		fmt.Printf("   FAILED: %s\n", res.Err)
		return res
	}
	dir := filepath.Join(tmp, "daemon")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail("%v", err)
	}
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &before)
	ld, err := launchDaemon(o, dir)
	if err != nil {
		return fail("%v", err)
	}
	stopSample := make(chan struct{})
	sampled := make(chan procSample, 1)
	go sampleProc(ld.cmd.Process.Pid, stopSample, sampled)
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ld.stop()
		close(stopSample)
		ps := <-sampled
		res.RSS, res.CPUTop = ps.hwm, ps.cpu
		syscall.Getrusage(syscall.RUSAGE_CHILDREN, &after)
		res.CPU = cpu(&after) - cpu(&before)
	}
	defer stop()
	addr, admin := ld.addr, ld.admin

	// A runner token, as a CI client would have.
	ac, err := managerapi.DialTCP(addr, admin, "", true)
	if err != nil {
		return fail("connect as admin: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	tok, err := ac.Tokens.CreateToken(ctx, &wizrpc.CreateTokenRequest{Name: "bench", Role: wizpb.Role_ROLE_RUNNER})
	cancel()
	ac.Close()
	if err != nil {
		return fail("create a runner token: %v", managerapi.FromStatus(err))
	}
	runner := tok.Secret

	first, err := managerapi.DialTCP(addr, runner, "", true)
	if err != nil {
		return fail("connect: %v", err)
	}
	defer first.Close()
	a, err := first.Apply("bench-daemon.yaml", []byte(daemonPipeline))
	if err != nil {
		return fail("apply the pipeline: %v", err)
	}
	name := a.Pipeline.Name
	runOnce := func(c *managerapi.Client) (start, total time.Duration, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		defer cancel()
		t0 := time.Now()
		r, err := c.Run(ctx, manager.RunRequest{Pipeline: name}, func(u manager.Update) {
			if start == 0 && u.Run != nil && u.Run.Id != "" {
				start = time.Since(t0)
			}
		})
		total = time.Since(t0)
		switch {
		case err != nil:
			return start, total, err
		case r == nil:
			return start, total, fmt.Errorf("no run returned")
		case r.State != wizpb.RunState_RUN_STATE_SUCCEEDED:
			return start, total, fmt.Errorf("run %s ended %s: %s", r.Id, r.State, r.Reason)
		}
		return start, total, nil
	}
	// Warm-up: the first run reads the pack's description and its plan.
	for i := 0; i < 3; i++ {
		if _, _, err := runOnce(first); err != nil {
			return fail("warm-up run: %v", err)
		}
	}

	clients := make([]*managerapi.Client, res.Clients)
	for i := range clients {
		c, err := managerapi.DialTCP(addr, runner, "", true)
		if err != nil {
			return fail("connect client %d: %v", i, err)
		}
		defer c.Close()
		// Connect (TCP, TLS, token) before the clock starts.
		if _, err := c.Runs(manager.RunFilter{Limit: 1}); err != nil {
			return fail("client %d: list runs: %v", i, err)
		}
		clients[i] = c
	}

	res.Load = loadAvg()
	type one struct {
		start, total time.Duration
		startedAt    time.Time // when StartRun returned
		err          error
	}
	results := make([][]one, res.Clients)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			for range res.PerClient {
				var r one
				r.start, r.total, r.err = runOnce(c)
				r.startedAt = time.Now().Add(r.start - r.total)
				results[i] = append(results[i], r)
			}
		}()
	}
	pid := ld.cmd.Process.Pid
	m0, c0 := markCPU(), treeCPU(pid)
	t0 := time.Now()
	close(gate)
	wg.Wait()
	res.Wall = time.Since(t0)
	m1, c1 := markCPU(), treeCPU(pid)
	res.WindowCPU = c1 - c0
	res.Others = othersShareBut(m0, m1, res.WindowCPU)
	var lastStart time.Time
	for _, rs := range results {
		for _, r := range rs {
			if r.err != nil {
				res.Failed = append(res.Failed, r.err.Error())
				continue
			}
			res.Start = append(res.Start, r.start)
			res.Total = append(res.Total, r.total)
			if r.startedAt.After(lastStart) {
				lastStart = r.startedAt
			}
		}
	}
	res.StartWall = lastStart.Sub(t0)
	stop()
	fmt.Printf("   %d runs in %.2fs, %d failed; StartRun p50 %s p99 %s; start→Succeeded p50 %s p99 %s; others used %s of the machine's CPU\n",
		len(res.Total), res.Wall.Seconds(), len(res.Failed),
		fmtMs(percentile(res.Start, 50)), fmtMs(percentile(res.Start, 99)),
		fmtMs(percentile(res.Total, 50)), fmtMs(percentile(res.Total, 99)), fmtShare(res.Others))
	return res
}

// percentile is the nearest-rank percentile p (0–100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	k := int(p/100*float64(len(s))+0.999999) - 1
	k = max(0, min(k, len(s)-1))
	return s[k]
}

func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func (r *Report) printDaemon(w io.Writer) {
	d := r.Daemon
	if d == nil {
		return
	}
	fmt.Fprintf(w, "\n== daemon: %d clients, each starting %d runs of a one-processor pipeline (std/exec /bin/true) back to back on one `wiz daemon` (127.0.0.1, TLS, runner token; load average %s)\n\n", d.Clients, d.PerClient, d.Load)
	if d.Err != "" {
		fmt.Fprintf(w, "FAILED: %s\n", d.Err)
		return
	}
	n := len(d.Total)
	tb := &table{head: []string{"measure", "value"}}
	tb.add("runs Succeeded / started", fmt.Sprintf("%d / %d", n, n+len(d.Failed)))
	if d.StartWall > 0 {
		tb.add("runs started per second (StartRun returned, over first call → last start)", fmt.Sprintf("%.1f", float64(n)/d.StartWall.Seconds()))
	}
	if d.Wall > 0 {
		tb.add("runs completed per second (over first call → last run ended)", fmt.Sprintf("%.1f", float64(n)/d.Wall.Seconds()))
	}
	tb.add("StartRun latency p50 / p99 (call → run recorded, first update)", fmt.Sprintf("%s / %s", fmtMs(percentile(d.Start, 50)), fmtMs(percentile(d.Start, 99))))
	tb.add("start → Succeeded p50 / p99", fmt.Sprintf("%s / %s", fmtMs(percentile(d.Total, 50)), fmtMs(percentile(d.Total, 99))))
	if d.CPU > 0 && n > 0 {
		tb.add("daemon tree CPU per run (daemon, backends, executors, tasks; warm-up included)", fmtMs(d.CPU/time.Duration(n+3)))
	}
	if d.CPUTop > 0 && n > 0 {
		tb.add("daemon process CPU per run", fmtMs(d.CPUTop/time.Duration(n+3)))
	}
	if d.RSS > 0 {
		tb.add("daemon peak RSS (VmHWM)", fmt.Sprintf("%.1f MiB", mib(d.RSS)))
	}
	tb.print(w)
	for i, f := range d.Failed {
		if i == 5 {
			fmt.Fprintf(w, "  … and %d more failures\n", len(d.Failed)-5)
			break
		}
		fmt.Fprintf(w, "  - failed: %s\n", f)
	}
}

// launched is a `wiz daemon` the benchmark started.
type launched struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuf
	exited         chan error
	addr, admin    string
}

// launchDaemon starts `wiz daemon` on 127.0.0.1 with a data dir and home in
// dir (self-signed TLS) and waits until it listens and has printed its admin
// token.
func launchDaemon(o options, dir string, args ...string) (*launched, error) {
	var env []string
	for _, kv := range cleanEnv() {
		if !strings.HasPrefix(kv, "WIZ_") {
			env = append(env, kv)
		}
	}
	env = append(env, "WIZ_HOME="+filepath.Join(dir, "home"))
	cmd := exec.Command(o.wiz, append([]string{"daemon", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--grace", "10s"}, args...)...)
	cmd.Env, cmd.Dir = env, dir
	ld := &launched{cmd: cmd, stdout: &lockedBuf{}, stderr: &lockedBuf{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = ld.stdout, ld.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the daemon: %w", err)
	}
	go func() { ld.exited <- cmd.Wait() }()
	for deadline := time.Now().Add(time.Minute); ; {
		if m := daemonListening.FindStringSubmatch(ld.stdout.String()); m != nil {
			ld.addr = m[1]
			break
		}
		select {
		case err := <-ld.exited:
			return nil, fmt.Errorf("the daemon exited before listening (%v): %s", err, lastLines([]byte(ld.stderr.String()), 5))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			ld.stop()
			return nil, fmt.Errorf("the daemon did not listen within a minute: %s", lastLines([]byte(ld.stderr.String()), 5))
		}
	}
	m := daemonAdmin.FindStringSubmatch(ld.stdout.String())
	if m == nil {
		ld.stop()
		return nil, fmt.Errorf("the daemon printed no admin token: %s", firstLines([]byte(ld.stdout.String()), 5))
	}
	ld.admin = m[1]
	return ld, nil
}

// stop stops the daemon with SIGTERM (SIGKILL after a minute) and reaps
// what it left.
func (ld *launched) stop() {
	_ = ld.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-ld.exited:
		if err != nil {
			fmt.Printf("   the daemon exited after SIGTERM: %v\n      %s\n", err, strings.ReplaceAll(lastLines([]byte(ld.stderr.String()), 10), "\n", "\n      "))
		}
	case <-time.After(60 * time.Second):
		fmt.Println("   the daemon did not stop within 60s of SIGTERM; killing it")
		_ = syscall.Kill(-ld.cmd.Process.Pid, syscall.SIGKILL)
		<-ld.exited
	}
	if n := reapOrphans(10 * time.Second); n > 0 {
		fmt.Printf("   note: the daemon left %d process(es) running after it exited\n", n)
	}
}
