package manager

// This file resolves sub-pipelines when a pipeline is applied or resolved:
// a processor with uses: ./child.yaml applies that file with its parent;
// uses: pipeline/NAME[@N] takes a stored pipeline. The child's inputs are
// checked against what the processor gives it, and a cycle of pipelines is
// refused with its path.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/expr"
	"github.com/wiz-run/wiz/core/ids"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// invalid returns a validation error at pos (exit 2, FILE:LINE:COL).
func invalid(pos pipeline.Position, format string, args ...any) error {
	return &ValidationError{Errs: pipeline.ErrorList{&pipeline.Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}}}
}

// children resolves the sub-pipelines of p (applied from file), by
// processor name, and returns the pins a stored version keeps:
// "PIPELINE_ID/VERSION_ID" for each file child and pipeline/NAME@N. pins,
// when not nil, are a stored version's: they are used instead of files.
// stack holds the names of the pipelines being resolved, outermost first.
func (m *Manager) children(file string, p *pipeline.Pipeline, pins map[string]string, read func(string) ([]byte, error), stack []string) (map[string]*Applied, map[string]string, error) {
	var out map[string]*Applied
	var newPins map[string]string
	stack = append(slices.Clone(stack), p.Name)
	for _, n := range p.Processors {
		c := n.Child
		if c == nil {
			continue
		}
		var a *Applied
		var err error
		switch pin, pinned := pins[n.Name]; {
		case pinned:
			a, err = m.pinned(pin, stack)
		case c.File != "":
			path := pipeline.ChildPath(file, c.File)
			src, rerr := read(path)
			if rerr != nil {
				return nil, nil, invalid(c.Pos, "uses %s: cannot read the sub-pipeline %s: %v", c.File, path, rerr)
			}
			// The file's name first: a cycle is refused before recursing.
			cp, perr := m.parse(path, src)
			if perr != nil {
				return nil, nil, perr
			}
			if slices.Contains(stack, cp.Name) {
				return nil, nil, invalid(c.Pos, "%v: %s -> %s", errCycle, strings.Join(stack, " -> "), cp.Name)
			}
			a, err = m.apply(path, src, read, stack)
		default:
			a, err = m.stored(c.Pipeline, c.Version, stack)
		}
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) || errors.Is(err, errCycle) {
				return nil, nil, err
			}
			return nil, nil, invalid(c.Pos, "uses %s: %v", n.Uses, err)
		}
		if slices.Contains(stack, a.Parsed.Name) {
			return nil, nil, invalid(c.Pos, "%v: %s -> %s", errCycle, strings.Join(stack, " -> "), a.Parsed.Name)
		}
		if err := checkChildInputs(n, a.Parsed); err != nil {
			return nil, nil, err
		}
		if out == nil {
			out, newPins = map[string]*Applied{}, map[string]string{}
		}
		out[n.Name] = a
		if c.File != "" || c.Version > 0 {
			newPins[n.Name] = a.Pipeline.Id + "/" + a.Version.Id
		}
	}
	return out, newPins, nil
}

// storedOnly is the file reader of a stored version: its file children are
// pinned, so it reads no file.
func storedOnly(path string) ([]byte, error) {
	return nil, fmt.Errorf("a stored version reads no file; apply %s with its parent again", path)
}

// errCycle is a cycle of pipelines running each other.
var errCycle = errors.New("pipelines run each other in a cycle")

// stored resolves a stored pipeline's version (0: the newest) with its own
// children.
func (m *Manager) stored(name string, version int, stack []string) (*Applied, error) {
	if slices.Contains(stack, name) {
		return nil, fmt.Errorf("%w: %s -> %s", errCycle, strings.Join(stack, " -> "), name)
	}
	pl, err := m.store.Pipeline(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no pipeline named %q is stored; apply it first with `wiz pipeline apply FILE`, or use uses: ./FILE.yaml", name)
	}
	if err != nil {
		return nil, err
	}
	id := pl.LatestVersionId
	if version > 0 {
		vs, err := m.store.PipelineVersions(pl.Id)
		if err != nil {
			return nil, err
		}
		id = ""
		for _, v := range vs {
			if int(v.Number) == version {
				id = v.Id
			}
		}
		if id == "" {
			return nil, notFoundf("pipeline %s has no version %d (it has 1 to %d)", name, version, pl.VersionCount)
		}
	}
	return m.pinned(pl.Id+"/"+id, stack)
}

// pinned resolves the child version a pin names, with its own children.
func (m *Manager) pinned(pin string, stack []string) (*Applied, error) {
	pid, vid, _ := strings.Cut(pin, "/")
	v, err := m.store.PipelineVersion(pid, vid)
	if err != nil {
		return nil, fmt.Errorf("sub-pipeline version %s: %w", pin, err)
	}
	pl, err := m.store.Pipeline(v.PipelineName)
	if err != nil {
		return nil, err
	}
	if slices.Contains(stack, pl.Name) {
		return nil, fmt.Errorf("%w: %s -> %s", errCycle, strings.Join(stack, " -> "), pl.Name)
	}
	p, err := m.parse(v.File, v.Source)
	if err != nil {
		return nil, err
	}
	kids, _, err := m.children(v.File, p, v.Children, storedOnly, stack)
	if err != nil {
		return nil, err
	}
	return &Applied{Pipeline: pl, Version: v, Parsed: p, Children: kids}, nil
}

// checkChildInputs checks what processor n gives the pipeline c it runs:
// its with gives c's value inputs (typed and checked as --input values),
// its inputs: c's file inputs; every input c needs without a default.
func checkChildInputs(n *pipeline.ProcessorNode, c *pipeline.Pipeline) error {
	names := make([]string, len(c.Inputs))
	for i, d := range c.Inputs {
		names[i] = d.Name
	}
	list := strings.Join(names, ", ")
	if list == "" {
		list = "none"
	}
	for _, key := range slices.Sorted(maps.Keys(n.WithPos)) {
		pos := n.WithPos[key]
		d, ok := c.Input(key)
		switch {
		case !ok:
			return invalid(pos, "sub-pipeline %s has no input %q (inputs: %s)", c.Name, key, list)
		case d.Type == pipeline.InputFile:
			return invalid(pos, "input %s of sub-pipeline %s is a file: give it through inputs: {%s: PROCESSOR}", key, c.Name, key)
		}
		text, literal := literalText(n.With[key])
		if literal {
			if err := d.Check(text); err != nil {
				return invalid(pos, "input %s of sub-pipeline %s: %v", key, c.Name, err)
			}
		}
	}
	for _, b := range n.Inputs {
		d, ok := c.Input(b.Name)
		switch {
		case !ok:
			return invalid(b.From.Pos, "sub-pipeline %s has no input %q (inputs: %s)", c.Name, b.Name, list)
		case d.Type != pipeline.InputFile:
			return invalid(b.From.Pos, "input %s of sub-pipeline %s is a %s: give it in with:", b.Name, c.Name, d.Type)
		}
	}
	for _, d := range c.Inputs {
		_, inWith := n.With[d.Name]
		inInputs := slices.ContainsFunc(n.Inputs, func(b pipeline.InputBinding) bool { return b.Name == d.Name })
		if d.Default == nil && !inWith && !inInputs {
			how := "with: {" + d.Name + ": VALUE}"
			if d.Type == pipeline.InputFile {
				how = "inputs: {" + d.Name + ": PROCESSOR}"
			}
			return invalid(n.Pos, "sub-pipeline %s needs input %q, which %s does not give; add %s", c.Name, d.Name, n.Name, how)
		}
	}
	return nil
}

// literalText is a with value as --input text, when it holds no expression.
func literalText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, !expr.HasExpr(x)
	case bool:
		return strconv.FormatBool(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case uint64:
		return strconv.FormatUint(x, 10), true
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), true
	case nil:
		return "", false
	}
	b, err := expr.JSONText(v)
	return b, err == nil && !strings.Contains(b, "${{")
}

// pinsDigest adds a version's child pins to its source's digest, so that a
// changed child makes a new version of the parent.
func pinsDigest(src []byte, pins map[string]string) string {
	h := sha256.New()
	h.Write(src)
	for _, k := range slices.Sorted(maps.Keys(pins)) {
		fmt.Fprintf(h, "\x00%s=%s", k, pins[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// startChild starts the run of the sub-pipeline processor pr runs, with the
// values its with gives (t.Config) and the data its inputs: give, on its
// own goroutine; its end comes back to the run's loop on childEvents. While
// it runs, the parent lends the child its part of the machine's slots.
func (r *run) startChild(i int, pr *proc, t *Task) {
	c := pr.child
	inputs, err := childInputs(c.Parsed, t)
	if err != nil {
		// Failed here, on the loop's goroutine: never through childEvents,
		// which this goroutine itself drains.
		delete(r.tasks, t.ID)
		r.fail(i, err.Error(), 0)
		return
	}
	id := ids.NewString()
	// A resumed parent resumes the child run of its earlier run that failed;
	// a continued one continues its own child run, once.
	var (
		reuse map[string]*wizpb.ProcessorRun
		cont  *wizpb.Run
		prev  map[string]*wizpb.ProcessorRun
	)
	resumed := ""
	if old := r.prev[pr.rec.Name]; old != nil && old.ChildRun != "" {
		delete(r.prev, pr.rec.Name)
		if c, err := r.m.store.Run(old.ChildRun); err == nil && c.Parent == r.rec.Id {
			if prev, err = r.m.store.Processors(c.Id); err == nil {
				id, cont, reuse, resumed = c.Id, c, succeeded(prev), c.ResumedFrom
			}
		}
	}
	pr.rec.ChildRun = id
	if old := r.rec.ResumedFrom; old != "" && cont == nil {
		if recs, err := r.m.store.Processors(old); err == nil && recs[pr.rec.Name] != nil && recs[pr.rec.Name].ChildRun != "" {
			resumed = recs[pr.rec.Name].ChildRun
			if reuse, err = r.m.reusable(resumed); err != nil {
				reuse, resumed = nil, ""
			}
		}
	}
	ctx, cancel := context.WithCancel(r.ctx)
	pr.childCancel = cancel
	r.children++
	if r.shared {
		r.m.share.lend(r.rec.Id, 1)
	}
	// Running, but not a task of the parent's executors: it holds no slot.
	pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_RUNNING
	pr.rec.Started, pr.rec.Ended = timestamppb.Now(), nil
	_ = r.w.Batch().PutProcessor(pr.rec)
	r.notify(Update{Processor: pr.rec})
	opts := RunRequest{KeepTemp: r.keepTemp, NoCache: r.noCache, runID: id, parent: r.rec.Id, parentProcessor: pr.rec.Name, cont: cont, prev: prev}
	taskID := t.ID
	go func() { // owned by the parent's loop, which waits for its event before it ends
		defer cancel()
		rec, err := r.m.start(ctx, c, inputs, reuse, resumed, opts, nil)
		ev := &TaskEvent{TaskID: taskID, Kind: EventFinished, Started: true}
		switch {
		case err != nil:
			ev.Outcome, ev.Message = OutcomeFailed, fmt.Sprintf("sub-pipeline %s: %v", c.Pipeline.Name, err)
		case rec.State == wizpb.RunState_RUN_STATE_SUCCEEDED:
			ev.Outcome = OutcomeSucceeded
			ev.Outputs, err = r.m.childOutputs(c.Parsed, rec.Id)
			if err != nil {
				ev.Outcome, ev.Message = OutcomeFailed, err.Error()
			}
		case ctx.Err() != nil && r.ctx.Err() == nil:
			ev.Outcome, ev.Message = OutcomeCancelled, fmt.Sprintf("cancelled: sub-pipeline run %s: %s", rec.Id, rec.Reason)
		default:
			ev.Outcome, ev.Message = OutcomeFailed, fmt.Sprintf("sub-pipeline run %s Failed: %s", rec.Id, rec.Reason)
		}
		r.childEvents <- ev
	}()
}

// childEnded uncounts a sub-pipeline run that ended; the parent takes its
// part of the machine back when none runs.
func (r *run) childEnded() {
	r.children--
	if r.shared {
		r.m.share.lend(r.rec.Id, -1)
	}
}

// childInputs are a sub-pipeline run's inputs: the values of the
// processor's with (rendered, checked as --input values), the data of its
// inputs:, and the defaults of the rest.
func childInputs(c *pipeline.Pipeline, t *Task) (map[string]*wizpb.Data, error) {
	var with map[string]any
	if len(t.Config) > 0 {
		if err := json.Unmarshal(t.Config, &with); err != nil {
			return nil, fmt.Errorf("sub-pipeline %s: decode with: %w", c.Name, err)
		}
	}
	out := make(map[string]*wizpb.Data, len(c.Inputs))
	for _, d := range c.Inputs {
		if data, ok := t.Inputs[d.Name]; ok {
			out[d.Name] = data
			continue
		}
		text := ""
		switch v, ok := with[d.Name]; {
		case ok:
			s, isText := literalText(jsonNumbers(v))
			if !isText {
				return nil, fmt.Errorf("input %s of sub-pipeline %s: the value %v cannot be an input", d.Name, c.Name, v)
			}
			text = s
		case d.Default != nil:
			text = *d.Default
		default:
			return nil, fmt.Errorf("sub-pipeline %s needs input %q", c.Name, d.Name)
		}
		if err := d.Check(text); err != nil {
			return nil, fmt.Errorf("input %s of sub-pipeline %s: %v", d.Name, c.Name, err)
		}
		out[d.Name] = &wizpb.Data{Inline: []byte(text), ContentType: "text/plain"}
	}
	return out, nil
}

// jsonNumbers turns a float64 decoded from JSON that is integral into an
// int64, so that 3 stays "3".
func jsonNumbers(v any) any {
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return int64(f)
	}
	return v
}

// childOutputs are what a sub-pipeline run returns: its outputs: entries.
func (m *Manager) childOutputs(c *pipeline.Pipeline, runID string) (map[string]*wizpb.Data, error) {
	if len(c.Outputs) == 0 {
		return nil, nil
	}
	recs, err := m.store.Processors(runID)
	if err != nil {
		return nil, fmt.Errorf("read sub-pipeline run %s: %w", runID, err)
	}
	out := make(map[string]*wizpb.Data, len(c.Outputs))
	for _, o := range c.Outputs {
		rec := recs[o.From.Processor]
		if rec == nil || rec.Outputs[o.From.Output] == nil {
			return nil, fmt.Errorf("sub-pipeline %s returns %s from %s, which it did not make (processor %s skipped or without that output)", c.Name, o.Name, o.From.String(), o.From.Processor)
		}
		out[o.Name] = rec.Outputs[o.From.Output]
	}
	return out, nil
}
