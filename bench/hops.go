package main

import (
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// hopBench is one Go benchmark of the overhead breakdown.
type hopBench struct {
	pkg, name string
	benchtime string // -benchtime, e.g. "1000x"
}

// HopResult is one benchmark's medians over -count runs.
type HopResult struct {
	Wall time.Duration // ns/op (ns/task for the scheduler)
	CPU  time.Duration // cpu-ns/op; 0 when the benchmark does not report it
	OK   bool
}

// HopsResult is the per-hop benchmarks' results by benchmark name.
type HopsResult struct {
	Load     string
	Commands []string
	Results  map[string]HopResult
	Errs     []string
}

// hopRounds is how many times each hop benchmark runs; the table shows the
// medians.
const hopRounds = 5

// hopBenchmarks runs the Go benchmarks behind the overhead breakdown
// hopRounds times, round-robin, and keeps the median of each metric.
func hopBenchmarks(root string, quick bool) *HopsResult {
	n := func(full, q int) string {
		if quick {
			return fmt.Sprintf("%dx", q)
		}
		return fmt.Sprintf("%dx", full)
	}
	benches := []hopBench{
		{"./core/scheduler", "BenchmarkScheduler100k", n(20, 5)},
		{"./core/store", "BenchmarkTaskWrites", n(5000, 1000)},
		{"./core/store", "BenchmarkTaskWritesBatched", n(50000, 10000)},
		{"./internal/executorserver", "BenchmarkForkExecTrue", n(1000, 200)},
		{"./internal/executorserver", "BenchmarkExecuteRoundTrip", n(3000, 500)},
		{"./internal/executorserver", "BenchmarkExecuteTrue", n(1000, 200)},
		{"./internal/executorserver", "BenchmarkRecordGroup", n(5000, 1000)},
		{"./internal/pluginhost", "BenchmarkProcessHash", n(3000, 500)},
	}
	res := &HopsResult{Load: loadAvg(), Results: map[string]HopResult{}}
	fmt.Printf("\n== per-hop benchmarks (load average %s)\n", res.Load)
	env := append(cleanEnv(), "WIZ_BENCH_STD_PACK="+filepath.Join(root, "bin", "wiz-processors-std"))
	// Group by package and benchtime: one `go test` per group and round.
	type group struct {
		pkg, benchtime string
		names          []string
	}
	var groups []*group
	for _, b := range benches {
		var g *group
		for _, x := range groups {
			if x.pkg == b.pkg && x.benchtime == b.benchtime {
				g = x
			}
		}
		if g == nil {
			g = &group{pkg: b.pkg, benchtime: b.benchtime}
			groups = append(groups, g)
		}
		g.names = append(g.names, b.name)
	}
	// Three rounds, each running every group once, so that the benchmarks
	// whose results are subtracted from each other see the same load.
	samples := map[string][]HopResult{}
	for round := 1; round <= hopRounds; round++ {
		for _, g := range groups {
			argv := []string{"go", "test", "-run", "^$", "-bench", "^(" + strings.Join(g.names, "|") + ")$", "-benchtime", g.benchtime, g.pkg}
			cmdline := strings.Join(argv, " ")
			if round == 1 {
				res.Commands = append(res.Commands, cmdline)
				fmt.Printf("   $ %s\n", cmdline)
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Dir, cmd.Env = root, env
			out, err := cmd.CombinedOutput()
			reapOrphans(0)
			for name, r := range parseBench(string(out)) {
				samples[name] = append(samples[name], r...)
			}
			if err != nil {
				res.Errs = append(res.Errs, fmt.Sprintf("%s: %v\n%s", cmdline, err, lastLines(out, 10)))
				fmt.Printf("   FAILED: %v\n%s\n", err, lastLines(out, 10))
			}
		}
		fmt.Printf("   round %d/%d done (load average %s)\n", round, hopRounds, loadAvg())
	}
	for _, b := range benches {
		ss := samples[b.name]
		if len(ss) == 0 {
			continue
		}
		med := HopResult{OK: true}
		med.Wall = medianDur(hopDur(ss, func(h HopResult) time.Duration { return h.Wall }))
		med.CPU = medianDur(hopDur(ss, func(h HopResult) time.Duration { return h.CPU }))
		res.Results[b.name] = med
		fmt.Printf("   %-34s %9.1f µs/op  %9.1f CPU µs/op  (median of %d)\n", b.name, us(med.Wall), us(med.CPU), len(ss))
	}
	return res
}

func hopDur(hs []HopResult, f func(HopResult) time.Duration) []time.Duration {
	out := make([]time.Duration, len(hs))
	for i, h := range hs {
		out[i] = f(h)
	}
	return out
}

var benchLine = regexp.MustCompile(`^(Benchmark\w+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parseBench reads `go test -bench` output: per benchmark, its ns/op (or
// ns/task when reported) and cpu-ns/op, one HopResult per line.
func parseBench(out string) map[string][]HopResult {
	res := map[string][]HopResult{}
	for _, l := range strings.Split(out, "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		var h HopResult
		var perOp, perTask float64
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				perOp = v
			case "ns/task":
				perTask = v
			case "cpu-ns/op":
				h.CPU = time.Duration(v)
			}
		}
		h.Wall = time.Duration(perOp)
		if perTask > 0 {
			h.Wall = time.Duration(perTask)
		}
		if h.Wall == 0 {
			continue
		}
		if h.CPU == 0 && perTask > 0 {
			h.CPU = h.Wall // the scheduler: one goroutine, no I/O; CPU ≈ wall
		}
		h.OK = true
		res[m[1]] = append(res[m[1]], h)
	}
	return res
}

// printHops prints where a task's time goes, hop by hop, next to wiz's
// measured time per task.
func (r *Report) printHops(w io.Writer) {
	h := r.Hops
	if h == nil {
		return
	}
	fmt.Fprintf(w, "\n== overhead breakdown by hop: focused Go benchmarks, one task at a time, median of %d rounds (load average %s)\n\n", hopRounds, h.Load)
	get := func(name string) (HopResult, bool) { x, ok := h.Results[name]; return x, ok }

	// wiz's own per-task time: wall from the chain DAG (one task at a time,
	// like the benchmarks), inside the run (wiz's summary); CPU from the
	// fanout DAG (whole process tree, without the one-processor start-up).
	var wizWall, wizCPU time.Duration
	var wallFrom, cpuFrom string
	for _, d := range r.DAGs {
		ss := d.Samples["wiz"]
		if len(ss) == 0 {
			continue
		}
		n := time.Duration(d.DAG.N())
		if strings.HasPrefix(d.DAG.Name, "chain") {
			if inner := medianDur(mapDur(ss, func(s Sample) time.Duration { return s.Inner })); inner > 0 {
				wizWall, wallFrom = inner/n, d.DAG.Name
			}
		}
		if strings.HasPrefix(d.DAG.Name, "fanout") {
			c := medianDur(mapDur(ss, func(s Sample) time.Duration { return s.CPUTree }))
			if s := r.Startup; s != nil && len(s.Samples) > 0 {
				c -= medianDur(mapDur(s.Samples, func(s Sample) time.Duration { return s.CPUTree }))
			}
			wizCPU, cpuFrom = c/n, d.DAG.Name
		}
	}
	share := func(part, whole time.Duration) string {
		if whole <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f %%", 100*part.Seconds()/whole.Seconds())
	}
	tb := &table{head: []string{"hop", "benchmark", "µs/task", "CPU µs/task", "share of wiz wall/task", "share of wiz CPU/task"}}
	row := func(label, bench string, wall, cpu time.Duration) {
		tb.add(label, bench, fmt.Sprintf("%.1f", us(wall)), fmt.Sprintf("%.1f", us(cpu)), share(wall, wizWall), share(cpu, wizCPU))
	}
	var sumWall, sumCPU time.Duration
	add := func(label, bench string, x HopResult) {
		row(label, bench, x.Wall, x.CPU)
		sumWall += x.Wall
		sumCPU += x.CPU
	}
	if x, ok := get("BenchmarkScheduler100k"); ok {
		add("scheduler (ready heap, in-degrees, dispatch window)", "core/scheduler Scheduler100k", x)
	}
	if x, ok := get("BenchmarkTaskWrites"); ok {
		add("store write: Running + Succeeded records, a commit each (background goroutine)", "core/store TaskWrites", x)
	}
	rt, okRT := get("BenchmarkExecuteRoundTrip")
	if okRT {
		add("manager → executor hop: Execute stream round trip (unix socket, 1 event back)", "executorserver ExecuteRoundTrip", rt)
	}
	et, okET := get("BenchmarkExecuteTrue")
	fe, okFE := get("BenchmarkForkExecTrue")
	rg, okRG := get("BenchmarkRecordGroup")
	if okET && okFE && okRT {
		book := HopResult{Wall: et.Wall - fe.Wall - rt.Wall, CPU: et.CPU - fe.CPU - rt.CPU}
		add("executor's native-task work (plan lookup, pipes, pgid journal, wait)", "ExecuteTrue − ForkExecTrue − ExecuteRoundTrip", book)
		if okRG {
			row("    of which the process-group record (two journal appends)", "executorserver RecordGroup", rg.Wall, rg.CPU)
		}
	}
	if okFE {
		add("fork/exec /bin/true and wait (pipes, own process group)", "executorserver ForkExecTrue", fe)
	}
	if okET {
		tb.add("= sum: one native task, scheduler to exit", "", fmt.Sprintf("%.1f", us(sumWall)), fmt.Sprintf("%.1f", us(sumCPU)), share(sumWall, wizWall), share(sumCPU, wizCPU))
	}
	if x, ok := get("BenchmarkProcessHash"); ok {
		row("executor → pack hop: a data processor's Process call (go-plugin; not on a native task's path)", "pluginhost ProcessHash", x.Wall, x.CPU)
	}
	if wizWall > 0 || wizCPU > 0 {
		tb.add(fmt.Sprintf("wiz measured per task (wall: %s, in the run; CPU: %s tree, without start-up)", orDash(wallFrom), orDash(cpuFrom)), "", fmtUs(wizWall), fmtUs(wizCPU), "100 %", "100 %")
		tb.add("not accounted for by the hops above", "", fmtUs(wizWall-sumWall), fmtUs(wizCPU-sumCPU), share(wizWall-sumWall, wizWall), share(wizCPU-sumCPU, wizCPU))
	}
	tb.print(w)
	fmt.Fprintln(w, "µs/task is one task's latency through that hop (benchmarks run one task at a time, like the chain DAG); CPU µs/task is the CPU of every process involved (rusage, /proc for the pack).")
	fmt.Fprintln(w, "The store commit runs in the background, so its wall time overlaps the task's; the sum adds it anyway. Rows with \"−\" are differences of medians of benchmarks run back to back, and carry their noise: a difference near or below zero is within it.")
	for _, e := range h.Errs {
		fmt.Fprintf(w, "  - failed: %s\n", e)
	}
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func fmtUs(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f", us(d))
}
