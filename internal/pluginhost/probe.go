package pluginhost

import (
	"context"
	"encoding/hex"
	"fmt"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
)

// Probed is what a plugin binary says about itself.
type Probed struct {
	Kind    string // sdk.PackPluginName or sdk.BackendPluginName
	Pack    *wizrpc.DescribeResponse
	Backend *wizrpc.BackendDescribeResponse
}

// Probe starts a plugin binary of unknown kind, reads its description through
// the handshake and stops it. A binary that is not a wiz plugin, or speaks
// another protocol version, gets an error saying which.
// ProbeStartTimeout bounds how long Probe waits for a binary to answer the
// plugin handshake: a wiz plugin answers in milliseconds, and a program that
// is not one may never answer.
var ProbeStartTimeout = 10 * time.Second

func Probe(ctx context.Context, path, sha string, logger hclog.Logger) (*Probed, error) {
	sum, err := hex.DecodeString(sha)
	if err != nil {
		return nil, fmt.Errorf("probe %s: bad sha256 %q", path, sha)
	}
	// One client can dispense either kind; the services the binary registers
	// tell which it is.
	client, cmd := newClient(path, plugin.PluginSet{sdk.PackPluginName: &packPlugin{}, sdk.BackendPluginName: &backendPlugin{}}, sum, logger, ProbeStartTimeout)
	defer client.Kill()
	rpcClient, err := client.Client()
	if err != nil {
		// What it started (a shell's children holding its output) goes too,
		// or killing it would wait for them.
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		return nil, launchError(path, path, sha, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	raw, err := rpcClient.Dispense(sdk.PackPluginName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	desc, err := raw.(wizrpc.ProcessorPackClient).Describe(ctx, &wizrpc.DescribeRequest{})
	if err == nil {
		return &Probed{Kind: sdk.PackPluginName, Pack: desc}, nil
	}
	if status.Code(err) != codes.Unimplemented {
		return nil, fmt.Errorf("%s: describe: %w", path, grpcMessage(err))
	}
	raw, err = rpcClient.Dispense(sdk.BackendPluginName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	bdesc, err := raw.(wizrpc.ExecutorBackendClient).Describe(ctx, &wizrpc.BackendDescribeRequest{})
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			return nil, fmt.Errorf("%s answers the wiz plugin handshake but serves neither a processor pack nor an executor backend", path)
		}
		return nil, fmt.Errorf("%s: describe: %w", path, grpcMessage(err))
	}
	return &Probed{Kind: sdk.BackendPluginName, Backend: bdesc}, nil
}

// DescribeJSON returns the plugin's description as protojson, the form kept in
// manifests and caches.
func (p *Probed) DescribeJSON() ([]byte, error) {
	if p.Pack != nil {
		return protojson.Marshal(p.Pack)
	}
	return protojson.Marshal(p.Backend)
}
