// Command proto2 is a test plugin that answers wiz's handshake but speaks
// plugin protocol 2, to check that wiz refuses it with a clear error.
package main

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/wiz-run/wiz/sdk"
)

type fake struct{ plugin.NetRPCUnsupportedPlugin }

func (fake) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error { return nil }
func (fake) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	hs := sdk.Handshake
	hs.ProtocolVersion = 2
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  hs,
		VersionedPlugins: map[int]plugin.PluginSet{2: {sdk.PackPluginName: fake{}}},
		GRPCServer:       plugin.DefaultGRPCServer,
	})
}
