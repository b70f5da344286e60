// Package executortest runs an executor backend in a test the way wiz runs
// it: served through the SDK's real go-plugin gRPC shim, over an in-process
// connection, without building a binary.
package executortest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/executor"
)

// Backend is a backend served for one test.
type Backend struct {
	// Client is the wire client, as wiz holds it.
	Client wizrpc.ExecutorBackendClient
}

// Serve serves b for the test t; it stops when the test ends.
func Serve(t testing.TB, info executor.Info, b executor.Backend) *Backend {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, executor.PluginSet(info, b))
	t.Cleanup(func() { client.Close() })
	return &Backend{Client: wizrpc.NewExecutorBackendClient(client.Conn)}
}

// Describe returns what wiz sees of the backend.
func (b *Backend) Describe() (*wizrpc.BackendDescribeResponse, error) {
	return b.Client.Describe(context.Background(), &wizrpc.BackendDescribeRequest{})
}

// ValidateSettings returns the backend's diagnostics of a pipeline's
// settings, as wiz asks when the pipeline is applied.
func (b *Backend) ValidateSettings(settings map[string]any) ([]executor.Diagnostic, error) {
	raw, err := json.Marshal(settings)
	if err != nil {
		return nil, fmt.Errorf("encode settings: %w", err)
	}
	resp, err := b.Client.ValidateSettings(context.Background(), &wizrpc.ValidateSettingsRequest{ConfigJson: raw})
	if err != nil {
		return nil, err
	}
	var out []executor.Diagnostic
	for _, d := range resp.Diagnostics {
		out = append(out, executor.Diagnostic{Path: d.Path, Message: d.Message})
	}
	return out, nil
}

// Provision asks for an executor, as the Manager does at a run's start;
// req.WizBinary is the `wiz` binary the backend starts.
func (b *Backend) Provision(ctx context.Context, req *wizrpc.ProvisionRequest) (*wizrpc.ProvisionResponse, error) {
	return b.Client.Provision(ctx, req)
}

// Teardown stops the executor Provision started.
func (b *Backend) Teardown(ctx context.Context, executorID string) error {
	_, err := b.Client.Teardown(ctx, &wizrpc.TeardownRequest{ExecutorId: executorID})
	return err
}
