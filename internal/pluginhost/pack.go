// Package pluginhost launches wiz plugins (processor packs and executor
// backends) with go-plugin and talks to them: the host side of sdk/processor and
// sdk/executor. `wiz executor` keeps packs warm across tasks; the Manager starts
// a pack briefly to read its description, and runs executor backends.
package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
)

// ErrPluginShutdown is returned for calls to a plugin whose process is gone.
var ErrPluginShutdown = errors.New("plugin process exited")

// Config says which pack binary to launch.
type Config struct {
	// Name names the pack in errors, e.g. "std@0.1.0".
	Name string
	// Path is the plugin binary.
	Path string
	// SHA256 is the expected hex digest of the binary; checked at launch.
	SHA256 string
	// Logger receives the plugin's logs.
	Logger hclog.Logger
	// VerifiedFile, when set, remembers binaries that passed their check,
	// so that one unchanged since is not hashed again (verified.go).
	VerifiedFile string
}

// Pack is a running pack plugin.
type Pack struct {
	name string
	proc *proc
	rpc  wizrpc.ProcessorPackClient
}

// Launch starts the pack plugin and connects to it. The checksum is verified
// by go-plugin's SecureConfig before the binary runs.
func Launch(cfg Config) (*Pack, error) {
	sum, err := hex.DecodeString(cfg.SHA256)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("launch pack %s: bad sha256 %q", cfg.Name, cfg.SHA256)
	}
	raw, pr, err := launch(cfg, sum, plugin.PluginSet{sdk.PackPluginName: &packPlugin{}}, sdk.PackPluginName)
	if err != nil {
		return nil, err
	}
	return &Pack{name: cfg.Name, proc: pr, rpc: raw.(wizrpc.ProcessorPackClient)}, nil
}

// launch starts a plugin and dispenses kind from it, checking its digest
// unless cfg.VerifiedFile says the binary passed before, unchanged since.
func launch(cfg Config, sum []byte, plugins plugin.PluginSet, kind string) (any, *proc, error) {
	id, ok, known := verifiedBefore(cfg.VerifiedFile, cfg.Path, cfg.SHA256)
	check := sum
	if known {
		check = nil
	}
	pr := newProc(cfg.Path, plugins, check, cfg.Logger)
	raw, err := dispense(pr, cfg.Name, cfg.Path, cfg.SHA256, kind)
	if err != nil {
		return nil, nil, err
	}
	if ok && !known {
		recordVerified(cfg.VerifiedFile, cfg.Path, cfg.SHA256, id)
	}
	return raw, pr, nil
}

// newProc makes a go-plugin client for a wiz plugin binary serving plugins.
// The process is put in its own process group and dies with its host. The
// binary's sha256 must be sum; nil: not checked.
func newProc(path string, plugins plugin.PluginSet, sum []byte, logger hclog.Logger) *proc {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), "WIZ_LOG_LEVEL="+levelName(logger))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var secure *plugin.SecureConfig
	if sum != nil {
		secure = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	stderr := &tailWriter{}
	client := plugin.NewClient(&plugin.ClientConfig{
		// connect bounds the handshake and the connection together.
		StartTimeout:     StartTimeout + time.Second,
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{sdk.ProtocolVersion: plugins},
		Cmd:              cmd,
		SecureConfig:     secure,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           logger,
		// The process's own stderr: before it serves, a crash's message.
		Stderr:     stderr,
		SyncStdout: io.Discard,
		// What the plugin's children write to stderr (a backend's `wiz
		// executor`, for one) reaches the host's log at the level it names.
		SyncStderr: logger.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true, ForceLevel: hclog.Debug}),
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(sdk.MaxMessageSize), grpc.MaxCallSendMsgSize(sdk.MaxMessageSize))},
	})
	return &proc{client: client, cmd: cmd, stderr: stderr}
}

// dispense starts the plugin process and returns its gRPC client for kind,
// turning go-plugin's errors into one line that says what is wrong.
func dispense(pr *proc, name, path, want, kind string) (any, error) {
	raw, err := pr.connect(StartTimeout, kind)
	var ke *kindError
	switch {
	case errors.As(err, &ke):
		pr.kill() // it serves: it stops gracefully
		return nil, fmt.Errorf("plugin %s (%s) is not a wiz %s plugin: %w", name, path, kindWord(kind), ke.err)
	case err != nil:
		// It did not start, or does not serve: it is killed with what it
		// started, which may hold its output open.
		pr.killGroup()
		pr.waitExit(2 * time.Second)
		pr.kill()
		return nil, launchError(name, path, want, err, pr.exitInfo())
	}
	return raw, nil
}

func kindWord(kind string) string {
	if kind == sdk.PackPluginName {
		return "processor pack"
	}
	return "executor backend"
}

func changedError(name, path, got, want string) error {
	return fmt.Errorf("plugin %s refused: %s changed after install (sha256 %s, expected %s); reinstall it with `wiz plugin install`", name, path, got, want)
}

// Verify checks, without running it, that the plugin binary cfg.Path still
// has the digest cfg.SHA256, as Launch would: for a caller about to use what
// the binary said before (a cached plan). With cfg.VerifiedFile, a binary
// unchanged since it last passed is not hashed again.
func Verify(cfg Config) error {
	id, ok, known := verifiedBefore(cfg.VerifiedFile, cfg.Path, cfg.SHA256)
	if known {
		return nil
	}
	got, err := FileSHA256(cfg.Path)
	if err != nil {
		return fmt.Errorf("check plugin %s: %w", cfg.Name, err)
	}
	if got != cfg.SHA256 {
		return changedError(cfg.Name, cfg.Path, got, cfg.SHA256)
	}
	if ok {
		recordVerified(cfg.VerifiedFile, cfg.Path, cfg.SHA256, id)
	}
	return nil
}

// launchError explains why a plugin did not start; exit says how its process
// ended ("" if it did not).
func launchError(name, path, want string, err error, exit string) error {
	msg := err.Error()
	who := fmt.Sprintf("plugin %s (%s)", name, path)
	if name == path {
		who = "plugin " + path
	}
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		got, herr := FileSHA256(path)
		if herr != nil {
			got = "unknown"
		}
		return changedError(name, path, got, want)
	case strings.Contains(strings.ToLower(msg), "incompatible api version"):
		return fmt.Errorf("plugin %s (%s) speaks another wiz plugin protocol than this wiz (protocol %d): %s; install a version built for this wiz", name, path, sdk.ProtocolVersion, msg)
	case errors.Is(err, errConnectTimeout):
		return fmt.Errorf("%s answered the wiz plugin handshake but did not serve within %s; it is stuck or not a working wiz plugin", who, StartTimeout)
	case errors.Is(err, errStartTimeout) || strings.Contains(msg, "timeout while waiting for plugin to start"):
		return fmt.Errorf("%s is not a wiz plugin (it did not answer the wiz plugin handshake in time)", path)
	case exit != "" && exit != "it exited with status 0" && !strings.Contains(msg, "magic cookie") &&
		(strings.Contains(msg, "Failed to read any lines") || strings.Contains(msg, "exited before we could connect")):
		// It wrote nothing on stdout and failed: a crash, not a stranger.
		return fmt.Errorf("%s failed at start: %s", who, exit)
	case strings.Contains(msg, "magic cookie") || strings.Contains(msg, "Unrecognized remote plugin message") ||
		strings.Contains(msg, "exec format error") || strings.Contains(msg, "exited before we could connect"):
		return fmt.Errorf("%s is not a wiz plugin (it did not answer the wiz plugin handshake)", path)
	}
	return fmt.Errorf("start plugin %s (%s): %w", name, path, err)
}

// Describe asks the pack for its types.
func (p *Pack) Describe(ctx context.Context) (*wizrpc.DescribeResponse, error) {
	ctx, cancel, d := withDeadline(ctx, CallTimeout)
	defer cancel()
	resp, err := p.rpc.Describe(ctx, &wizrpc.DescribeRequest{})
	if err != nil {
		return nil, p.callError(ctx, d, "describe", err)
	}
	return resp, nil
}

// Plan asks a native-program wrapper for its invocation plan. A config problem
// comes back as an error too.
func (p *Pack) Plan(ctx context.Context, typ string, configJSON []byte) (*wizrpc.Plan, error) {
	ctx, cancel, d := withDeadline(ctx, CallTimeout)
	defer cancel()
	resp, err := p.rpc.Plan(ctx, &wizrpc.PlanRequest{Type: typ, ConfigJson: configJSON})
	if err != nil {
		return nil, p.callError(ctx, d, "plan "+typ, err)
	}
	if resp.Error != "" {
		return nil, errors.New(resp.Error)
	}
	return resp.Plan, nil
}

// ValidateConfig has the pack check a config of typ (a type whose TypeSpec
// says validates).
func (p *Pack) ValidateConfig(ctx context.Context, typ string, configJSON []byte) ([]*wizrpc.Diagnostic, error) {
	ctx, cancel, d := withDeadline(ctx, CallTimeout)
	defer cancel()
	resp, err := p.rpc.ValidateConfig(ctx, &wizrpc.ValidateConfigRequest{Type: typ, ConfigJson: configJSON})
	if err != nil {
		return nil, p.callError(ctx, d, "validate the config of "+typ, err)
	}
	return resp.Diagnostics, nil
}

// Process runs a data processor and calls on for each event it emits. It
// returns an error when the pack could not be reached or died mid-task. It
// has no deadline of its own: the task's timeout bounds it.
func (p *Pack) Process(ctx context.Context, req *wizrpc.ProcessRequest, on func(*wizrpc.ProcessEvent)) error {
	stream, err := p.rpc.Process(ctx, req)
	if err != nil {
		return p.callError(ctx, 0, "process "+req.Type, err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return p.callError(ctx, 0, "process "+req.Type, err)
		}
		on(ev)
	}
}

// Exited reports whether the plugin process has exited.
func (p *Pack) Exited() bool { return p.proc.client.Exited() }

// ExitInfo says how the plugin process ended and what it last wrote to
// stderr; "" while it runs.
func (p *Pack) ExitInfo() string { return p.proc.exitInfo() }

// Kill stops the plugin process and what it started, and reaps it.
func (p *Pack) Kill() { p.proc.kill() }

func (p *Pack) callError(ctx context.Context, d time.Duration, op string, err error) error {
	return p.proc.callError(ctx, d, "pack "+p.name, op, err)
}

// packPlugin is the host side of the go-plugin plugin.
type packPlugin struct {
	plugin.NetRPCUnsupportedPlugin
}

func (packPlugin) GRPCServer(*plugin.GRPCBroker, *grpc.Server) error {
	return errors.New("the host does not serve packs")
}

func (packPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return wizrpc.NewProcessorPackClient(c), nil
}

func levelName(l hclog.Logger) string {
	return strings.ToLower(l.GetLevel().String())
}

// FileSHA256 returns the hex sha256 of a file.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// grpcMessage strips gRPC's "rpc error: code = … desc = " wrapper so that a
// plugin's own message reaches the user as one plain line.
func grpcMessage(err error) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.OK {
		return errors.New(s.Message())
	}
	return err
}
