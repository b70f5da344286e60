package executor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
	"github.com/wiz-run/wiz/sdk/executor"
)

// fakeBackend records requests and answers with what its funcs return.
type fakeBackend struct {
	mu        sync.Mutex
	provs     []*executor.ProvisionRequest
	teardowns []*executor.TeardownRequest
	provision func(context.Context, *executor.ProvisionRequest) (*executor.ProvisionResponse, error)
	teardown  func(context.Context, *executor.TeardownRequest) (*executor.TeardownResponse, error)
}

func (f *fakeBackend) Provision(ctx context.Context, req *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
	f.mu.Lock()
	f.provs = append(f.provs, req)
	f.mu.Unlock()
	return f.provision(ctx, req)
}

func (f *fakeBackend) Teardown(ctx context.Context, req *executor.TeardownRequest) (*executor.TeardownResponse, error) {
	f.mu.Lock()
	f.teardowns = append(f.teardowns, req)
	f.mu.Unlock()
	if f.teardown == nil {
		return &executor.TeardownResponse{}, nil
	}
	return f.teardown(ctx, req)
}

var info = executor.Info{Name: "fake", Version: "2.3.4"}

func dial(t *testing.T, b executor.Backend) wizrpc.ExecutorBackendClient {
	t.Helper()
	c, stop, err := dialBackend(info, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return c
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	c := dial(t, &fakeBackend{})
	got, err := c.Describe(context.Background(), &wizrpc.BackendDescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &wizrpc.BackendDescribeResponse{Name: "fake", Version: "2.3.4", ProtocolVersion: sdk.ProtocolVersion}
	if !proto.Equal(got, want) {
		t.Errorf("Describe = %v, want %v", got, want)
	}
}

func TestProvisionRoundTrip(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{provision: func(_ context.Context, req *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
		return &executor.ProvisionResponse{ExecutorID: "exec-" + req.RunID, Endpoint: executor.Endpoint{
			Address: "10.0.0.7:7443", CACertPEM: []byte("-----BEGIN CERTIFICATE-----\n"), ServerName: "wiz-exec", Token: "tok",
		}}, nil
	}}
	c := dial(t, b)
	got, err := c.Provision(context.Background(), &wizrpc.ProvisionRequest{
		RunId: "run1", WizBinary: "/usr/bin/wiz", ConfigJson: []byte(`{"image":"x"}`),
		Slots: 8, BlobDir: "/var/wiz/blobs", LogLevel: "debug", CacheDir: "/var/wiz/cache",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &wizrpc.ProvisionResponse{ExecutorId: "exec-run1", Endpoint: &wizrpc.Endpoint{
		Address: "10.0.0.7:7443", CaCertPem: []byte("-----BEGIN CERTIFICATE-----\n"), ServerName: "wiz-exec", Token: "tok",
	}}
	if !proto.Equal(got, want) {
		t.Errorf("Provision = %v, want %v", got, want)
	}
	wantReq := &executor.ProvisionRequest{
		RunID: "run1", WizBinary: "/usr/bin/wiz", Config: json.RawMessage(`{"image":"x"}`),
		Slots: 8, BlobDir: "/var/wiz/blobs", LogLevel: "debug", CacheDir: "/var/wiz/cache",
	}
	if len(b.provs) != 1 || !reflect.DeepEqual(b.provs[0], wantReq) {
		t.Errorf("backend got %+v, want %+v", b.provs, wantReq)
	}

	if _, err := c.Teardown(context.Background(), &wizrpc.TeardownRequest{ExecutorId: got.ExecutorId}); err != nil {
		t.Fatal(err)
	}
	if len(b.teardowns) != 1 || b.teardowns[0].ExecutorID != "exec-run1" {
		t.Errorf("backend teardowns %+v, want one of exec-run1", b.teardowns)
	}
}

// Errors from the backend reach the client with their message, and with their
// gRPC code when they carry one.
func TestErrorsReachClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		wantCode codes.Code
		wantMsg  string
	}{
		{"plain", errors.New(`provision executor: image "x" not found; push it first`), codes.Unknown, `provision executor: image "x" not found; push it first`},
		// gRPC turns context errors, even wrapped ones, into their codes.
		{"wrapped context error", fmt.Errorf("provision executor: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "provision executor: context deadline exceeded"},
		{"status", status.Error(codes.FailedPrecondition, "cluster unreachable"), codes.FailedPrecondition, "cluster unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, &fakeBackend{
				provision: func(context.Context, *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
					return nil, tt.err
				},
				teardown: func(context.Context, *executor.TeardownRequest) (*executor.TeardownResponse, error) {
					return nil, tt.err
				},
			})
			_, perr := c.Provision(context.Background(), &wizrpc.ProvisionRequest{RunId: "r"})
			_, terr := c.Teardown(context.Background(), &wizrpc.TeardownRequest{ExecutorId: "e"})
			for op, err := range map[string]error{"Provision": perr, "Teardown": terr} {
				s, _ := status.FromError(err)
				if err == nil || s.Code() != tt.wantCode || s.Message() != tt.wantMsg {
					t.Errorf("%s: %v, want code %v and message %q", op, err, tt.wantCode, tt.wantMsg)
				}
			}
		})
	}
}

// A client that gives up cancels the backend's context.
func TestProvisionCancelled(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	seen := make(chan error, 1)
	c := dial(t, &fakeBackend{provision: func(ctx context.Context, _ *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
		close(started)
		<-ctx.Done()
		seen <- ctx.Err()
		return nil, ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	_, err := c.Provision(ctx, &wizrpc.ProvisionRequest{RunId: "r"})
	if status.Code(err) != codes.Canceled {
		t.Errorf("Provision: %v, want Canceled", err)
	}
	select {
	case err := <-seen:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("backend's context ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the backend's context was not cancelled")
	}
}

// Provision may be called concurrently.
func TestProvisionConcurrent(t *testing.T) {
	t.Parallel()
	b := &fakeBackend{provision: func(_ context.Context, req *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
		return &executor.ProvisionResponse{ExecutorID: "e-" + req.RunID}, nil
	}}
	c := dial(t, b)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			run := fmt.Sprint(i)
			resp, err := c.Provision(context.Background(), &wizrpc.ProvisionRequest{RunId: run})
			if err != nil || resp.ExecutorId != "e-"+run {
				t.Errorf("Provision(%s) = %v, %v", run, resp, err)
			}
		})
	}
	wg.Wait()
	if len(b.provs) != 20 {
		t.Errorf("backend saw %d provisions, want 20", len(b.provs))
	}
}

// diagnosingBackend also implements executor.Diagnoser.
type diagnosingBackend struct{ fakeBackend }

func (d *diagnosingBackend) Diagnose(_ context.Context, req *executor.DiagnoseRequest) (*executor.DiagnoseResponse, error) {
	return &executor.DiagnoseResponse{Reason: "pod " + req.ExecutorID + " was OOMKilled"}, nil
}

// Diagnose reaches a backend that implements Diagnoser; others answer with
// no reason rather than an error.
func TestDiagnose(t *testing.T) {
	t.Parallel()
	got, err := dial(t, &diagnosingBackend{}).Diagnose(context.Background(), &wizrpc.DiagnoseRequest{ExecutorId: "wiz-1"})
	if err != nil || got.Reason != "pod wiz-1 was OOMKilled" {
		t.Errorf("Diagnose = %v, %v; want the backend's reason", got, err)
	}
	got, err = dial(t, &fakeBackend{}).Diagnose(context.Background(), &wizrpc.DiagnoseRequest{ExecutorId: "wiz-1"})
	if err != nil || got.Reason != "" {
		t.Errorf("Diagnose of a backend without it = %v, %v; want an empty reason", got, err)
	}
}
