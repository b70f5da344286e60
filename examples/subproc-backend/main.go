// Command wiz-executor-subproc is an example executor backend in its own Go
// module, built from wiz's SDK (sdk/executor) alone: it runs each `wiz
// executor` as a subprocess on this machine, listening on a unix socket in a
// directory of its own. Pipelines select it with `executor: subproc`.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wiz-run/wiz/sdk/executor"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0"

// settings are what a pipeline may set under `executor:` for this backend.
type settings struct {
	// Slots overrides how many tasks the executor runs at once.
	Slots int `json:"slots"`
}

var settingNames = []string{"slots"}

func parseSettings(raw []byte) (settings, error) {
	var s settings
	if len(raw) == 0 {
		return s, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("subproc executor: settings: %w", err)
	}
	if s.Slots < 0 {
		return s, fmt.Errorf("subproc executor: slots is %d; give a number of tasks, at least 1", s.Slots)
	}
	return s, nil
}

type backend struct {
	mu        sync.Mutex
	executors map[string]*child
}

type child struct {
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
}

// ValidateSettings implements executor.SettingsValidator: wiz asks it when a
// pipeline is applied.
func (b *backend) ValidateSettings(s map[string]any) []executor.Diagnostic {
	return executor.CheckSettings(s, settingNames, func(raw []byte) error {
		_, err := parseSettings(raw)
		return err
	})
}

// Provision starts one `wiz executor` and returns its socket.
func (b *backend) Provision(ctx context.Context, req *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
	s, err := parseSettings(req.Config)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "subproc-")
	if err != nil {
		return nil, fmt.Errorf("subproc executor: %w", err)
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("subproc executor: token: %w", err)
	}
	token := hex.EncodeToString(tok)
	slots := req.Slots
	if s.Slots > 0 {
		slots = s.Slots
	}
	// Every flag a backend passes (docs/writing-an-executor.md).
	args := []string{"executor",
		"--listen", "unix://" + filepath.Join(dir, "executor.sock"),
		"--work-dir", filepath.Join(dir, "work"),
		"--blob-dir", req.BlobDir,
		"--slots", strconv.Itoa(slots),
		"--run", req.RunID,
	}
	if req.CacheDir != "" {
		args = append(args, "--cache-dir", req.CacheDir)
	}
	if req.TaskDir != "" {
		args = append(args, "--task-dir", req.TaskDir)
	}
	cmd := exec.Command(req.WizBinary, args...)
	cmd.Env = append(os.Environ(), "WIZ_EXECUTOR_TOKEN="+token, "WIZ_LOG_LEVEL="+req.LogLevel)
	cmd.Stderr = os.Stderr
	// The executor dies with this backend, which dies with wiz.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("subproc executor: %w", err)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("subproc executor: start %s: %w", req.WizBinary, err)
	}
	c := &child{cmd: cmd, dir: dir, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() { // reads the executor's stdout until it exits
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "WIZ_EXECUTOR_LISTENING "); ok {
				select {
				case addr <- a:
				default:
				}
			}
		}
	}()
	go func() { // reaps it
		_ = cmd.Wait()
		close(c.done)
	}()
	var a string
	select {
	case a = <-addr:
	case <-c.done:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("subproc executor: wiz executor exited before listening (%v)", cmd.ProcessState)
	case <-ctx.Done():
		b.stop(c)
		return nil, fmt.Errorf("subproc executor: %w", ctx.Err())
	case <-time.After(20 * time.Second):
		b.stop(c)
		return nil, fmt.Errorf("subproc executor: wiz executor did not listen within 20s")
	}
	id := "subproc-" + strconv.Itoa(cmd.Process.Pid)
	b.mu.Lock()
	b.executors[id] = c
	b.mu.Unlock()
	return &executor.ProvisionResponse{ExecutorID: id, Endpoint: executor.Endpoint{Address: a, Token: token}}, nil
}

// Teardown stops an executor and removes its directory.
func (b *backend) Teardown(_ context.Context, req *executor.TeardownRequest) (*executor.TeardownResponse, error) {
	b.mu.Lock()
	c := b.executors[req.ExecutorID]
	delete(b.executors, req.ExecutorID)
	b.mu.Unlock()
	if c != nil {
		b.stop(c)
	}
	return &executor.TeardownResponse{}, nil
}

// stop sends SIGTERM, then SIGKILL to the executor's process group after 5 s.
func (b *backend) stop(c *child) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	os.RemoveAll(c.dir)
}

func main() {
	executor.Serve(executor.Info{Name: "subproc", Version: version}, &backend{executors: map[string]*child{}})
}
