package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// RunsCmd is `wiz runs`.
type RunsCmd struct {
	List   RunsListCmd   `cmd:"" help:"List runs, newest first."`
	Show   RunsShowCmd   `cmd:"" help:"Show a run: its pipeline version and every processor's state, duration and metrics."`
	Logs   RunsLogsCmd   `cmd:"" help:"Print a run's logs."`
	Output RunsOutputCmd `cmd:"" help:"Write a processor's output to stdout or a file."`
	Resume RunsResumeCmd `cmd:"" help:"Start a new run of a run's pipeline version and inputs that reuses what Succeeded and runs the rest."`
	Cancel RunsCancelCmd `cmd:"" help:"Cancel a running run: its processors get SIGTERM, then SIGKILL; it ends Failed, cancelled."`
	Watch  RunsWatchCmd  `cmd:"" help:"Follow a run's progress until it ends."`
}

// RunsCancelCmd is `wiz runs cancel`.
type RunsCancelCmd struct {
	ID     string `arg:"" help:"Run ID, or \"last\"."`
	Format `embed:""`
}

// Run implements the command.
func (c *RunsCancelCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	r, err := m.Cancel(c.ID)
	if err != nil { // a run that has ended is not malformed input: exit 1
		return err
	}
	if c.Data() {
		return c.Print(runJSON(r))
	}
	printSummary(os.Stdout, r)
	return nil
}

// RunsWatchCmd is `wiz runs watch`.
type RunsWatchCmd struct {
	ID     string `arg:"" help:"Run ID, or \"last\"."`
	Format `embed:""`
}

// Run implements the command. It exits like `wiz run`: 0 when the run
// Succeeded, 1 when it Failed. Ctrl-C stops watching, not the run.
func (c *RunsWatchCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prog := newProgress(os.Stderr, c.Data())
	r, err := m.Watch(ctx, c.ID, prog.update)
	prog.close()
	if err != nil {
		return err
	}
	return reportRun(m, c.Format, r)
}

// RunsResumeCmd is `wiz runs resume`.
type RunsResumeCmd struct {
	ID     string `arg:"" help:"Run ID, or \"last\"."`
	Quiet  bool   `short:"q" help:"Print only the run's summary."`
	Format `embed:""`
}

// Run implements the command.
func (c *RunsResumeCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	return watchRun(m, c.Quiet, c.Format, func(ctx context.Context, watch func(manager.Update)) (*wizpb.Run, error) {
		return m.Resume(ctx, c.ID, watch)
	})
}

// RunsOutputCmd is `wiz runs output`.
type RunsOutputCmd struct {
	ID        string `arg:"" help:"Run ID, or \"last\"."`
	Processor string `arg:"" help:"Processor name."`
	Name      string `arg:"" optional:"" help:"Output name (default: out, or the processor's only output)."`
	To        string `name:"output-file" placeholder:"PATH" help:"Write to this file instead of stdout."`
	// Format is refused: the output's bytes are written as they are.
	Format string `short:"o" hidden:"" help:"Not for this command: it writes the output's bytes as they are."`
}

// Run implements the command.
func (c *RunsOutputCmd) Run(env *Env) error {
	if c.Format != "" {
		return usageError{fmt.Errorf("-o %s: runs output writes the output's bytes as they are, and -o is an output format elsewhere; write to a file with --output-file PATH", c.Format)}
	}
	m, err := env.Client()
	if err != nil {
		return err
	}
	if c.To == "" {
		var w io.Writer = os.Stdout
		if term.IsTerminal(int(os.Stdout.Fd())) {
			w = &textOnly{w: os.Stdout}
		}
		return m.Output(c.ID, c.Processor, c.Name, w)
	}
	// Written next to the target and renamed into place once whole, so that
	// a failed read (a corrupted blob) leaves no partial file behind.
	o := &outputFile{path: c.To}
	if err := m.Output(c.ID, c.Processor, c.Name, o); err != nil {
		o.abort()
		return err
	}
	return o.finish()
}

// outputFile writes an output to path: one file, or for a directory output
// (manager.DirWriter) a directory of its files. Either is made under a
// temporary name next to path and renamed into place once whole.
type outputFile struct {
	path string
	tmp  string   // the temporary file or directory
	f    *os.File // the file being written
	dir  bool
}

func (o *outputFile) Write(b []byte) (int, error) {
	if o.f == nil {
		if o.dir {
			return 0, fmt.Errorf("output file %s: bytes outside any file of the directory", o.path)
		}
		f, err := os.CreateTemp(filepath.Dir(o.path), "."+filepath.Base(o.path)+".*")
		if err != nil {
			return 0, err
		}
		o.f, o.tmp = f, f.Name()
	}
	return o.f.Write(b)
}

// StartFile implements manager.DirWriter.
func (o *outputFile) StartFile(name string) error {
	if !o.dir {
		if o.f != nil {
			return fmt.Errorf("output file %s: a directory's files after bytes of a file", o.path)
		}
		if _, err := os.Lstat(o.path); err == nil {
			return fmt.Errorf("the output is a directory and %s exists; remove it or give another --output-file", o.path)
		}
		tmp, err := os.MkdirTemp(filepath.Dir(o.path), "."+filepath.Base(o.path)+".*")
		if err != nil {
			return err
		}
		o.tmp, o.dir = tmp, true
	}
	if o.f != nil {
		if err := o.f.Close(); err != nil {
			return err
		}
		o.f = nil
	}
	rel := filepath.Clean(filepath.FromSlash(name))
	if rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return fmt.Errorf("output file name %q leaves the directory", name)
	}
	p := filepath.Join(o.tmp, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	o.f = f
	return nil
}

// finish puts the file or directory in place.
func (o *outputFile) finish() error {
	if o.f != nil {
		if err := o.f.Close(); err != nil {
			o.abort()
			return err
		}
		o.f = nil
	}
	if o.tmp == "" { // an empty value: an empty file
		return os.WriteFile(o.path, nil, 0o644)
	}
	if err := os.Rename(o.tmp, o.path); err != nil {
		o.abort()
		return err
	}
	return nil
}

// abort removes what was written.
func (o *outputFile) abort() {
	if o.f != nil {
		o.f.Close()
	}
	if o.tmp != "" {
		os.RemoveAll(o.tmp)
	}
}

// RunsListCmd is `wiz runs list`.
type RunsListCmd struct {
	Limit    int    `short:"n" default:"20" help:"Show at most this many top-level runs, each with its sub-pipeline runs (0: all)."`
	Pipeline string `help:"Only runs of this pipeline." placeholder:"NAME"`
	State    string `help:"Only runs in this state: running, failed or succeeded." placeholder:"STATE"`
	Since    string `help:"Only runs started since then: a duration back from now (90m, 12h, 7d) or a time (2026-12-01, 2026-12-01T10:00:00Z)." placeholder:"WHEN"`
	Format   `embed:""`
}

// Run implements the command.
func (c *RunsListCmd) Run(env *Env) error {
	var err error
	f := manager.RunFilter{Limit: c.Limit, Pipeline: c.Pipeline}
	if f.State, err = parseRunState(c.State); err != nil {
		return err
	}
	if f.Since, err = parseSince(c.Since, time.Now()); err != nil {
		return err
	}
	m, err := env.Client()
	if err != nil {
		return err
	}
	rs, err := m.Runs(f)
	if err != nil {
		return err
	}
	if c.Data() {
		children := map[string][]string{}
		for i := len(rs) - 1; i >= 0; i-- { // oldest child first
			if p := rs[i].Parent; p != "" {
				children[p] = append(children[p], rs[i].Id)
			}
		}
		out := make([]map[string]any, 0, len(rs))
		for _, r := range rs {
			rj := runJSON(r)
			if ks := children[r.Id]; len(ks) > 0 {
				rj["children"] = ks
			}
			out = append(out, rj)
		}
		return c.Print(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tPIPELINE\tVERSION\tSTATE\tSTARTED\tDURATION\tWARNINGS")
	// Top-level runs newest first, each followed by its sub-pipeline runs,
	// indented.
	kids := map[string][]*wizpb.Run{}
	for _, r := range rs {
		if r.Parent != "" {
			kids[r.Parent] = append(kids[r.Parent], r)
		}
	}
	var row func(r *wizpb.Run, depth int)
	row = func(r *wizpb.Run, depth int) {
		fmt.Fprintf(tw, "%s%s\t%s\tv%d\t%s\t%s\t%s\t%d\n", strings.Repeat("  ", depth), r.Id, r.PipelineName, r.PipelineVersion, runStateName(r.State),
			r.Started.AsTime().Local().Format("2006-01-02 15:04:05"), fmtDuration(runDuration(r)), r.Warnings)
		ks := kids[r.Id]
		for i := len(ks) - 1; i >= 0; i-- { // oldest child first, under its parent
			row(ks[i], depth+1)
		}
	}
	for _, r := range rs {
		if r.Parent == "" {
			row(r, 0)
		}
	}
	return tw.Flush()
}

func runDuration(r *wizpb.Run) time.Duration {
	end := time.Now()
	if r.Ended != nil {
		end = r.Ended.AsTime()
	}
	return end.Sub(r.Started.AsTime())
}

// RunsShowCmd is `wiz runs show`.
type RunsShowCmd struct {
	ID     string `arg:"" help:"Run ID, or \"last\"."`
	Format `embed:""`
}

// Run implements the command.
func (c *RunsShowCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	d, err := m.RunDetail(c.ID)
	if err != nil {
		return err
	}
	if c.Data() {
		return c.Print(detailJSON(d))
	}
	r := d.Run
	fmt.Printf("run       %s\n", r.Id)
	fmt.Printf("pipeline  %s v%d (version %s)\n", r.PipelineName, r.PipelineVersion, r.PipelineVersionId)
	fmt.Printf("state     %s\n", runStateName(r.State))
	if r.Reason != "" {
		fmt.Printf("reason    %s\n", r.Reason)
	}
	fmt.Printf("started   %s\n", r.Started.AsTime().Local().Format(time.RFC3339))
	fmt.Printf("duration  %s\n", fmtDuration(runDuration(r)))
	fmt.Printf("executor  %s\n", r.Executor)
	fmt.Printf("trigger   %s\n", runTrigger(r))
	if r.ScheduledTime != nil && r.Trigger != "" && r.Trigger != "manual" {
		fmt.Printf("scheduled %s\n", r.ScheduledTime.AsTime().UTC().Format(time.RFC3339))
	}
	if r.ResumedFrom != "" {
		fmt.Printf("resumes   %s\n", r.ResumedFrom)
	}
	if r.Continued > 0 {
		fmt.Printf("continued %d× after its daemon stopped", r.Continued)
		if r.Reattached > 0 {
			fmt.Printf("; %d task(s) re-attached on executors that outlived it", r.Reattached)
		}
		fmt.Println()
	}
	for _, p := range r.Plugins {
		fmt.Printf("plugin    %s %s (sha256 %s)\n", p.Name, p.Version, short(p.Sha256))
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESSOR\tTYPE\tSTATE\tDURATION\tCPU\tMAX RSS\tEXIT\tIN\tOUT\tWARNINGS\tERROR OR REASON")
	for _, p := range d.Processors {
		mt := p.Metrics
		cpu, rss, exit := "-", "-", "-"
		if mt != nil && (mt.UserCpuNs+mt.SysCpuNs) > 0 {
			cpu = fmtDuration(time.Duration(mt.UserCpuNs + mt.SysCpuNs))
		}
		if mt != nil && mt.MaxRssBytes > 0 {
			rss = fmtBytes(mt.MaxRssBytes)
			switch {
			case mt.MaxRssUpperBound:
				rss = "≤" + rss // the program's peak is unknown, at most this
			case mt.MaxRssSampled:
				rss = "≥" + rss // read while it ran: at least this
			}
		}
		switch {
		case p.ExitCode < 0:
			exit = "signal" // killed: cancelled or timed out
		case p.State == wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED,
			p.State == wizpb.ProcessorState_PROCESSOR_STATE_FAILED && p.ExitCode != 0:
			exit = fmt.Sprint(p.ExitCode)
		}
		state := procStateName(p)
		switch {
		case p.ReusedFrom != "":
			state += " (reused)"
		case p.CachedFrom != "":
			state += " (cached)"
		}
		name := p.Name
		if p.Finally {
			name += " (finally)"
		}
		msg := p.Error
		switch {
		case p.Skipped:
			msg = p.Reason
		case msg == "" && p.ChildRun != "":
			msg = "sub-pipeline run " + p.ChildRun
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", name, p.Type, state, fmtDuration(procDuration(p)),
			cpu, rss, exit, fmtBytes(mt.GetInputBytes()), fmtBytes(mt.GetOutputBytes()), len(p.Warnings), firstLine(msg))
	}
	tw.Flush()
	var warns []string
	for _, p := range d.Processors {
		for _, w := range p.Warnings {
			warns = append(warns, fmt.Sprintf("  %s: %s", p.Name, w))
		}
	}
	if len(warns) > 0 {
		fmt.Printf("\nwarnings:\n%s\n", strings.Join(warns, "\n"))
	}
	return nil
}

// RunsLogsCmd is `wiz runs logs`.
type RunsLogsCmd struct {
	ID        string `arg:"" help:"Run ID, or \"last\"."`
	Processor string `short:"p" help:"Only this processor's logs."`
	Follow    bool   `short:"f" help:"Keep printing new logs until the run ends."`
}

// Run implements the command.
func (c *RunsLogsCmd) Run(env *Env) error {
	m, err := env.Client()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	printed := false
	err = m.Logs(ctx, c.ID, c.Processor, c.Follow, func(l *wizpb.LogChunk) error {
		printed = printed || len(l.Data) > 0
		for _, line := range strings.SplitAfter(string(l.Data), "\n") {
			if line == "" {
				continue
			}
			if c.Processor != "" {
				fmt.Print(line)
			} else {
				fmt.Printf("%s | %s", l.Processor, line)
			}
			if !strings.HasSuffix(line, "\n") {
				fmt.Println()
			}
		}
		return nil
	})
	if err == nil && !printed {
		fmt.Fprintf(os.Stderr, "wiz: no logs: a processor's log is what it writes to stderr; what a program writes to stdout is its output `out` (`wiz runs output %s PROCESSOR`)\n", c.ID)
	}
	return err
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func fmtBytes(n int64) string {
	switch {
	case n <= 0:
		return "-"
	case n < 1<<10:
		return fmt.Sprintf("%dB", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.2fGiB", float64(n)/(1<<30))
}

func ts(t interface{ AsTime() time.Time }) any {
	if t == nil {
		return nil
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

func runJSON(r *wizpb.Run) map[string]any {
	out := map[string]any{
		"id": r.Id, "pipeline": r.PipelineName, "pipeline_version": r.PipelineVersion,
		"pipeline_version_id": r.PipelineVersionId, "state": runStateName(r.State), "reason": r.Reason,
		"warnings": r.Warnings, "started": ts(r.Started), "executor": r.Executor,
	}
	if r.ResumedFrom != "" {
		out["resumed_from"] = r.ResumedFrom
	}
	if r.Continued > 0 {
		out["continued"] = r.Continued
	}
	if r.Reattached > 0 {
		out["reattached"] = r.Reattached
	}
	out["trigger"] = runTrigger(r)
	out["scheduled_time"] = ts(r.Started)
	if r.ScheduledTime != nil {
		out["scheduled_time"] = ts(r.ScheduledTime)
	}
	plugins := []map[string]any{}
	for _, p := range r.Plugins {
		plugins = append(plugins, map[string]any{"name": p.Name, "version": p.Version, "sha256": p.Sha256})
	}
	out["plugins"] = plugins
	if r.Parent != "" {
		out["parent"] = r.Parent
		out["parent_processor"] = r.ParentProcessor
	}
	if r.Ended != nil {
		out["ended"] = ts(r.Ended)
		out["duration_ns"] = runDuration(r).Nanoseconds()
	}
	return out
}

func detailJSON(d *manager.RunDetail) map[string]any {
	out := runJSON(d.Run)
	var procs []map[string]any
	for _, p := range d.Processors {
		pm := map[string]any{
			"name": p.Name, "type": p.Type, "state": stateName(p.State), "exit_code": p.ExitCode,
			"error": p.Error, "warnings": p.Warnings, "attempts": p.Attempts, "skipped": p.Skipped, "finally": p.Finally,
		}
		if p.Warnings == nil {
			pm["warnings"] = []string{}
		}
		if p.Reason != "" {
			pm["reason"] = p.Reason
		}
		if p.InstanceOf != "" {
			pm["instance_of"] = p.InstanceOf
			if p.Key != "" {
				pm["key"] = p.Key
			} else {
				pm["index"] = p.Index
			}
		}
		if p.ReusedFrom != "" {
			pm["reused_from"] = p.ReusedFrom
		}
		if p.CachedFrom != "" {
			pm["cached_from"] = p.CachedFrom
		}
		if p.ChildRun != "" {
			pm["child_run"] = p.ChildRun
		}
		if p.Started != nil {
			pm["started"] = ts(p.Started)
		}
		if p.Ended != nil {
			pm["ended"] = ts(p.Ended)
			pm["duration_ns"] = procDuration(p).Nanoseconds()
		}
		if mt := p.Metrics; mt != nil {
			pm["metrics"] = map[string]any{
				"wall_ns": mt.WallNs, "user_cpu_ns": mt.UserCpuNs, "sys_cpu_ns": mt.SysCpuNs,
				"max_rss_bytes": mt.MaxRssBytes, "max_rss_upper_bound": mt.MaxRssUpperBound, "max_rss_sampled": mt.MaxRssSampled, "input_bytes": mt.InputBytes, "output_bytes": mt.OutputBytes,
			}
		}
		outs := map[string]any{}
		for name, o := range p.Outputs {
			om := map[string]any{"content_type": o.ContentType, "size": len(o.Inline)}
			if len(o.Files) > 0 {
				var fs []map[string]any
				var size int64
				for _, f := range o.Files {
					fs = append(fs, map[string]any{"name": f.Name, "digest": f.Digest, "size": f.Size})
					size += f.Size
				}
				om["files"], om["size"] = fs, size
			}
			outs[name] = om
		}
		pm["outputs"] = outs
		procs = append(procs, pm)
	}
	out["processors"] = procs
	var children []string
	for _, p := range d.Processors {
		if p.ChildRun != "" {
			children = append(children, p.ChildRun)
		}
	}
	if len(children) > 0 {
		out["children"] = children
	}
	return out
}

// parseRunState reads --state: running, failed or succeeded, in any case;
// "" is any state.
func parseRunState(s string) (wizpb.RunState, error) {
	switch strings.ToLower(s) {
	case "":
		return wizpb.RunState_RUN_STATE_UNSPECIFIED, nil
	case "running":
		return wizpb.RunState_RUN_STATE_RUNNING, nil
	case "failed":
		return wizpb.RunState_RUN_STATE_FAILED, nil
	case "succeeded":
		return wizpb.RunState_RUN_STATE_SUCCEEDED, nil
	}
	return 0, usageError{fmt.Errorf("--state %q: a run is running, failed or succeeded", s)}
}

// parseSince reads --since: a duration back from now (90m, 12h, 7d), a date
// (2026-12-01, local midnight) or an RFC 3339 time; "" is any time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, usageError{fmt.Errorf("--since %q: write a duration back from now (90m, 12h, 7d), a date (2026-12-01) or a time (2026-12-01T10:00:00Z)", s)}
}

// textOnly writes to a terminal what is text: output whose first bytes hold a
// NUL or are not UTF-8 is refused, not dumped raw to the terminal.
type textOnly struct {
	w       io.Writer
	checked bool
}

// errBinary is binary output refused by a terminal.
var errBinary = errors.New("the output is binary, not shown on a terminal; write it to a file with --output-file PATH, or pipe it")

func (t *textOnly) Write(b []byte) (int, error) {
	if !t.checked && len(b) > 0 {
		t.checked = true
		head := b[:min(len(b), 8<<10)]
		// A multi-byte rune cut at the end of head is not a reason.
		for i := 0; i < 3 && len(head) > 0 && !utf8.Valid(head); i++ {
			head = head[:len(head)-1]
		}
		if bytes.IndexByte(head, 0) >= 0 || !utf8.Valid(head) {
			return 0, errBinary
		}
	}
	return t.w.Write(b)
}

// runTrigger is what started r; runs recorded before triggers were are
// "manual".
func runTrigger(r *wizpb.Run) string {
	if r.Trigger == "" {
		return "manual"
	}
	return r.Trigger
}
