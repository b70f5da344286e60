package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/internal/managerapi"
)

// ScheduleResult is the schedules benchmark: many schedules spread over the
// minute on one `wiz daemon`, each starting a one-processor pipeline; then
// all of them paused.
type ScheduleResult struct {
	Schedules int
	Window    time.Duration   // how long they fired
	Load      [2]string       // load average before the daemon started, and when the idle phase ended
	Lags      []time.Duration // each run: its start (recorded) minus its tick
	Failed    int             // runs that did not end Succeeded
	IdleCPU   time.Duration   // the daemon's CPU over IdleWindow, all schedules paused
	IdleWin   time.Duration
	Err       string
}

// Targets of the schedules benchmark.
const (
	targetScheduleLag = time.Second // p99, tick → run recorded
	targetIdleCPU     = 0.01        // of one core, all schedules paused
	quietLoad         = 1.0         // a 1-minute load average above it: not measured
)

// schedulesPipeline has n schedules, schedule i firing at second i mod 60 of
// every minute.
func schedulesPipeline(n int) string {
	var b strings.Builder
	b.WriteString("name: bench-schedules\nschedules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  s%04d: {cron: \"%d * * * * *\", overlap: allow}\n", i, i%60)
	}
	b.WriteString("processors:\n  n0: {uses: std/exec, with: {command: [/bin/true], stdout: false}}\n")
	return b.String()
}

// procCPU reads the CPU time (utime+stime) of process pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	const userHZ = 100
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// measureSchedules starts `wiz daemon`, applies a pipeline with
// o.schedules schedules spread over the seconds of the minute, lets them fire
// for o.scheduleWindow, and takes each run's lag from its tick to its start
// (when the run is recorded). Then it pauses every schedule and measures the
// daemon's CPU while idle.
func measureSchedules(o options, tmp string) *ScheduleResult {
	res := &ScheduleResult{Schedules: o.schedules, Window: o.scheduleWindow}
	res.Load[0] = loadAvg()
	fmt.Printf("\n== schedules: %d schedules spread over the minute, firing for %s (load average %s)\n", res.Schedules, res.Window, res.Load[0])
	fail := func(format string, a ...any) *ScheduleResult {
		res.Err = fmt.Sprintf(format, a...)
		fmt.Printf("   FAILED: %s\n", res.Err)
		return res
	}
	dir := filepath.Join(tmp, "schedules")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail("%v", err)
	}
	ld, err := launchDaemon(o, dir)
	if err != nil {
		return fail("%v", err)
	}
	defer ld.stop()
	c, err := managerapi.DialTCP(ld.addr, ld.admin, "", true)
	if err != nil {
		return fail("connect: %v", err)
	}
	defer c.Close()
	if _, err := c.Apply("bench-schedules.yaml", []byte(schedulesPipeline(res.Schedules))); err != nil {
		return fail("apply: %v", err)
	}
	time.Sleep(res.Window)
	// Pause all, then let the runs in flight end.
	for i := range res.Schedules {
		if _, err := c.PauseSchedule("bench-schedules", fmt.Sprintf("s%04d", i), true); err != nil {
			return fail("pause s%04d: %v", i, err)
		}
	}
	time.Sleep(5 * time.Second)
	runs, err := c.Runs(manager.RunFilter{Pipeline: "bench-schedules"})
	if err != nil {
		return fail("list runs: %v", err)
	}
	for _, r := range runs {
		if r.ScheduledTime == nil || r.Started == nil {
			continue
		}
		res.Lags = append(res.Lags, r.Started.AsTime().Sub(r.ScheduledTime.AsTime()))
		if r.Ended == nil || r.State.String() != "RUN_STATE_SUCCEEDED" {
			res.Failed++
		}
	}
	c0, err := procCPU(ld.cmd.Process.Pid)
	if err != nil {
		return fail("%v", err)
	}
	t0 := time.Now()
	time.Sleep(o.idleWindow)
	c1, err := procCPU(ld.cmd.Process.Pid)
	if err != nil {
		return fail("%v", err)
	}
	res.IdleWin, res.IdleCPU = time.Since(t0), c1-c0
	res.Load[1] = loadAvg()
	fmt.Printf("   %d runs (%d not Succeeded); lag p50 %s p99 %s max %s; idle, all paused: %.2f%% of a core\n",
		len(res.Lags), res.Failed, fmtMs(percentile(res.Lags, 50)), fmtMs(percentile(res.Lags, 99)), fmtMs(percentile(res.Lags, 100)),
		100*res.IdleCPU.Seconds()/res.IdleWin.Seconds())
	return res
}

func (r *Report) printSchedules(w io.Writer) {
	s := r.Schedules
	if s == nil {
		return
	}
	fmt.Fprintf(w, "\n== schedules: %d schedules (cron seconds field 0–59, every minute) on one `wiz daemon`, each starting a one-processor pipeline, for %s; then all paused (load average %s before, %s after)\n\n", s.Schedules, s.Window, s.Load[0], s.Load[1])
	if s.Err != "" {
		fmt.Fprintf(w, "FAILED: %s\n", s.Err)
		return
	}
	tb := &table{head: []string{"measure", "value"}}
	tb.add("runs / not Succeeded", fmt.Sprintf("%d / %d", len(s.Lags), s.Failed))
	tb.add("lag tick → run recorded p50 / p99 / max", fmt.Sprintf("%s / %s / %s", fmtMs(percentile(s.Lags, 50)), fmtMs(percentile(s.Lags, 99)), fmtMs(percentile(s.Lags, 100))))
	tb.add(fmt.Sprintf("daemon CPU while all are paused (over %s)", s.IdleWin.Round(time.Second)), fmt.Sprintf("%.2f%% of a core", 100*s.IdleCPU.Seconds()/s.IdleWin.Seconds()))
	tb.print(w)
}

// schedulesTargets adds the schedules' targets: a MISS on a busy machine
// is "not measured".
func (r *Report) schedulesTargets(tb *table) {
	lagLabel := fmt.Sprintf("schedules: p99 lag tick → run recorded ≤ %s, 1,000 schedules", targetScheduleLag)
	idleLabel := fmt.Sprintf("schedules: idle daemon, all paused, < %.0f%% of a core", 100*targetIdleCPU)
	s := r.Schedules
	if s == nil || s.Err != "" || len(s.Lags) == 0 {
		tb.add(lagLabel, "not measured", "SKIP")
		tb.add(idleLabel, "not measured", "SKIP")
		return
	}
	busy := false
	if f := strings.Fields(s.Load[0]); len(f) > 0 {
		if l, err := strconv.ParseFloat(f[0], 64); err == nil && l > quietLoad {
			busy = true
		}
	}
	verdict := func(ok bool) string {
		if !ok && busy {
			return "SKIP" // a busy machine: not measured
		}
		return passMiss(ok)
	}
	p99 := percentile(s.Lags, 99)
	tb.add(lagLabel, fmt.Sprintf("%s (%d runs; load %s)", fmtMs(p99), len(s.Lags), s.Load[0]), verdict(p99 <= targetScheduleLag))
	frac := s.IdleCPU.Seconds() / s.IdleWin.Seconds()
	tb.add(idleLabel, fmt.Sprintf("%.2f%% (load %s)", 100*frac, s.Load[0]), verdict(frac < targetIdleCPU))
}
