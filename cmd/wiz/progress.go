package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// progress shows a run's progress. On a terminal it redraws a block in
// place: a summary line (the run, counts by state, what is left, elapsed),
// then every processor when they all fit the terminal, else the failed and
// running ones; the block never grows past the terminal's height and no line
// wraps, so a redraw always covers the last one. Elsewhere it prints one
// plain line per change.
type progress struct {
	w     io.Writer
	fd    int
	tty   bool
	quiet bool
	now   func() time.Time

	mu    sync.Mutex
	run   *wizpb.Run
	notes []string // the run's own warnings, shown under the summary line
	order []string
	procs map[string]*wizpb.ProcessorRun
	drawn int
	dirty bool
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newProgress(w *os.File, quiet bool) *progress {
	p := &progress{w: w, fd: int(w.Fd()), quiet: quiet, tty: term.IsTerminal(int(w.Fd())), now: time.Now,
		procs: map[string]*wizpb.ProcessorRun{}, stop: make(chan struct{})}
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
	if u.Processor == nil && u.Run == nil && u.Warning != "" {
		// A warning about the run itself (the pipeline it applied).
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.tty && !p.quiet {
			p.notes = append(p.notes, "warning: "+u.Warning)
			p.dirty = true
		} else {
			fmt.Fprintf(p.w, "wiz: warning: %s\n", u.Warning)
		}
		return
	}
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if u.Run != nil {
		if p.run == nil && !p.tty {
			fmt.Fprintf(p.w, "run %s started (pipeline %s v%d)\n", u.Run.Id, u.Run.PipelineName, u.Run.PipelineVersion)
		}
		p.run = u.Run
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
		p.dirty = true
		p.draw()
		p.mu.Unlock()
	}
}

// draw redraws the block over the last one; the caller holds mu.
func (p *progress) draw() {
	if !p.dirty && p.drawn > 0 && !p.anyRunning() {
		return
	}
	p.dirty = false
	width, height, err := term.GetSize(p.fd)
	if err != nil {
		width, height = 80, 24
	}
	width, height = max(width, 20), max(height, 3)
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\r\x1b[%dA", p.drawn)
	}
	lines := p.lines(width, height)
	for _, l := range lines {
		b.WriteString("\x1b[2K")
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("\x1b[J") // what the last block had below this one
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

// counts are a run's processors by what the display says of them.
type counts struct{ succeeded, failed, running, skipped, left int }

func (p *progress) counts() counts {
	var c counts
	for _, n := range p.order {
		pr := p.procs[n]
		switch {
		case pr.Skipped:
			c.skipped++
		case pr.State == wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED:
			c.succeeded++
		case pr.State == wizpb.ProcessorState_PROCESSOR_STATE_FAILED:
			c.failed++
		case pr.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING:
			c.running++
		}
	}
	total := len(p.order)
	if p.run != nil {
		total = max(total, int(p.run.ProcessorCount))
	}
	c.left = max(total-c.succeeded-c.failed-c.running-c.skipped, 0)
	return c
}

// lines is the block for a terminal of width x height: at most height-1
// lines (the cursor's row stays free), none wider than width-1.
func (p *progress) lines(width, height int) []string {
	c := p.counts()
	head := fmt.Sprintf("%d succeeded, %d failed, %d running, %d left", c.succeeded, c.failed, c.running, c.left)
	if c.skipped > 0 {
		head += fmt.Sprintf(", %d skipped", c.skipped)
	}
	if r := p.run; r != nil {
		var elapsed time.Duration
		switch {
		case r.Started == nil:
		case r.Ended != nil:
			elapsed = r.Ended.AsTime().Sub(r.Started.AsTime())
		default:
			elapsed = p.now().Sub(r.Started.AsTime())
		}
		head = fmt.Sprintf("run %s (%s v%d): %s  %s", r.Id, r.PipelineName, r.PipelineVersion, head, fmtDuration(elapsed.Round(time.Millisecond)))
	}
	out := append([]string{head}, p.notes...)
	if len(p.order) <= height-1-len(out) {
		for _, n := range p.order {
			out = append(out, fmt.Sprintf("  %-20s %s", n, stateText(p.procs[n])))
		}
	} else {
		// Failed first, then running, each in the order they were seen.
		for _, st := range []wizpb.ProcessorState{wizpb.ProcessorState_PROCESSOR_STATE_FAILED, wizpb.ProcessorState_PROCESSOR_STATE_RUNNING} {
			for _, n := range p.order {
				if pr := p.procs[n]; pr.State == st && !pr.Skipped {
					out = append(out, fmt.Sprintf("  %-20s %s", n, stateText(pr)))
				}
			}
		}
	}
	if rows := height - 1; len(out) > rows { // the cursor's row stays free
		more := len(out) - (rows - 1)
		out = append(out[:rows-1], fmt.Sprintf("  … and %d more", more))
	}
	for i, l := range out {
		out[i] = clip(l, width-1)
	}
	return out
}

// clip cuts s to at most n runes.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
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
	case pr.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING && pr.Attempts > 1:
		return fmt.Sprintf("%-9s %s  attempt %d", s, fmtDuration(d), pr.Attempts)
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
