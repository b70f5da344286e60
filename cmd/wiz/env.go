package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/internal/managerapi"
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
	api      manager.API
	server   *managerapi.Server // the Manager API on the home's socket
	grpcSrv  *grpc.Server
	sock     string
	remote   *managerapi.Client
}

// Client returns the Manager API: the in-process Manager when this command
// can open the wiz home's store (and then it serves the API on the home's
// socket for other commands while it runs), or a client of the process that
// holds the store.
func (e *Env) Client() (manager.API, error) {
	if e.api != nil {
		return e.api, nil
	}
	if e.CLI.Server != "" {
		c, err := managerapi.DialTCP(e.CLI.Server, e.CLI.Token, e.CLI.CA, e.CLI.Insecure)
		if err != nil {
			return nil, err
		}
		e.remote, e.api = c, c
		return c, nil
	}
	home, err := e.Home()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(home, "wiz.sock")
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := e.Manager()
		if err == nil {
			e.server = managerapi.NewServer(m)
			if gs, serr := managerapi.ServeUnix(sock, e.server); serr == nil {
				e.grpcSrv, e.sock = gs, sock
			} else {
				e.Logger().Warn("other wiz commands cannot reach this one", "error", serr)
			}
			e.api = m
			return m, nil
		}
		if !errors.Is(err, store.ErrLocked) {
			return nil, err
		}
		c, derr := managerapi.DialUnix(context.Background(), sock, "the wiz process holding "+home)
		if derr == nil {
			e.remote, e.api = c, c
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("another wiz process holds the store in %s but does not answer on %s (%v); if no wiz is running, a killed one may hold it still — try again in a moment", home, sock, derr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// prewarm starts the default executor backend's plugin in the background
// when this command may run a pipeline in-process, so that its launch
// overlaps opening the store and parsing the pipeline. A pipeline on another
// backend, or a store held by another wiz, leaves it unused; Close stops it.
func (e *Env) prewarm() {
	if e.CLI.Server != "" {
		return
	}
	if r, err := e.Registry(); err == nil {
		r.Prewarm(pipeline.DefaultExecutor)
	}
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
	// A short command: it compacts only what has built up past
	// store.ShortL0, in a child process, so that the compaction's memory is
	// not the run's.
	st, err := store.OpenWith(filepath.Join(home, "store"), e.Logger().Named("store"), store.Options{Short: true, CompactFirst: compactInChild})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w; wait for the other `wiz` command on %s to finish (sharing a home between running commands is not built yet)", err, home)
	}
	if err != nil {
		return nil, err
	}
	e.store = st
	e.Logger().Debug("store opened", "dir", filepath.Join(home, "store"))
	if n, took := st.Compacted(); n > 0 {
		fmt.Fprintf(os.Stderr, "wiz: compacted the store first: %d tables had built up in its level 0 over earlier commands (%s); `wiz gc` compacts it when you choose\n", n, took.Round(time.Millisecond))
	}
	blobs, err := blob.Open(filepath.Join(home, "blobs"))
	if err != nil {
		return nil, err
	}
	reg, err := e.Registry()
	if err != nil {
		return nil, err
	}
	e.mgr = manager.New(manager.Config{Store: st, Blobs: blobs, Catalog: reg, Backends: reg, Logger: e.Logger().Named("manager"),
		CacheDir: filepath.Join(home, "cache", "plans"), TaskDir: filepath.Join(home, "tasks"), Capacity: e.CLI.Capacity,
		Secrets: e.keyring(home)})
	if _, err := e.mgr.Recover(); err != nil {
		return nil, fmt.Errorf("settle unfinished runs: %w", err)
	}
	return e.mgr, nil
}

// Close waits for runs that other commands started through this one's
// socket, stops serving, and closes the store if it was opened; it returns
// the error of that close.
func (e *Env) Close() error {
	if e.remote != nil {
		e.remote.Close()
	}
	if e.grpcSrv != nil {
		e.server.Wait()
		_ = e.mgr.WaitIdle(context.Background())
		stopped := make(chan struct{})
		go func() { e.grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			e.grpcSrv.Stop()
		}
		os.Remove(e.sock)
		e.grpcSrv = nil
	}
	// The store closes while the runs' executors are torn down; the
	// backends that serve them stop after.
	var (
		closing  sync.WaitGroup
		closeErr error
	)
	if st := e.store; st != nil {
		closing.Add(1)
		go func() {
			defer closing.Done()
			closeErr = st.Close()
		}()
		e.store = nil
	}
	if e.mgr != nil {
		e.mgr.WaitExecutors()
	}
	if e.registry != nil {
		e.registry.Close() // runs are over and their executors torn down
	}
	closing.Wait()
	return closeErr
}

// compactInChild runs `wiz compact-store DIR` and waits for it; the child
// dies with this process (a compaction cut short is recovered by the next
// open).
func compactInChild(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the wiz binary: %w", err)
	}
	cmd := exec.Command(self, "compact-store", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("wiz compact-store: %w", err)
	}
	return nil
}

// CompactCmd is `wiz compact-store DIR`, the child compactInChild runs.
type CompactCmd struct {
	Dir string `arg:"" help:"The store's directory."`
}

// Run implements the command.
func (c *CompactCmd) Run(env *Env) error {
	return store.CompactFirst(c.Dir, env.Logger().Named("store"))
}
