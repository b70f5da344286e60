package pluginhost

import (
	"context"
	"encoding/hex"
	"fmt"

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
// the handshake and stops it. A binary that is not a wiz plugin, speaks
// another protocol version, or answers the handshake and then does not serve
// gets an error saying which, within StartTimeout plus CallTimeout; nothing
// it started is left running.
func Probe(ctx context.Context, path, sha string, logger hclog.Logger) (_ *Probed, err error) {
	sum, err := hex.DecodeString(sha)
	if err != nil {
		return nil, fmt.Errorf("probe %s: bad sha256 %q", path, sha)
	}
	// One client can dispense either kind; the services the binary registers
	// tell which it is.
	pr := newProc(path, plugin.PluginSet{sdk.PackPluginName: &packPlugin{}, sdk.BackendPluginName: &backendPlugin{}}, sum, logger)
	raw, err := dispense(pr, path, path, sha, sdk.PackPluginName)
	if err != nil {
		return nil, err
	}
	defer func() {
		// A plugin that answered stops gracefully (and removes its socket);
		// one that failed is killed at once: a stuck one would make a
		// graceful stop wait.
		if err != nil {
			pr.killGroup()
		}
		pr.kill()
	}()
	ctx, cancel, d := withDeadline(ctx, CallTimeout)
	defer cancel()
	desc, err := raw.(wizrpc.ProcessorPackClient).Describe(ctx, &wizrpc.DescribeRequest{})
	if err == nil {
		return &Probed{Kind: sdk.PackPluginName, Pack: desc}, nil
	}
	if status.Code(err) != codes.Unimplemented {
		return nil, pr.callError(ctx, d, "plugin "+path, "describe", err)
	}
	rpcClient, err := pr.client.Client()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
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
		return nil, pr.callError(ctx, d, "plugin "+path, "describe", err)
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
