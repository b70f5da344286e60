package managerapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
)

// Errors for refused calls.
var (
	// ErrUnauthenticated: no token, or a wrong, expired or revoked one.
	ErrUnauthenticated = errors.New("authentication failed")
	// ErrPermissionDenied: the token's role may not do that.
	ErrPermissionDenied = errors.New("permission denied")
)

// FromStatus turns a gRPC error into one line for the user.
func FromStatus(err error) error { return fromStatus(err) }

// Client is manager.API for a Manager in another process.
type Client struct {
	conn *grpc.ClientConn
	rpc  wizrpc.ManagerClient
	// Tokens manages a daemon's tokens; nil behind a unix socket.
	Tokens  wizrpc.TokensClient
	secrets wizrpc.SecretsClient
	sched   wizrpc.SchedulesClient
	// Where names the Manager in messages, e.g. "the wiz process holding ~/.wiz".
	Where string
	// local: a wiz process on this machine, reached through its home's
	// socket (DialUnix), not a daemon.
	local bool
}

var _ manager.API = (*Client)(nil)

// DialUnix connects to the Manager API on a unix socket and checks that it
// answers.
func DialUnix(ctx context.Context, path, where string) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageSize), grpc.MaxCallSendMsgSize(sdk.MaxMessageSize)))
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn, rpc: wizrpc.NewManagerClient(conn), secrets: wizrpc.NewSecretsClient(conn), sched: wizrpc.NewSchedulesClient(conn), Where: where, local: true}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.rpc.ListRuns(ctx, &wizrpc.ListRunsRequest{Limit: 1}); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// DialTCP connects to a daemon's Manager API at addr ("host:port", or with an
// https:// or grpcs:// scheme) over TLS with a bearer token. caFile, when
// set, is the daemon's certificate (or its CA) to trust; insecure skips
// verification, for a self-signed certificate the user has not copied.
func DialTCP(addr, token, caFile string, insecureSkip bool) (*Client, error) {
	for _, p := range []string{"https://", "grpcs://", "grpc://"} {
		addr = strings.TrimPrefix(addr, p)
	}
	addr = strings.TrimSuffix(addr, "/")
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecureSkip}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read --ca %s: %w", caFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithPerRPCCredentials(bearer(token)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageSize), grpc.MaxCallSendMsgSize(sdk.MaxMessageSize)))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return &Client{conn: conn, rpc: wizrpc.NewManagerClient(conn), Tokens: wizrpc.NewTokensClient(conn), secrets: wizrpc.NewSecretsClient(conn), sched: wizrpc.NewSchedulesClient(conn), Where: "the daemon at " + addr}, nil
}

// bearer sends a token with every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// fromStatus is the package fromStatus for this Client: a local Manager
// that went away is not a daemon to check --server for.
func (c *Client) fromStatus(err error) error {
	if c.local && status.Code(err) == codes.Unavailable {
		return fmt.Errorf("lost %s: it exited or was killed (%s); run the command again: with no wiz holding the store it opens the store itself, and a run it was running is settled then (`wiz runs resume` continues it)", c.Where, status.Convert(err).Message())
	}
	return fromStatus(err)
}

// lostRun is the error of a stream of run updates that broke: a daemon
// (through --server or the wiz home's socket) lost while the run was Running
// continues it when it restarts.
func (c *Client) lostRun(last *wizpb.Run, err error) error {
	if last == nil || last.State != wizpb.RunState_RUN_STATE_RUNNING || last.Owner != manager.OwnerService || status.Code(err) != codes.Unavailable {
		return c.fromStatus(err)
	}
	return fmt.Errorf("lost the daemon while run %s was Running (%s): a daemon restarted on its data dir continues the run (unless started with --on-restart fail); `wiz runs watch %s` follows it then", last.Id, status.Convert(err).Message(), last.Id)
}

// fromStatus turns a gRPC error back into the Manager's kinds of error.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := s.Message()
	switch s.Code() {
	case codes.InvalidArgument:
		if rest, ok := strings.CutPrefix(msg, "validation:"); ok {
			return &manager.ValidationError{Errs: errors.New(rest)}
		}
		return fmt.Errorf("%w: %s", manager.ErrUsage, strings.TrimPrefix(msg, manager.ErrUsage.Error()+": "))
	case codes.FailedPrecondition:
		return fmt.Errorf("%w: %s", manager.ErrNotRunning, strings.TrimPrefix(msg, manager.ErrNotRunning.Error()+": "))
	case codes.Unavailable:
		if strings.Contains(msg, "x509:") || strings.Contains(msg, "tls:") {
			return fmt.Errorf("cannot reach the Manager: %s; trust the daemon's certificate (or its CA) with --ca FILE or WIZ_CA", msg)
		}
		return fmt.Errorf("cannot reach the Manager: %s; check --server and that the daemon runs", msg)
	case codes.Unauthenticated:
		return fmt.Errorf("%w: %s; pass a valid token with --token or WIZ_TOKEN (an admin makes one with `wiz token create`)", ErrUnauthenticated, msg)
	case codes.PermissionDenied:
		return fmt.Errorf("%w: %s; ask an admin for a token with that role (`wiz token create --role ROLE`)", ErrPermissionDenied, msg)
	case codes.NotFound:
		return manager.NotFound(msg)
	case codes.AlreadyExists:
		return fmt.Errorf("%w: %s", manager.ErrUsage, msg)
	}
	return errors.New(msg)
}

// Apply sends the pipeline file with the sub-pipeline files it uses.
func (c *Client) Apply(file string, src []byte) (*manager.Applied, error) {
	files, err := childFiles(file, src)
	if err != nil {
		return nil, err
	}
	origin, _ := filepath.Abs(file)
	r, err := c.rpc.ApplyPipeline(context.Background(), &wizrpc.ApplyPipelineRequest{File: file, Source: src, Files: files, Origin: origin})
	if err != nil {
		return nil, c.fromStatus(err)
	}
	return &manager.Applied{Pipeline: r.Pipeline, Version: r.Version, Changed: r.Changed, Warning: r.Warning}, nil
}

func (c *Client) Pipelines() ([]*wizpb.Pipeline, error) {
	r, err := c.rpc.ListPipelines(context.Background(), &wizrpc.ListPipelinesRequest{})
	if err != nil {
		return nil, c.fromStatus(err)
	}
	return r.Pipelines, nil
}

func (c *Client) PipelineVersions(name string) (*wizpb.Pipeline, []*wizpb.PipelineVersion, error) {
	r, err := c.rpc.GetPipeline(context.Background(), &wizrpc.GetPipelineRequest{Name: name})
	if err != nil {
		return nil, nil, c.fromStatus(err)
	}
	return r.Pipeline, r.Versions, nil
}

// childFiles reads the sub-pipeline files a pipeline file uses; one that
// cannot be read is a validation error at its position.
func childFiles(file string, src []byte) (map[string][]byte, error) {
	files, err := pipeline.ChildFiles(file, src)
	var el pipeline.ErrorList
	if errors.As(err, &el) {
		return nil, &manager.ValidationError{Errs: el}
	}
	return files, err
}

func (c *Client) Run(ctx context.Context, req manager.RunRequest, watch func(manager.Update)) (*wizpb.Run, error) {
	var files map[string][]byte
	var origin string
	if req.Source != nil {
		var err error
		if files, err = childFiles(req.File, req.Source); err != nil {
			return nil, err
		}
		origin, _ = filepath.Abs(req.File)
	}
	in := map[string]*wizrpc.InputValue{}
	for k, v := range req.Inputs {
		if v.Path != "" {
			iv, err := c.fileInput(ctx, k, v.Path)
			if err != nil {
				return nil, err
			}
			in[k] = iv
		} else {
			in[k] = &wizrpc.InputValue{Value: &wizrpc.InputValue_Text{Text: v.Text}}
		}
	}
	return c.follow(ctx, &wizrpc.StartRunRequest{File: req.File, Source: req.Source, Files: files, Origin: origin, Pipeline: req.Pipeline, Inputs: in, From: req.From, KeepTemp: req.KeepTemp, NoCache: req.NoCache}, watch)
}

// inlineFileMax is the largest file input sent inside StartRun; larger ones
// are uploaded in chunks first.
const inlineFileMax = 1 << 20

// fileInput sends a file input: small files inline, larger ones streamed to
// the Manager's blob store in chunks and passed by reference, so that a file
// of any size crosses without being held in memory.
func (c *Client) fileInput(ctx context.Context, name, path string) (*wizrpc.InputValue, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: input %s: %v", manager.ErrUsage, name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: input %s: %v", manager.ErrUsage, name, err)
	}
	if st.Size() <= inlineFileMax {
		b, err := io.ReadAll(f)
		if err != nil {
			return nil, fmt.Errorf("%w: input %s: %v", manager.ErrUsage, name, err)
		}
		return &wizrpc.InputValue{Value: &wizrpc.InputValue_File{File: b}, FileName: path}, nil
	}
	up, err := c.rpc.UploadBlob(ctx)
	if err != nil {
		return nil, fmt.Errorf("upload input %s: %w", name, c.fromStatus(err))
	}
	buf := make([]byte, 1<<20)
	for {
		n, rerr := io.ReadFull(f, buf)
		if n > 0 {
			if err := up.Send(&wizrpc.BlobChunk{Data: buf[:n]}); err != nil {
				_, err = up.CloseAndRecv()
				return nil, fmt.Errorf("upload input %s: %w", name, c.fromStatus(err))
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			_ = up.CloseSend()
			return nil, fmt.Errorf("%w: input %s: read %s: %v", manager.ErrUsage, name, path, rerr)
		}
	}
	resp, err := up.CloseAndRecv()
	if err != nil {
		return nil, fmt.Errorf("upload input %s: %w", name, c.fromStatus(err))
	}
	return &wizrpc.InputValue{Value: &wizrpc.InputValue_Blob{Blob: resp.Blob}, FileName: path}, nil
}

func (c *Client) Resume(ctx context.Context, id string, watch func(manager.Update)) (*wizpb.Run, error) {
	return c.follow(ctx, &wizrpc.StartRunRequest{Resume: id}, watch)
}

// follow starts a run and streams its updates. Cancelling ctx cancels the
// run (the client asked to), then waits for it to end.
func (c *Client) follow(ctx context.Context, req *wizrpc.StartRunRequest, watch func(manager.Update)) (*wizpb.Run, error) {
	stream, err := c.rpc.StartRun(context.Background(), req)
	if err != nil {
		return nil, c.fromStatus(err)
	}
	var last *wizpb.Run
	cancelled := false
	type msg struct {
		u   *wizrpc.RunUpdate
		err error
	}
	ch := make(chan msg, 16)
	go func() { // reads the stream until it ends
		for {
			u, err := stream.Recv()
			ch <- msg{u, err}
			if err != nil {
				return
			}
		}
	}()
	for {
		var m msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			if !cancelled && last != nil {
				cancelled = true
				_, _ = c.rpc.CancelRun(context.Background(), &wizrpc.CancelRunRequest{Id: last.Id})
			}
			m = <-ch
		}
		if m.err == io.EOF {
			if last == nil {
				return nil, fmt.Errorf("the Manager ended the run's stream before it started")
			}
			return last, nil
		}
		if m.err != nil {
			return last, c.lostRun(last, m.err)
		}
		if m.u.Run != nil {
			last = m.u.Run
		}
		watch(manager.Update{Run: m.u.Run, Processor: m.u.Processor, Warning: m.u.Warning})
	}
}

func (c *Client) Watch(ctx context.Context, id string, watch func(manager.Update)) (*wizpb.Run, error) {
	stream, err := c.rpc.WatchRun(ctx, &wizrpc.WatchRunRequest{Id: id})
	if err != nil {
		return nil, c.fromStatus(err)
	}
	var last *wizpb.Run
	for {
		u, err := stream.Recv()
		if err == io.EOF {
			return last, nil
		}
		if err != nil {
			return last, c.lostRun(last, err)
		}
		if u.Run != nil {
			last = u.Run
		}
		watch(manager.Update{Run: u.Run, Processor: u.Processor, Warning: u.Warning})
	}
}

func (c *Client) Cancel(id string) (*wizpb.Run, error) {
	r, err := c.rpc.CancelRun(context.Background(), &wizrpc.CancelRunRequest{Id: id})
	if err != nil {
		return nil, c.fromStatus(err)
	}
	return r.Run, nil
}

func (c *Client) Runs(f manager.RunFilter) ([]*wizpb.Run, error) {
	req := &wizrpc.ListRunsRequest{Limit: int32(f.Limit), Pipeline: f.Pipeline, State: f.State}
	if !f.Since.IsZero() {
		req.Since = timestamppb.New(f.Since)
	}
	r, err := c.rpc.ListRuns(context.Background(), req)
	if err != nil {
		return nil, c.fromStatus(err)
	}
	return r.Runs, nil
}

func (c *Client) RunDetail(id string) (*manager.RunDetail, error) {
	r, err := c.rpc.GetRun(context.Background(), &wizrpc.GetRunRequest{Id: id})
	if err != nil {
		return nil, c.fromStatus(err)
	}
	return &manager.RunDetail{Run: r.Run, Version: r.Version, Processors: r.Processors, Events: r.Events}, nil
}

func (c *Client) Logs(ctx context.Context, id, processor string, follow bool, fn func(*wizpb.LogChunk) error) error {
	stream, err := c.rpc.GetLogs(ctx, &wizrpc.GetLogsRequest{Id: id, Processor: processor, Follow: follow})
	if err != nil {
		return c.fromStatus(err)
	}
	for {
		l, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return c.fromStatus(err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
}

func (c *Client) Output(id, processor, name string, w io.Writer) error {
	stream, err := c.rpc.GetOutput(context.Background(), &wizrpc.GetOutputRequest{Id: id, Processor: processor, Name: name})
	if err != nil {
		return c.fromStatus(err)
	}
	for {
		ch, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return c.fromStatus(err)
		}
		if ch.File != "" {
			if dw, ok := w.(manager.DirWriter); ok {
				if err := dw.StartFile(ch.File); err != nil {
					return err
				}
			}
		}
		if _, err := w.Write(ch.Data); err != nil {
			return err
		}
	}
}

// GC implements manager.API.
func (c *Client) GC(req manager.GCRequest) (*manager.GCResult, error) {
	r, err := c.rpc.GC(context.Background(), &wizrpc.GCRequest{KeepLast: int32(req.KeepLast), OlderThanSeconds: int64(req.OlderThan / time.Second), DryRun: req.DryRun})
	if err != nil {
		return nil, c.fromStatus(err)
	}
	return &manager.GCResult{Runs: int(r.Runs), Kept: int(r.Kept), Skipped: int(r.Skipped), Blobs: r.Blobs, Bytes: r.Bytes, Swept: r.Swept}, nil
}

// CacheEntries implements manager.API.
func (c *Client) CacheEntries() ([]*wizpb.CacheEntry, error) {
	r, err := c.rpc.ListCache(context.Background(), &wizrpc.ListCacheRequest{})
	if err != nil {
		return nil, c.fromStatus(err)
	}
	return r.Entries, nil
}

// ClearCache implements manager.API.
func (c *Client) ClearCache(pipeline string) (int, error) {
	r, err := c.rpc.ClearCache(context.Background(), &wizrpc.ClearCacheRequest{Pipeline: pipeline})
	if err != nil {
		return 0, c.fromStatus(err)
	}
	return int(r.Deleted), nil
}

// SetSecret implements manager.API.
func (c *Client) SetSecret(name string, value []byte) (*wizpb.Secret, bool, error) {
	r, err := c.secrets.SetSecret(context.Background(), &wizrpc.SetSecretRequest{Name: name, Value: value})
	if err != nil {
		return nil, false, c.fromStatus(err)
	}
	return r.Secret, r.Created, nil
}

// Secrets implements manager.API.
func (c *Client) Secrets() ([]*wizpb.Secret, error) {
	r, err := c.secrets.ListSecrets(context.Background(), &wizrpc.ListSecretsRequest{})
	if err != nil {
		return nil, c.fromStatus(err)
	}
	return r.Secrets, nil
}

// DeleteSecret implements manager.API.
func (c *Client) DeleteSecret(name string) error {
	_, err := c.secrets.DeleteSecret(context.Background(), &wizrpc.DeleteSecretRequest{Name: name})
	return c.fromStatus(err)
}

func scheduleFromWire(w *wizrpc.ScheduleInfo) *manager.ScheduleInfo {
	i := &manager.ScheduleInfo{Pipeline: w.Pipeline, Name: w.Name, Cron: w.Cron, Timezone: w.Timezone, Overlap: w.Overlap,
		Catchup: time.Duration(w.CatchupSeconds) * time.Second, State: w.State, Kind: w.Kind, Error: w.Error, Watch: w.Watch}
	if w.NextFire != nil {
		i.Next = w.NextFire.AsTime()
	}
	return i
}

// Schedules implements manager.API.
func (c *Client) Schedules() ([]*manager.ScheduleInfo, error) {
	r, err := c.sched.ListSchedules(context.Background(), &wizrpc.ListSchedulesRequest{})
	if err != nil {
		return nil, c.fromStatus(err)
	}
	out := make([]*manager.ScheduleInfo, len(r.Schedules))
	for i, w := range r.Schedules {
		out[i] = scheduleFromWire(w)
	}
	return out, nil
}

// PauseSchedule implements manager.API.
func (c *Client) PauseSchedule(pipeline, name string, pause bool) (*manager.ScheduleInfo, error) {
	req := &wizrpc.PauseScheduleRequest{Pipeline: pipeline, Name: name}
	var r *wizrpc.PauseScheduleResponse
	var err error
	if pause {
		r, err = c.sched.PauseSchedule(context.Background(), req)
	} else {
		r, err = c.sched.ResumeSchedule(context.Background(), req)
	}
	if err != nil {
		return nil, c.fromStatus(err)
	}
	return scheduleFromWire(r.Schedule), nil
}

// Backfill implements manager.API: the runs go on in the server; the
// returned wait returns at once.
func (c *Client) Backfill(pipeline, name string, from, to time.Time, maxParallel int, dryRun bool) ([]manager.BackfillTick, func(), error) {
	r, err := c.sched.Backfill(context.Background(), &wizrpc.BackfillRequest{Pipeline: pipeline, Name: name,
		From: timestamppb.New(from), To: timestamppb.New(to), MaxParallel: int32(maxParallel), DryRun: dryRun})
	if err != nil {
		return nil, nil, c.fromStatus(err)
	}
	out := make([]manager.BackfillTick, len(r.Ticks))
	for i, t := range r.Ticks {
		out[i] = manager.BackfillTick{Tick: t.Tick.AsTime(), RunID: t.RunId, Skipped: t.Skipped}
	}
	return out, func() {}, nil
}

// TriggerURL implements manager.API.
func (c *Client) TriggerURL(pipeline, name string, rotate bool) (string, string, error) {
	r, err := c.sched.TriggerURL(context.Background(), &wizrpc.TriggerURLRequest{Pipeline: pipeline, Name: name, Rotate: rotate})
	if err != nil {
		return "", "", c.fromStatus(err)
	}
	return r.Url, r.Secret, nil
}
