package executor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/executor"
)

// localBackend is a minimal backend. A real one would start `wiz executor`
// (here it only pretends) and wait until it accepts connections.
type localBackend struct {
	mu      sync.Mutex
	running map[string]bool
}

func (b *localBackend) Provision(ctx context.Context, req *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running == nil {
		b.running = map[string]bool{}
	}
	id := "local-" + req.RunID
	b.running[id] = true
	return &executor.ProvisionResponse{
		ExecutorID: id,
		Endpoint:   executor.Endpoint{Address: "127.0.0.1:7443", ServerName: "wiz-executor", Token: "secret"},
	}, nil
}

func (b *localBackend) Teardown(ctx context.Context, req *executor.TeardownRequest) (*executor.TeardownResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.running, req.ExecutorID) // unknown IDs are not an error
	return &executor.TeardownResponse{}, nil
}

// Diagnose implements executor.Diagnoser, which is optional: it says why an
// executor is gone, for the error of the task that was lost with it.
func (b *localBackend) Diagnose(ctx context.Context, req *executor.DiagnoseRequest) (*executor.DiagnoseResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running[req.ExecutorID] {
		return &executor.DiagnoseResponse{Reason: req.ExecutorID + " was torn down"}, nil
	}
	return &executor.DiagnoseResponse{}, nil // nothing known
}

// A backend's main serves it; wiz starts the binary as a plugin.
func ExampleServe() {
	executor.Serve(executor.Info{Name: "local", Version: "0.1.0"}, &localBackend{})
}

// dialBackend serves b on an in-process gRPC connection, as the plugin would,
// and returns a client of it and a function that stops both.
func dialBackend(info executor.Info, b executor.Backend) (wizrpc.ExecutorBackendClient, func(), error) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	wizrpc.RegisterExecutorBackendServer(srv, executor.NewServer(info, b))
	go srv.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		return nil, nil, err
	}
	return wizrpc.NewExecutorBackendClient(conn), func() { conn.Close(); srv.Stop() }, nil
}

// NewServer puts a backend on a gRPC server; here an in-process one, to call
// the backend the way wiz does.
func ExampleNewServer() {
	c, stop, err := dialBackend(executor.Info{Name: "local", Version: "0.1.0"}, &localBackend{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()

	d, err := c.Describe(ctx, &wizrpc.BackendDescribeRequest{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s %s (protocol %d)\n", d.Name, d.Version, d.ProtocolVersion)

	p, err := c.Provision(ctx, &wizrpc.ProvisionRequest{RunId: "run1", Slots: 4})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("executor %s at %s\n", p.ExecutorId, p.Endpoint.Address)

	if _, err := c.Teardown(ctx, &wizrpc.TeardownRequest{ExecutorId: p.ExecutorId}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("torn down")
	// Output:
	// local 0.1.0 (protocol 1)
	// executor local-run1 at 127.0.0.1:7443
	// torn down
}

// A backend that knows its settings checks them when a pipeline is applied
// (it implements SettingsValidator); CheckSettings does it from the names of
// the settings and the backend's own parser.
func ExampleCheckSettings() {
	parse := func(raw []byte) error {
		var s struct {
			Namespace string `json:"namespace"`
			Replicas  int    `json:"replicas"`
		}
		return json.Unmarshal(raw, &s)
	}
	for _, d := range executor.CheckSettings(map[string]any{"namespace": "ci", "replicaz": 2, "replicas": "two"}, []string{"namespace", "replicas"}, parse) {
		fmt.Printf("%v: %s\n", d.Path, d.Message)
	}
	// Output:
	// [replicas]: json: cannot unmarshal string into Go struct field .replicas of type int
	// [replicaz]: unknown setting "replicaz" (valid: namespace, replicas)
}

// podBackend's executors outlive it (they are pods): it implements Adopter,
// so that a restarted Manager collects the tasks they still run.
type podBackend struct{ localBackend }

// Adopt takes over a pod an earlier process of the backend made: it would
// renew the pod's lease and read its address and token from the cluster.
func (b *podBackend) Adopt(ctx context.Context, req *executor.AdoptRequest) (*executor.AdoptResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.running[req.ExecutorID] {
		return nil, fmt.Errorf("adopt %s: %w", req.ExecutorID, executor.ErrGone)
	}
	return &executor.AdoptResponse{
		Endpoint: executor.Endpoint{Address: "10.0.0.7:7443", ServerName: "wiz-executor", Token: "secret"},
		Remote:   true,
	}, nil
}

// A restarted Manager adopts the executors of the runs it continues; an
// executor that is gone is NotFound, and its tasks run again.
func ExampleAdopter() {
	b := &podBackend{localBackend{running: map[string]bool{"pod-1": true}}}
	c, stop, err := dialBackend(executor.Info{Name: "pods", Version: "0.1.0"}, b)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	a, err := c.Adopt(ctx, &wizrpc.AdoptRequest{ExecutorId: "pod-1", RunId: "run1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("adopted, at", a.Endpoint.Address)
	_, err = c.Adopt(ctx, &wizrpc.AdoptRequest{ExecutorId: "pod-2", RunId: "run1"})
	fmt.Println(status.Code(err))
	// Output:
	// adopted, at 10.0.0.7:7443
	// NotFound
}
