package manager

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/expr"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/scheduler"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// This file carries out the run rules the scheduler decides: conditions,
// skips, retries and their waits, the run's timeout and finally. The
// Manager only does the I/O: it evaluates expressions, records what the
// scheduler says and wakes it at the logical times it asks for.

// maxOutputText is the largest output an expression may read as text.
const maxOutputText = 1 << 20

// ruleSpec fills the parts of spec that come from the pipeline's run rules.
func (r *run) ruleSpec(spec *scheduler.Spec) {
	p := r.p
	n := len(r.procs)
	spec.KeepGoing = !p.FailFast
	spec.Timeout = p.Timeout
	h := fnv.New64a()
	h.Write([]byte(r.rec.Id))
	spec.Seed = h.Sum64()
	for i, pr := range r.procs {
		nd := pr.node
		spec.WarnOnly[i] = nd.OnError == pipeline.OnErrorWarn || nd.Handled
		if nd.When != nil {
			if spec.Cond == nil {
				spec.Cond = make([]bool, n)
			}
			spec.Cond[i] = true
		}
		if nd.Retry.Limit > 0 {
			if spec.Retry == nil {
				spec.Retry = make([]scheduler.Retry, n)
			}
			spec.Retry[i] = nd.Retry
		}
		if nd.Finally {
			if spec.Finally == nil {
				spec.Finally = make([]bool, n)
			}
			spec.Finally[i] = true
		}
		if nd.ForEach != nil {
			if spec.ForEach == nil {
				spec.ForEach, spec.MaxParallel = make([]bool, n), make([]int, n)
			}
			spec.ForEach[i], spec.MaxParallel[i] = true, nd.MaxParallel
		}
	}
	spec.Allow = edgeAllows(p, spec.Edges)
}

// edgeAllows returns, per edge, the upstream end states that let the edge's
// successor run: a data edge needs the upstream's output; an after: entry
// allows what its outcome says; several reasons for one edge all apply.
func edgeAllows(p *pipeline.Pipeline, edges [][2]int) []scheduler.Allow {
	out := make([]scheduler.Allow, len(edges))
	for k, e := range edges {
		from, to := p.Processors[e[0]], p.Processors[e[1]]
		a := scheduler.AllowEnded
		for _, b := range to.Inputs {
			if b.From.Processor == from.Name {
				a &= scheduler.AllowData
				break
			}
		}
		for j, name := range to.After {
			if name != from.Name {
				continue
			}
			switch to.AfterOutcome[j] {
			case pipeline.OutcomeSucceeded:
				a &= scheduler.AllowSucceeded
			case pipeline.OutcomeFailed:
				a &= scheduler.AllowFailed
			case pipeline.OutcomeEnded:
			default:
				a &= scheduler.AllowAfter
			}
		}
		out[k] = a
	}
	return out
}

// now is the run's logical time: since the scheduler started.
func (r *run) now() time.Duration { return time.Since(r.t0) }

// wakeAt arms the run's one timer for logical time at.
func (r *run) wakeAt(at time.Duration) {
	d := max(at-r.now(), 0)
	if r.wake == nil {
		r.wake = time.NewTimer(d) // only wakes the scheduler (Advance): the rule is its own
	} else {
		r.wake.Reset(d)
	}
}

// wakeC is the channel of the wake-up timer; nil when none is armed.
func (r *run) wakeC() <-chan time.Time {
	if r.wake == nil {
		return nil
	}
	return r.wake.C
}

// vars returns what an expression of processor i sees: the run's inputs, the
// run, and the upstream processors it names with the outputs it reads.
func (r *run) vars(refs, outputs []string, finally bool, inst *expr.Instance) (*expr.Vars, error) {
	v := &expr.Vars{Inputs: r.exprInputs, Run: r.exprRun(), Instance: inst}
	if finally {
		v.Run.Status, v.Run.Failed, v.Run.Reason = "Succeeded", r.failedNames(), r.reason
		if r.sched.Fatal() {
			v.Run.Status = "Failed"
		}
	}
	if len(refs) == 0 {
		return v, nil
	}
	v.Processors = make(map[string]*expr.Processor, len(refs))
	for _, name := range refs {
		up, _ := r.p.Node(name)
		rec := r.procs[up.ID()].rec
		st := "Idle"
		switch rec.State {
		case wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED:
			st = "Succeeded"
		case wizpb.ProcessorState_PROCESSOR_STATE_FAILED:
			st = "Failed"
		}
		v.Processors[name] = &expr.Processor{State: st, ExitCode: int64(rec.ExitCode), Attempts: int64(rec.Attempts),
			Warnings: slices.Clone(rec.Warnings), Outputs: map[string]any{}}
		if v.Processors[name].Warnings == nil {
			v.Processors[name].Warnings = []string{}
		}
	}
	for _, po := range outputs {
		name, out, _ := strings.Cut(po, ".")
		up, _ := r.p.Node(name)
		upr := r.procs[up.ID()]
		if up.ForEach != nil {
			// A list of the instances' texts, in element order.
			texts := []any{}
			for _, ipr := range r.instances(int(up.ID())) {
				if d := ipr.outputs[out]; d != nil {
					text, err := outputText(ipr.rec.Name, out, d)
					if err != nil {
						return nil, err
					}
					texts = append(texts, text)
				}
			}
			v.Processors[name].Outputs[out] = texts
			continue
		}
		d := upr.outputs[out]
		if d == nil {
			if upr.rec.State == wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED {
				return nil, fmt.Errorf("processors.%s.outputs.%s: processor %s has no output %q (it has: %s)", name, out, name, out, keys(upr.outputs))
			}
			continue // it did not succeed: an expression may test its state first
		}
		text, err := outputText(name, out, d)
		if err != nil {
			return nil, err
		}
		v.Processors[name].Outputs[out] = text
	}
	return v, nil
}

// outputText is an output's text for expressions: inline, UTF-8, at most
// 1 MiB, one trailing newline removed.
func outputText(proc, out string, d *wizpb.Data) (string, error) {
	if len(d.Files) > 0 || len(d.Inline) > maxOutputText {
		size := int64(len(d.Inline))
		for _, f := range d.Files {
			size += f.Size
		}
		return "", fmt.Errorf("processors.%s.outputs.%s is %d bytes, over the 1 MiB an expression may read; pass it as an input instead", proc, out, size)
	}
	if !utf8.Valid(d.Inline) {
		return "", fmt.Errorf("processors.%s.outputs.%s is not UTF-8 text; pass it as an input instead", proc, out)
	}
	return strings.TrimSuffix(string(d.Inline), "\n"), nil
}

// failedNames returns the main processors that ended Failed, sorted.
func (r *run) failedNames() []string {
	out := []string{}
	for _, pr := range r.procs {
		if !pr.node.Finally && pr.inst == nil && pr.rec.State == wizpb.ProcessorState_PROCESSOR_STATE_FAILED {
			out = append(out, pr.node.Name)
		}
	}
	slices.Sort(out)
	return out
}

// evaluate evaluates processor i's condition for the scheduler.
func (r *run) evaluate(i int) bool {
	pr := r.procs[i]
	w := pr.node.When
	v, err := r.vars(w.Prog.Refs, w.Prog.Outputs, pr.node.Finally, pr.inst)
	ok := false
	if err == nil {
		ok, err = w.Prog.EvalBool(v)
	}
	if err != nil {
		msg := "when: " + err.Error()
		r.failed(pr, msg, 0)
		return r.act(r.sched.Evaluated(i, scheduler.Error))
	}
	if !ok {
		pr.skipReason = "skipped: " + w.Src
		return r.act(r.sched.Evaluated(i, scheduler.SkipIt))
	}
	return r.act(r.sched.Evaluated(i, scheduler.Run))
}

// skip records that processor i will not run.
func (r *run) skip(a scheduler.Action) {
	pr := r.procs[a.Node]
	reason := pr.skipReason
	if a.Cause >= 0 {
		up := r.procs[a.Cause].node.Name
		switch a.CauseState {
		case scheduler.StateSucceeded:
			reason = "skipped: " + up + " Succeeded"
		case scheduler.StateFailed:
			reason = "skipped: " + up + " Failed"
		case scheduler.StateSkipped:
			reason = "skipped: " + up + " was skipped"
		default:
			reason = "skipped: " + up + " did not run"
		}
	}
	pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_IDLE
	pr.rec.Skipped = true
	pr.rec.Reason = reason
	_ = r.w.Batch().PutProcessor(pr.rec)
	r.notify(Update{Processor: pr.rec})
}

// retrying records that processor i's failed attempt is retried at a.At.
func (r *run) retrying(a scheduler.Action) {
	pr := r.procs[a.Node]
	pr.retryWait = true
	wait := max(a.At-r.now(), 0).Round(time.Millisecond)
	pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_RUNNING
	// The reason says why it is Running with nothing running, until the
	// next attempt starts (dispatch clears it).
	pr.rec.Reason = fmt.Sprintf("retrying in %s: attempt %d failed: %s", wait, pr.rec.Attempts, firstLine(pr.rec.Error))
	_ = r.w.Batch().PutProcessor(pr.rec)
	r.event(pr.rec.Name, "retry", fmt.Sprintf("attempt %d failed: %s; retrying in %s", pr.rec.Attempts, pr.rec.Error, wait))
	r.notify(Update{Processor: pr.rec})
}

// failed records processor pr as Failed with msg (its failure is the run's
// reason unless it is warn-only or handled).
func (r *run) failed(pr *proc, msg string, code int) {
	now := timestamppb.Now()
	if pr.rec.Started == nil {
		pr.rec.Started = now
	}
	pr.rec.Ended = now
	pr.rec.ExitCode = int32(code)
	pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_FAILED
	pr.rec.Error = msg
	r.event(pr.rec.Name, "state", "Failed: "+msg)
	switch {
	case pr.node.OnError == pipeline.OnErrorWarn || pr.node.Handled:
		why := "on_error: warn"
		if pr.node.OnError != pipeline.OnErrorWarn {
			why = "handled by an after: {" + pr.node.Name + ": failed|ended} entry"
		}
		w := fmt.Sprintf("processor %s failed (%s): %s", pr.rec.Name, why, msg)
		pr.rec.Warnings = append(pr.rec.Warnings, w)
		_ = r.w.Batch().PutProcessor(pr.rec)
		r.rec.Warnings++
		r.event(pr.rec.Name, "warning", w)
		r.notify(Update{Processor: pr.rec})
		r.notify(Update{Processor: pr.rec, Warning: w})
	default:
		_ = r.w.Batch().PutProcessor(pr.rec)
		if r.reason == "" {
			r.reason = fmt.Sprintf("processor %s failed: %s", pr.rec.Name, msg)
		}
		r.notify(Update{Processor: pr.rec})
	}
}

// exprInputs returns the run's inputs as expressions see them: each typed,
// a file input as {name, size, digest}.
func exprInputs(p *pipeline.Pipeline, in map[string]*wizpb.Data) (map[string]any, error) {
	out := make(map[string]any, len(p.Inputs))
	for _, d := range p.Inputs {
		v, ok := in[d.Name]
		if !ok {
			continue
		}
		if d.Type == pipeline.InputFile {
			var size int64
			name, digest := "", ""
			for _, f := range v.Files {
				size += f.Size
				name, digest = f.Name, f.Digest
			}
			if len(v.Files) == 0 {
				size = int64(len(v.Inline))
			}
			out[d.Name] = expr.FileInput(name, size, digest)
			continue
		}
		x, err := d.Value(string(v.GetInline()))
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", d.Name, err)
		}
		out[d.Name] = x
	}
	return out, nil
}

// firstLine returns s up to its first line break.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
