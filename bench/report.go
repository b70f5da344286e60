package main

import (
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DAGResult holds the measurements of every tool on one DAG.
type DAGResult struct {
	DAG     *DAG
	Samples map[string][]Sample // successful executions per tool
	Round   map[string][]int    // the round of each sample, for pairing
	Errors  map[string][]string // failed executions per tool
	Orphans map[string]int      // processes left behind per tool
	Load    [2]string           // 1-minute load average at the start and at the end
	// Others is the share of the machine's CPU that programs other than the
	// harness's (and the hypervisor) took while d was measured; -1: unknown.
	Others float64
}

func fmtShare(f float64) string {
	if f < 0 {
		return "an unknown share"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

// StartupResult is `wiz run` of a one-processor pipeline.
type StartupResult struct {
	Samples []Sample
	Load    string // load average when it started
	Err     string
}

// KernelResult is the output of the kernel's Go benchmarks.
type KernelResult struct {
	Command, Output, Err string
	Load                 string // load average when it started
}

// Report is everything measured.
type Report struct {
	Quick     bool
	Reps      int
	Jobs      int
	DAGs      []*DAGResult
	Startup   *StartupResult
	Daemon    *DaemonResult
	Schedules *ScheduleResult
	Hops      *HopsResult
	Kernel    *KernelResult
}

var toolOrder = []string{"wiz", "wiz+when", "wiz+for_each", "wiz+cache", "wiz-base", "make", "ninja", "go-exec"}

// Targets of the issue.
const (
	targetRatio   = 1.2  // wiz/make on fanout and layers10x100, by wall
	targetCPU     = 1.25 // and by the process tree's CPU
	targetWhen    = 1.2  // a condition on every processor against none
	targetForEach = 1.2  // a for_each over 1,000 items against 1,000 processors
	targetCache   = 0.2  // a run whose every processor is cached against one that runs them
	targetBase    = 1.05 // this build against the one before a change
	targetScale   = 1.1  // wiz time grows at most 1.1× the node count
	targetStartup = 250 * time.Millisecond
	targetRSSMiB  = 100.0 // manager peak RSS on the 10,000-node DAG

	// One-processor runs on `wiz daemon` with 50 clients.
	targetDaemonRate = 250.0                 // completed runs per second
	targetDaemonCPU  = 5 * time.Millisecond  // CPU of the daemon's tree per run
	targetDaemonP99  = 50 * time.Millisecond // StartRun p99
)

// daemonTargets checks the daemon's: a figure taken while others used the
// machine is not measured (busy.go).
func (r *Report) daemonTargets(tb *table) {
	d := r.Daemon
	labels := []string{
		fmt.Sprintf("daemon, %d clients: ≥ %.0f completed runs/s", daemonClients(d), targetDaemonRate),
		fmt.Sprintf("daemon: ≤ %s of CPU per run (its process tree, timed window)", fmtMs(targetDaemonCPU)),
		fmt.Sprintf("daemon: StartRun p99 ≤ %s", fmtMs(targetDaemonP99)),
	}
	if d == nil || d.Err != "" || len(d.Total) == 0 {
		for _, l := range labels {
			tb.add(l, "not measured", "SKIP")
		}
		return
	}
	n := len(d.Total)
	rate := float64(n) / d.Wall.Seconds()
	cpu := d.WindowCPU / time.Duration(n)
	p99 := percentile(d.Start, 99)
	for i, c := range []struct {
		measured string
		ok       bool
	}{
		{fmt.Sprintf("%.0f runs/s (%d in %.1fs)", rate, n, d.Wall.Seconds()), rate >= targetDaemonRate},
		{fmtMs(cpu), cpu <= targetDaemonCPU},
		{fmtMs(p99), p99 <= targetDaemonP99},
	} {
		m := c.measured + fmt.Sprintf(" (others %s)", fmtShare(d.Others))
		v, why := quietVerdict(c.ok && len(d.Failed) == 0, d.Others, n)
		if why != "" {
			m += " — " + why
		}
		tb.add(labels[i], m, v)
	}
}

func daemonClients(d *DaemonResult) int {
	if d == nil {
		return 50
	}
	return d.Clients
}

func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "\n(load average now: %s on %d CPUs)\n", loadAvg(), runtime.NumCPU())
	if len(r.DAGs) > 0 {
		r.printDAGs(w)
	}
	r.printStartup(w)
	r.printDaemon(w)
	r.printSchedules(w)
	r.printHops(w)
	r.printKernel(w)
	r.printErrors(w)
	r.printTargets(w)
}

// printStartup prints the one-processor `wiz run` times.
func (r *Report) printStartup(w io.Writer) {
	s := r.Startup
	if s == nil || len(s.Samples) == 0 {
		return
	}
	wl := walls(s.Samples)
	fmt.Fprintf(w, "\n== startup: `wiz run` of a one-processor pipeline, start to exit, %d runs (load average %s)\n\n", len(wl), s.Load)
	tb := &table{head: []string{"median wall s", "min–max s", "median run s (wiz's summary)", "median CPU s (tree)", "RSS top MiB"}}
	tb.add(secs(medianDur(wl)), fmt.Sprintf("%s–%s", secs(slices.Min(wl)), secs(slices.Max(wl))),
		secs(medianDur(mapDur(s.Samples, func(s Sample) time.Duration { return s.Inner }))),
		secs(medianDur(mapDur(s.Samples, func(s Sample) time.Duration { return s.CPUTree }))), fmtMiB(topRSS(s.Samples)))
	tb.print(w)
}

// printDAGs prints the side-by-side tables.
func (r *Report) printDAGs(w io.Writer) {
	fmt.Fprintf(w, "\n== results: median of %d run(s) per DAG and tool; CPU = user+sys of the whole process tree (RUSAGE_CHILDREN); top = the process started (for wiz: the manager), sampled from /proc; RSS top = its VmHWM (max over runs), RSS tree = wait4's ru_maxrss, the largest peak of the process and its waited-for descendants\n\n", r.Reps)
	tb := &table{head: []string{"DAG", "nodes", "tool", "runs", "wall s", "min–max s", "tasks/s", "CPU s", "top CPU s", "RSS top MiB", "RSS tree MiB"}}
	for _, d := range r.DAGs {
		for _, t := range toolOrder {
			ss, errs := d.Samples[t], d.Errors[t]
			if len(ss) == 0 && len(errs) == 0 {
				continue
			}
			runs := fmt.Sprintf("%d", len(ss))
			if len(errs) > 0 {
				runs += fmt.Sprintf(" (+%d failed)", len(errs))
			}
			if len(ss) == 0 {
				tb.add(d.DAG.Name, fmt.Sprint(d.DAG.N()), t, runs, "—", "—", "—", "—", "—", "—", "—")
				continue
			}
			wl := walls(ss)
			med := medianDur(wl)
			tb.add(d.DAG.Name, fmt.Sprint(d.DAG.N()), t, runs,
				secs(med),
				fmt.Sprintf("%s–%s", secs(slices.Min(wl)), secs(slices.Max(wl))),
				fmt.Sprintf("%.0f", float64(d.DAG.N())/med.Seconds()),
				secs(medianDur(mapDur(ss, func(s Sample) time.Duration { return s.CPUTree }))),
				secs(medianDur(mapDur(ss, func(s Sample) time.Duration { return s.CPUTop }))),
				fmtMiB(topRSS(ss)), fmtMiB(maxRSS(ss)))
		}
	}
	tb.print(w)

	fmt.Fprintf(w, "\n== ratios of wall times: median/median, and the median of the per-round ratios (same round, back to back); CPU: median/median of the process tree's CPU\n\n")
	tb = &table{head: []string{"DAG", "load start→end", "wiz/make", "wiz/make pairs", "wiz/ninja", "wiz/ninja pairs", "wiz/go-exec", "wiz/go-exec pairs", "make/ninja", "make/go-exec", "wiz/make CPU", "wiz/go-exec CPU"}}
	for _, d := range r.DAGs {
		tb.add(d.DAG.Name, d.Load[0]+"→"+d.Load[1],
			fmtRatio(d.ratio("wiz", "make")), fmtRatio(d.pairRatio("wiz", "make")),
			fmtRatio(d.ratio("wiz", "ninja")), fmtRatio(d.pairRatio("wiz", "ninja")),
			fmtRatio(d.ratio("wiz", "go-exec")), fmtRatio(d.pairRatio("wiz", "go-exec")),
			fmtRatio(d.ratio("make", "ninja")), fmtRatio(d.ratio("make", "go-exec")),
			fmtRatio(d.cpuRatio("wiz", "make")), fmtRatio(d.cpuRatio("wiz", "go-exec")))
	}
	tb.print(w)

	fmt.Fprintf(w, "\n== wiz: wall time against the run time wiz reports itself (the rest is start-up, plugin launch and shutdown)\n\n")
	tb = &table{head: []string{"DAG", "wall s", "run s (wiz's summary)", "outside the run s", "µs/task in the run"}}
	for _, d := range r.DAGs {
		ss := d.Samples["wiz"]
		if len(ss) == 0 {
			continue
		}
		wall := medianDur(walls(ss))
		inner := medianDur(mapDur(ss, func(s Sample) time.Duration { return s.Inner }))
		tb.add(d.DAG.Name, secs(wall), secs(inner), secs(wall-inner), fmt.Sprintf("%.0f", us(inner)/float64(d.DAG.N())))
	}
	tb.print(w)

	r.printOverhead(w)
}

// printOverhead compares wiz's cost per task on the fanout DAG with
// fork/exec straight from Go (go-exec, measured in the same rounds).
func (r *Report) printOverhead(w io.Writer) {
	fmt.Fprintf(w, "\n== overhead breakdown (per task, fanout DAG)\n\n")
	var fan *DAGResult
	for _, d := range r.DAGs {
		if strings.HasPrefix(d.DAG.Name, "fanout") {
			fan = d
		}
	}
	if fan == nil {
		fmt.Fprintln(w, "(no fanout DAG measured: no per-task comparison)")
		return
	}
	n := time.Duration(fan.DAG.N())
	perTask := func(tool string) (wall, cpu time.Duration, ok bool) {
		ss := fan.Samples[tool]
		if len(ss) == 0 {
			return 0, 0, false
		}
		return medianDur(walls(ss)) / n, medianDur(mapDur(ss, func(s Sample) time.Duration { return s.CPUTree })) / n, true
	}
	tb := &table{head: []string{"what", "wall µs/task", "CPU µs/task"}}
	row := func(label string, wall, cpu time.Duration) {
		tb.add(label, fmt.Sprintf("%.0f", us(wall)), fmt.Sprintf("%.0f", us(cpu)))
	}
	dw, dc, dok := perTask("go-exec")
	if dok {
		row(fmt.Sprintf("(a) go-exec: fork/exec %s straight from Go, %d workers", command, r.Jobs), dw, dc)
	}
	for _, t := range []string{"make", "ninja"} {
		if wl, c, ok := perTask(t); ok {
			row(t, wl, c)
		}
	}
	ww, wc, wok := perTask("wiz")
	if !wok {
		tb.print(w)
		fmt.Fprintf(w, "(wiz did not complete %s)\n", fan.DAG.Name)
		return
	}
	row("(b) wiz end to end", ww, wc)
	var startup, startupCPU time.Duration
	if s := r.Startup; s != nil && len(s.Samples) > 0 {
		startup = medianDur(walls(s.Samples))
		startupCPU = medianDur(mapDur(s.Samples, func(s Sample) time.Duration { return s.CPUTree }))
		row(fmt.Sprintf("    of which start-up/exit (one-processor run: %.3fs, spread over %d tasks)", startup.Seconds(), fan.DAG.N()), startup/n, startupCPU/n)
	}
	if dok {
		// The wall difference pairs runs of the same round, which saw the
		// same load; CPU is less sensitive to load, medians suffice.
		diff := ww - dw
		if d, ok := fan.pairDiff("wiz", "go-exec"); ok {
			diff = d / n
		}
		row("(b) − (a): orchestration overhead (wall: median of same-round differences)", diff, wc-dc)
		if startup > 0 {
			row("(b) − (a) − start-up: overhead per scheduled task", diff-startup/n, wc-dc-startupCPU/n)
		}
	}
	tb.print(w)
	fmt.Fprintf(w, "Wall µs/task is the whole run's wall time divided by the task count; with %d workers tasks overlap.\n", r.Jobs)
}

func (r *Report) printKernel(w io.Writer) {
	k := r.Kernel
	if k == nil {
		return
	}
	fmt.Fprintf(w, "\n== kernel benchmarks: %s (load average %s)\n\n", k.Command, k.Load)
	found := false
	for _, l := range strings.Split(strings.TrimRight(k.Output, "\n"), "\n") {
		if strings.HasPrefix(l, "Benchmark") {
			found = true
		}
		if strings.Contains(l, "[no test files]") {
			continue
		}
		fmt.Fprintf(w, "    %s\n", l)
	}
	if !found {
		fmt.Fprintln(w, "    (no kernel benchmarks in ./core/... yet)")
	}
	if k.Err != "" {
		fmt.Fprintf(w, "    go test: %s\n", k.Err)
	}
}

func (r *Report) printErrors(w io.Writer) {
	var lines []string
	for _, d := range r.DAGs {
		for _, t := range toolOrder {
			for _, e := range d.Errors[t] {
				lines = append(lines, fmt.Sprintf("%s: %s", d.DAG.Name, e))
			}
			if n := d.Orphans[t]; n > 0 {
				lines = append(lines, fmt.Sprintf("%s: %s left %d process(es) running after it exited", d.DAG.Name, t, n))
			}
		}
	}
	if r.Startup != nil && r.Startup.Err != "" {
		lines = append(lines, "startup: "+r.Startup.Err)
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "\n== errors\n\n")
	for _, l := range lines {
		fmt.Fprintf(w, "  - %s\n", l)
	}
}

// printTargets checks the targets. A miss is reported, not fatal.
func (r *Report) printTargets(w io.Writer) {
	fmt.Fprintf(w, "\n== targets (PASS/MISS; a miss does not fail the benchmark)\n\n")
	tb := &table{head: []string{"target", "measured", "result"}}
	byName := map[string]*DAGResult{}
	var layers []*DAGResult
	var fan *DAGResult
	for _, d := range r.DAGs {
		byName[d.DAG.Name] = d
		switch {
		case strings.HasPrefix(d.DAG.Name, "layers"):
			layers = append(layers, d)
		case strings.HasPrefix(d.DAG.Name, "fanout") && !d.DAG.ForEachOnly:
			fan = d
		}
	}
	slices.SortFunc(layers, func(a, b *DAGResult) int { return a.DAG.N() - b.DAG.N() })

	ratioTarget := func(name string, d *DAGResult) {
		label := fmt.Sprintf("wiz/make ≤ %.2f by wall and ≤ %.2f by CPU on %s", targetRatio, targetCPU, name)
		if d == nil {
			tb.add(label, "not measured", "SKIP")
			return
		}
		rt, ok := d.ratio("wiz", "make")
		if !ok {
			tb.add(label, d.why("wiz", "make"), "MISS")
			return
		}
		pr, _ := d.pairRatio("wiz", "make")
		measured := fmt.Sprintf("%.2f (pairs %.2f", rt, pr)
		// The wall ratio moves with the machine's load; the CPU ratio, which
		// bounds it on a quiet machine, does not much. Both must pass.
		cr, cok := d.cpuRatio("wiz", "make")
		if cok {
			measured += fmt.Sprintf("; by CPU %.2f", cr)
		}
		measured += fmt.Sprintf("; load %s→%s; others %s)", d.Load[0], d.Load[1], fmtShare(d.Others))
		v, why := quietVerdict(rt <= targetRatio && cok && cr <= targetCPU, d.Others, d.pairs("wiz", "make"))
		if why != "" {
			measured += " — " + why
		}
		tb.add(label, measured, v)
	}
	fanName := "fanout"
	if fan != nil {
		fanName = fan.DAG.Name
	}
	ratioTarget(fanName, fan)
	ratioTarget("layers10x100", byName["layers10x100"])

	// Two wiz runs of one DAG: a condition on every processor, and another
	// build (--wiz-base). Interleaved pairs; the CPU ratio beside the wall's.
	pairTarget := func(a, b, name string, limit float64, what string) {
		label := fmt.Sprintf("%s/%s ≤ %.2f on %s (%s)", a, b, limit, name, what)
		d := byName[name]
		if d == nil || len(d.Samples[a]) == 0 && len(d.Errors[a]) == 0 {
			tb.add(label, "not measured", "SKIP")
			return
		}
		pr, ok := d.pairRatio(a, b)
		if !ok {
			tb.add(label, d.why(a, b), "MISS")
			return
		}
		measured := fmt.Sprintf("%.3f (median of %d pairs", pr, min(len(d.Samples[a]), len(d.Samples[b])))
		if cr, ok := d.cpuRatio(a, b); ok {
			measured += fmt.Sprintf("; by CPU %.3f", cr)
		}
		measured += fmt.Sprintf("; load %s→%s; others %s)", d.Load[0], d.Load[1], fmtShare(d.Others))
		v, why := quietVerdict(pr <= limit, d.Others, d.pairs(a, b))
		if why != "" {
			measured += " — " + why
		}
		tb.add(label, measured, v)
	}
	pairTarget("wiz+when", "wiz", "layers10x100", targetWhen, "when: inputs.go on every processor")
	pairTarget("wiz+for_each", "wiz", "fanout1000", targetForEach, "the 1,000 middle processors as one for_each")
	pairTarget("wiz+cache", "wiz", "layers10x100", targetCache, "every processor's result cached, against running them")
	if small, big := byName["fanout1000"], byName["fanout10000"]; small != nil && big != nil {
		label := fmt.Sprintf("wiz+for_each time(10,000 items) ≤ %.0f × time(1,000 items)", targetScale*10)
		sb, okb := big.median("wiz+for_each")
		ss, oks := small.median("wiz+for_each")
		if okb && oks {
			got := sb.Seconds() / ss.Seconds()
			measured := fmt.Sprintf("%.1f× (%ss / %ss; load %s→%s)", got, secs(sb), secs(ss), big.Load[0], big.Load[1])
			v, why := quietVerdict(got <= targetScale*10, max(big.Others, small.Others), min(len(big.Samples["wiz+for_each"]), len(small.Samples["wiz+for_each"])))
			if why != "" {
				measured += " — " + why
			}
			tb.add(label, measured, v)
		} else {
			tb.add(label, big.why("wiz+for_each", ""), "MISS")
		}
	}
	for _, d := range r.DAGs {
		if len(d.Samples["wiz-base"]) > 0 || len(d.Errors["wiz-base"]) > 0 {
			pairTarget("wiz", "wiz-base", d.DAG.Name, targetBase, "this build against --wiz-base")
		}
	}

	if len(layers) >= 2 {
		small, big := layers[len(layers)-2], layers[len(layers)-1]
		f := targetScale * float64(big.DAG.N()) / float64(small.DAG.N())
		label := fmt.Sprintf("wiz time(%s, %d nodes) ≤ %.0f × wiz time(%s, %d nodes)", big.DAG.Name, big.DAG.N(), f, small.DAG.Name, small.DAG.N())
		sb, okb := big.median("wiz")
		ss, oks := small.median("wiz")
		switch {
		case !okb:
			tb.add(label, big.why("wiz", ""), "MISS")
		case !oks:
			tb.add(label, small.why("wiz", ""), "MISS")
		default:
			got := sb.Seconds() / ss.Seconds()
			measured := fmt.Sprintf("%.1f× (%ss / %ss)", got, secs(sb), secs(ss))
			// go-exec on the same DAGs shows how much of the growth is the
			// machine's (load, process creation) rather than wiz's.
			gb, okgb := big.median("go-exec")
			gs, okgs := small.median("go-exec")
			if okgb && okgs && gs > 0 {
				measured += fmt.Sprintf("; go-exec: %.1f×", gb.Seconds()/gs.Seconds())
			}
			v, why := quietVerdict(got <= f, max(big.Others, small.Others), min(len(big.Samples["wiz"]), len(small.Samples["wiz"])))
			if why != "" {
				measured += " — " + why
			}
			tb.add(label, measured, v)
		}
	} else {
		tb.add("wiz time scales with the node count", "needs two layered DAGs", "SKIP")
	}

	label := fmt.Sprintf("one-processor `wiz run`, start to exit ≤ %.2fs", targetStartup.Seconds())
	if s := r.Startup; s == nil {
		tb.add(label, "not measured", "SKIP")
	} else if len(s.Samples) == 0 {
		tb.add(label, "failed", "MISS")
	} else {
		m := medianDur(walls(s.Samples))
		tb.add(label, fmt.Sprintf("%ss (median of %d)", secs(m), len(s.Samples)), passMiss(m <= targetStartup))
	}

	r.kernelTarget(tb)
	r.schedulesTargets(tb)
	r.daemonTargets(tb)

	if len(layers) > 0 {
		big := layers[len(layers)-1]
		label := fmt.Sprintf("manager peak RSS ≤ %.0f MiB on %s (%d nodes)", targetRSSMiB, big.DAG.Name, big.DAG.N())
		if big.DAG.N() < 10000 {
			label += "; the target is for 10,000 nodes"
		}
		if ss := big.Samples["wiz"]; len(ss) == 0 {
			tb.add(label, big.why("wiz", ""), "MISS")
		} else if top := topRSS(ss); top > 0 {
			m := mib(top)
			tb.add(label, fmt.Sprintf("%.1f MiB (VmHWM, max of %d; tree ru_maxrss %.1f)", m, len(ss), mib(maxRSS(ss))), passMiss(m <= targetRSSMiB))
		} else {
			m := mib(maxRSS(ss))
			tb.add(label, fmt.Sprintf("%.1f MiB (ru_maxrss, max of %d)", m, len(ss)), passMiss(m <= targetRSSMiB))
		}
	} else {
		tb.add(fmt.Sprintf("manager peak RSS ≤ %.0f MiB on 10,000 nodes", targetRSSMiB), "not measured", "SKIP")
	}
	tb.print(w)
}

// targetKernel is the kernel's target: tasks scheduled and persisted per
// second on a 100,000-node DAG (BenchmarkRun100k).
const targetKernel = 100_000.0

var tasksPerSec = regexp.MustCompile(`^BenchmarkRun100k(?:-\d+)?\s.*?([\d.]+) tasks/s`)

// kernelTarget checks BenchmarkRun100k's tasks/s.
func (r *Report) kernelTarget(tb *table) {
	label := fmt.Sprintf("kernel: ≥ %.0f tasks/s scheduled and persisted, 100,000-node DAG (BenchmarkRun100k)", targetKernel)
	if r.Kernel == nil {
		tb.add(label, "not measured", "SKIP")
		return
	}
	for _, l := range strings.Split(r.Kernel.Output, "\n") {
		if m := tasksPerSec.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			tb.add(label, fmt.Sprintf("%.0f tasks/s (the pipeline parsed before the clock)", v), passMiss(v >= targetKernel))
			return
		}
	}
	tb.add(label, "BenchmarkRun100k did not report tasks/s", "MISS")
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// pairs is how many rounds measured both a and b on d.
func (d *DAGResult) pairs(a, b string) int {
	in := map[int]bool{}
	for _, r := range d.Round[b] {
		in[r] = true
	}
	n := 0
	for _, r := range d.Round[a] {
		if in[r] {
			n++
		}
	}
	return n
}

// median returns the median wall time of tool on d.
func (d *DAGResult) median(tool string) (time.Duration, bool) {
	ss := d.Samples[tool]
	if len(ss) == 0 {
		return 0, false
	}
	return medianDur(walls(ss)), true
}

// ratio is median(a)/median(b).
func (d *DAGResult) ratio(a, b string) (float64, bool) {
	ma, oka := d.median(a)
	mb, okb := d.median(b)
	if !oka || !okb || mb == 0 {
		return 0, false
	}
	return ma.Seconds() / mb.Seconds(), true
}

// cpuRatio is median CPU (whole tree) of a / that of b.
func (d *DAGResult) cpuRatio(a, b string) (float64, bool) {
	ca, cb := d.Samples[a], d.Samples[b]
	if len(ca) == 0 || len(cb) == 0 {
		return 0, false
	}
	tree := func(s Sample) time.Duration { return s.CPUTree }
	ma, mb := medianDur(mapDur(ca, tree)), medianDur(mapDur(cb, tree))
	if mb == 0 {
		return 0, false
	}
	return ma.Seconds() / mb.Seconds(), true
}

// pairRatio is the median over rounds of a's time / b's time in that round.
func (d *DAGResult) pairRatio(a, b string) (float64, bool) {
	rb := map[int]time.Duration{}
	for i, r := range d.Round[b] {
		rb[r] = d.Samples[b][i].Wall
	}
	var rs []float64
	for i, r := range d.Round[a] {
		if tb, ok := rb[r]; ok && tb > 0 {
			rs = append(rs, d.Samples[a][i].Wall.Seconds()/tb.Seconds())
		}
	}
	if len(rs) == 0 {
		return 0, false
	}
	return median(rs), true
}

// pairDiff is the median over rounds of a's time − b's time in that round.
func (d *DAGResult) pairDiff(a, b string) (time.Duration, bool) {
	rb := map[int]time.Duration{}
	for i, r := range d.Round[b] {
		rb[r] = d.Samples[b][i].Wall
	}
	var ds []time.Duration
	for i, r := range d.Round[a] {
		if tb, ok := rb[r]; ok {
			ds = append(ds, d.Samples[a][i].Wall-tb)
		}
	}
	if len(ds) == 0 {
		return 0, false
	}
	return medianDur(ds), true
}

// why says why a tool has no measurements on d.
func (d *DAGResult) why(tools ...string) string {
	for _, t := range tools {
		if t == "" || len(d.Samples[t]) > 0 {
			continue
		}
		if len(d.Errors[t]) > 0 {
			return t + " failed (see errors)"
		}
		return t + " not measured"
	}
	return "not measured"
}

func fmtRatio(r float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f", r)
}

func walls(ss []Sample) []time.Duration {
	return mapDur(ss, func(s Sample) time.Duration { return s.Wall })
}

func mapDur(ss []Sample, f func(Sample) time.Duration) []time.Duration {
	out := make([]time.Duration, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

func medianDur(ds []time.Duration) time.Duration {
	fs := make([]float64, len(ds))
	for i, d := range ds {
		fs[i] = float64(d)
	}
	return time.Duration(median(fs))
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func maxRSS(ss []Sample) int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.MaxRSS)
	}
	return m
}

func topRSS(ss []Sample) int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.TopRSS)
	}
	return m
}

func fmtMiB(kib int64) string {
	if kib == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", mib(kib))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
func us(d time.Duration) float64  { return float64(d) / float64(time.Microsecond) }
func mib(kib int64) float64       { return float64(kib) / 1024 }

// table prints a Markdown table with padded columns, readable as text too.
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer) {
	width := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-len([]rune(c))) + " |")
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.head)
	sep := make([]string, len(t.head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
}
