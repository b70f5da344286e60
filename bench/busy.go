package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A wall-time ratio taken while other programs use the machine flatters
// wiz (make, with more processes, loses more to them), so a figure
// measured on a busy machine is "not measured", never PASS. Load averages
// count the benchmark's own processes; what tells is the CPU time the
// machine spent (and the hypervisor stole) beyond what the harness and the
// processes it waited for used, over the measured window.

// busyMax is the share of the machine's CPU capacity that others may use
// during a measurement for its ratios to count.
const busyMax = 0.10

// minPairs is the fewest interleaved pairs a ratio target gets a verdict
// from (--quick makes one).
const minPairs = 5

// cpuMark is the machine's and the harness's CPU use at one moment.
type cpuMark struct {
	at          time.Time
	busy, steal time.Duration // the machine's, all CPUs (/proc/stat)
	ours        time.Duration // the harness and its waited-for children
	ok          bool
}

func markCPU() cpuMark {
	m := cpuMark{at: time.Now()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return m
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return m
	}
	tick := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * time.Second / 100 // USER_HZ
	}
	// user nice system idle iowait irq softirq steal
	m.busy = tick(1) + tick(2) + tick(3) + tick(6) + tick(7)
	m.steal = tick(8)
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			m.ours += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	m.ok = true
	return m
}

// othersShare is the share of the machine's CPU capacity between a and b
// that the harness did not use: other programs, and time the hypervisor
// stole. -1: unknown.
func othersShare(a, b cpuMark) float64 { return othersShareBut(a, b, 0) }

// othersShareBut is othersShare when the harness's processes not yet
// waited for (a daemon it started) used mine of CPU time meanwhile.
func othersShareBut(a, b cpuMark, mine time.Duration) float64 {
	if !a.ok || !b.ok || !b.at.After(a.at) {
		return -1
	}
	capacity := float64(b.at.Sub(a.at)) * float64(runtime.NumCPU())
	others := float64((b.busy - a.busy) + (b.steal - a.steal) - (b.ours - a.ours) - mine)
	return max(0, others) / capacity
}

// treeCPU is the CPU time of process pid and its live descendants, with
// what they waited for (/proc: utime, stime, cutime, cstime).
func treeCPU(pid int) time.Duration {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	cpu := map[int]time.Duration{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if i < 0 || len(f) < 15 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
		var t int64
		for _, k := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseInt(f[k], 10, 64)
			t += v
		}
		cpu[p] = time.Duration(t) * time.Second / 100 // USER_HZ
	}
	var sum time.Duration
	for p, c := range cpu {
		for q := p; q > 1; q = parent[q] {
			if q == pid {
				sum += c
				break
			}
		}
	}
	return sum
}

// quietVerdict is a ratio target's result: PASS or MISS only when the
// machine was quiet and there were enough pairs; else SKIP, with why.
func quietVerdict(ok bool, others float64, pairs int) (string, string) {
	switch {
	case others < 0:
		return "SKIP", "not measured: the machine's CPU use could not be read"
	case others > busyMax:
		return "SKIP", "not measured: others used " + strconv.Itoa(int(100*others+0.5)) + "% of the machine's CPU (a verdict needs ≤ " + strconv.Itoa(int(100*busyMax)) + "%)"
	case pairs < minPairs:
		return "SKIP", "not measured: " + strconv.Itoa(pairs) + " pair(s); a verdict needs " + strconv.Itoa(minPairs)
	}
	return passMiss(ok), ""
}
