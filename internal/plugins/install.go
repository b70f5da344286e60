package plugins

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wiz-run/wiz/internal/pluginhost"
	"github.com/wiz-run/wiz/sdk"
)

// ErrNotInstalled is returned when removing a plugin that is not installed.
var ErrNotInstalled = errors.New("plugin not installed")

// Install installs the plugin at src — a plugin binary, a directory holding
// one, or a .tar.gz holding one — into $WIZ_HOME/plugins/<name>/<version>/
// with a manifest. It starts the plugin to read its kind, name, version,
// protocol version and types through the handshake.
func (r *Registry) Install(ctx context.Context, src string) (*Plugin, bool, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, false, err
	}
	bin, cleanup, err := findBinary(abs)
	if err != nil {
		return nil, false, err
	}
	defer cleanup()
	sum, err := pluginhost.FileSHA256(bin)
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", bin, err)
	}
	probed, err := pluginhost.Probe(ctx, bin, sum, r.log)
	if err != nil {
		return nil, false, err
	}
	desc, err := probed.DescribeJSON()
	if err != nil {
		return nil, false, err
	}
	p := &Plugin{SHA256: sum, Binary: filepath.Base(bin), Source: abs, Installed: time.Now().UTC().Truncate(time.Second), Describe: desc}
	if probed.Kind == sdk.PackPluginName {
		p.Kind = KindPack
	} else {
		p.Kind = KindBackend
	}
	tmp := New(Config{Logger: r.log})
	tmp.packs, tmp.backends = map[string][]*Plugin{}, map[string][]*Plugin{}
	if err := tmp.add(p); err != nil {
		return nil, false, fmt.Errorf("%s: %w", src, err)
	}
	if p.ProtocolVersion != sdk.ProtocolVersion {
		return nil, false, fmt.Errorf("%s is a wiz plugin of protocol %d; this wiz speaks protocol %d", src, p.ProtocolVersion, sdk.ProtocolVersion)
	}
	if !validName(p.Name) {
		return nil, false, fmt.Errorf("%s calls itself %q, which is not a valid plugin name ([a-z0-9][a-z0-9_-]*)", src, p.Name)
	}
	if p.Name == "pipeline" && p.Kind == sdk.PackPluginName {
		return nil, false, fmt.Errorf("%s calls itself \"pipeline\", the name reserved for sub-pipelines (uses: pipeline/NAME); rename the pack", src)
	}
	dir := filepath.Join(r.pluginsDir(), p.Name, p.Version)
	if b, err := os.ReadFile(filepath.Join(dir, "manifest.json")); err == nil {
		old := &Plugin{}
		if json.Unmarshal(b, old) == nil && old.SHA256 == p.SHA256 {
			old.Path = filepath.Join(dir, old.Binary)
			if got, err := pluginhost.FileSHA256(old.Path); err == nil && got == old.SHA256 {
				return old, false, nil
			}
			data, err := os.ReadFile(bin)
			if err != nil {
				return nil, false, err
			}
			if err := writeFileAtomic(old.Path, data, 0o755); err != nil {
				return nil, false, fmt.Errorf("install %s: %w", p.Name, err)
			}
			return old, true, nil
		}
		return nil, false, fmt.Errorf("%s %s is already installed from another binary; remove it first with `wiz plugin remove %s@%s`", p.Name, p.Version, p.Name, p.Version)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, false, fmt.Errorf("install %s: %w", p.Name, err)
	}
	in, err := os.Open(bin)
	if err != nil {
		return nil, false, err
	}
	defer in.Close()
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, false, err
	}
	if err := writeFileAtomic(filepath.Join(dir, p.Binary), data, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, false, fmt.Errorf("install %s: %w", p.Name, err)
	}
	mb, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		os.RemoveAll(dir)
		return nil, false, err
	}
	// The manifest is written last: a directory without one is not an install.
	if err := writeFileAtomic(filepath.Join(dir, "manifest.json"), mb, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, false, fmt.Errorf("install %s: %w", p.Name, err)
	}
	p.Path = filepath.Join(dir, p.Binary)
	return p, true, nil
}

// Remove removes installed versions of a plugin: one version, or all of them
// when version is "". It returns what it removed.
func (r *Registry) Remove(name, version string) ([]*Plugin, error) {
	if err := r.load(); err != nil {
		return nil, err
	}
	var removed []*Plugin
	var bundled bool
	for _, p := range r.all {
		if p.Name != name || (version != "" && p.Version != version) {
			continue
		}
		if p.Source == SourceBundled {
			bundled = true
			continue
		}
		if err := os.RemoveAll(filepath.Dir(p.Path)); err != nil {
			return removed, fmt.Errorf("remove %s %s: %w", p.Name, p.Version, err)
		}
		removed = append(removed, p)
	}
	_ = os.Remove(filepath.Join(r.pluginsDir(), name)) // only if now empty
	if len(removed) == 0 {
		what := name
		if version != "" {
			what += "@" + version
		}
		if bundled {
			return nil, fmt.Errorf("%s is bundled with wiz and cannot be removed", what)
		}
		return nil, fmt.Errorf("%w: %s; `wiz plugin list` shows what is installed", ErrNotInstalled, what)
	}
	return removed, nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '-' || c == '_')
		if !ok {
			return false
		}
	}
	return true
}

// findBinary returns the plugin binary src names: src itself, the one
// executable in a directory, or the one executable in a .tar.gz.
func findBinary(src string) (string, func(), error) {
	nop := func() {}
	st, err := os.Stat(src)
	if err != nil {
		return "", nop, fmt.Errorf("install %s: %w", src, err)
	}
	if st.IsDir() {
		bin, err := oneExecutable(src)
		return bin, nop, err
	}
	if strings.HasSuffix(src, ".tar.gz") || strings.HasSuffix(src, ".tgz") {
		dir, err := os.MkdirTemp("", "wiz-plugin-*")
		if err != nil {
			return "", nop, err
		}
		cleanup := func() { os.RemoveAll(dir) }
		if err := untar(src, dir); err != nil {
			cleanup()
			return "", nop, fmt.Errorf("install %s: %w", src, err)
		}
		bin, err := oneExecutable(dir)
		if err != nil {
			cleanup()
			return "", nop, err
		}
		return bin, cleanup, nil
	}
	if st.Mode()&0o111 == 0 {
		return "", nop, fmt.Errorf("install %s: not an executable file; give a plugin binary, a directory holding one, or a .tar.gz holding one", src)
	}
	return src, nop, nil
}

func oneExecutable(dir string) (string, error) {
	var found []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode()&0o111 != 0 {
			found = append(found, p)
		}
		return nil
	})
	sort.Strings(found)
	switch len(found) {
	case 0:
		return "", fmt.Errorf("install %s: no executable plugin binary in it", dir)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("install %s: it holds several executables (%s); give the plugin binary's path", dir, strings.Join(found, ", "))
}

func untar(src, dir string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a gzip file: %w", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("archive entry %q leaves the archive", h.Name)
		}
		dst := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		}
	}
}
