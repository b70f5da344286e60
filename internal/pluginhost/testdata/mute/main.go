// Command mute is a test plugin that answers wiz's plugin handshake and then
// never serves, to check that every plugin call has a deadline. WIZ_TEST_MUTE
// picks how it is silent:
//
//   - "listen" (the default): it prints the handshake line for a socket it
//     listens on but never accepts from;
//   - "hang": it serves gRPC, but Describe never returns.
//
// Either way it first starts a child (sleep 323) that holds its output, so
// a test can check that nothing it started is left behind.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
)

type hangingPack struct {
	wizrpc.UnimplementedProcessorPackServer
}

func (hangingPack) Describe(ctx context.Context, _ *wizrpc.DescribeRequest) (*wizrpc.DescribeResponse, error) {
	<-ctx.Done()
	select {} // ignores even the caller giving up
}

type packPlugin struct{ plugin.NetRPCUnsupportedPlugin }

func (packPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	wizrpc.RegisterProcessorPackServer(s, hangingPack{})
	return nil
}

func (packPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, nil
}

func main() {
	child := exec.Command("sleep", "323")
	child.Stdout, child.Stderr = os.Stdout, os.Stderr
	if err := child.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "mute: start child:", err)
		os.Exit(1)
	}
	if os.Getenv("WIZ_TEST_MUTE") == "hang" {
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  sdk.Handshake,
			VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: {sdk.PackPluginName: packPlugin{}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
		return
	}
	dir, err := os.MkdirTemp("", "mute")
	if err != nil {
		fmt.Fprintln(os.Stderr, "mute:", err)
		os.Exit(1)
	}
	sock := filepath.Join(dir, "plugin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mute:", err)
		os.Exit(1)
	}
	defer l.Close()
	fmt.Printf("1|%d|unix|%s|grpc|\n", sdk.ProtocolVersion, sock)
	for {
		time.Sleep(time.Hour) // a timer, so the runtime sees no deadlock
	}
}
