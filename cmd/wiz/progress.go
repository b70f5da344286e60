package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// maxLines is how many processors the live display lists on a terminal;
// larger runs show counts and the running processors.
const maxLines = 30

// progress shows a run's progress: on a terminal, one redrawn line per
// processor with its state and duration; elsewhere, one plain line per change.
type progress struct {
	w     io.Writer
	tty   bool
	quiet bool

	mu    sync.Mutex
	runID string
	order []string
	procs map[string]*wizpb.ProcessorRun
	drawn int
	dirty bool
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newProgress(w *os.File, quiet bool) *progress {
	p := &progress{w: w, quiet: quiet, tty: term.IsTerminal(int(w.Fd())), procs: map[string]*wizpb.ProcessorRun{}, stop: make(chan struct{})}
	if p.tty && !quiet {
		p.wg.Add(1)
		go p.ticker()
	}
	return p
}

// ticker redraws at most ten times a second; it stops on close.
func (p *progress) ticker() {
	defer p.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.mu.Lock()
			p.draw()
			p.mu.Unlock()
		case <-p.stop:
			return
		}
	}
}

func (p *progress) update(u manager.Update) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if u.Run != nil && p.runID == "" {
		p.runID = u.Run.Id
		if !p.tty {
			fmt.Fprintf(p.w, "run %s started (pipeline %s v%d)\n", u.Run.Id, u.Run.PipelineName, u.Run.PipelineVersion)
		}
	}
	if u.Processor != nil {
		pr := u.Processor
		if _, ok := p.procs[pr.Name]; !ok {
			p.order = append(p.order, pr.Name)
		}
		p.procs[pr.Name] = pr
		if !p.tty && u.Warning == "" {
			fmt.Fprintf(p.w, "%-20s %s\n", pr.Name, stateText(pr))
		}
	}
	if u.Warning != "" && !p.tty {
		fmt.Fprintf(p.w, "%-20s warning: %s\n", u.Processor.GetName(), u.Warning)
	}
	p.dirty = true
}

func (p *progress) close() {
	close(p.stop)
	p.wg.Wait()
	if p.tty && !p.quiet {
		p.mu.Lock()
		p.draw()
		p.mu.Unlock()
	}
}

// draw redraws the display; the caller holds mu.
func (p *progress) draw() {
	if !p.dirty && p.drawn > 0 && !p.anyRunning() {
		return
	}
	p.dirty = false
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	lines := p.lines()
	for _, l := range lines {
		b.WriteString("\x1b[2K")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	p.drawn = len(lines)
	io.WriteString(p.w, b.String())
}

func (p *progress) anyRunning() bool {
	for _, pr := range p.procs {
		if pr.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING {
			return true
		}
	}
	return false
}

func (p *progress) lines() []string {
	names := p.order
	if len(names) > maxLines {
		counts := map[wizpb.ProcessorState]int{}
		var running []string
		for _, n := range names {
			counts[p.procs[n].State]++
			if p.procs[n].State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING {
				running = append(running, n)
			}
		}
		sort.Strings(running)
		if len(running) > maxLines-1 {
			running = running[:maxLines-1]
		}
		out := []string{fmt.Sprintf("%d running, %d succeeded, %d failed", counts[wizpb.ProcessorState_PROCESSOR_STATE_RUNNING],
			counts[wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED], counts[wizpb.ProcessorState_PROCESSOR_STATE_FAILED])}
		for _, n := range running {
			out = append(out, fmt.Sprintf("  %-20s %s", n, stateText(p.procs[n])))
		}
		return out
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, fmt.Sprintf("%-20s %s", n, stateText(p.procs[n])))
	}
	return out
}

// procStateName is a processor's state as the CLI shows it: one of the four
// states, "Idle (skipped)" for a processor that was skipped.
func procStateName(pr *wizpb.ProcessorRun) string {
	if pr.Skipped {
		return "Idle (skipped)"
	}
	return stateName(pr.State)
}

func stateText(pr *wizpb.ProcessorRun) string {
	s := stateName(pr.State)
	d := procDuration(pr)
	switch {
	case pr.Skipped:
		return "Idle (skipped)  " + pr.Reason
	case pr.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING && pr.Reason != "":
		return fmt.Sprintf("%-9s %s", s, pr.Reason) // waiting to retry
	case pr.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING:
		return fmt.Sprintf("%-9s %s", s, fmtDuration(d))
	case pr.State == wizpb.ProcessorState_PROCESSOR_STATE_IDLE:
		return s
	}
	out := fmt.Sprintf("%-9s %s", s, fmtDuration(d))
	if n := len(pr.Warnings); n > 0 {
		out += fmt.Sprintf("  %d warning%s", n, plural(n))
	}
	if pr.Error != "" {
		out += "  " + firstLine(pr.Error)
	}
	return out
}

func procDuration(pr *wizpb.ProcessorRun) time.Duration {
	if pr.Started == nil {
		return 0
	}
	end := time.Now()
	if pr.Ended != nil {
		end = pr.Ended.AsTime()
	}
	return end.Sub(pr.Started.AsTime())
}

func stateName(s wizpb.ProcessorState) string {
	switch s {
	case wizpb.ProcessorState_PROCESSOR_STATE_RUNNING:
		return "Running"
	case wizpb.ProcessorState_PROCESSOR_STATE_FAILED:
		return "Failed"
	case wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED:
		return "Succeeded"
	}
	return "Idle"
}

func runStateName(s wizpb.RunState) string { return manager.RunStateName(s) }

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func printSummary(w io.Writer, r *wizpb.Run) {
	d := runDuration(r)
	fmt.Fprintf(w, "run %s %s in %s (pipeline %s v%d, %d processors", r.Id, runStateName(r.State), fmtDuration(d), r.PipelineName, r.PipelineVersion, r.ProcessorCount)
	if r.Warnings > 0 {
		fmt.Fprintf(w, ", %d warning%s", r.Warnings, plural(int(r.Warnings)))
	}
	fmt.Fprintln(w, ")")
	if r.ResumedFrom != "" {
		fmt.Fprintf(w, "  resumed %s, reusing what Succeeded there\n", r.ResumedFrom)
	}
	if r.Reason != "" {
		fmt.Fprintf(w, "  reason: %s\n", r.Reason)
	}
}
