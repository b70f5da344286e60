// Package plugins finds the installed wiz plugins — the bundled ones next to
// the wiz binary and those installed with `wiz plugin install` under
// $WIZ_HOME/plugins/<name>/<version>/ — and serves them to the Manager:
// processor types as a manager.Catalog (several versions side by side, chosen
// by semver constraint) and executor backends as manager.Backends.
package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/internal/executorclient"
	"github.com/wiz-run/wiz/internal/pluginhost"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk"
	"github.com/wiz-run/wiz/sdk/blob"
)

// Prefixes of bundled plugin binaries.
const (
	PackPrefix    = "wiz-processors-"
	BackendPrefix = "wiz-executor-"
)

// Kinds of plugins, as written in manifests.
const (
	KindPack    = "processor-pack"
	KindBackend = "executor-backend"
)

// SourceBundled is the Source of plugins found next to the wiz binary.
const SourceBundled = "bundled"

// Plugin is one installed plugin binary.
type Plugin struct {
	Kind            string          `json:"kind"`
	Name            string          `json:"name"`
	Version         string          `json:"version"`
	ProtocolVersion int             `json:"protocol_version"`
	Types           []string        `json:"types,omitempty"`
	SHA256          string          `json:"sha256"`
	Binary          string          `json:"binary"`
	Source          string          `json:"source"`
	Installed       time.Time       `json:"installed"`
	Describe        json.RawMessage `json:"describe,omitempty"`

	Path string                   `json:"-"`
	Desc *wizrpc.DescribeResponse `json:"-"`
	ver  *semver.Version
}

// Ref returns the pack reference tasks carry.
func (p *Plugin) Ref() manager.PackRef {
	return manager.PackRef{Name: p.Name, Version: p.Version, Path: p.Path, SHA256: p.SHA256}
}

// Registry is the set of installed plugins.
type Registry struct {
	bundledDir string
	home       string
	wizBinary  string
	logLevel   string
	log        hclog.Logger

	once     sync.Once
	loadErr  error
	all      []*Plugin
	packs    map[string][]*Plugin // by name, newest first
	backends map[string][]*Plugin // by name, newest first

	// Running executor backend plugins, by binary digest: one process serves
	// every run's executors until Close, so that a daemon does not start and
	// checksum a backend binary per run.
	liveMu sync.Mutex
	live   map[string]*pluginhost.Backend
	warm   sync.WaitGroup // Prewarm's launches, waited for by Close

	// Pack processes started to check configs at apply (ValidateConfig),
	// by binary digest, kept until Close.
	packsMu   sync.Mutex
	livePacks map[string]*pluginhost.Pack
}

var (
	_ manager.Catalog   = (*Registry)(nil)
	_ manager.Backends  = (*Registry)(nil)
	_ manager.Prewarmer = (*Registry)(nil)
)

// Config configures a Registry.
type Config struct {
	// BundledDir holds the bundled plugins (the wiz binary's directory).
	BundledDir string
	// Home is the wiz home: installed plugins and caches live under it.
	Home string
	// WizBinary is the `wiz` binary backends start as the executor.
	WizBinary string
	LogLevel  string
	Logger    hclog.Logger
}

// New returns a Registry; plugins are found and described on first use.
func New(cfg Config) *Registry {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Registry{bundledDir: cfg.BundledDir, home: cfg.Home, wizBinary: cfg.WizBinary, logLevel: cfg.LogLevel, log: cfg.Logger}
}

func (r *Registry) pluginsDir() string { return filepath.Join(r.home, "plugins") }
func (r *Registry) cacheFile() string  { return filepath.Join(r.home, "cache", "plugins.json") }

func (r *Registry) load() error {
	r.once.Do(func() { r.loadErr = r.scan() })
	return r.loadErr
}

// cacheEntry remembers a bundled binary's digest and description, keyed by
// its path, size and modification time.
type cacheEntry struct {
	Size     int64           `json:"size"`
	ModTime  int64           `json:"mtime"`
	SHA256   string          `json:"sha256"`
	Describe json.RawMessage `json:"describe,omitempty"`
}

func (r *Registry) scan() error {
	r.packs = map[string][]*Plugin{}
	r.backends = map[string][]*Plugin{}
	if err := r.scanBundled(); err != nil {
		return err
	}
	if err := r.scanInstalled(); err != nil {
		return err
	}
	for _, m := range []map[string][]*Plugin{r.packs, r.backends} {
		for _, ps := range m {
			sort.SliceStable(ps, func(i, j int) bool { return ps[i].ver.GreaterThan(ps[j].ver) })
		}
	}
	return nil
}

func (r *Registry) scanBundled() error {
	cache := map[string]*cacheEntry{}
	if b, err := os.ReadFile(r.cacheFile()); err == nil {
		_ = json.Unmarshal(b, &cache)
	}
	dirty := false
	ents, err := os.ReadDir(r.bundledDir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(r.bundledDir, name)
		isPack, isBackend := strings.HasPrefix(name, PackPrefix), strings.HasPrefix(name, BackendPrefix)
		if !isPack && !isBackend {
			continue
		}
		ce, changed, err := r.describeBundled(path, cache[path], isPack)
		if err != nil {
			r.log.Warn("skipping bundled plugin", "path", path, "error", err)
			continue
		}
		if changed {
			cache[path] = ce
			dirty = true
		}
		p := &Plugin{SHA256: ce.SHA256, Path: path, Binary: name, Source: SourceBundled, ProtocolVersion: sdk.ProtocolVersion, Describe: ce.Describe}
		p.Kind = KindBackend
		if isPack {
			p.Kind = KindPack
		}
		if err := r.add(p); err != nil {
			r.log.Warn("skipping bundled plugin", "path", path, "error", err)
		}
	}
	if dirty {
		if b, err := json.MarshalIndent(cache, "", "  "); err == nil {
			_ = writeFileAtomic(r.cacheFile(), b, 0o644)
		}
	}
	return nil
}

// describeBundled returns a bundled binary's digest and, for a pack, its
// description: from the cache when the binary is unchanged, else by starting it.
// go-plugin verifies the digest at every launch, so a stale cache entry is
// refused, never trusted.
func (r *Registry) describeBundled(path string, ce *cacheEntry, isPack bool) (*cacheEntry, bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, err
	}
	if ce != nil && ce.Size == st.Size() && ce.ModTime == st.ModTime().UnixNano() && ce.SHA256 != "" && (!isPack || len(ce.Describe) > 0) {
		return ce, false, nil
	}
	sum, err := pluginhost.FileSHA256(path)
	if err != nil {
		return nil, false, err
	}
	out := &cacheEntry{Size: st.Size(), ModTime: st.ModTime().UnixNano(), SHA256: sum}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	probed, err := pluginhost.Probe(ctx, path, sum, r.log)
	if err != nil {
		return nil, false, err
	}
	if (probed.Kind == sdk.PackPluginName) != isPack {
		return nil, false, fmt.Errorf("%s is named like a %s but is not one", path, map[bool]string{true: "processor pack", false: "executor backend"}[isPack])
	}
	if out.Describe, err = probed.DescribeJSON(); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

func (r *Registry) scanInstalled() error {
	manifests, _ := filepath.Glob(filepath.Join(r.pluginsDir(), "*", "*", "manifest.json"))
	for _, mf := range manifests {
		b, err := os.ReadFile(mf)
		if err != nil {
			return fmt.Errorf("read plugin manifest: %w", err)
		}
		p := &Plugin{}
		if err := json.Unmarshal(b, p); err != nil {
			r.log.Warn("skipping plugin with a bad manifest", "manifest", mf, "error", err)
			continue
		}
		p.Path = filepath.Join(filepath.Dir(mf), p.Binary)
		if err := r.add(p); err != nil {
			r.log.Warn("skipping installed plugin", "manifest", mf, "error", err)
		}
	}
	return nil
}

// add decodes a plugin's description and files it by kind and name.
func (r *Registry) add(p *Plugin) error {
	if p.Kind == KindPack {
		p.Desc = &wizrpc.DescribeResponse{}
		if err := protojson.Unmarshal(p.Describe, p.Desc); err != nil {
			return fmt.Errorf("description: %w", err)
		}
		p.Name, p.Version, p.ProtocolVersion = p.Desc.Name, p.Desc.Version, int(p.Desc.ProtocolVersion)
		p.Types = p.Types[:0]
		for _, t := range p.Desc.Types {
			p.Types = append(p.Types, p.Name+"/"+t.Name)
		}
	} else {
		d := &wizrpc.BackendDescribeResponse{}
		if err := protojson.Unmarshal(p.Describe, d); err != nil {
			return fmt.Errorf("description: %w", err)
		}
		p.Name, p.Version, p.ProtocolVersion = d.Name, d.Version, int(d.ProtocolVersion)
	}
	if p.Version == "" {
		p.Version = "0.0.0"
	}
	v, err := semver.NewVersion(p.Version)
	if err != nil {
		return fmt.Errorf("plugin %s version %q is not a semantic version: %w", p.Name, p.Version, err)
	}
	p.ver = v
	r.all = append(r.all, p)
	if p.Kind == KindPack {
		r.packs[p.Name] = append(r.packs[p.Name], p)
	} else {
		r.backends[p.Name] = append(r.backends[p.Name], p)
	}
	return nil
}

// All lists every plugin, by kind, name and newest version first.
func (r *Registry) All() ([]*Plugin, error) {
	if err := r.load(); err != nil {
		return nil, err
	}
	out := append([]*Plugin(nil), r.all...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Kind != b.Kind {
			return a.Kind > b.Kind
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.ver.GreaterThan(b.ver)
	})
	return out, nil
}

// choose picks the newest version of a plugin matching constraint ("" = any).
func choose(name string, ps []*Plugin, constraint, what string) (*Plugin, error) {
	if constraint == "" {
		return ps[0], nil
	}
	c, err := semver.NewConstraint(constraint)
	if err != nil {
		return nil, fmt.Errorf("version constraint %q of %s: %v (write e.g. ^1.2, ~1.2.3, >=1.0 <2)", constraint, what, err)
	}
	var have []string
	for _, p := range ps {
		if c.Check(p.ver) {
			return p, nil
		}
		have = append(have, p.Version)
	}
	return nil, fmt.Errorf("no installed version of %s matches %s (installed: %s); install one with `wiz plugin install`", what, constraint, strings.Join(have, ", "))
}

// resolve finds the pack and type spec for "PACK/TYPE" under a constraint.
func (r *Registry) resolve(typ, constraint string) (*Plugin, *wizrpc.TypeSpec, error) {
	if err := r.load(); err != nil {
		return nil, nil, err
	}
	packName, typeName, ok := strings.Cut(typ, "/")
	ps := r.packs[packName]
	if !ok || len(ps) == 0 {
		return nil, nil, fmt.Errorf("unknown processor type %q (installed: %s)", typ, strings.Join(r.Types(), ", "))
	}
	p, err := choose(packName, ps, constraint, "pack "+packName)
	if err != nil {
		return nil, nil, err
	}
	for _, t := range p.Desc.Types {
		if t.Name == typeName {
			return p, t, nil
		}
	}
	return nil, nil, fmt.Errorf("pack %s %s has no processor type %q (it has: %s)", p.Name, p.Version, typeName, strings.Join(p.Types, ", "))
}

// Lookup implements pipeline.Catalog. typ may carry a version constraint,
// "acme/resize@^1.2"; the spec is that of the version the run would use.
func (r *Registry) Lookup(typ string) (*pipeline.TypeSpec, bool) {
	t, constraint, _ := strings.Cut(typ, "@")
	_, ts, err := r.resolve(t, constraint)
	if err != nil {
		return nil, false
	}
	spec := &pipeline.TypeSpec{Type: t, Native: ts.Kind == wizrpc.TypeKind_TYPE_KIND_NATIVE, Validates: ts.Validates, DeclaresInputs: ts.DeclaresInputs,
		DeclaresOutputs: ts.DeclaresOutputs, Outputs: ts.Outputs}
	for _, in := range ts.Inputs {
		spec.Inputs = append(spec.Inputs, pipeline.InputSpec{Name: in.Name, Required: in.Required})
	}
	for _, f := range ts.Fields {
		spec.Fields = append(spec.Fields, pipeline.FieldSpec{Name: f.Name, Type: f.Type, Required: f.Required, Doc: f.Doc})
	}
	return spec, true
}

// Types implements pipeline.Catalog: every type any installed version serves.
func (r *Registry) Types() []string {
	if r.load() != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, ps := range r.packs {
		for _, p := range ps {
			for _, t := range p.Types {
				if !seen[t] {
					seen[t] = true
					out = append(out, t)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// Pack implements manager.Catalog.
func (r *Registry) Pack(typ, constraint string) (manager.PackRef, bool, error) {
	p, ts, err := r.resolve(typ, constraint)
	if err != nil {
		return manager.PackRef{}, false, err
	}
	return p.Ref(), ts.Kind == wizrpc.TypeKind_TYPE_KIND_NATIVE, nil
}

// Backend returns the newest installed executor backend of that name.
func (r *Registry) Backend(name string) (*Plugin, error) {
	if err := r.load(); err != nil {
		return nil, err
	}
	ps := r.backends[name]
	if len(ps) == 0 {
		var names []string
		for n := range r.backends {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("no executor backend %q is installed (installed: %s)", name, strings.Join(names, ", "))
	}
	return ps[0], nil
}

// BackendRef implements manager.BackendRefs: the binary of the executor
// backend a run uses.
func (r *Registry) BackendRef(name string) (manager.PackRef, error) {
	p, err := r.Backend(name)
	if err != nil {
		return manager.PackRef{}, err
	}
	return p.Ref(), nil
}

// Backends implements pipeline.BackendCatalog: the installed executor
// backends' names, sorted.
func (r *Registry) Backends() []string {
	if r.load() != nil {
		return nil
	}
	names := make([]string, 0, len(r.backends))
	for n := range r.backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ValidateSettings implements pipeline.SettingsValidator: the executor
// backend checks the settings of a pipeline's `executor:`. Its process is
// the one runs use (kept until Close). A backend built before the SDK had
// settings checks takes any settings.
func (r *Registry) ValidateSettings(backend string, settings map[string]any) ([]pipeline.Diagnostic, error) {
	bp, err := r.Backend(backend)
	if err != nil {
		return nil, err
	}
	b, err := r.liveBackend(bp, backend)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(settings)
	if err != nil {
		return nil, fmt.Errorf("encode settings: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), validateTimeout)
	defer cancel()
	ds, err := b.ValidateSettings(ctx, raw)
	if err != nil {
		return nil, err
	}
	return diagnostics(ds), nil
}

// diagnostics converts a plugin's diagnostics for pipeline validation.
func diagnostics(ds []*wizrpc.Diagnostic) []pipeline.Diagnostic {
	out := make([]pipeline.Diagnostic, len(ds))
	for i, d := range ds {
		out[i] = pipeline.Diagnostic{Path: d.Path, Message: d.Message}
	}
	return out
}

// liveBackend returns the running plugin process of backend bp, starting it
// (and checking its digest) when there is none or it has exited.
func (r *Registry) liveBackend(bp *Plugin, name string) (*pluginhost.Backend, error) {
	r.liveMu.Lock()
	defer r.liveMu.Unlock()
	if b := r.live[bp.SHA256]; b != nil {
		if !b.Exited() {
			return b, nil
		}
		b.Kill() // reap it
	}
	b, err := pluginhost.LaunchBackend(pluginhost.Config{Name: bp.Name + "@" + bp.Version, Path: bp.Path, SHA256: bp.SHA256, Logger: r.log.Named(name),
		VerifiedFile: filepath.Join(r.home, "cache", "verified.json")})
	if err != nil {
		return nil, err
	}
	if r.live == nil {
		r.live = map[string]*pluginhost.Backend{}
	}
	r.live[bp.SHA256] = b
	return b, nil
}

// Prewarm starts the plugin of executor backend name in the background, so
// that a Provision soon after finds it running: its launch (its digest
// checked, its process started, the handshake) overlaps what the caller does
// meanwhile, such as opening the store and parsing the pipeline. A launch
// that fails is left for Provision to try again and report.
func (r *Registry) Prewarm(name string) {
	r.warm.Add(1)
	go func() {
		defer r.warm.Done()
		bp, err := r.Backend(name)
		if err != nil {
			return
		}
		if _, err := r.liveBackend(bp, name); err != nil {
			r.log.Debug("prewarm executor backend", "backend", name, "error", err)
		}
	}()
}

// Close stops the executor backend plugins the Registry started, and the
// packs it asked to check configs. Call it after every executor they
// provisioned is torn down.
func (r *Registry) Close() {
	r.warm.Wait()
	r.liveMu.Lock()
	for k, b := range r.live {
		b.Kill()
		delete(r.live, k)
	}
	r.liveMu.Unlock()
	r.packsMu.Lock()
	for k, p := range r.livePacks {
		p.Kill()
		delete(r.livePacks, k)
	}
	r.packsMu.Unlock()
}

// validateTimeout bounds a pack's config check at apply.
const validateTimeout = 10 * time.Second

// ValidateConfig implements pipeline.ConfigValidator: the pack that serves
// typ (which may carry a version constraint) checks config. The pack's
// process is started once and kept until Close.
func (r *Registry) ValidateConfig(typ string, config map[string]any) ([]pipeline.Diagnostic, error) {
	t, constraint, _ := strings.Cut(typ, "@")
	p, ts, err := r.resolve(t, constraint)
	if err != nil {
		return nil, err
	}
	if !ts.Validates {
		return nil, nil
	}
	b, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	r.packsMu.Lock()
	pack := r.livePacks[p.SHA256]
	if pack == nil || pack.Exited() {
		if pack != nil {
			pack.Kill() // reap it
		}
		pack, err = pluginhost.Launch(pluginhost.Config{Name: p.Name + "@" + p.Version, Path: p.Path, SHA256: p.SHA256,
			Logger: r.log.Named(p.Name), VerifiedFile: filepath.Join(r.home, "cache", "verified.json")})
		if err != nil {
			r.packsMu.Unlock()
			return nil, err
		}
		if r.livePacks == nil {
			r.livePacks = map[string]*pluginhost.Pack{}
		}
		r.livePacks[p.SHA256] = pack
	}
	r.packsMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), validateTimeout)
	defer cancel()
	ds, err := pack.ValidateConfig(ctx, ts.Name, b)
	if err != nil {
		return nil, err
	}
	return diagnostics(ds), nil
}

// Provision implements manager.Backends: it starts the backend plugin, asks
// it for an executor and connects to that executor.
func (r *Registry) Provision(ctx context.Context, req manager.ProvisionRequest) (manager.Executor, error) {
	b, err := r.backendFor(req.Backend)
	if err != nil {
		return nil, err
	}
	resp, err := b.Provision(ctx, &wizrpc.ProvisionRequest{
		RunId: req.RunID, WizBinary: r.wizBinary, Slots: int32(req.Slots), BlobDir: req.BlobDir, LogLevel: r.logLevel,
		CacheDir: req.CacheDir, TaskDir: req.TaskDir, ConfigJson: req.Config, OrphanTimeoutMs: req.OrphanTimeout.Milliseconds(),
	})
	if err != nil {
		return nil, err
	}
	return r.connect(ctx, b, req, resp.ExecutorId, resp.Endpoint, resp.Remote, nil)
}

// Adopt implements manager.Adopter: it asks the backend plugin to take over
// an executor a killed Manager provisioned, connects to it and attaches the
// tasks named by ids.
func (r *Registry) Adopt(ctx context.Context, req manager.ProvisionRequest, executorID string, ids []string) (manager.Executor, error) {
	b, err := r.backendFor(req.Backend)
	if err != nil {
		return nil, err
	}
	resp, err := b.Adopt(ctx, &wizrpc.AdoptRequest{ExecutorId: executorID, RunId: req.RunID, ConfigJson: req.Config})
	if err != nil {
		return nil, err
	}
	return r.connect(ctx, b, req, executorID, resp.Endpoint, resp.Remote, ids)
}

func (r *Registry) backendFor(name string) (*pluginhost.Backend, error) {
	bp, err := r.Backend(name)
	if err != nil {
		return nil, err
	}
	return r.liveBackend(bp, name)
}

// connect dials an executor of backend b; attach, when not nil, names the
// tasks of a killed Manager to take over first.
func (r *Registry) connect(ctx context.Context, b *pluginhost.Backend, req manager.ProvisionRequest, id string, ep *wizrpc.Endpoint, remote bool, attach []string) (manager.Executor, error) {
	teardown := func(ctx context.Context) error {
		return b.Teardown(ctx, id)
	}
	var blobs *blob.Store
	var err error
	if remote {
		if blobs, err = blob.Open(req.BlobDir); err != nil {
			_ = teardown(context.Background())
			return nil, err
		}
	}
	c, err := executorclient.Dial(ctx, fmt.Sprintf("%s executor %s", req.Backend, id), executorclient.Endpoint{
		Address: ep.GetAddress(), CACertPEM: ep.GetCaCertPem(), ServerName: ep.GetServerName(), Token: ep.GetToken(), Remote: remote,
	}, blobs, executorclient.Hooks{ExecutorID: id, Teardown: teardown, Diagnose: func(ctx context.Context) string { return b.Diagnose(ctx, id) }})
	if err != nil {
		_ = teardown(context.Background())
		return nil, err
	}
	if attach != nil {
		if err := c.Attach(attach); err != nil {
			_ = c.Close(context.Background())
			return nil, err
		}
	}
	return c, nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), mode); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
