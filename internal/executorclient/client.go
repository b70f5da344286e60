// Package executorclient connects the Manager to a `wiz executor` over gRPC:
// one TLS connection and one long-lived Execute stream per executor. It
// implements manager.Executor.
package executorclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/local"
	"google.golang.org/grpc/status"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
	"github.com/wiz-run/wiz/sdk/blob"
)

// Endpoint says where an executor listens and how to trust it.
type Endpoint struct {
	Address    string
	CACertPEM  []byte
	ServerName string
	Token      string
	// Remote says the executor does not share the Manager's file system:
	// packs and input blobs are sent to it and output blobs fetched from it.
	Remote bool
}

// Client is a connection to one executor.
type Client struct {
	name     string
	id       string // the backend's executor ID
	conn     *grpc.ClientConn
	stream   wizrpc.Executor_ExecuteClient
	cancel   context.CancelFunc
	slots    int
	events   chan *manager.TaskEvent
	teardown func(context.Context) error
	diagnose func(context.Context) string

	sendMu sync.Mutex // the stream's Send is not safe for concurrent use
	// Under sendMu: tasks Submit holds until Flush, and held tasks that a
	// Cancel's flush could not send, for the next Flush to report.
	held   []*wizrpc.Task
	failed map[string]error

	mu       sync.Mutex
	inflight map[string]bool
	done     chan struct{} // closed when the receive loop ends

	remote *remote // nil when the executor shares the Manager's blob store

	evMu     sync.RWMutex // held to send on events outside recv, and to close it
	evClosed bool
}

var (
	_ manager.Executor = (*Client)(nil)
	_ manager.Batcher  = (*Client)(nil)
)

type tokenCreds struct{ token string }

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return true }

// Hooks are the backend's part in an executor's life.
type Hooks struct {
	// Teardown is called by Close after the stream ends.
	Teardown func(context.Context) error
	// Diagnose says why the executor is gone, when it is lost mid-task;
	// nil or "": unknown.
	Diagnose func(context.Context) string
	// ExecutorID is the backend's ID of the executor (ExecutorID).
	ExecutorID string
}

// Dial connects to an executor and opens its Execute stream. blobs is the
// Manager's blob store, which a remote executor's blobs are copied from and
// to.
func Dial(ctx context.Context, name string, ep Endpoint, blobs *blob.Store, hooks Hooks) (*Client, error) {
	var creds credentials.TransportCredentials
	if strings.HasPrefix(ep.Address, "unix://") {
		// A unix socket on this machine: no TLS; the token still goes along.
		creds = local.NewCredentials()
	} else {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ep.CACertPEM) {
			return nil, fmt.Errorf("%s: endpoint has no usable CA certificate", name)
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: ep.ServerName, MinVersion: tls.VersionTLS13})
	}
	conn, err := grpc.NewClient(ep.Address,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(tokenCreds{ep.Token}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(sdk.MaxMessageSize), grpc.MaxCallSendMsgSize(sdk.MaxMessageSize)),
	)
	if err != nil {
		return nil, fmt.Errorf("%s: connect %s: %w", name, ep.Address, err)
	}
	ictx, icancel := context.WithTimeout(ctx, 20*time.Second)
	defer icancel()
	info, err := wizrpc.NewExecutorClient(conn).Info(ictx, &wizrpc.InfoRequest{}, grpc.WaitForReady(true))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s at %s: info: %w", name, ep.Address, plain(err))
	}
	sctx, cancel := context.WithCancel(context.Background())
	stream, err := wizrpc.NewExecutorClient(conn).Execute(sctx)
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("%s at %s: open task stream: %w", name, ep.Address, plain(err))
	}
	c := &Client{
		name: name, id: hooks.ExecutorID, conn: conn, stream: stream, cancel: cancel, slots: int(info.Slots),
		events: make(chan *manager.TaskEvent, 1024), teardown: hooks.Teardown, diagnose: hooks.Diagnose,
		inflight: map[string]bool{}, done: make(chan struct{}),
	}
	if ep.Remote {
		if blobs == nil {
			cancel()
			conn.Close()
			return nil, fmt.Errorf("%s is remote but the Manager has no blob store to send from", name)
		}
		c.remote = newRemote(c, blobs)
		go c.remote.send(sctx)
	}
	go c.recv()
	return c, nil
}

// Attach asks the executor for the tasks a killed Manager had sent it, by
// ID; call it first, before anything is submitted. Each ends with one
// EventFinished like a submitted task; one the executor does not hold ends
// at once with Unknown set (nothing ran; send it again).
func (c *Client) Attach(ids []string) error {
	c.mu.Lock()
	for _, id := range ids {
		c.inflight[id] = true
	}
	c.mu.Unlock()
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := c.stream.Send(&wizrpc.ExecuteRequest{Msg: &wizrpc.ExecuteRequest_Attach{Attach: &wizrpc.Attach{TaskIds: ids}}}); err != nil {
		c.mu.Lock()
		for _, id := range ids {
			delete(c.inflight, id)
		}
		c.mu.Unlock()
		return fmt.Errorf("attach to %s: %w", c.name, plain(err))
	}
	return nil
}

// Drop breaks the connection without closing the task stream, as a killed
// Manager does: an executor with an orphan timeout keeps the tasks for the
// next Attach. Events is closed; nothing is torn down. For tests.
func (c *Client) Drop() {
	c.cancel()
	c.conn.Close()
	go func() { // drain so recv can finish; ends when recv closes events
		for range c.events {
		}
	}()
}

// ExecutorID is what the backend's Provision named the executor; "" when
// it was not provisioned by a backend.
func (c *Client) ExecutorID() string { return c.id }

// Name implements manager.Executor.
func (c *Client) Name() string { return c.name }

// Slots implements manager.Executor.
func (c *Client) Slots() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slots
}

// Local implements manager.Executor: an executor that shares the Manager's
// blob store runs on its machine.
func (c *Client) Local() bool { return c.remote == nil }

// Resize implements manager.Executor.
func (c *Client) Resize(slots int) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := c.stream.Send(&wizrpc.ExecuteRequest{Msg: &wizrpc.ExecuteRequest_SetSlots{SetSlots: &wizrpc.SetSlots{Slots: int32(slots)}}}); err != nil {
		return fmt.Errorf("resize %s: %w", c.name, plain(err))
	}
	c.mu.Lock()
	c.slots = slots
	c.mu.Unlock()
	return nil
}

// Events implements manager.Executor.
func (c *Client) Events() <-chan *manager.TaskEvent { return c.events }

// Submit implements manager.Executor.
func (c *Client) Submit(t *manager.Task) error {
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return fmt.Errorf("%s is gone", c.name)
	default:
	}
	c.inflight[t.ID] = true
	c.mu.Unlock()
	task := &wizrpc.Task{
		Id: t.ID, RunId: t.RunID, Processor: t.Processor, Type: t.Type,
		Pack:       &wizrpc.PackRef{Name: t.Pack.Name, Version: t.Pack.Version, Path: t.Pack.Path, Sha256: t.Pack.SHA256},
		ConfigJson: t.Config, Inputs: t.Inputs, TimeoutNs: t.Timeout.Nanoseconds(), Kind: kind(t.Native),
		Env: t.Env, ExprEnv: t.ExprEnv, FileEnv: t.FileEnv, KeepTemp: t.KeepTemp, Secrets: t.Secrets, SecretFiles: t.SecretFiles,
		InlineMaxBytes: t.InlineMax, MaxOutputBytes: t.MaxOutput, MaxLogBytes: t.MaxLog,
		ReportProgram: t.ReportProgram, ReuseProgramSha256: t.ReuseProgram,
	}
	if c.remote != nil {
		// The pack and input blobs go first, off the run's goroutine.
		c.remote.enqueue(task)
		return nil
	}
	c.sendMu.Lock()
	c.held = append(c.held, task)
	c.sendMu.Unlock()
	return nil
}

// Flush implements manager.Batcher: it sends the tasks Submit held, back to
// back, so that gRPC writes them together and the executor reads them
// together.
func (c *Client) Flush() map[string]error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.flushLocked()
	f := c.failed
	c.failed = nil
	return f
}

func (c *Client) flushLocked() {
	for i, t := range c.held {
		c.held[i] = nil
		if err := c.stream.Send(&wizrpc.ExecuteRequest{Msg: &wizrpc.ExecuteRequest_Task{Task: t}}); err != nil {
			c.mu.Lock()
			delete(c.inflight, t.Id)
			c.mu.Unlock()
			if c.failed == nil {
				c.failed = map[string]error{}
			}
			c.failed[t.Id] = fmt.Errorf("send task: %w", plain(err))
		}
	}
	c.held = c.held[:0]
}

// finish ends a task the executor never got (its blobs could not be sent, or
// it was cancelled while queued) with one EventFinished.
func (c *Client) finish(id string, outcome manager.Outcome, msg string, started bool) {
	c.mu.Lock()
	_, ok := c.inflight[id]
	delete(c.inflight, id)
	c.mu.Unlock()
	if !ok {
		return // the receive loop ended and reported it
	}
	c.evMu.RLock()
	defer c.evMu.RUnlock()
	if !c.evClosed {
		c.events <- &manager.TaskEvent{TaskID: id, Kind: manager.EventFinished, Outcome: outcome, Message: msg, Started: started}
	}
}

func (c *Client) sendTask(t *wizrpc.Task) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.stream.Send(&wizrpc.ExecuteRequest{Msg: &wizrpc.ExecuteRequest_Task{Task: t}})
}

// Cancel implements manager.Executor.
func (c *Client) Cancel(taskID, reason string) error {
	if c.remote != nil && c.remote.cancelQueued(taskID, reason) {
		return nil
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.flushLocked() // a held task goes out before its cancel
	return c.stream.Send(&wizrpc.ExecuteRequest{Msg: &wizrpc.ExecuteRequest_Cancel{Cancel: &wizrpc.CancelRequest{TaskId: taskID, Reason: reason}}})
}

// recv turns stream events into task events. When the stream breaks, every
// task still in flight ends Failed with a reason naming the executor.
func (c *Client) recv() {
	defer func() {
		c.evMu.Lock()
		c.evClosed = true
		close(c.events)
		c.evMu.Unlock()
	}()
	var cause error
	for {
		ev, err := c.stream.Recv()
		if err != nil {
			if err != io.EOF {
				cause = err
			}
			break
		}
		out := &manager.TaskEvent{TaskID: ev.TaskId}
		switch e := ev.Event.(type) {
		case *wizrpc.ExecuteEvent_Started:
			out.Kind = manager.EventStarted
		case *wizrpc.ExecuteEvent_Log:
			out.Kind, out.Stream, out.Data = manager.EventLog, e.Log.Stream, e.Log.Data
		case *wizrpc.ExecuteEvent_Warning:
			out.Kind, out.Message = manager.EventWarning, e.Warning.Message
		case *wizrpc.ExecuteEvent_Output:
			out.Kind, out.Name, out.Output = manager.EventOutput, e.Output.Name, e.Output.Data
			if c.remote != nil {
				c.remote.fetch(ev.TaskId, e.Output)
			}
		case *wizrpc.ExecuteEvent_Metrics:
			out.Kind, out.Metrics = manager.EventMetrics, e.Metrics
		case *wizrpc.ExecuteEvent_Finished:
			out.Kind, out.Message, out.Code, out.Started = manager.EventFinished, e.Finished.Error, int(e.Finished.ExitCode), e.Finished.Started
			out.Metrics = e.Finished.Metrics
			out.Program, out.Reused, out.Unknown = e.Finished.ProgramSha256, e.Finished.Reused, e.Finished.Unknown
			if len(e.Finished.Outputs) > 0 {
				out.Outputs = make(map[string]*wizpb.Data, len(e.Finished.Outputs))
				for _, o := range e.Finished.Outputs {
					out.Outputs[o.Name] = o.Data
					if c.remote != nil {
						c.remote.fetch(ev.TaskId, o)
					}
				}
			}
			switch e.Finished.Outcome {
			case wizrpc.Outcome_OUTCOME_SUCCEEDED:
				out.Outcome = manager.OutcomeSucceeded
			case wizrpc.Outcome_OUTCOME_CANCELLED:
				out.Outcome = manager.OutcomeCancelled
			default:
				out.Outcome = manager.OutcomeFailed
			}
			if c.remote != nil {
				if err := c.remote.fetchErr(ev.TaskId); err != nil && out.Outcome == manager.OutcomeSucceeded {
					out.Outcome, out.Message = manager.OutcomeFailed, err.Error()
				}
			}
			c.mu.Lock()
			delete(c.inflight, ev.TaskId)
			c.mu.Unlock()
		default:
			continue
		}
		c.events <- out
	}
	c.mu.Lock()
	close(c.done)
	lost := c.inflight
	c.inflight = map[string]bool{}
	c.mu.Unlock()
	msg := fmt.Sprintf("%s went away mid-task", c.name)
	if cause != nil && !errors.Is(cause, context.Canceled) {
		msg = fmt.Sprintf("%s went away mid-task: %v", c.name, plain(cause))
	}
	if len(lost) > 0 && c.diagnose != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if why := c.diagnose(ctx); why != "" {
			msg += ": " + why
		}
		cancel()
	}
	for id := range lost {
		c.events <- &manager.TaskEvent{TaskID: id, Kind: manager.EventFinished, Outcome: manager.OutcomeFailed, Message: msg, Started: true, Lost: true}
	}
}

// Close implements manager.Executor: it ends the stream (the executor cancels
// what it still runs), tears the executor down and drains its events.
func (c *Client) Close(ctx context.Context) error {
	_ = c.stream.CloseSend()
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
	c.cancel()
	var err error
	if c.teardown != nil {
		err = c.teardown(ctx)
	}
	c.conn.Close()
	go func() { // drain so recv can finish; ends when recv closes events
		for range c.events {
		}
	}()
	return err
}

func kind(native bool) wizrpc.TypeKind {
	if native {
		return wizrpc.TypeKind_TYPE_KIND_NATIVE
	}
	return wizrpc.TypeKind_TYPE_KIND_DATA
}

// plain strips gRPC's wrapper from an error.
func plain(err error) error {
	if s, ok := status.FromError(err); ok {
		return errors.New(s.Message())
	}
	return err
}
