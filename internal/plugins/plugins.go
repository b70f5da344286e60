// Package plugins finds the installed wiz plugins — the bundled ones next to
// the wiz binary — reads their descriptions (cached by the binary's digest)
// and serves them to the Manager: processor types as a manager.Catalog and
// executor backends as manager.Backends.
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

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/internal/executorclient"
	"github.com/wiz-run/wiz/internal/pluginhost"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// Prefixes of bundled plugin binaries.
const (
	PackPrefix    = "wiz-processors-"
	BackendPrefix = "wiz-executor-"
)

// Registry is the set of installed plugins.
type Registry struct {
	dirs      []string // where bundled plugins are looked for
	cacheFile string
	wizBinary string
	logLevel  string
	log       hclog.Logger

	once     sync.Once
	loadErr  error
	types    map[string]*entry // "std/exec"
	packs    []*Pack
	backends map[string]string // name → path
	sums     map[string]string // path → sha256, for backends
}

// Pack is one installed processor pack.
type Pack struct {
	Ref  manager.PackRef
	Desc *wizrpc.DescribeResponse
}

type entry struct {
	spec   *pipeline.TypeSpec
	pack   *Pack
	native bool
}

var (
	_ manager.Catalog  = (*Registry)(nil)
	_ manager.Backends = (*Registry)(nil)
)

// Config configures a Registry.
type Config struct {
	// BundledDir holds the bundled plugins (the wiz binary's directory).
	BundledDir string
	// Home is the wiz home; descriptions are cached under it.
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
	return &Registry{
		dirs: []string{cfg.BundledDir}, cacheFile: filepath.Join(cfg.Home, "cache", "plugins.json"),
		wizBinary: cfg.WizBinary, logLevel: cfg.LogLevel, log: cfg.Logger,
	}
}

// cacheEntry remembers a plugin binary's digest and description, keyed by its
// path, size and modification time.
type cacheEntry struct {
	Size     int64           `json:"size"`
	ModTime  int64           `json:"mtime"`
	SHA256   string          `json:"sha256"`
	Describe json.RawMessage `json:"describe,omitempty"`
}

func (r *Registry) load() error {
	r.once.Do(func() { r.loadErr = r.scan() })
	return r.loadErr
}

func (r *Registry) scan() error {
	r.types = map[string]*entry{}
	r.backends = map[string]string{}
	r.sums = map[string]string{}
	cache := map[string]*cacheEntry{}
	if b, err := os.ReadFile(r.cacheFile); err == nil {
		_ = json.Unmarshal(b, &cache)
	}
	dirty := false
	for _, dir := range r.dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			name := e.Name()
			path := filepath.Join(dir, name)
			switch {
			case strings.HasPrefix(name, BackendPrefix):
				ce, changed, err := digest(path, cache[path])
				if err != nil {
					r.log.Warn("skipping executor backend", "path", path, "error", err)
					continue
				}
				if changed {
					cache[path] = ce
					dirty = true
				}
				r.backends[strings.TrimPrefix(name, BackendPrefix)] = path
				r.sums[path] = ce.SHA256
			case strings.HasPrefix(name, PackPrefix):
				ce, changed, err := r.describe(path, cache[path])
				if err != nil {
					r.log.Warn("skipping processor pack", "path", path, "error", err)
					continue
				}
				if changed {
					cache[path] = ce
					dirty = true
				}
				desc := &wizrpc.DescribeResponse{}
				if err := protojson.Unmarshal(ce.Describe, desc); err != nil {
					return fmt.Errorf("plugin cache %s: %w", r.cacheFile, err)
				}
				r.add(&Pack{Ref: manager.PackRef{Name: desc.Name, Version: desc.Version, Path: path, SHA256: ce.SHA256}, Desc: desc})
			}
		}
	}
	if dirty {
		if b, err := json.MarshalIndent(cache, "", "  "); err == nil {
			_ = os.MkdirAll(filepath.Dir(r.cacheFile), 0o755)
			tmp := r.cacheFile + ".tmp"
			if os.WriteFile(tmp, b, 0o644) == nil {
				_ = os.Rename(tmp, r.cacheFile)
			}
		}
	}
	return nil
}

// digest returns a binary's sha256, from the cache when the binary's size and
// modification time are unchanged. go-plugin still verifies the digest at
// every launch, so a stale cache entry is refused, never trusted.
func digest(path string, ce *cacheEntry) (*cacheEntry, bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, err
	}
	if ce != nil && ce.Size == st.Size() && ce.ModTime == st.ModTime().UnixNano() && ce.SHA256 != "" {
		return ce, false, nil
	}
	sum, err := pluginhost.FileSHA256(path)
	if err != nil {
		return nil, false, err
	}
	return &cacheEntry{Size: st.Size(), ModTime: st.ModTime().UnixNano(), SHA256: sum}, true, nil
}

// describe returns a pack's digest and description, from the cache when the
// binary is unchanged, else by starting it.
func (r *Registry) describe(path string, ce *cacheEntry) (*cacheEntry, bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, false, err
	}
	if ce != nil && ce.Size == st.Size() && ce.ModTime == st.ModTime().UnixNano() && len(ce.Describe) > 0 {
		return ce, false, nil
	}
	sum, err := pluginhost.FileSHA256(path)
	if err != nil {
		return nil, false, err
	}
	p, err := pluginhost.Launch(pluginhost.Config{Name: filepath.Base(path), Path: path, SHA256: sum, Logger: r.log})
	if err != nil {
		return nil, false, err
	}
	defer p.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	desc, err := p.Describe(ctx)
	if err != nil {
		return nil, false, err
	}
	b, err := protojson.Marshal(desc)
	if err != nil {
		return nil, false, err
	}
	return &cacheEntry{Size: st.Size(), ModTime: st.ModTime().UnixNano(), SHA256: sum, Describe: b}, true, nil
}

func (r *Registry) add(p *Pack) {
	r.packs = append(r.packs, p)
	for _, t := range p.Desc.Types {
		spec := &pipeline.TypeSpec{Type: p.Desc.Name + "/" + t.Name}
		for _, f := range t.Fields {
			spec.Fields = append(spec.Fields, pipeline.FieldSpec{Name: f.Name, Type: f.Type, Required: f.Required, Doc: f.Doc})
		}
		r.types[spec.Type] = &entry{spec: spec, pack: p, native: t.Kind == wizrpc.TypeKind_TYPE_KIND_NATIVE}
	}
}

// Packs lists the installed packs.
func (r *Registry) Packs() ([]*Pack, error) {
	if err := r.load(); err != nil {
		return nil, err
	}
	return r.packs, nil
}

// Backends lists the installed executor backends by name.
func (r *Registry) BackendNames() ([]string, error) {
	if err := r.load(); err != nil {
		return nil, err
	}
	var out []string
	for n := range r.backends {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Lookup implements pipeline.Catalog.
func (r *Registry) Lookup(typ string) (*pipeline.TypeSpec, bool) {
	if r.load() != nil {
		return nil, false
	}
	e, ok := r.types[typ]
	if !ok {
		return nil, false
	}
	return e.spec, true
}

// Types implements pipeline.Catalog.
func (r *Registry) Types() []string {
	if r.load() != nil {
		return nil
	}
	out := make([]string, 0, len(r.types))
	for t := range r.types {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Pack implements manager.Catalog.
func (r *Registry) Pack(typ, constraint string) (manager.PackRef, bool, error) {
	if err := r.load(); err != nil {
		return manager.PackRef{}, false, err
	}
	e, ok := r.types[typ]
	if !ok {
		return manager.PackRef{}, false, fmt.Errorf("no installed pack serves %s", typ)
	}
	if constraint != "" {
		return manager.PackRef{}, false, fmt.Errorf("version constraints (%s@%s) need installed plugin versions, which this wiz does not support yet; drop the @%s", typ, constraint, constraint)
	}
	return e.pack.Ref, e.native, nil
}

// Provision implements manager.Backends: it starts the backend plugin, asks
// it for an executor and connects to that executor.
func (r *Registry) Provision(ctx context.Context, req manager.ProvisionRequest) (manager.Executor, error) {
	if err := r.load(); err != nil {
		return nil, err
	}
	path, ok := r.backends[req.Backend]
	if !ok {
		names, _ := r.BackendNames()
		return nil, fmt.Errorf("no executor backend %q is installed (installed: %s)", req.Backend, strings.Join(names, ", "))
	}
	b, err := pluginhost.LaunchBackend(pluginhost.Config{Name: req.Backend, Path: path, SHA256: r.sums[path], Logger: r.log.Named(req.Backend)})
	if err != nil {
		return nil, err
	}
	resp, err := b.Provision(ctx, &wizrpc.ProvisionRequest{
		RunId: req.RunID, WizBinary: r.wizBinary, Slots: int32(req.Slots), BlobDir: req.BlobDir, LogLevel: r.logLevel,
		CacheDir: req.CacheDir,
	})
	if err != nil {
		b.Kill()
		return nil, err
	}
	teardown := func(ctx context.Context) error {
		defer b.Kill()
		return b.Teardown(ctx, resp.ExecutorId)
	}
	ep := resp.Endpoint
	c, err := executorclient.Dial(ctx, fmt.Sprintf("%s executor %s", req.Backend, resp.ExecutorId), executorclient.Endpoint{
		Address: ep.Address, CACertPEM: ep.CaCertPem, ServerName: ep.ServerName, Token: ep.Token,
	}, teardown)
	if err != nil {
		_ = teardown(context.Background())
		return nil, err
	}
	return c, nil
}

// BackendPath returns where the named backend's binary is, or "".
func (r *Registry) BackendPath(name string) string {
	if r.load() != nil {
		return ""
	}
	return r.backends[name]
}
