package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
	"github.com/wiz-run/wiz/sdk/blob"
)

// Serve serves the pack as a go-plugin plugin on stdin/stdout and returns when
// the host ends it. Call it from main. A pack with an invalid definition (no
// name, a type with neither or both of Processor and Native, duplicate type
// names) is reported on stderr and the process exits with status 1.
func Serve(p *Pack) {
	if err := p.check(); err != nil {
		fmt.Fprintf(os.Stderr, "wiz pack: %v\n", err)
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			sdk.ProtocolVersion: {sdk.PackPluginName: &packPlugin{pack: p}},
		},
		Logger: Logger(),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(sdk.MaxMessageSize), grpc.MaxSendMsgSize(sdk.MaxMessageSize))
			return grpc.NewServer(opts...)
		},
	})
}

// Logger returns the logger a pack logs with: what it logs at or above the
// level the user chose (wiz --log-level) reaches wiz executor's log and, as
// stream "plugin", the logs of the runs whose tasks the pack is running at
// that moment. For output that belongs to one task, use the Emitter's Log.
func Logger() hclog.Logger {
	loggerOnce.Do(func() {
		level := hclog.LevelFromString(os.Getenv("WIZ_LOG_LEVEL"))
		il := hclog.NewInterceptLogger(&hclog.LoggerOptions{Level: level, JSONFormat: true, Output: os.Stderr})
		// Lines also go to the running tasks on their own streams, so they
		// arrive with the task's other events, before it finishes.
		il.RegisterSink(hclog.NewSinkAdapter(&hclog.LoggerOptions{Level: level, Output: running, DisableTime: true}))
		logger = il
	})
	return logger
}

var (
	loggerOnce sync.Once
	logger     hclog.Logger
	running    = &runningTasks{emitters: map[*streamEmitter]bool{}}
)

// runningTasks are the tasks the pack is processing; Write sends a log line
// to each of them.
type runningTasks struct {
	mu       sync.Mutex
	emitters map[*streamEmitter]bool
}

func (r *runningTasks) add(e *streamEmitter) {
	r.mu.Lock()
	r.emitters[e] = true
	r.mu.Unlock()
}

func (r *runningTasks) remove(e *streamEmitter) {
	r.mu.Lock()
	delete(r.emitters, e)
	r.mu.Unlock()
}

func (r *runningTasks) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for e := range r.emitters {
		e.Log("plugin", append([]byte(nil), p...))
	}
	return len(p), nil
}

func (p *Pack) check() error {
	if p.Name == "" || p.Version == "" {
		return fmt.Errorf("pack needs a Name and a Version")
	}
	seen := map[string]bool{}
	for _, t := range p.Types {
		if t.Name == "" {
			return fmt.Errorf("pack %s: a type has no Name", p.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("pack %s: type %s is registered twice", p.Name, t.Name)
		}
		seen[t.Name] = true
		if (t.Processor == nil) == (t.Native == nil) {
			return fmt.Errorf("pack %s: type %s must set exactly one of Processor and Native", p.Name, t.Name)
		}
	}
	return nil
}

func (p *Pack) lookup(name string) (*Type, bool) {
	for i := range p.Types {
		if p.Types[i].Name == name {
			return &p.Types[i], true
		}
	}
	return nil, false
}

// PluginSet is the go-plugin plugin set that serves p, as Serve does: for
// hosts and test harnesses that serve a pack in-process (processortest).
func PluginSet(p *Pack) plugin.PluginSet {
	return plugin.PluginSet{sdk.PackPluginName: &packPlugin{pack: p}}
}

// packPlugin is the plugin side of the go-plugin plugin: it only serves.
type packPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	pack *Pack
}

func (pp *packPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	wizrpc.RegisterProcessorPackServer(s, &packServer{pack: pp.pack})
	return nil
}

func (pp *packPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("the pack SDK serves packs; hosts use their own client")
}

// packServer adapts a Pack to the wire protocol.
type packServer struct {
	wizrpc.UnimplementedProcessorPackServer
	pack *Pack
}

// Describe implements wizrpc.ProcessorPackServer.
func (s *packServer) Describe(context.Context, *wizrpc.DescribeRequest) (*wizrpc.DescribeResponse, error) {
	return Describe(s.pack)
}

// Describe returns the wire description of a pack: its name, version and
// processor types with their config fields. Hosts and tests use it.
func Describe(p *Pack) (*wizrpc.DescribeResponse, error) {
	resp := &wizrpc.DescribeResponse{Name: p.Name, Version: p.Version, ProtocolVersion: sdk.ProtocolVersion}
	for _, t := range p.Types {
		ts := &wizrpc.TypeSpec{Name: t.Name, Doc: t.Doc, Kind: wizrpc.TypeKind_TYPE_KIND_DATA,
			Validates: t.Validate != nil, DeclaresInputs: t.Inputs != nil, DeclaresOutputs: t.Outputs != nil, Outputs: t.Outputs}
		if t.Native != nil {
			ts.Kind = wizrpc.TypeKind_TYPE_KIND_NATIVE
		}
		for _, in := range t.Inputs {
			ts.Inputs = append(ts.Inputs, &wizrpc.InputSpec{Name: in.Name, Required: in.Required, Doc: in.Doc})
		}
		for _, f := range t.Fields {
			fs := &wizrpc.FieldSpec{Name: f.Name, Type: f.Type, Required: f.Required, Doc: f.Doc}
			if f.Default != nil {
				b, err := json.Marshal(f.Default)
				if err != nil {
					return nil, fmt.Errorf("type %s field %s: default: %w", t.Name, f.Name, err)
				}
				fs.DefaultJson = string(b)
			}
			ts.Fields = append(ts.Fields, fs)
		}
		resp.Types = append(resp.Types, ts)
	}
	sort.Slice(resp.Types, func(i, j int) bool { return resp.Types[i].Name < resp.Types[j].Name })
	return resp, nil
}

// config decodes a config and fills in the type's defaults.
func (t *Type) config(raw []byte) (map[string]any, error) {
	var cfg map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return nil, fmt.Errorf("config of %s is not a JSON object: %w", t.Name, err)
		}
	}
	if cfg == nil {
		cfg = map[string]any{}
	}
	for _, f := range t.Fields {
		if _, ok := cfg[f.Name]; !ok && f.Default != nil {
			cfg[f.Name] = f.Default
		}
	}
	return cfg, nil
}

// Plan implements wizrpc.ProcessorPackServer.
func (s *packServer) Plan(ctx context.Context, req *wizrpc.PlanRequest) (*wizrpc.PlanResponse, error) {
	t, ok := s.pack.lookup(req.Type)
	if !ok || t.Native == nil {
		return &wizrpc.PlanResponse{Error: fmt.Sprintf("pack %s has no native type %q", s.pack.Name, req.Type)}, nil
	}
	cfg, err := t.config(req.ConfigJson)
	if err != nil {
		return &wizrpc.PlanResponse{Error: err.Error()}, nil
	}
	plan, err := safePlan(ctx, t.Native, &PlanRequest{Type: req.Type, Config: cfg})
	if err != nil {
		return &wizrpc.PlanResponse{Error: err.Error()}, nil
	}
	out := &wizrpc.Plan{
		Argv: plan.Argv, Env: plan.Env, Dir: plan.Dir, StdinInput: plan.Stdin,
		StdoutOutput: plan.Stdout, InheritEnv: plan.InheritEnv,
	}
	for _, o := range plan.Outputs {
		out.Outputs = append(out.Outputs, &wizrpc.PlanOutput{Name: o.Name, Path: o.Path})
	}
	return &wizrpc.PlanResponse{Plan: out}, nil
}

// Process implements wizrpc.ProcessorPackServer.
func (s *packServer) Process(req *wizrpc.ProcessRequest, stream wizrpc.ProcessorPack_ProcessServer) error {
	em := &streamEmitter{stream: stream, blobDir: req.BlobDir, inlineMax: req.InlineMaxBytes, maxOutput: req.MaxOutputBytes}
	t, ok := s.pack.lookup(req.Type)
	if !ok || t.Processor == nil {
		return em.fail(fmt.Errorf("pack %s has no data processor type %q", s.pack.Name, req.Type))
	}
	cfg, err := t.config(req.ConfigJson)
	if err != nil {
		return em.fail(err)
	}
	in := make(map[string]*Data, len(req.Inputs))
	for name, d := range req.Inputs {
		in[name] = FromProto(d, req.BlobDir)
	}
	running.add(em)
	defer running.remove(em)
	if err := safeProcess(stream.Context(), t.Processor, &Request{Type: req.Type, Config: cfg, Inputs: in}, em); err != nil {
		return em.fail(err)
	}
	return nil
}

// safeProcess calls Process and turns a panic into an error, so that one bad
// task does not take the pack's other tasks down with it.
func safeProcess(ctx context.Context, p Processor, req *Request, em Emitter) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked: %v", req.Type, r)
		}
	}()
	return p.Process(ctx, req, em)
}

// safePlan calls Plan and turns a panic into an error.
// ValidateConfig implements wizrpc.ProcessorPackServer.
func (s *packServer) ValidateConfig(_ context.Context, req *wizrpc.ValidateConfigRequest) (*wizrpc.ValidateConfigResponse, error) {
	t, ok := s.pack.lookup(req.Type)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pack %s has no type %q", s.pack.Name, req.Type)
	}
	cfg, err := t.config(req.ConfigJson)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp := &wizrpc.ValidateConfigResponse{}
	for _, d := range safeValidate(t, cfg) {
		resp.Diagnostics = append(resp.Diagnostics, &wizrpc.Diagnostic{Path: d.Path, Message: d.Message})
	}
	return resp, nil
}

// safeValidate runs t's Validate; a panic is a diagnostic of its own.
func safeValidate(t *Type, cfg map[string]any) (ds []Diagnostic) {
	if t.Validate == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			ds = append(ds, Diagnostic{Message: fmt.Sprintf("%s panicked while validating its config: %v", t.Name, r)})
		}
	}()
	return t.Validate(cfg)
}

func safePlan(ctx context.Context, n Native, req *PlanRequest) (plan *Plan, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked while planning: %v", req.Type, r)
		}
	}()
	return n.Plan(ctx, req)
}

type streamEmitter struct {
	mu        sync.Mutex
	stream    wizrpc.ProcessorPack_ProcessServer
	blobDir   string
	inlineMax int64 // 0: blob.DefaultInlineMax
	maxOutput int64 // 0: no limit
	store     *blob.Store
}

// blobs opens the task's blob store once.
func (e *streamEmitter) blobs() (*blob.Store, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.store != nil {
		return e.store, nil
	}
	if e.blobDir == "" {
		return nil, errNoBlobDir
	}
	s, err := blob.Open(e.blobDir)
	if err != nil {
		return nil, err
	}
	e.store = s
	return s, nil
}

func (e *streamEmitter) maxOutputBytes() int64 { return e.maxOutput }

func (e *streamEmitter) newSpill() (*blob.Spill, error) {
	s, err := e.blobs()
	if err != nil {
		return nil, err
	}
	return s.NewSpill(e.inlineMax, e.maxOutput), nil
}

func (e *streamEmitter) send(ev *wizrpc.ProcessEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stream.Send(ev)
}

func (e *streamEmitter) fail(err error) error {
	return e.send(&wizrpc.ProcessEvent{Event: &wizrpc.ProcessEvent_Error{Error: err.Error()}})
}

func (e *streamEmitter) Log(stream string, p []byte) {
	_ = e.send(&wizrpc.ProcessEvent{Event: &wizrpc.ProcessEvent_Log{Log: &wizrpc.LogLine{Stream: stream, Data: p}}})
}

func (e *streamEmitter) Warn(msg string) {
	_ = e.send(&wizrpc.ProcessEvent{Event: &wizrpc.ProcessEvent_Warning{Warning: msg}})
}

// Output emits a value the processor made whole. It holds the value to the
// task's limits: over max_output_size is an error naming the output; inline
// bytes over inline_max_size are moved to a blob first.
func (e *streamEmitter) Output(name string, d *Data) error {
	if d == nil {
		d = &Data{}
	}
	if size := d.Size(); e.maxOutput > 0 && size > e.maxOutput {
		return fmt.Errorf("output %s is %s, %w: max_output_size is %s", name, blob.Size(size), blob.ErrTooLarge, blob.Size(e.maxOutput))
	}
	inlineMax := e.inlineMax
	if inlineMax <= 0 {
		inlineMax = blob.DefaultInlineMax
	}
	if int64(len(d.Bytes)) > inlineMax {
		s, err := e.blobs()
		if err != nil {
			return fmt.Errorf("output %s: %w", name, err)
		}
		digest, size, err := s.Put(bytes.NewReader(d.Bytes))
		if err != nil {
			return fmt.Errorf("output %s: %w", name, err)
		}
		d = &Data{ContentType: d.ContentType, Metadata: d.Metadata,
			Files: append([]File{{Digest: digest, Size: size, Name: name}}, d.Files...)}
	}
	return e.send(&wizrpc.ProcessEvent{Event: &wizrpc.ProcessEvent_Output{Output: &wizrpc.NamedData{Name: name, Data: ToProto(d)}}})
}

// FromProto converts wire Wiz Data to the SDK's Data, resolving file paths in
// the blob store at blobDir.
func FromProto(d *wizpb.Data, blobDir string) *Data {
	if d == nil {
		return &Data{}
	}
	out := &Data{Bytes: d.Inline, ContentType: d.ContentType, Metadata: d.Metadata, Directory: d.Directory}
	for _, f := range d.Files {
		out.Files = append(out.Files, File{Digest: f.Digest, Size: f.Size, Name: f.Name, Path: blob.Path(blobDir, f.Digest)})
	}
	return out
}

// ToProto converts the SDK's Data to wire Wiz Data.
func ToProto(d *Data) *wizpb.Data {
	if d == nil {
		return &wizpb.Data{}
	}
	out := &wizpb.Data{Inline: d.Bytes, ContentType: d.ContentType, Metadata: d.Metadata, Directory: d.Directory}
	for _, f := range d.Files {
		out.Files = append(out.Files, &wizpb.FileRef{Digest: f.Digest, Size: f.Size, Name: f.Name})
	}
	return out
}
