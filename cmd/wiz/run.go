package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// RunCmd is `wiz run`.
type RunCmd struct {
	Pipeline string   `arg:"" predictor:"yaml" help:"Pipeline file, or the name of a stored pipeline (NAME, or NAME@N for version N)." placeholder:"FILE|PIPELINE"`
	Input    []string `short:"i" sep:"none" help:"Run input as NAME=VALUE, or NAME=@PATH to read a file." placeholder:"NAME=VALUE"`
	From     string   `help:"Rerun this processor and everything downstream of it, reusing the other processors' outputs from the newest earlier run of the same pipeline version." placeholder:"PROCESSOR"`
	Quiet    bool     `short:"q" help:"Print only the run's summary."`
	KeepTemp bool     `name:"keep-temp" help:"Keep the temporary working directory of a native processor that fails (its log says where)."`
	NoCache  bool     `name:"no-cache" help:"Run every processor, reusing no cached result (cache: on a processor)."`
	Format   `embed:""`
}

// Run implements the command.
func (c *RunCmd) Run(env *Env) error {
	inputs, err := parseInputs(c.Input)
	if err != nil {
		return err
	}
	req := manager.RunRequest{Pipeline: c.Pipeline, Inputs: inputs, From: c.From, KeepTemp: c.KeepTemp, NoCache: c.NoCache}
	if src, err := os.ReadFile(c.Pipeline); err == nil {
		req.File, req.Source = c.Pipeline, src
	} else if !errors.Is(err, fs.ErrNotExist) || strings.ContainsAny(c.Pipeline, "/.") {
		return usageError{fmt.Errorf("read pipeline file: %w", err)}
	}
	env.prewarm()
	loosenGC(len(req.Source))
	m, err := env.Client()
	if err != nil {
		return err
	}
	return watchRun(m, c.Quiet, c.Format, func(ctx context.Context, watch func(manager.Update)) (*wizpb.Run, error) {
		return m.Run(ctx, req, watch)
	})
}

// watchRun runs start with live progress, prints the summary and turns the
// run's state into the exit code. The first Ctrl-C (or SIGTERM) cancels the
// run gracefully and waits; a second one gets the default action and ends wiz
// at once.
func watchRun(m manager.API, quiet bool, f Format, start func(context.Context, func(manager.Update)) (*wizpb.Run, error)) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	prog := newProgress(os.Stderr, quiet || f.Data())
	r, err := start(ctx, prog.update)
	prog.close()
	if err != nil {
		return err
	}
	return reportRun(m, f, r)
}

// reportRun prints a run that ended, as its summary or in f's data format,
// and turns its state into the exit code: 0 Succeeded, 1 Failed.
func reportRun(m manager.API, f Format, r *wizpb.Run) error {
	if f.Data() {
		d, err := m.RunDetail(r.Id)
		if err != nil {
			return err
		}
		if err := f.Print(detailJSON(d)); err != nil {
			return err
		}
	} else {
		printSummary(os.Stdout, r)
	}
	if r.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
		return exitError{exitFailed}
	}
	return nil
}

func parseInputs(args []string) (map[string]manager.InputValue, error) {
	out := map[string]manager.InputValue{}
	for _, a := range args {
		name, val, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return nil, usageError{fmt.Errorf("--input %q: write NAME=VALUE or NAME=@PATH", a)}
		}
		if p, isFile := strings.CutPrefix(val, "@"); isFile {
			out[name] = manager.InputValue{Path: p}
		} else {
			out[name] = manager.InputValue{Text: val}
		}
	}
	return out, nil
}
