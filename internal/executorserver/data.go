package executorserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wiz-run/wiz/internal/pluginhost"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// runData runs a data processor inside its pack.
func (s *Server) runData(ctx context.Context, t *wizrpc.Task, pack *pluginhost.Pack, emit func(*wizrpc.ExecuteEvent)) {
	start := time.Now()
	emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Started{Started: &wizrpc.Started{}}})
	var (
		fatal    string
		outBytes int64
	)
	err := pack.Process(ctx, &wizrpc.ProcessRequest{
		Type: typeName(t.Type), ConfigJson: t.ConfigJson, Inputs: t.Inputs, BlobDir: s.cfg.BlobDir,
	}, func(ev *wizrpc.ProcessEvent) {
		switch e := ev.Event.(type) {
		case *wizrpc.ProcessEvent_Log:
			emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: e.Log.Stream, Data: e.Log.Data}}})
		case *wizrpc.ProcessEvent_Warning:
			emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Warning{Warning: &wizrpc.Warning{Message: e.Warning}}})
		case *wizrpc.ProcessEvent_Output:
			outBytes += dataSize(map[string]*wizpb.Data{"": e.Output.Data})
			emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Output{Output: &wizrpc.Output{Name: e.Output.Name, Data: e.Output.Data}}})
		case *wizrpc.ProcessEvent_Error:
			fatal = e.Error
		}
	})
	emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Metrics{Metrics: &wizpb.Metrics{
		WallNs: time.Since(start).Nanoseconds(), InputBytes: dataSize(t.Inputs), OutputBytes: outBytes,
	}}})
	switch {
	case ctx.Err() != nil:
		emit(finished(outcomeOf(ctx), 0, cause(ctx), true))
	case errors.Is(err, pluginhost.ErrPluginShutdown):
		s.dropPack(t.Pack, pack)
		emit(finished(wizrpc.Outcome_OUTCOME_FAILED, 0, fmt.Sprintf("pack plugin %s@%s (%s) died mid-task; the next task starts a fresh one", t.Pack.Name, t.Pack.Version, t.Pack.Path), true))
	case err != nil:
		emit(finished(wizrpc.Outcome_OUTCOME_FAILED, 0, err.Error(), true))
	case fatal != "":
		emit(finished(wizrpc.Outcome_OUTCOME_FAILED, 0, fatal, true))
	default:
		emit(finished(wizrpc.Outcome_OUTCOME_SUCCEEDED, 0, "", true))
	}
}
