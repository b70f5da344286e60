package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wiz-run/wiz/internal/executorserver"
)

// ExecutorCmd is `wiz executor`: the task server that executor backends start.
type ExecutorCmd struct {
	Listen    string        `default:"127.0.0.1:0" help:"Address to listen on: host:port (TLS), or unix:///ABS/PATH for a unix socket on this machine (no TLS)."`
	TLSCert   string        `name:"tls-cert" help:"TLS certificate file." type:"existingfile"`
	TLSKey    string        `name:"tls-key" help:"TLS key file." type:"existingfile"`
	ExecToken string        `name:"executor-token" env:"WIZ_EXECUTOR_TOKEN" help:"Bearer token every call must carry (prefer the env var)."`
	BlobDir   string        `name:"blob-dir" help:"Blob store directory."`
	WorkDir   string        `name:"work-dir" help:"Where task working directories are made."`
	CacheDir  string        `name:"cache-dir" help:"Where invocation plans are cached across runs."`
	TaskDir   string        `name:"task-dir" help:"Where running tasks' process groups are recorded, for the Manager to clean up after a crash."`
	Slots     int           `help:"Tasks run at once (0: number of CPUs)."`
	RunID     string        `name:"run" help:"Run this executor serves (for logs)."`
	ParentFD  int           `name:"parent-fd" hidden:"" help:"A pipe's read end whose writer is the backend: at its EOF (the backend died) an executor with an orphan timeout that no Manager connected to exits."`
	Orphan    time.Duration `name:"orphan-timeout" help:"When the Manager's connection breaks (it was killed), keep running its tasks this long for a restarted Manager to re-attach, then cancel them and exit 1 (0: cancel them at once)."`
}

// executorMemLimit is `wiz executor`'s soft memory limit (GOMEMLIMIT
// overrides it).
const executorMemLimit = 64 << 20

// Run implements the command.
func (c *ExecutorCmd) Run(env *Env) error {
	if c.Orphan < 0 {
		return usageError{fmt.Errorf("--orphan-timeout %s is negative; give 0 (cancel tasks at once) or a duration such as 60s", c.Orphan)}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return usageError{fmt.Errorf("give both --tls-cert and --tls-key, or neither")}
	}
	if c.TLSCert == "" && !strings.HasPrefix(c.Listen, "unix://") {
		return usageError{fmt.Errorf("wiz executor on TCP needs --tls-cert and --tls-key; executor backends pass them")}
	}
	inheritedCloseOnExec()
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit: the collector works harder near it instead of
		// letting the heap double. The executor's own heap is small; what
		// passes through it (a program's 300 MB of stderr) is garbage at once.
		debug.SetMemoryLimit(executorMemLimit)
	}
	if c.Orphan > 0 {
		// It may outlive the process that reads its stdout and stderr (its
		// backend, killed with its Manager): a write there must fail, not
		// kill it. Notify, not Ignore: an ignored SIGPIPE would be inherited
		// by the programs it runs (`yes | head` would then see EPIPE).
		signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var parentGone chan struct{}
	if c.ParentFD > 2 {
		var st syscall.Stat_t
		if err := syscall.Fstat(c.ParentFD, &st); err != nil {
			return usageError{fmt.Errorf("--parent-fd %d is not an open file (%v); backends pass the read end of a pipe they hold", c.ParentFD, err)}
		}
		f := os.NewFile(uintptr(c.ParentFD), "parent")
		parentGone = make(chan struct{})
		go func() { // ends at the pipe's EOF: the backend died
			_, _ = io.Copy(io.Discard, f)
			close(parentGone)
		}()
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "executor", Level: hclog.LevelFromString(env.CLI.LogLevel), Output: os.Stderr})
	return executorserver.Run(ctx, executorserver.Config{
		Listen: c.Listen, CertFile: c.TLSCert, KeyFile: c.TLSKey, Token: c.ExecToken,
		BlobDir: c.BlobDir, WorkDir: c.WorkDir, CacheDir: c.CacheDir, TaskDir: c.TaskDir, Slots: c.Slots, OrphanTimeout: c.Orphan, ParentGone: parentGone, Version: version, Logger: log.With("run", c.RunID),
		Ready: func(addr string) { fmt.Printf("WIZ_EXECUTOR_LISTENING %s\n", addr) },
	})
}

// inheritedCloseOnExec keeps the files `wiz executor` inherited beyond
// stdin, stdout and stderr (the local backend's lock on the executor's
// directory, held for as long as the executor lives) from reaching the
// programs it runs.
func inheritedCloseOnExec() {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range fds {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
