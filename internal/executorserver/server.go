// Package executorserver is `wiz executor`: the gRPC server that receives
// tasks from the Manager and runs them. It runs native programs itself, from
// invocation plans that packs return once per config, and runs data processors
// in pack plugins that it keeps warm across tasks.
package executorserver

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/local"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wiz-run/wiz/internal/pluginhost"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
	"github.com/wiz-run/wiz/sdk/blob"
)

// Config configures an executor.
type Config struct {
	// Listen is host:port (TCP, with TLS from CertFile and KeyFile) or
	// unix:///ABS/PATH: a unix socket on the Manager's machine, which needs
	// no TLS (gRPC's local credentials; the socket's directory keeps other
	// users out, and every call still carries the token).
	Listen   string
	CertFile string // TLS certificate; both empty: plaintext (tests only)
	KeyFile  string
	Token    string // bearer token every call must carry
	BlobDir  string
	WorkDir  string // where task working dirs are made
	CacheDir string // where plans are cached across runs; "": memory only
	TaskDir  string // where running tasks' process groups are recorded; "": nowhere
	Slots    int    // tasks at once; 0: number of CPUs
	// OrphanTimeout > 0: when a Manager's stream breaks (not when it is
	// closed), its tasks run on this long for a restarted Manager to
	// re-attach (executor.proto's Attach); then they are cancelled and Run
	// returns ErrOrphaned. 0: they are cancelled at once.
	OrphanTimeout time.Duration
	// ParentGone, when set, is closed when the process that started the
	// executor (its backend) has died. With an orphan timeout, an executor
	// that no Manager has connected to yet then exits at once: the Manager
	// that wanted it died before it could use it.
	ParentGone <-chan struct{}
	Version    string
	Logger     hclog.Logger
	// Ready is called with the listening address once the server accepts calls.
	Ready func(addr string)
}

// KillGrace is how long a cancelled task has between SIGTERM and SIGKILL.
var KillGrace = 5 * time.Second

// Server is a running executor.
type Server struct {
	wizrpc.UnimplementedExecutorServer

	cfg   Config
	log   hclog.Logger
	blobs *blob.Store
	slots *slotPool

	devNull *os.File  // stdin of native programs that read no input
	workers *workers  // goroutines of tasks and their output copies
	dirs    *taskDirs // native tasks' working directories
	progs   programs  // native programs' digests, for cached results

	mu       sync.Mutex
	packs    map[string]*packEntry // by sha256
	plans    map[string]*cachedPlan
	verified map[string]error    // pack digest → its check for the plan cache
	journals map[string]*os.File // task journals by run ID (recordGroup)

	base    context.Context // tasks' parent in orphan mode; ends with Run
	orphans orphans
}

type packEntry struct {
	ready chan struct{} // closed when pack, kinds and err are set
	pack  *pluginhost.Pack
	kinds map[string]wizrpc.TypeKind
	err   error
}

// Run serves until ctx is done, then cancels running tasks, stops pack plugins
// and returns.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Slots <= 0 {
		cfg.Slots = runtime.NumCPU()
	}
	if cfg.Token == "" {
		return fmt.Errorf("executor: no token; set WIZ_EXECUTOR_TOKEN")
	}
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "wiz-work-*")
		if err != nil {
			return fmt.Errorf("executor: work dir: %w", err)
		}
		defer os.RemoveAll(d)
		cfg.WorkDir = d
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return fmt.Errorf("executor: work dir %s: %w", cfg.WorkDir, err)
	}
	if cfg.BlobDir == "" {
		cfg.BlobDir = cfg.WorkDir + "/blobs"
	}
	blobs, err := blob.Open(cfg.BlobDir)
	if err != nil {
		return fmt.Errorf("executor: %w", err)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, blobs: blobs,
		slots: newSlotPool(cfg.Slots), workers: newWorkers(), dirs: &taskDirs{parent: cfg.WorkDir},
		packs: map[string]*packEntry{}, plans: map[string]*cachedPlan{}, verified: map[string]error{},
		orphans: orphans{expired: make(chan struct{})},
	}
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase() // before the workers are waited for (deferred earlier)
	s.base = base
	if cfg.OrphanTimeout > 0 {
		// A Manager killed before it connected leaves no stream to break:
		// the executor waits for one as long as for a re-attach, or until
		// its parent is gone.
		s.orphans.timer = time.AfterFunc(cfg.OrphanTimeout, s.expire)
		defer s.orphans.timer.Stop()
		if cfg.ParentGone != nil {
			go func() { // ends with Run (base) or when the parent is gone
				select {
				case <-cfg.ParentGone:
					s.parentGone()
				case <-base.Done():
				}
			}()
		}
	}
	defer s.stopPacks()
	defer s.closeJournals()
	if s.devNull, err = os.Open(os.DevNull); err != nil {
		return fmt.Errorf("executor: %w", err)
	}
	defer s.devNull.Close()
	defer s.dirs.close()    // once no task uses one
	defer s.workers.close() // after every Execute has returned; before devNull closes

	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(sdk.MaxMessageSize), grpc.MaxSendMsgSize(sdk.MaxMessageSize),
		grpc.UnaryInterceptor(s.authUnary), grpc.StreamInterceptor(s.authStream),
	}
	if strings.HasPrefix(cfg.Listen, "unix://") {
		opts = append(opts, grpc.Creds(local.NewCredentials()))
	} else if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("executor: load TLS key pair: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})))
	}
	gs := grpc.NewServer(opts...)
	wizrpc.RegisterExecutorServer(gs, s)
	network, address := "tcp", cfg.Listen
	if path, ok := strings.CutPrefix(cfg.Listen, "unix://"); ok {
		network, address = "unix", path
	}
	lis, err := net.Listen(network, address)
	if err != nil {
		return fmt.Errorf("executor: listen on %s: %w", cfg.Listen, err)
	}
	if network == "unix" {
		defer os.Remove(address)
	}
	errCh := make(chan error, 1)
	go func() { errCh <- gs.Serve(lis) }()
	if cfg.Ready != nil {
		if network == "unix" {
			cfg.Ready(cfg.Listen)
		} else {
			cfg.Ready(lis.Addr().String())
		}
	}
	s.log.Debug("executor listening", "address", lis.Addr().String(), "slots", cfg.Slots)
	select {
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(KillGrace + 2*time.Second):
			gs.Stop()
		}
		return nil
	case err := <-errCh:
		return fmt.Errorf("executor: serve: %w", err)
	case <-s.orphans.expired:
		gs.Stop() // no stream is open
		if s.orphans.done() {
			s.log.Debug("exiting: the Manager closed its stream and did not tear the executor down")
			return nil
		}
		return fmt.Errorf("executor: %w (%s); its tasks were cancelled", ErrOrphaned, cfg.OrphanTimeout)
	}
}

func (s *Server) checkToken(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return status.Error(codes.Unauthenticated, "no bearer token")
	}
	scheme, got, ok := strings.Cut(vals[0], " ") // RFC 7235: the scheme is case-insensitive
	got = strings.TrimLeft(got, " ")
	ok = ok && strings.EqualFold(scheme, "Bearer")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1 {
		return status.Error(codes.Unauthenticated, "wrong bearer token")
	}
	return nil
}

func (s *Server) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.checkToken(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := s.checkToken(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// Info implements wizrpc.ExecutorServer.
func (s *Server) Info(context.Context, *wizrpc.InfoRequest) (*wizrpc.InfoResponse, error) {
	return &wizrpc.InfoResponse{
		Version: s.cfg.Version, Slots: int32(s.cfg.Slots), Cpus: int32(runtime.NumCPU()),
		MemoryBytes: totalMemory(), BlobDir: s.cfg.BlobDir, ProtocolVersion: sdk.ProtocolVersion,
	}, nil
}

// Cancel implements wizrpc.ExecutorServer. Tasks are cancelled on their
// Execute stream; this unary form is not tied to a stream and is not needed by
// the Manager, so it says so.
func (s *Server) Cancel(context.Context, *wizrpc.CancelRequest) (*wizrpc.CancelResponse, error) {
	return nil, status.Error(codes.FailedPrecondition, "cancel tasks on the Execute stream that carried them")
}

// pack returns the warm pack plugin for ref, launching it when needed. A pack
// whose process exited is replaced by a fresh one.
func (s *Server) pack(ref *wizrpc.PackRef) (*packEntry, error) {
	if ref == nil {
		return nil, fmt.Errorf("task names no processor pack")
	}
	for {
		s.mu.Lock()
		e := s.packs[ref.Sha256]
		if e == nil {
			e = &packEntry{ready: make(chan struct{})}
			s.packs[ref.Sha256] = e
			s.mu.Unlock()
			e.pack, e.kinds, e.err = s.launch(ref)
			close(e.ready)
			if e.err != nil {
				s.mu.Lock()
				if s.packs[ref.Sha256] == e {
					delete(s.packs, ref.Sha256)
				}
				s.mu.Unlock()
			}
			return e, e.err
		}
		s.mu.Unlock()
		<-e.ready
		if e.err != nil {
			return nil, e.err
		}
		if !e.pack.Exited() {
			return e, nil
		}
		s.dropPack(ref, e.pack)
	}
}

func (s *Server) launch(ref *wizrpc.PackRef) (*pluginhost.Pack, map[string]wizrpc.TypeKind, error) {
	path := ref.Path
	if path == "" {
		var err error
		if path, err = s.packFromBlob(ref); err != nil {
			return nil, nil, err
		}
	}
	p, err := pluginhost.Launch(pluginhost.Config{
		Name: ref.Name + "@" + ref.Version, Path: path, SHA256: ref.Sha256, Logger: s.log.Named(ref.Name),
	})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	desc, err := p.Describe(ctx)
	if err != nil {
		p.Kill()
		return nil, nil, err
	}
	kinds := make(map[string]wizrpc.TypeKind, len(desc.Types))
	for _, t := range desc.Types {
		kinds[t.Name] = t.Kind
	}
	return p, kinds, nil
}

// dropPack forgets a pack that died so the next task starts a fresh one.
func (s *Server) dropPack(ref *wizrpc.PackRef, p *pluginhost.Pack) {
	s.mu.Lock()
	if e := s.packs[ref.Sha256]; e != nil && e.pack == p {
		delete(s.packs, ref.Sha256)
	}
	s.mu.Unlock()
	p.Kill()
}

func (s *Server) stopPacks() {
	s.mu.Lock()
	entries := s.packs
	s.packs = map[string]*packEntry{}
	s.mu.Unlock()
	for _, e := range entries {
		<-e.ready
		if e.pack != nil {
			e.pack.Kill()
		}
	}
}

func totalMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb int64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
		}
	}
	return kb * 1024
}
