package pluginhost

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
)

// Backend is a running executor backend plugin.
type Backend struct {
	name string
	proc *proc
	rpc  wizrpc.ExecutorBackendClient
}

// LaunchBackend starts an executor backend plugin, verifying its checksum.
func LaunchBackend(cfg Config) (*Backend, error) {
	sum, err := hex.DecodeString(cfg.SHA256)
	if err != nil || len(sum) != 32 {
		return nil, fmt.Errorf("launch executor backend %s: bad sha256 %q", cfg.Name, cfg.SHA256)
	}
	raw, pr, err := launch(cfg, sum, plugin.PluginSet{sdk.BackendPluginName: &backendPlugin{}}, sdk.BackendPluginName)
	if err != nil {
		return nil, err
	}
	return &Backend{name: cfg.Name, proc: pr, rpc: raw.(wizrpc.ExecutorBackendClient)}, nil
}

// Describe asks the backend for its name and version.
func (b *Backend) Describe(ctx context.Context) (*wizrpc.BackendDescribeResponse, error) {
	ctx, cancel, d := withDeadline(ctx, CallTimeout)
	defer cancel()
	resp, err := b.rpc.Describe(ctx, &wizrpc.BackendDescribeRequest{})
	if err != nil {
		return nil, b.callError(ctx, d, "describe", err)
	}
	return resp, nil
}

// Provision starts an executor.
func (b *Backend) Provision(ctx context.Context, req *wizrpc.ProvisionRequest) (*wizrpc.ProvisionResponse, error) {
	ctx, cancel, d := withDeadline(ctx, ProvisionTimeout)
	defer cancel()
	resp, err := b.rpc.Provision(ctx, req)
	if err != nil {
		return nil, b.callError(ctx, d, "provision", err)
	}
	return resp, nil
}

// Adopt takes over an executor an earlier process of the backend
// provisioned. An error says why not: the executor no longer exists, the
// backend cannot adopt, or the call failed; its tasks then run again.
func (b *Backend) Adopt(ctx context.Context, req *wizrpc.AdoptRequest) (*wizrpc.AdoptResponse, error) {
	ctx, cancel, d := withDeadline(ctx, ProvisionTimeout)
	defer cancel()
	resp, err := b.rpc.Adopt(ctx, req)
	switch status.Code(err) {
	case codes.OK:
		return resp, nil
	case codes.NotFound, codes.Unimplemented:
		return nil, fmt.Errorf("executor backend %s: adopt %s: %s", b.name, req.ExecutorId, status.Convert(err).Message())
	}
	return nil, b.callError(ctx, d, "adopt", err)
}

// Teardown stops an executor.
func (b *Backend) Teardown(ctx context.Context, id string) error {
	ctx, cancel, d := withDeadline(ctx, TeardownTimeout)
	defer cancel()
	if _, err := b.rpc.Teardown(ctx, &wizrpc.TeardownRequest{ExecutorId: id}); err != nil {
		return b.callError(ctx, d, "teardown", err)
	}
	return nil
}

// Diagnose asks the backend why an executor is gone; "" when it does not know.
func (b *Backend) Diagnose(ctx context.Context, id string) string {
	ctx, cancel, _ := withDeadline(ctx, CallTimeout)
	defer cancel()
	resp, err := b.rpc.Diagnose(ctx, &wizrpc.DiagnoseRequest{ExecutorId: id})
	if err != nil {
		return ""
	}
	return resp.Reason
}

// ValidateSettings has the backend check a pipeline's settings for it. A
// backend built before settings checks existed takes any: no diagnostics.
func (b *Backend) ValidateSettings(ctx context.Context, configJSON []byte) ([]*wizrpc.Diagnostic, error) {
	ctx, cancel, d := withDeadline(ctx, CallTimeout)
	defer cancel()
	resp, err := b.rpc.ValidateSettings(ctx, &wizrpc.ValidateSettingsRequest{ConfigJson: configJSON})
	if status.Code(err) == codes.Unimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, b.callError(ctx, d, "validate settings", err)
	}
	return resp.Diagnostics, nil
}

// Kill stops the plugin process and what it started, and reaps it.
func (b *Backend) Kill() { b.proc.kill() }

// Exited reports whether the plugin process has exited.
func (b *Backend) Exited() bool { return b.proc.client.Exited() }

func (b *Backend) callError(ctx context.Context, d time.Duration, op string, err error) error {
	return b.proc.callError(ctx, d, "executor backend "+b.name, op, err)
}

type backendPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (backendPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the host does not serve executor backends")
}

func (backendPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return wizrpc.NewExecutorBackendClient(c), nil
}
