// Command bench runs wiz, make and ninja side by side on the same DAGs of
// /bin/true tasks, plus the kernel's Go benchmarks, and checks the
// performance targets. Run it with `make bench` (BENCHFLAGS=--quick for a
// small version); see docs/performance.md.
//
// A missed target is reported as MISS, never as a failure: the program exits
// 0 unless it cannot run at all (no wiz binary, say).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// sections are the parts of the benchmark besides the DAGs, by their --only
// names.
var sections = []string{"startup", "daemon", "schedules", "hops", "kernel"}

type options struct {
	quick         bool
	reps          int
	only          string
	wiz           string
	wizBase       string
	keep          bool
	seed          uint64
	jobs          int
	timeout       time.Duration
	warmup        int
	startupRuns   int
	kernel        bool
	daemon        bool
	daemonClients int
	daemonRuns    int
	hops          bool
	// The schedules benchmark: schedules on one daemon, how long they fire,
	// how long the idle daemon is measured once they are paused.
	schedulesOn    bool
	schedules      int
	scheduleWindow time.Duration
	idleWindow     time.Duration
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "one repetition and smaller DAGs (chain100, fanout100, layers5x20, layers10x100)")
	flag.IntVar(&o.reps, "reps", 7, "measured repetitions per DAG and tool (default 1 with --quick)")
	flag.StringVar(&o.only, "only", "", "run only these DAGs (comma-separated names, e.g. fanout1000,layers10x100)")
	flag.StringVar(&o.wiz, "wiz", "", "the wiz binary (default bin/wiz in the repository root)")
	flag.StringVar(&o.wizBase, "wiz-base", "", "another wiz binary (an older build, with its plugins beside it) to run beside wiz on the DAGs, interleaved: the wiz/wiz-base ratio checks that a change does not slow the hot path")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory with the generated files and wiz homes")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the random layered DAGs")
	flag.IntVar(&o.jobs, "jobs", runtime.NumCPU(), "make -j and ninja -j (wiz's local executor runs NumCPU tasks at once)")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "limit per execution; a tool that hits it is not run again on that DAG")
	flag.IntVar(&o.warmup, "warmup", 1, "unmeasured executions per DAG and tool before the measured ones")
	flag.IntVar(&o.startupRuns, "startup-runs", 10, "measured runs of the one-processor pipeline")
	flag.BoolVar(&o.kernel, "kernel", true, "run the kernel Go benchmarks (go test -bench ./core/...)")
	flag.BoolVar(&o.daemon, "daemon", true, "run the daemon benchmark (many clients starting runs on one `wiz daemon`)")
	flag.IntVar(&o.daemonClients, "daemon-clients", 50, "concurrent clients of the daemon benchmark")
	flag.BoolVar(&o.schedulesOn, "schedules", true, "run the schedules benchmark (many schedules on one `wiz daemon`: lag, idle CPU)")
	flag.IntVar(&o.schedules, "schedules-n", 1000, "schedules of the schedules benchmark")
	flag.DurationVar(&o.scheduleWindow, "schedules-window", 2*time.Minute, "how long the schedules fire (1m with --quick)")
	flag.DurationVar(&o.idleWindow, "idle-window", time.Minute, "how long the idle daemon's CPU is measured (20s with --quick)")
	flag.IntVar(&o.daemonRuns, "daemon-runs", 4, "runs each daemon client starts, back to back (default 2 with --quick)")
	flag.BoolVar(&o.hops, "hops", true, "run the per-hop Go benchmarks (the overhead breakdown)")
	flag.Parse()
	repsSet := false
	flag.Visit(func(f *flag.Flag) { repsSet = repsSet || f.Name == "reps" })
	runsSet := false
	flag.Visit(func(f *flag.Flag) { runsSet = runsSet || f.Name == "daemon-runs" })
	if o.quick && !repsSet {
		o.reps = 1
	}
	if o.quick && !runsSet {
		o.daemonRuns = 2
		o.scheduleWindow, o.idleWindow = time.Minute, 20*time.Second
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", flag.Args())
		return 2
	}
	if o.reps < 1 {
		o.reps = 1
	}

	root, err := repoRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if o.wiz == "" {
		o.wiz = filepath.Join(root, "bin", "wiz")
	}
	if o.wiz, err = filepath.Abs(o.wiz); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if _, err := os.Stat(o.wiz); err != nil {
		fmt.Fprintf(os.Stderr, "bench: no wiz binary: %v (run `make build`, or pass --wiz)\n", err)
		return 1
	}
	if err := becomeSubreaper(); err != nil {
		fmt.Printf("note: cannot become a child subreaper (%v); processes a tool leaves behind go unnoticed\n", err)
	}

	tmp, err := os.MkdirTemp("", "wiz-bench-*")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if o.keep {
		fmt.Printf("files: %s (kept)\n", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	dags := makeDAGs(o.quick, o.seed)
	startup := true
	if o.only != "" {
		want := strings.Split(o.only, ",")
		var keep []*DAG
		all := slices.Clone(sections)
		for _, d := range dags {
			all = append(all, d.Name)
			if slices.Contains(want, d.Name) {
				keep = append(keep, d)
			}
		}
		for _, w := range want {
			if !slices.Contains(all, w) {
				fmt.Fprintf(os.Stderr, "bench: --only: no DAG or section %q; choose from %s\n", w, strings.Join(all, ", "))
				return 2
			}
		}
		dags = keep
		startup = slices.Contains(want, "startup")
		o.kernel = o.kernel && slices.Contains(want, "kernel")
		o.daemon = o.daemon && slices.Contains(want, "daemon")
		o.schedulesOn = o.schedulesOn && slices.Contains(want, "schedules")
		o.hops = o.hops && slices.Contains(want, "hops")
	}

	var makeBin, ninjaBin string
	if len(dags) > 0 {
		makeBin, ninjaBin = ensureTools()
	}
	printMachine(o, makeBin, ninjaBin, filepath.Join(tmp, "version-home"))

	home := func(d *DAG) string { return filepath.Join(tmp, d.Name, "wiz-home") }
	layers10x100 := func(d *DAG) bool { return d.Name == "layers10x100" }
	fanout := func(d *DAG) bool { return strings.HasPrefix(d.Name, "fanout") }
	tools := []Tool{wizTool(o.wiz, home), wizVariant("wiz+when", o.wiz, whenFile, home, layers10x100),
		wizVariant("wiz+for_each", o.wiz, forEachFile, home, fanout),
		// Its wiz home keeps the cache: the warm-up fills it, every
		// measured run reuses all 1,000 results.
		wizVariant("wiz+cache", o.wiz, cacheFile, home, layers10x100)}
	if o.wizBase != "" {
		base, err := filepath.Abs(o.wizBase)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: --wiz-base: %v\n", err)
			return 2
		}
		tools = append(tools, wizVariant("wiz-base", base, pipelineFile, home, nil))
	}
	if makeBin != "" {
		tools = append(tools, makeTool(makeBin, o.jobs))
	} else if len(dags) > 0 {
		fmt.Println("make: not available, skipped")
	}
	if ninjaBin != "" {
		tools = append(tools, ninjaTool(ninjaBin, o.jobs))
	} else if len(dags) > 0 {
		fmt.Println("ninja: not available, skipped")
	}
	tools = append(tools, goExecTool(o.jobs))

	rep := &Report{Quick: o.quick, Reps: o.reps, Jobs: o.jobs}
	for _, d := range dags {
		dir := filepath.Join(tmp, d.Name)
		if err := d.writeAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "bench: write %s: %v\n", d.Name, err)
			return 1
		}
		if err := os.MkdirAll(home(d), 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		rep.DAGs = append(rep.DAGs, runDAG(o, d, dir, tools, makeBin))
	}

	if startup {
		rep.Startup = measureStartup(o, tmp)
	}
	if o.daemon {
		rep.Daemon = measureDaemon(o, tmp)
	}
	if o.schedulesOn {
		rep.Schedules = measureSchedules(o, tmp)
	}
	if o.hops {
		rep.Hops = hopBenchmarks(root, o.quick)
	}
	if o.kernel {
		rep.Kernel = kernelBenchmarks(root)
	}
	rep.print(os.Stdout)
	return 0
}

// runDAG measures every tool on d: warm-ups, then o.reps rounds in which the
// tools take turns, the first tool rotating from round to round.
func runDAG(o options, d *DAG, dir string, tools []Tool, makeBin string) *DAGResult {
	fmt.Printf("\n== %s: %d nodes, %d edges (%s; load average %s)\n", d.Name, d.N(), d.Edges(), dir, loadAvg())
	res := &DAGResult{DAG: d, Samples: map[string][]Sample{}, Round: map[string][]int{}, Errors: map[string][]string{}, Orphans: map[string]int{}}
	res.Load[0] = loadAvg1()
	start := markCPU()
	defer func() {
		res.Load[1] = loadAvg1()
		res.Others = othersShare(start, markCPU())
		fmt.Printf("   others used %s of the machine's CPU meanwhile\n", fmtShare(res.Others))
	}()
	if makeBin != "" {
		if err := checkMakeDryRun(makeBin, d, dir); err != nil {
			fmt.Printf("   make check: %v\n", err)
		}
	}
	dead := map[string]bool{} // tools that timed out on this DAG
	runOne := func(t Tool, label string) (Sample, bool) {
		var argv []string
		var s Sample
		var stdout, stderr []byte
		if t.Run != nil {
			argv = []string{"(in-process)"}
			s = t.Run(d)
		} else {
			argv = t.Command(d, dir)
			s, stdout, stderr = runMeasured(argv, dir, t.Env, o.timeout)
		}
		if s.Err == nil && t.Check != nil {
			s.Err = t.Check(d, stdout, stderr, &s)
		}
		if s.Err != nil {
			msg := fmt.Sprintf("%s (%s): `%s` after %.2fs: %v", t.Name, label, strings.Join(argv, " "), s.Wall.Seconds(), s.Err)
			if out := strings.TrimSpace(lastLines(stdout, 5) + "\n" + lastLines(stderr, 15)); out != "" {
				msg += "\n      " + strings.ReplaceAll(out, "\n", "\n      ")
			}
			fmt.Printf("   %s\n", msg)
			res.Errors[t.Name] = append(res.Errors[t.Name], msg)
			if strings.HasPrefix(s.Err.Error(), "timed out") {
				dead[t.Name] = true
			}
			return s, false
		}
		if s.Orphans > 0 {
			fmt.Printf("   note: %s left %d process(es) running after it exited\n", t.Name, s.Orphans)
			res.Orphans[t.Name] += s.Orphans
		}
		return s, true
	}
	var runs []Tool // the tools that run on d
	for _, t := range tools {
		if (t.Only == nil || t.Only(d)) && (!d.ForEachOnly || t.Name == "wiz+for_each") {
			runs = append(runs, t)
		}
	}
	tools = runs
	for w := 0; w < o.warmup; w++ {
		var parts []string
		for _, t := range tools {
			if s, ok := runOne(t, "warm-up"); ok {
				parts = append(parts, fmt.Sprintf("%s %.3fs", t.Name, s.Wall.Seconds()))
			} else {
				parts = append(parts, t.Name+" FAILED")
			}
		}
		fmt.Printf("   warm-up:   %s\n", strings.Join(parts, "  "))
	}
	for r := 0; r < o.reps; r++ {
		var parts []string
		for i := range tools {
			t := tools[(r+i)%len(tools)]
			if dead[t.Name] {
				parts = append(parts, t.Name+" skipped")
				continue
			}
			s, ok := runOne(t, fmt.Sprintf("rep %d", r+1))
			if ok {
				res.Samples[t.Name] = append(res.Samples[t.Name], s)
				res.Round[t.Name] = append(res.Round[t.Name], r)
				parts = append(parts, fmt.Sprintf("%s %.3fs", t.Name, s.Wall.Seconds()))
			} else {
				parts = append(parts, t.Name+" FAILED")
			}
		}
		fmt.Printf("   rep %d/%d:   %s\n", r+1, o.reps, strings.Join(parts, "  "))
	}
	return res
}

// measureStartup times `wiz run` of a one-processor pipeline, start to exit.
func measureStartup(o options, tmp string) *StartupResult {
	fmt.Printf("\n== startup: one-processor pipeline, %d runs\n", o.startupRuns)
	d := &DAG{Name: "one", Parents: [][]int{nil}}
	dir := filepath.Join(tmp, "one")
	if err := d.writeAll(dir); err != nil {
		return &StartupResult{Err: err.Error()}
	}
	home := filepath.Join(dir, "wiz-home")
	t := wizTool(o.wiz, func(*DAG) string { return home })
	res := &StartupResult{Load: loadAvg()}
	for i := -1; i < o.startupRuns; i++ { // run -1 is the warm-up
		s, stdout, stderr := runMeasured(t.Command(d, dir), dir, t.Env, time.Minute)
		if s.Err == nil {
			s.Err = t.Check(d, stdout, stderr, &s)
		}
		if s.Err != nil {
			res.Err = fmt.Sprintf("%v: %s", s.Err, lastLines(stderr, 5))
			fmt.Printf("   FAILED: %s\n", res.Err)
			return res
		}
		if i >= 0 {
			res.Samples = append(res.Samples, s)
		}
	}
	fmt.Printf("   median %.3fs\n", medianDur(walls(res.Samples)).Seconds())
	return res
}

// kernelBenchmarks runs the Go benchmarks of ./core/... and returns their
// output.
func kernelBenchmarks(root string) *KernelResult {
	argv := []string{"go", "test", "-run", "^$", "-bench", ".", "-benchmem", "./core/..."}
	load := loadAvg()
	fmt.Printf("\n== kernel benchmarks: %s (load average %s)\n", strings.Join(argv, " "), load)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	reapOrphans(0)
	res := &KernelResult{Command: strings.Join(argv, " "), Output: string(out), Load: load}
	if err != nil {
		res.Err = err.Error()
	}
	return res
}

// repoRoot walks up from the working directory to the directory with go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above it: run from the repository")
		}
		dir = parent
	}
}

// printMachine prints what the numbers were measured on.
func printMachine(o options, makeBin, ninjaBin, home string) {
	fmt.Println("== machine")
	fmt.Printf("   cpus:   %d (%s)\n", runtime.NumCPU(), cpuModel())
	fmt.Printf("   memory: %s\n", memTotal())
	fmt.Printf("   kernel: Linux %s\n", kernelRelease())
	fmt.Printf("   go:     %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("   wiz:    %s (%s)\n", o.wiz, toolVersion(o.wiz, "--home", home, "version"))
	if makeBin != "" {
		fmt.Printf("   make:   %s (%s)\n", makeBin, toolVersion(makeBin, "--version"))
	}
	if ninjaBin != "" {
		fmt.Printf("   ninja:  %s (%s)\n", ninjaBin, toolVersion(ninjaBin, "--version"))
	}
	fmt.Printf("   jobs:   make -j%d, ninja -j%d, go-exec %d workers, wiz: its local executor's NumCPU slots\n", o.jobs, o.jobs, o.jobs)
	fmt.Printf("   load:   %s (1, 5, 15 min; the machine may be shared)\n", loadAvg())
	fmt.Printf("   reps:   %d measured (+%d warm-up) per DAG and tool\n", o.reps, o.warmup)
}

// loadAvg1 returns the 1-minute load average.
func loadAvg1() string {
	f := strings.Fields(loadAvg())
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// kernelRelease returns the Linux kernel's release.
func kernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown model"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
