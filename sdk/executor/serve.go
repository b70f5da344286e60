package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
)

// Serve serves the backend as a go-plugin plugin and returns when the host ends
// it. Call it from main.
func Serve(info Info, b Backend) {
	if info.Name == "" || info.Version == "" {
		fmt.Fprintln(os.Stderr, "wiz executor backend: Info needs a Name and a Version")
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			sdk.ProtocolVersion: {sdk.BackendPluginName: &backendPlugin{info: info, b: b}},
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       info.Name,
			Level:      hclog.LevelFromString(os.Getenv("WIZ_LOG_LEVEL")),
			JSONFormat: true,
			Output:     os.Stderr,
		}),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(sdk.MaxMessageSize), grpc.MaxSendMsgSize(sdk.MaxMessageSize))
			return grpc.NewServer(opts...)
		},
	})
}

// PluginSet is the go-plugin plugin set that serves b, as Serve does: for
// test harnesses that serve a backend in-process (executortest).
func PluginSet(info Info, b Backend) plugin.PluginSet {
	return plugin.PluginSet{sdk.BackendPluginName: &backendPlugin{info: info, b: b}}
}

type backendPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	info Info
	b    Backend
}

func (bp *backendPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	wizrpc.RegisterExecutorBackendServer(s, NewServer(bp.info, bp.b))
	return nil
}

func (bp *backendPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("the executor SDK serves backends; hosts use their own client")
}

// NewServer adapts a Backend to the wire protocol. Serve uses it; tests can
// register it on an in-process gRPC server.
func NewServer(info Info, b Backend) wizrpc.ExecutorBackendServer {
	return &backendServer{info: info, b: b}
}

type backendServer struct {
	wizrpc.UnimplementedExecutorBackendServer
	info Info
	b    Backend
}

func (s *backendServer) Describe(context.Context, *wizrpc.BackendDescribeRequest) (*wizrpc.BackendDescribeResponse, error) {
	_, validates := s.b.(SettingsValidator)
	return &wizrpc.BackendDescribeResponse{Name: s.info.Name, Version: s.info.Version, ProtocolVersion: sdk.ProtocolVersion, ValidatesSettings: validates}, nil
}

func (s *backendServer) ValidateSettings(_ context.Context, req *wizrpc.ValidateSettingsRequest) (_ *wizrpc.ValidateSettingsResponse, err error) {
	resp := &wizrpc.ValidateSettingsResponse{}
	v, ok := s.b.(SettingsValidator)
	if !ok {
		return resp, nil
	}
	settings := map[string]any{}
	if len(req.ConfigJson) > 0 {
		if err := json.Unmarshal(req.ConfigJson, &settings); err != nil {
			return nil, fmt.Errorf("executor backend %s: settings are not a JSON object: %w", s.info.Name, err)
		}
	}
	defer func() {
		if r := recover(); r != nil {
			resp.Diagnostics = append(resp.Diagnostics, &wizrpc.Diagnostic{Message: fmt.Sprintf("executor backend %s panicked while validating its settings: %v", s.info.Name, r)})
			err = nil
		}
	}()
	for _, d := range v.ValidateSettings(settings) {
		resp.Diagnostics = append(resp.Diagnostics, &wizrpc.Diagnostic{Path: d.Path, Message: d.Message})
	}
	return resp, nil
}

func (s *backendServer) Provision(ctx context.Context, req *wizrpc.ProvisionRequest) (_ *wizrpc.ProvisionResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("executor backend %s panicked in Provision: %v", s.info.Name, r)
		}
	}()
	resp, err := s.b.Provision(ctx, &ProvisionRequest{
		RunID: req.RunId, WizBinary: req.WizBinary, Config: req.ConfigJson,
		Slots: int(req.Slots), BlobDir: req.BlobDir, LogLevel: req.LogLevel, CacheDir: req.CacheDir, TaskDir: req.TaskDir,
		OrphanTimeout: time.Duration(req.OrphanTimeoutMs) * time.Millisecond,
	})
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, fmt.Errorf("executor backend %s returned no executor and no error from Provision", s.info.Name)
	}
	return &wizrpc.ProvisionResponse{ExecutorId: resp.ExecutorID, Endpoint: endpointPB(resp.Endpoint), Remote: resp.Remote}, nil
}

func (s *backendServer) Diagnose(ctx context.Context, req *wizrpc.DiagnoseRequest) (_ *wizrpc.DiagnoseResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("executor backend %s panicked in Diagnose: %v", s.info.Name, r)
		}
	}()
	d, ok := s.b.(Diagnoser)
	if !ok {
		return &wizrpc.DiagnoseResponse{}, nil
	}
	resp, err := d.Diagnose(ctx, &DiagnoseRequest{ExecutorID: req.ExecutorId})
	if err != nil || resp == nil {
		return &wizrpc.DiagnoseResponse{}, err
	}
	return &wizrpc.DiagnoseResponse{Reason: resp.Reason}, nil
}

func (s *backendServer) Teardown(ctx context.Context, req *wizrpc.TeardownRequest) (_ *wizrpc.TeardownResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("executor backend %s panicked in Teardown: %v", s.info.Name, r)
		}
	}()
	if _, err := s.b.Teardown(ctx, &TeardownRequest{ExecutorID: req.ExecutorId}); err != nil {
		return nil, err
	}
	return &wizrpc.TeardownResponse{}, nil
}

func (s *backendServer) Adopt(ctx context.Context, req *wizrpc.AdoptRequest) (_ *wizrpc.AdoptResponse, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("executor backend %s panicked in Adopt: %v", s.info.Name, r)
		}
	}()
	a, ok := s.b.(Adopter)
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "executor backend %s cannot adopt executors", s.info.Name)
	}
	resp, err := a.Adopt(ctx, &AdoptRequest{ExecutorID: req.ExecutorId, RunID: req.RunId, Config: req.ConfigJson})
	if errors.Is(err, ErrGone) {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, fmt.Errorf("executor backend %s returned no executor and no error from Adopt", s.info.Name)
	}
	return &wizrpc.AdoptResponse{Endpoint: endpointPB(resp.Endpoint), Remote: resp.Remote}, nil
}

func endpointPB(e Endpoint) *wizrpc.Endpoint {
	return &wizrpc.Endpoint{Address: e.Address, CaCertPem: e.CACertPEM, ServerName: e.ServerName, Token: e.Token}
}
