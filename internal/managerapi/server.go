// Package managerapi serves the Manager API (proto/wizrpc/v1/manager.proto)
// over gRPC and implements manager.API as its client, so that a `wiz`
// command works the same against the Manager in its own process, behind the
// wiz home's unix socket, or in a daemon.
package managerapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
	"github.com/wiz-run/wiz/sdk/blob"
)

// Server adapts a Manager to the wire. Runs it starts go on when their client
// goes away; Wait waits for them.
type Server struct {
	wizrpc.UnimplementedManagerServer
	m *manager.Manager
	// publicURL is the daemon's base URL for webhook URLs
	// (https://HOST:PORT); empty: this server serves none.
	publicURL atomic.Pointer[string]
	runs      sync.WaitGroup
	mu        sync.Mutex
	draining  bool
}

// Drain makes the server refuse new runs (Unavailable), for a shutdown.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

// Register registers the Manager and Secrets services of s on gs.
func (s *Server) Register(gs *grpc.Server) {
	wizrpc.RegisterManagerServer(gs, s)
	wizrpc.RegisterSecretsServer(gs, secretsServer{m: s.m})
	wizrpc.RegisterSchedulesServer(gs, schedulesServer{m: s.m, base: s.PublicURL})
}

// SetPublicURL sets the base of the webhook URLs TriggerURL gives
// (https://HOST:PORT, the daemon's --public-url or listen address).
func (s *Server) SetPublicURL(u string) { s.publicURL.Store(&u) }

// PublicURL returns what SetPublicURL set; "" when nothing.
func (s *Server) PublicURL() string {
	if u := s.publicURL.Load(); u != nil {
		return *u
	}
	return ""
}

// NewServer returns a Server for m.
func NewServer(m *manager.Manager) *Server { return &Server{m: m} }

// Wait waits for the runs started through the server to end.
func (s *Server) Wait() { s.runs.Wait() }

// ServeUnix serves the Manager API on a unix socket at path (mode 0600),
// replacing a stale socket file, until Stop is called on the returned server.
func ServeUnix(path string, s *Server) (*grpc.Server, error) {
	_ = os.Remove(path) // the caller holds the store: any socket here is stale
	old := umask(0o177)
	lis, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, err
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(sdk.MaxMessageSize), grpc.MaxSendMsgSize(sdk.MaxMessageSize))
	s.Register(gs)
	go func() { _ = gs.Serve(lis) }() // ends when the caller stops gs
	return gs, nil
}

// toStatus turns Manager errors into gRPC codes the client turns back.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var ve *manager.ValidationError
	switch {
	case errors.As(err, &ve):
		return status.Error(codes.InvalidArgument, "validation:"+err.Error())
	case errors.Is(err, manager.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, manager.ErrUsage):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, manager.ErrNotRunning):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, manager.ErrSuspended):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

func (s *Server) ApplyPipeline(_ context.Context, req *wizrpc.ApplyPipelineRequest) (*wizrpc.ApplyPipelineResponse, error) {
	a, err := s.m.ApplySent(req.File, req.Source, req.Files, req.Origin)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.ApplyPipelineResponse{Pipeline: a.Pipeline, Version: a.Version, Changed: a.Changed, Warning: a.Warning}, nil
}

func (s *Server) ListPipelines(context.Context, *wizrpc.ListPipelinesRequest) (*wizrpc.ListPipelinesResponse, error) {
	ps, err := s.m.Pipelines()
	return &wizrpc.ListPipelinesResponse{Pipelines: ps}, toStatus(err)
}

func (s *Server) GetPipeline(_ context.Context, req *wizrpc.GetPipelineRequest) (*wizrpc.GetPipelineResponse, error) {
	p, vs, err := s.m.PipelineVersions(req.Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.GetPipelineResponse{Pipeline: p, Versions: vs}, nil
}

// StartRun runs in a goroutine of its own, so that the run goes on when the
// client goes away; updates reach the client through a queue.
func (s *Server) StartRun(req *wizrpc.StartRunRequest, stream wizrpc.Manager_StartRunServer) error {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return status.Error(codes.Unavailable, "the Manager is shutting down and takes no new runs; start the run again when it is back")
	}
	s.runs.Add(1)
	s.mu.Unlock()
	q := manager.NewQueue()
	errc := make(chan error, 1)
	go func() {
		defer s.runs.Done()
		defer q.Close()
		watch := func(u manager.Update) { q.Push(u.Clone()) }
		var err error
		if req.Resume != "" {
			_, err = s.m.Resume(context.Background(), req.Resume, watch)
		} else {
			in := map[string]manager.InputValue{}
			for k, v := range req.Inputs {
				switch x := v.Value.(type) {
				case *wizrpc.InputValue_File:
					in[k] = manager.InputValue{Content: orEmpty(x.File), Path: v.FileName}
				case *wizrpc.InputValue_Blob:
					in[k] = manager.InputValue{Blob: x.Blob, Path: v.FileName}
				default:
					in[k] = manager.InputValue{Text: v.GetText()}
				}
			}
			_, err = s.m.Run(context.Background(), manager.RunRequest{
				File: req.File, Source: req.Source, Sent: true, Files: req.Files, Origin: req.Origin, Pipeline: req.Pipeline, Inputs: in, From: req.From, KeepTemp: req.KeepTemp, NoCache: req.NoCache,
			}, watch)
		}
		errc <- err
	}()
	for {
		u, ok := q.Next(stream.Context())
		if !ok {
			break
		}
		if err := stream.Send(&wizrpc.RunUpdate{Run: u.Run, Processor: u.Processor, Warning: u.Warning}); err != nil {
			return nil // the client went away; the run goes on
		}
	}
	if stream.Context().Err() != nil {
		return nil
	}
	return toStatus(<-errc)
}

func orEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (s *Server) WatchRun(req *wizrpc.WatchRunRequest, stream wizrpc.Manager_WatchRunServer) error {
	var sendErr error
	_, err := s.m.Watch(stream.Context(), req.Id, func(u manager.Update) {
		if sendErr == nil {
			sendErr = stream.Send(&wizrpc.RunUpdate{Run: u.Run, Processor: u.Processor, Warning: u.Warning})
		}
	})
	if sendErr != nil {
		return nil
	}
	return toStatus(err)
}

func (s *Server) CancelRun(_ context.Context, req *wizrpc.CancelRunRequest) (*wizrpc.CancelRunResponse, error) {
	r, err := s.m.Cancel(req.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.CancelRunResponse{Run: r}, nil
}

func (s *Server) ListRuns(_ context.Context, req *wizrpc.ListRunsRequest) (*wizrpc.ListRunsResponse, error) {
	f := manager.RunFilter{Limit: int(req.Limit), Pipeline: req.Pipeline, State: req.State}
	if req.Since != nil {
		f.Since = req.Since.AsTime()
	}
	rs, err := s.m.Runs(f)
	return &wizrpc.ListRunsResponse{Runs: rs}, toStatus(err)
}

func (s *Server) GetRun(_ context.Context, req *wizrpc.GetRunRequest) (*wizrpc.GetRunResponse, error) {
	d, err := s.m.RunDetail(req.Id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.GetRunResponse{Run: d.Run, Version: d.Version, Processors: d.Processors, Events: d.Events}, nil
}

func (s *Server) GetLogs(req *wizrpc.GetLogsRequest, stream wizrpc.Manager_GetLogsServer) error {
	return toStatus(s.m.Logs(stream.Context(), req.Id, req.Processor, req.Follow, func(c *wizpb.LogChunk) error {
		return stream.Send(c)
	}))
}

func (s *Server) GetOutput(req *wizrpc.GetOutputRequest, stream wizrpc.Manager_GetOutputServer) error {
	w := &chunkWriter{send: func(b []byte, file string) error { return stream.Send(&wizrpc.OutputChunk{Data: b, File: file}) }}
	if err := s.m.Output(req.Id, req.Processor, req.Name, w); err != nil {
		return toStatus(err)
	}
	return toStatus(w.flush())
}

// UploadBlob stores a client's file in the Manager's blob store.
func (s *Server) UploadBlob(stream wizrpc.Manager_UploadBlobServer) error {
	defer s.m.HoldBlobs()()
	w, err := s.m.Blobs().Create()
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	defer w.Abort()
	want := ""
	for first := true; ; first = false {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if first {
			want = c.Digest
		}
		if _, err := w.Write(c.Data); err != nil {
			return status.Errorf(codes.ResourceExhausted, "store upload: %v", err)
		}
	}
	var digest string
	var size int64
	if want != "" {
		digest = want
		size, err = w.CommitExpect(want)
	} else {
		digest, size, err = w.Commit()
	}
	if err != nil {
		if errors.Is(err, blob.ErrDigestMismatch) {
			return status.Error(codes.DataLoss, err.Error())
		}
		return status.Error(codes.Internal, err.Error())
	}
	return stream.SendAndClose(&wizrpc.UploadBlobResponse{Blob: &wizpb.FileRef{Digest: digest, Size: size}})
}

// chunkWriter sends what is written in chunks of at most 1 MiB.
type chunkWriter struct {
	buf  bytes.Buffer
	file string // the file the next chunk starts; sent once
	send func(data []byte, file string) error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for w.buf.Len() >= 1<<20 {
		if err := w.send(w.buf.Next(1<<20), w.take()); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// StartFile implements manager.DirWriter: the file's name goes with its
// first chunk (an empty file's alone).
func (w *chunkWriter) StartFile(name string) error {
	if err := w.flush(); err != nil {
		return err
	}
	w.file = name
	return nil
}

func (w *chunkWriter) take() string {
	f := w.file
	w.file = ""
	return f
}

func (w *chunkWriter) flush() error {
	if w.buf.Len() == 0 && w.file == "" {
		return nil
	}
	err := w.send(w.buf.Bytes(), w.take())
	w.buf.Reset()
	return err
}

// GC implements the GC RPC.
func (s *Server) GC(_ context.Context, req *wizrpc.GCRequest) (*wizrpc.GCResponse, error) {
	r, err := s.m.GC(manager.GCRequest{KeepLast: int(req.KeepLast), OlderThan: time.Duration(req.OlderThanSeconds) * time.Second, DryRun: req.DryRun})
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.GCResponse{Runs: int32(r.Runs), Kept: int32(r.Kept), Skipped: int32(r.Skipped), Blobs: r.Blobs, Bytes: r.Bytes, Swept: r.Swept}, nil
}

func (s *Server) ListCache(_ context.Context, _ *wizrpc.ListCacheRequest) (*wizrpc.ListCacheResponse, error) {
	es, err := s.m.CacheEntries()
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.ListCacheResponse{Entries: es}, nil
}

func (s *Server) ClearCache(_ context.Context, req *wizrpc.ClearCacheRequest) (*wizrpc.ClearCacheResponse, error) {
	n, err := s.m.ClearCache(req.Pipeline)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.ClearCacheResponse{Deleted: int32(n)}, nil
}

// secretsServer serves the Secrets service: values go in, never out.
type secretsServer struct {
	wizrpc.UnimplementedSecretsServer
	m *manager.Manager
}

func (s secretsServer) SetSecret(_ context.Context, req *wizrpc.SetSecretRequest) (*wizrpc.SetSecretResponse, error) {
	sec, created, err := s.m.SetSecret(req.Name, req.Value)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.SetSecretResponse{Secret: sec, Created: created}, nil
}

func (s secretsServer) ListSecrets(context.Context, *wizrpc.ListSecretsRequest) (*wizrpc.ListSecretsResponse, error) {
	ss, err := s.m.Secrets()
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.ListSecretsResponse{Secrets: ss}, nil
}

func (s secretsServer) DeleteSecret(_ context.Context, req *wizrpc.DeleteSecretRequest) (*wizrpc.DeleteSecretResponse, error) {
	if err := s.m.DeleteSecret(req.Name); err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.DeleteSecretResponse{}, nil
}

// schedulesServer serves the Schedules service.
type schedulesServer struct {
	wizrpc.UnimplementedSchedulesServer
	m    *manager.Manager
	base func() string // Server.PublicURL
}

func (s schedulesServer) TriggerURL(_ context.Context, req *wizrpc.TriggerURLRequest) (*wizrpc.TriggerURLResponse, error) {
	base := s.base()
	if base == "" {
		_, _, err := s.m.TriggerURL(req.Pipeline, req.Name, req.Rotate)
		return nil, toStatus(err)
	}
	secret, err := s.m.WebhookSecret(req.Pipeline, req.Name, req.Rotate)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.TriggerURLResponse{Url: strings.TrimSuffix(base, "/") + "/hooks/" + req.Pipeline + "/" + req.Name, Secret: secret}, nil
}

func scheduleToWire(i *manager.ScheduleInfo) *wizrpc.ScheduleInfo {
	w := &wizrpc.ScheduleInfo{Pipeline: i.Pipeline, Name: i.Name, Cron: i.Cron, Timezone: i.Timezone, Overlap: i.Overlap,
		CatchupSeconds: int64(i.Catchup / time.Second), State: i.State, Kind: i.Kind, Error: i.Error, Watch: i.Watch}
	if !i.Next.IsZero() {
		w.NextFire = timestamppb.New(i.Next)
	}
	return w
}

func (s schedulesServer) ListSchedules(context.Context, *wizrpc.ListSchedulesRequest) (*wizrpc.ListSchedulesResponse, error) {
	is, err := s.m.Schedules()
	if err != nil {
		return nil, toStatus(err)
	}
	out := &wizrpc.ListSchedulesResponse{}
	for _, i := range is {
		out.Schedules = append(out.Schedules, scheduleToWire(i))
	}
	return out, nil
}

func (s schedulesServer) pause(req *wizrpc.PauseScheduleRequest, pause bool) (*wizrpc.PauseScheduleResponse, error) {
	i, err := s.m.PauseSchedule(req.Pipeline, req.Name, pause)
	if err != nil {
		return nil, toStatus(err)
	}
	return &wizrpc.PauseScheduleResponse{Schedule: scheduleToWire(i)}, nil
}

func (s schedulesServer) PauseSchedule(_ context.Context, req *wizrpc.PauseScheduleRequest) (*wizrpc.PauseScheduleResponse, error) {
	return s.pause(req, true)
}

func (s schedulesServer) ResumeSchedule(_ context.Context, req *wizrpc.PauseScheduleRequest) (*wizrpc.PauseScheduleResponse, error) {
	return s.pause(req, false)
}

func (s schedulesServer) Backfill(_ context.Context, req *wizrpc.BackfillRequest) (*wizrpc.BackfillResponse, error) {
	ticks, _, err := s.m.Backfill(req.Pipeline, req.Name, req.From.AsTime(), req.To.AsTime(), int(req.MaxParallel), req.DryRun)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &wizrpc.BackfillResponse{}
	for _, t := range ticks {
		out.Ticks = append(out.Ticks, &wizrpc.BackfillTick{Tick: timestamppb.New(t.Tick), RunId: t.RunID, Skipped: t.Skipped})
	}
	return out, nil
}
