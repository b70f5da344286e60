package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wiz-run/wiz/sdk/executor"
)

// serverName is the TLS name of every local executor's certificate.
const serverName = "wiz-executor.local"

// maxSocketPath is the longest unix socket path the executor is given
// (the kernel's limit is 107 bytes).
const maxSocketPath = 100

// readyTimeout bounds how long Provision waits for the executor to listen.
const readyTimeout = 20 * time.Second

// stopGrace is how long Teardown waits after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

type backend struct {
	log hclog.Logger

	mu        sync.Mutex
	executors map[string]*child
	adopted   map[string]*adopted // executors an earlier process started
}

type child struct {
	cmd    *exec.Cmd
	dir    string
	lock   *os.File // the lock on dir, held while this backend or the executor lives
	parent *os.File // the write end of the executor's --parent-fd pipe; nil: none
	done   chan struct{}
}

func newBackend() *backend {
	return &backend{
		log:       hclog.New(&hclog.LoggerOptions{Name: "local", Output: os.Stderr, JSONFormat: true, Level: hclog.LevelFromString(os.Getenv("WIZ_LOG_LEVEL"))}),
		executors: map[string]*child{},
		adopted:   map[string]*adopted{},
	}
}

func (b *backend) Provision(ctx context.Context, req *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
	if req.WizBinary == "" {
		return nil, fmt.Errorf("local executor: no wiz binary given")
	}
	cfg, err := parseConfig(req.Config)
	if err != nil {
		return nil, err
	}
	sweepStale(os.TempDir(), b.log)
	dir, err := os.MkdirTemp("", "wiz-executor-*")
	if err != nil {
		return nil, fmt.Errorf("local executor: make temp dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer func() {
		if lock != nil { // not handed to a child: Provision failed
			lock.Close()
		}
	}()
	token, err := randomToken()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// The executor listens on a unix socket in its own 0700 directory: no
	// TLS to set up or pay for on every message. Where the socket's path
	// would be too long for the kernel, on TLS over 127.0.0.1 as a remote
	// executor does.
	var certPEM []byte
	sock, err := filepath.Abs(filepath.Join(dir, "executor.sock")) // TMPDIR may be relative
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("local executor: %w", err)
	}
	listen := []string{"executor", "--listen", "unix://" + sock}
	if len(sock) > maxSocketPath {
		var keyPEM []byte
		if certPEM, keyPEM, err = executor.SelfSigned(serverName, net.IPv4(127, 0, 0, 1)); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("local executor: make TLS certificate: %w", err)
		}
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("local executor: %w", err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("local executor: %w", err)
		}
		listen = []string{"executor", "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile}
	}
	args := append(listen, "--work-dir", filepath.Join(dir, "work"), "--run", req.RunID)
	if req.Slots > 0 {
		args = append(args, "--slots", strconv.Itoa(req.Slots))
	}
	if cfg.Isolated {
		// As if on another machine: its own blob store, which the Manager
		// fills and empties over the executor API.
		args = append(args, "--blob-dir", filepath.Join(dir, "blobs"))
	} else if req.BlobDir != "" {
		args = append(args, "--blob-dir", req.BlobDir)
	}
	if req.CacheDir != "" {
		args = append(args, "--cache-dir", req.CacheDir)
	}
	if req.TaskDir != "" {
		args = append(args, "--task-dir", req.TaskDir)
	}
	// parentR/parentW: a pipe whose write end only this backend holds; the
	// executor sees its EOF when the backend dies.
	var parentR, parentW *os.File
	if req.OrphanTimeout > 0 {
		if parentR, parentW, err = os.Pipe(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("local executor: %w", err)
		}
		defer parentR.Close() // the executor has its copy
		args = append(args, "--orphan-timeout", req.OrphanTimeout.String(), "--parent-fd", "4")
	}
	cmd := exec.Command(req.WizBinary, args...)
	cmd.Env = append(os.Environ(), "WIZ_EXECUTOR_TOKEN="+token, "WIZ_LOG_LEVEL="+req.LogLevel)
	// The executor dies with this backend, and this backend with its host, so
	// no executor outlives the wiz process that wanted it; except that a
	// service's executor (one with an orphan timeout) outlives a kill -9 of
	// it for that timeout, for the restarted service to adopt, and then
	// exits by itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if req.OrphanTimeout > 0 {
		// Not before a Manager has connected to it: when this backend dies
		// first (the service was killed while provisioning), it exits at
		// once (--parent-fd, fd 4).
		cmd.SysProcAttr.Pdeathsig = 0
	}
	// The executor holds the directory's lock too: when both are gone (a
	// kill -9 of wiz takes them all), the next Provision removes it.
	cmd.ExtraFiles = []*os.File{lock}
	if parentR != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, parentR)
	}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		if parentW != nil {
			parentW.Close()
		}
		return nil, fmt.Errorf("local executor: %w", err)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		if parentW != nil {
			parentW.Close()
		}
		return nil, fmt.Errorf("local executor: start %s executor: %w", req.WizBinary, err)
	}
	c := &child{cmd: cmd, dir: dir, lock: lock, parent: parentW, done: make(chan struct{})}
	lock = nil // c's now
	addrCh := make(chan string, 1)
	go func() { // owns stdout until the executor exits
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "WIZ_EXECUTOR_LISTENING "); ok {
				select {
				case addrCh <- a:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { // reaps the executor
		_ = cmd.Wait()
		close(c.done)
	}()
	id := fmt.Sprintf("local-%d", cmd.Process.Pid)
	var addr string
	select {
	case addr = <-addrCh:
	case <-c.done:
		os.RemoveAll(dir)
		c.lock.Close()
		if c.parent != nil {
			c.parent.Close()
		}
		return nil, fmt.Errorf("local executor: `wiz executor` exited before listening (%v); run `%s executor --help` to check the binary", cmd.ProcessState, req.WizBinary)
	case <-time.After(readyTimeout):
		b.stop(c)
		return nil, fmt.Errorf("local executor: `wiz executor` did not listen within %s", readyTimeout)
	case <-ctx.Done():
		b.stop(c)
		return nil, fmt.Errorf("local executor: provision: %w", ctx.Err())
	}
	if _, _, err := net.SplitHostPort(addr); err != nil && !strings.HasPrefix(addr, "unix://") {
		b.stop(c)
		return nil, fmt.Errorf("local executor: executor reported a bad address %q", addr)
	}
	ep := executor.Endpoint{Address: addr, CACertPEM: certPEM, ServerName: serverName, Token: token}
	if req.OrphanTimeout > 0 {
		// What a later process of this backend needs to adopt it, in its
		// 0700 directory beside its socket and TLS key.
		id = fmt.Sprintf("local-%d@%s", cmd.Process.Pid, dir)
		if err := writeAdoption(dir, adoption{PID: cmd.Process.Pid, Endpoint: ep, Remote: cfg.Isolated}); err != nil {
			b.stop(c)
			return nil, err
		}
	}
	b.mu.Lock()
	b.executors[id] = c
	b.mu.Unlock()
	b.log.Debug("executor started", "id", id, "address", addr)
	return &executor.ProvisionResponse{ExecutorID: id, Endpoint: ep, Remote: cfg.Isolated}, nil
}

func (b *backend) Teardown(_ context.Context, req *executor.TeardownRequest) (*executor.TeardownResponse, error) {
	b.mu.Lock()
	c, ok := b.executors[req.ExecutorID]
	delete(b.executors, req.ExecutorID)
	a, adopted := b.adopted[req.ExecutorID]
	delete(b.adopted, req.ExecutorID)
	b.mu.Unlock()
	if ok {
		b.stop(c)
	}
	if adopted {
		stopAdopted(a)
	}
	return &executor.TeardownResponse{}, nil
}

// Diagnose implements executor.Diagnoser: how the executor process ended.
func (b *backend) Diagnose(_ context.Context, req *executor.DiagnoseRequest) (*executor.DiagnoseResponse, error) {
	b.mu.Lock()
	c, ok := b.executors[req.ExecutorID]
	b.mu.Unlock()
	if !ok {
		return &executor.DiagnoseResponse{}, nil
	}
	select {
	case <-c.done:
	case <-time.After(2 * time.Second): // it may be exiting now
		return &executor.DiagnoseResponse{Reason: fmt.Sprintf("wiz executor (pid %d) is still running", c.cmd.Process.Pid)}, nil
	}
	return &executor.DiagnoseResponse{Reason: fmt.Sprintf("wiz executor (pid %d) %s", c.cmd.Process.Pid, describeExit(c.cmd.ProcessState))}, nil
}

func describeExit(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exited with code %d", ps.ExitCode())
}

// stop ends an executor: SIGTERM, then SIGKILL after a grace period, and
// removes its directory.
func (b *backend) stop(c *child) {
	pid := c.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-c.done
	}
	os.RemoveAll(c.dir)
	c.lock.Close()
	if c.parent != nil {
		c.parent.Close()
	}
}

// lockName is the file in an executor's directory whose flock says that
// the directory is in use.
const lockName = "lock"

// lockDir locks dir for this backend and its executor: the lock is taken on
// a file that only then gets its name, so a sweep never sees it unlocked.
func lockDir(dir string) (*os.File, error) {
	tmp := filepath.Join(dir, lockName+".new")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("local executor: lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("local executor: lock %s: %w", dir, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, lockName)); err != nil {
		f.Close()
		return nil, fmt.Errorf("local executor: lock %s: %w", dir, err)
	}
	return f, nil
}

// sweepStale removes the executor directories under tmp that no backend or
// executor holds any more: those a kill -9 of wiz left behind. A directory
// without a lock file (being made, or made by another version) is left.
func sweepStale(tmp string, log hclog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, "wiz-executor-*"))
	for _, d := range dirs {
		f, err := os.Open(filepath.Join(d, lockName))
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			log.Debug("removing the directory of an executor that is gone", "dir", d)
			if err := os.RemoveAll(d); err != nil {
				log.Warn("remove a gone executor's directory", "dir", d, "error", err)
			}
		}
		f.Close()
	}
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("local executor: make token: %w", err)
	}
	return hex.EncodeToString(b), nil
}
