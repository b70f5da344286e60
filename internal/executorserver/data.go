package executorserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wiz-run/wiz/internal/pluginhost"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/blob"
)

// runData runs a data processor inside its pack.
func (s *Server) runData(ctx context.Context, t *wizrpc.Task, pack *pluginhost.Pack, emit func(*wizrpc.ExecuteEvent)) {
	start := time.Now()
	emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Started{Started: &wizrpc.Started{}}})
	var (
		fatal    string
		outBytes int64
	)
	// What the pack logs is held to max_log_size as a program's is; the
	// callback below runs on one goroutine.
	lim := newLogLimit(t.MaxLogBytes, emit)
	// A bad output ends the pack's work on the task at once.
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	err := pack.Process(pctx, &wizrpc.ProcessRequest{
		Type: typeName(t.Type), ConfigJson: t.ConfigJson, Inputs: t.Inputs, BlobDir: s.cfg.BlobDir,
		InlineMaxBytes: t.InlineMaxBytes, MaxOutputBytes: t.MaxOutputBytes,
	}, func(ev *wizrpc.ProcessEvent) {
		switch e := ev.Event.(type) {
		case *wizrpc.ProcessEvent_Log:
			lim.emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: e.Log.Stream, Data: e.Log.Data}}})
		case *wizrpc.ProcessEvent_Warning:
			emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Warning{Warning: &wizrpc.Warning{Message: e.Warning}}})
		case *wizrpc.ProcessEvent_Output:
			if fatal != "" {
				return
			}
			d, err := s.checkOutput(t, e.Output.Name, e.Output.Data)
			if err != nil {
				fatal = err.Error()
				stop()
				return
			}
			outBytes += dataSize(map[string]*wizpb.Data{"": d})
			emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Output{Output: &wizrpc.Output{Name: e.Output.Name, Data: d}}})
		case *wizrpc.ProcessEvent_Error:
			if fatal == "" {
				fatal = e.Error
			}
		}
	})
	lim.finish()
	var ev *wizrpc.ExecuteEvent
	switch {
	case ctx.Err() != nil:
		ev = finished(outcomeOf(ctx), 0, cause(ctx), true)
	case errors.Is(err, pluginhost.ErrPluginShutdown):
		how := pack.ExitInfo()
		s.dropPack(t.Pack, pack)
		if how != "" {
			how = " (" + how + ")"
		}
		ev = finished(wizrpc.Outcome_OUTCOME_FAILED, 0, fmt.Sprintf("pack plugin %s@%s (%s) died mid-task%s; the next task starts a fresh one", t.Pack.Name, t.Pack.Version, t.Pack.Path, how), true)
	case fatal != "":
		ev = finished(wizrpc.Outcome_OUTCOME_FAILED, 0, fatal, true)
	case err != nil:
		ev = finished(wizrpc.Outcome_OUTCOME_FAILED, 0, err.Error(), true)
	default:
		ev = finished(wizrpc.Outcome_OUTCOME_SUCCEEDED, 0, "", true)
	}
	ev.GetFinished().Metrics = &wizpb.Metrics{
		WallNs: time.Since(start).Nanoseconds(), InputBytes: dataSize(t.Inputs), OutputBytes: outBytes,
	}
	emit(ev)
}

// checkOutput holds a pack's output to the task's limits, whatever SDK the
// pack was built with: an output over max_output_bytes fails the task, and
// inline bytes over inline_max_bytes are moved to a blob.
func (s *Server) checkOutput(t *wizrpc.Task, name string, d *wizpb.Data) (*wizpb.Data, error) {
	size := dataSize(map[string]*wizpb.Data{"": d})
	if t.MaxOutputBytes > 0 && size > t.MaxOutputBytes {
		return nil, fmt.Errorf("output %s is %s, %w: max_output_size is %s", name, blob.Size(size), blob.ErrTooLarge, blob.Size(t.MaxOutputBytes))
	}
	inlineMax := t.InlineMaxBytes
	if inlineMax <= 0 {
		inlineMax = blob.DefaultInlineMax
	}
	if int64(len(d.GetInline())) <= inlineMax {
		return d, nil
	}
	digest, n, err := s.blobs.Put(bytes.NewReader(d.Inline))
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", name, err)
	}
	out := &wizpb.Data{ContentType: d.ContentType, Metadata: d.Metadata,
		Files: append([]*wizpb.FileRef{{Digest: digest, Size: n, Name: name}}, d.Files...)}
	return out, nil
}
