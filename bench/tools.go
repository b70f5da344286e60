package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// Sample is one measured execution of a tool.
type Sample struct {
	Wall    time.Duration
	CPUTree time.Duration // user+sys of every descendant waited for (RUSAGE_CHILDREN delta)
	CPUTop  time.Duration // user+sys of the top process alone, sampled from /proc (≈, 10 ms ticks)
	MaxRSS  int64         // wait4's ru_maxrss, KiB: the peak of the top process and of every descendant it waited for
	TopRSS  int64         // VmHWM of the top process alone, sampled from /proc, KiB (0 if never sampled)
	Orphans int           // descendants left running after the top process exited
	Inner   time.Duration // the run time the tool reports itself (wiz only), 0 if none
	Err     error
}

// Tool is one DAG runner under test: an external command, or (Run set) a
// function of the harness itself.
type Tool struct {
	Name string
	// Run, when set, runs d in-process instead of Command.
	Run func(d *DAG) Sample
	// Command returns the argv to run d from its directory dir.
	Command func(d *DAG, dir string) []string
	// Env is the environment (nil: inherit).
	Env []string
	// Check inspects a finished execution's output; it may fill s.Inner.
	Check func(d *DAG, stdout, stderr []byte, s *Sample) error
	// Only, when set, says on which DAGs the tool runs.
	Only func(d *DAG) bool
}

// runMeasured runs argv in dir and measures it. The child gets its own
// process group so that a timeout can end the whole tree.
func runMeasured(argv []string, dir string, env []string, timeout time.Duration) (Sample, []byte, []byte) {
	var s Sample
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second

	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &before)
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		stop := make(chan struct{})
		sampled := make(chan procSample)
		go sampleProc(cmd.Process.Pid, stop, sampled)
		err = cmd.Wait()
		s.Wall = time.Since(start)
		close(stop)
		ps := <-sampled
		s.TopRSS, s.CPUTop = ps.hwm, ps.cpu
	} else {
		s.Wall = time.Since(start)
	}
	s.Orphans = reapOrphans(10 * time.Second)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &after)

	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s", timeout)
	}
	s.Err = err
	s.CPUTree = cpu(&after) - cpu(&before)
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			s.MaxRSS = ru.Maxrss
		}
	}
	return s, stdout.Bytes(), stderr.Bytes()
}

// procSample is what sampleProc last read about one process.
type procSample struct {
	hwm int64         // VmHWM, KiB
	cpu time.Duration // utime+stime of the process itself
}

// sampleProc reads /proc/PID every 20 ms until stop is closed, then sends
// the peak RSS (VmHWM) and CPU time it saw last. Both only grow, so the last
// reading before the process exits is close to the final value.
func sampleProc(pid int, stop <-chan struct{}, out chan<- procSample) {
	var last procSample
	status := fmt.Sprintf("/proc/%d/status", pid)
	read := func() {
		if b, err := os.ReadFile(status); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				var kb int64
				if _, err := fmt.Sscanf(l, "VmHWM: %d kB", &kb); err == nil {
					last.hwm = max(last.hwm, kb)
				}
			}
		}
		if c, err := procCPU(pid); err == nil && c > last.cpu {
			last.cpu = c
		}
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	read()
	for {
		select {
		case <-stop:
			out <- last
			return
		case <-t.C:
			read()
		}
	}
}

func cpu(r *syscall.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// becomeSubreaper makes this process the reaper of its orphaned descendants,
// so that a process a tool leaves behind is noticed (and its CPU counted).
func becomeSubreaper() error {
	const prSetChildSubreaper = 36
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// stuck holds descendants that outlived a reapOrphans deadline: they are
// reported once and not waited for again.
var stuck = map[int]bool{}

// reapOrphans waits up to max for descendants that outlived the process we
// started (they were reparented to us) and returns how many there were. Call
// it only when no exec.Cmd of ours is running.
func reapOrphans(max time.Duration) int {
	n := 0
	deadline := time.Now().Add(max)
	seen := map[int]bool{}
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil: // ECHILD: no children left
			return n
		case pid > 0:
			delete(stuck, pid)
			if !seen[pid] {
				seen[pid] = true
				n++
			}
			continue
		}
		// pid == 0: children exist, none has exited yet.
		var live []int
		for _, p := range childPIDs() {
			if stuck[p] {
				continue
			}
			live = append(live, p)
			if !seen[p] {
				seen[p] = true
				n++
			}
		}
		if len(live) == 0 {
			return n
		}
		if time.Now().After(deadline) {
			for _, p := range live {
				stuck[p] = true
			}
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// childPIDs lists this process's children from /proc.
func childPIDs() []int {
	me := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscanf(string(b[i+1:]), " %s %d", &state, &ppid); err == nil && ppid == me {
			out = append(out, pid)
		}
	}
	return out
}

var wizSummary = regexp.MustCompile(`\bSucceeded in (\S+)`)

// wizTool runs `wiz --home HOME run pipeline.yaml -q`; home is per DAG.
// wizVariant is wizTool named name, running file instead of the plain
// pipeline (or another wiz binary), only on the DAGs only accepts.
func wizVariant(name, wiz, file string, home func(d *DAG) string, only func(d *DAG) bool) Tool {
	t := wizTool(wiz, func(d *DAG) string { return home(d) + "-" + name })
	t.Name, t.Only = name, only
	t.Command = func(d *DAG, dir string) []string {
		return []string{wiz, "--home", home(d) + "-" + name, "run", filepath.Join(dir, file), "-q"}
	}
	return t
}

func wizTool(wiz string, home func(d *DAG) string) Tool {
	var env []string
	for _, kv := range cleanEnv() {
		if !strings.HasPrefix(kv, "WIZ_") { // no daemon, no other home
			env = append(env, kv)
		}
	}
	return Tool{
		Name: "wiz",
		Command: func(d *DAG, dir string) []string {
			return []string{wiz, "--home", home(d), "run", filepath.Join(dir, pipelineFile), "-q"}
		},
		Env: env,
		Check: func(d *DAG, stdout, stderr []byte, s *Sample) error {
			m := wizSummary.FindSubmatch(stdout)
			if m == nil {
				return fmt.Errorf("no \"Succeeded\" in wiz's summary: %s", firstLines(stdout, 3))
			}
			if dur, err := time.ParseDuration(string(m[1])); err == nil {
				s.Inner = dur
			}
			return nil
		},
	}
}

// cleanEnv is the environment without the variables through which a parent
// make (`make bench`) would pass its flags and jobserver to ours.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "GNUMAKEFLAGS":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// makeTool runs `make -r -s -jJ -f Makefile all`.
func makeTool(bin string, jobs int) Tool {
	return Tool{
		Name: "make",
		Env:  cleanEnv(),
		Command: func(d *DAG, dir string) []string {
			return []string{bin, "-r", "-s", fmt.Sprintf("-j%d", jobs), "-f", makeFile, "all"}
		},
		Check: func(d *DAG, stdout, stderr []byte, s *Sample) error {
			if len(bytes.TrimSpace(stdout)) > 0 {
				return fmt.Errorf("unexpected output: %s", firstLines(stdout, 3))
			}
			return nil
		},
	}
}

// ninjaTool runs `ninja -jJ -f build.ninja` and checks from its status lines
// ("[k/N] /bin/true", one per command) that it ran every node.
func ninjaTool(bin string, jobs int) Tool {
	return Tool{
		Name: "ninja",
		Env:  cleanEnv(),
		Command: func(d *DAG, dir string) []string {
			return []string{bin, fmt.Sprintf("-j%d", jobs), "-f", ninjaFile}
		},
		Check: func(d *DAG, stdout, stderr []byte, s *Sample) error {
			n := 0
			sc := bufio.NewScanner(bytes.NewReader(stdout))
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "[") {
					n++
				}
			}
			if n != d.N() {
				return fmt.Errorf("ninja ran %d commands, want %d: %s", n, d.N(), firstLines(stdout, 3))
			}
			return nil
		},
	}
}

// checkMakeDryRun checks once, untimed, that make would run every node.
func checkMakeDryRun(bin string, d *DAG, dir string) error {
	cmd := exec.Command(bin, "-r", "-n", "-f", makeFile, "all")
	cmd.Env = cleanEnv()
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("make -n: %v", err)
	}
	n := strings.Count(string(out), command+"\n")
	if n != d.N() {
		return fmt.Errorf("make -n lists %d commands, want %d", n, d.N())
	}
	return nil
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, " | ")
}

// lastLines returns the last n lines of b, for error reports.
func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ensureTools installs make and ninja with apt-get when either is missing,
// and returns the paths found ("" for one still missing).
func ensureTools() (makeBin, ninjaBin string) {
	makeBin, _ = exec.LookPath("make")
	ninjaBin, _ = exec.LookPath("ninja")
	if makeBin != "" && ninjaBin != "" {
		return
	}
	fmt.Printf("make or ninja is missing (make=%q, ninja=%q); installing them with apt-get\n", makeBin, ninjaBin)
	var prefix []string
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("sudo"); err != nil {
			fmt.Println("  not root and no sudo: cannot install; the missing tools are skipped")
			return
		}
		prefix = []string{"sudo"}
	}
	apt := func(args ...string) error {
		// -o DPkg::Lock::Timeout: wait for the package lock (another
		// install) instead of failing at once.
		argv := append(append(append([]string{}, prefix...), "apt-get", "-o", "DPkg::Lock::Timeout=600"), args...)
		fmt.Printf("  $ %s\n", strings.Join(argv, " "))
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.Run()
	}
	if err := apt("install", "-y", "ninja-build", "make"); err != nil {
		fmt.Printf("  install failed (%v); updating the package lists and trying again\n", err)
		if err := apt("update"); err != nil {
			fmt.Printf("  apt-get update failed: %v\n", err)
		}
		if err := apt("install", "-y", "ninja-build", "make"); err != nil {
			fmt.Printf("  install failed again: %v\n", err)
		}
	}
	makeBin, _ = exec.LookPath("make")
	ninjaBin, _ = exec.LookPath("ninja")
	return
}

// toolVersion returns the first line of `bin arg`.
func toolVersion(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "?"
	}
	return firstLines(out, 1)
}

// goExecTool is the floor any orchestrator is measured against: the harness
// itself runs the DAG, fork/exec'ing /bin/true straight from Go with the given
// number of workers, in dependency order, with no state, no RPC and no
// plugins. Measured in the same rounds as the others, it tracks the machine's
// load.
func goExecTool(workers int) Tool {
	return Tool{Name: "go-exec", Run: func(d *DAG) Sample { return runInProcess(d, workers) }}
}

// runInProcess runs d with workers goroutines that each fork/exec /bin/true
// and waits; a node is started once all its parents have finished.
func runInProcess(d *DAG, workers int) Sample {
	n := d.N()
	children := make([][]int, n)
	pending := make([]int, n)
	for i, ps := range d.Parents {
		pending[i] = len(ps)
		for _, p := range ps {
			children[p] = append(children[p], i)
		}
	}
	type result struct {
		id  int
		err error
	}
	ready := make(chan int, n)
	done := make(chan result, n)

	var s Sample
	var selfB, selfA, chB, chA syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &selfB)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &chB)
	start := time.Now()
	for w := 0; w < workers; w++ {
		go func() {
			for id := range ready {
				cmd := &exec.Cmd{Path: command, Args: []string{command}}
				done <- result{id, cmd.Run()}
			}
		}()
	}
	for i := range pending {
		if pending[i] == 0 {
			ready <- i
		}
	}
	for finished := 0; finished < n; finished++ {
		r := <-done
		if r.err != nil && s.Err == nil {
			s.Err = fmt.Errorf("%s: %v", node(r.id), r.err)
		}
		for _, c := range children[r.id] {
			if pending[c]--; pending[c] == 0 {
				ready <- c
			}
		}
	}
	close(ready)
	s.Wall = time.Since(start)
	syscall.Getrusage(syscall.RUSAGE_SELF, &selfA)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &chA)
	s.CPUTop = cpu(&selfA) - cpu(&selfB)
	s.CPUTree = s.CPUTop + cpu(&chA) - cpu(&chB)
	return s
}
