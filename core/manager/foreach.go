package manager

// This file carries out for_each: the scheduler decides when a processor
// becomes its instances and when they have all ended; the Manager evaluates
// the list, records each instance like a processor ("NAME[0]", "NAME[key]")
// and joins the instances' outputs into the processor's (fan-in).

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/expr"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/scheduler"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// instanceKeyRE is what a map key must look like to name an instance.
var instanceKeyRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// defaultInlineMax is the inline_max_size of a pipeline that sets none.
const defaultInlineMax = 1 << 20

// expand evaluates processor i's for_each and makes its instances.
func (r *run) expand(i int) bool {
	pr := r.procs[i]
	fe := pr.node.ForEach
	items, keys, err := fe.List, []string(nil), error(nil)
	if fe.Expr != nil {
		var v *expr.Vars
		if v, err = r.vars(fe.Expr.Prog.Refs, fe.Expr.Prog.Outputs, pr.node.Finally, nil); err == nil {
			items, keys, err = fe.Expr.Prog.EvalList(v)
		}
	}
	if err == nil && len(items) > pipeline.MaxInstances {
		err = fmt.Errorf("%s gives %d elements, over the %d a processor may have", forEachSource(fe), len(items), pipeline.MaxInstances)
	}
	for _, k := range keys {
		if err == nil && !instanceKeyRE.MatchString(k) {
			err = fmt.Errorf("%s gives the key %q, which cannot name an instance: keys are 1 to 64 of A-Z a-z 0-9 . _ -", forEachSource(fe), k)
		}
	}
	if err != nil {
		r.failed(pr, "for_each: "+err.Error(), 0)
		return r.act(r.sched.Expanded(i, -1, nil))
	}
	now := timestamppb.Now()
	pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_RUNNING
	pr.rec.Started = now
	first := len(r.procs)
	var done []bool
	for k, item := range items {
		label, key := strconv.Itoa(k), ""
		if keys != nil {
			label, key = keys[k], keys[k]
		}
		itemText, err := expr.JSONText(item)
		if err != nil {
			itemText = ""
		}
		in := &proc{
			node: pr.node, config: pr.config, pack: pr.pack, native: pr.native, exec: pr.exec, backend: pr.backend, excfg: pr.excfg, child: pr.child,
			outputs: map[string]*wizpb.Data{}, inst: &expr.Instance{Item: item, Index: int64(k), Key: key},
			rec: &wizpb.ProcessorRun{RunId: r.rec.Id, Name: pr.node.Name + "[" + label + "]", Type: pr.node.Uses,
				InstanceOf: pr.node.Name, Index: int64(k), Key: key, Item: itemText, Finally: pr.node.Finally},
		}
		// Resume: the same instance with the same element succeeded.
		if old := r.reuse[in.rec.Name]; old != nil && old.Item == itemText && old.InstanceOf == pr.node.Name {
			in.rec = reusedRec(old, r.rec.Id)
			in.outputs, in.reused = in.rec.Outputs, true
			if done == nil {
				done = make([]bool, len(items))
			}
			done[k] = true
		}
		r.carry(in)
		_ = r.w.Batch().PutProcessor(in.rec)
		r.procs = append(r.procs, in)
	}
	_ = r.w.Batch().PutProcessor(pr.rec)
	r.notify(Update{Processor: pr.rec})
	acts := r.sched.Expanded(i, len(items), done)
	if f, n := r.sched.Instances(i); n > 0 && f != first {
		// The scheduler numbers instances as the Manager does; anything
		// else is a bug, and the run stops rather than mix them up.
		r.reason = fmt.Sprintf("internal error: instances of %s numbered from %d by the scheduler, %d by the Manager", pr.node.Name, f, first)
		r.act(acts)
		return r.act(r.sched.Cancel())
	}
	return r.act(acts)
}

func forEachSource(fe *pipeline.ForEach) string {
	if fe.Expr != nil {
		return fmt.Sprintf("%q", fe.Expr.Src)
	}
	return "the list"
}

// instances returns the instances of for_each processor i, in element
// order; none before it expanded.
func (r *run) instances(i int) []*proc {
	first, n := r.sched.Instances(i)
	if n == 0 {
		return nil
	}
	return r.procs[first : first+n]
}

// gather records a for_each processor whose instances have all ended: its
// state, and as its outputs the instances' joined in element order.
func (r *run) gather(a scheduler.Action) {
	pr := r.procs[a.Node]
	insts := r.instances(a.Node)
	now := timestamppb.Now()
	if pr.rec.Started == nil {
		pr.rec.Started = now
	}
	pr.rec.Ended = now
	switch a.CauseState {
	case scheduler.StateSucceeded:
		pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED
		var names []string
		seen := map[string]bool{}
		for _, in := range insts {
			for name := range in.outputs {
				if !seen[name] {
					seen[name] = true
					names = append(names, name)
				}
			}
		}
		for _, name := range names {
			d, err := r.fanIn(insts, name)
			if err != nil {
				r.failed(pr, fmt.Sprintf("join the instances' output %s: %v", name, err), 0)
				return
			}
			pr.outputs[name] = d
		}
		pr.rec.Outputs = pr.outputs
	case scheduler.StateFailed:
		pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_FAILED
		for _, in := range insts {
			if in.rec.State == wizpb.ProcessorState_PROCESSOR_STATE_FAILED {
				pr.rec.Error = fmt.Sprintf("instance %s failed: %s", in.rec.Name, in.rec.Error)
				break
			}
		}
	default:
		pr.rec.State = wizpb.ProcessorState_PROCESSOR_STATE_IDLE
	}
	_ = r.w.Batch().PutProcessor(pr.rec)
	r.notify(Update{Processor: pr.rec})
}

// fanIn joins the instances' output name in element order: bytes one after
// the other, with no separator; when one is a directory of files, each
// instance's files go in a subdirectory named by its index or key.
func (r *run) fanIn(insts []*proc, name string) (*wizpb.Data, error) {
	var ds []*wizpb.Data
	var labels []string
	dir := false
	for _, in := range insts {
		d := in.outputs[name]
		if d == nil {
			continue
		}
		ds = append(ds, d)
		label := strconv.FormatInt(in.rec.Index, 10)
		if in.rec.Key != "" {
			label = in.rec.Key
		}
		labels = append(labels, label)
		dir = dir || IsDirectory(d)
	}
	out := &wizpb.Data{ContentType: "application/octet-stream"}
	if len(ds) > 0 {
		out.ContentType = ds[0].ContentType
	}
	if dir {
		out.Directory = true
		for k, d := range ds {
			if len(d.Inline) > 0 {
				digest, size, err := r.m.blobs.Put(bytes.NewReader(d.Inline))
				if err != nil {
					return nil, err
				}
				out.Files = append(out.Files, &wizpb.FileRef{Digest: digest, Size: size, Name: labels[k] + "/" + name})
			}
			for _, f := range d.Files {
				out.Files = append(out.Files, &wizpb.FileRef{Digest: f.Digest, Size: f.Size, Name: labels[k] + "/" + f.Name})
			}
		}
		return out, nil
	}
	var size int64
	files := false
	for _, d := range ds {
		size += int64(len(d.Inline))
		for _, f := range d.Files {
			size += f.Size
			files = true
		}
	}
	inlineMax := r.p.InlineMax
	if inlineMax <= 0 {
		inlineMax = defaultInlineMax
	}
	if !files && size <= inlineMax {
		var b bytes.Buffer
		for _, d := range ds {
			b.Write(d.Inline)
		}
		out.Inline = b.Bytes()
		return out, nil
	}
	var rs []io.Reader
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for _, d := range ds {
		rs = append(rs, bytes.NewReader(d.Inline))
		for _, f := range d.Files {
			rc, err := r.m.blobs.Open(f.Digest)
			if err != nil {
				return nil, err
			}
			closers = append(closers, rc)
			rs = append(rs, rc)
		}
	}
	digest, n, err := r.m.blobs.Put(io.MultiReader(rs...))
	if err != nil {
		return nil, err
	}
	out.Files = []*wizpb.FileRef{{Digest: digest, Size: n, Name: name}}
	return out, nil
}
