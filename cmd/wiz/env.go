package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/internal/plugins"
	"github.com/wiz-run/wiz/sdk/blob"
)

// Env is what commands share: the wiz home, and the Manager opened on demand.
type Env struct {
	CLI *CLI

	log      hclog.Logger
	store    *store.Store
	registry *plugins.Registry
	mgr      *manager.Manager
}

// Logger returns the CLI's logger.
func (e *Env) Logger() hclog.Logger {
	if e.log == nil {
		e.log = hclog.New(&hclog.LoggerOptions{Name: "wiz", Level: hclog.LevelFromString(e.CLI.LogLevel), Output: os.Stderr})
	}
	return e.log
}

// pluginLogger is the logger of go-plugin's plugin clients. go-plugin reports
// every plugin that exits without a handshake or is killed at warn and error
// level; wiz turns what matters into its own one-line errors, so those logs
// show only when the user asks for info or more.
func (e *Env) pluginLogger() hclog.Logger {
	l := e.Logger().Named("plugins")
	if l.GetLevel() > hclog.Info {
		return hclog.NewNullLogger()
	}
	return l
}

// Home returns the wiz home directory.
func (e *Env) Home() (string, error) {
	if e.CLI.Home != "" {
		return filepath.Abs(e.CLI.Home)
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the home directory: %w; set WIZ_HOME or --home", err)
	}
	return filepath.Join(h, ".wiz"), nil
}

// Registry returns the installed plugins.
func (e *Env) Registry() (*plugins.Registry, error) {
	if e.registry != nil {
		return e.registry, nil
	}
	home, err := e.Home()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the wiz binary: %w", err)
	}
	if r, err := filepath.EvalSymlinks(self); err == nil {
		self = r
	}
	e.registry = plugins.New(plugins.Config{
		BundledDir: filepath.Dir(self), Home: home, WizBinary: self,
		LogLevel: e.CLI.LogLevel, Logger: e.pluginLogger(),
	})
	return e.registry, nil
}

// Manager opens the store and returns the in-process Manager.
func (e *Env) Manager() (*manager.Manager, error) {
	if e.mgr != nil {
		return e.mgr, nil
	}
	home, err := e.Home()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("make wiz home %s: %w", home, err)
	}
	st, err := store.Open(filepath.Join(home, "store"), e.Logger().Named("store"))
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w; wait for the other `wiz` command on %s to finish (sharing a home between running commands is not built yet)", err, home)
	}
	if err != nil {
		return nil, err
	}
	e.store = st
	e.Logger().Debug("store opened", "dir", filepath.Join(home, "store"))
	blobs, err := blob.Open(filepath.Join(home, "blobs"))
	if err != nil {
		return nil, err
	}
	reg, err := e.Registry()
	if err != nil {
		return nil, err
	}
	e.mgr = manager.New(manager.Config{Store: st, Blobs: blobs, Catalog: reg, Backends: reg, Logger: e.Logger().Named("manager"),
		CacheDir: filepath.Join(home, "cache", "plans")})
	if _, err := e.mgr.Recover(); err != nil {
		return nil, fmt.Errorf("settle unfinished runs: %w", err)
	}
	return e.mgr, nil
}

// Close closes the store if it was opened.
func (e *Env) Close() {
	if e.store != nil {
		if err := e.store.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "wiz: close store: %v\n", err)
		}
		e.store = nil
	}
}
