package pluginhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Deadlines of plugin calls. A plugin answers each in milliseconds; the
// bounds are for one that never does (stuck, or answering the handshake and
// then not serving), so that no wiz command waits on it forever.
var (
	// StartTimeout bounds starting a plugin: its handshake and the gRPC
	// connection to it.
	StartTimeout = 10 * time.Second
	// CallTimeout bounds the short calls: describe, validate, plan and
	// diagnose.
	CallTimeout = 10 * time.Second
	// ProvisionTimeout bounds an executor backend's Provision, which may wait
	// for a pod to be scheduled and its image pulled: a backstop above the
	// backend's own bounds (the Kubernetes backend's readyTimeout, 3 min by
	// default, which a pipeline may raise).
	ProvisionTimeout = 30 * time.Minute
	// TeardownTimeout bounds an executor backend's Teardown.
	TeardownTimeout = time.Minute
)

// withDeadline bounds ctx by d, unless it already ends sooner; it returns
// the bound that applies.
func withDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc, time.Duration) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		ctx, cancel := context.WithCancel(ctx)
		return ctx, cancel, time.Until(dl).Round(time.Second)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, d
}

// callError turns a failed call into one line naming the plugin (who: "pack
// acme@1.0.0") and the call: a deadline met (ctx's, bound d), the process
// gone with how it ended, or the plugin's own message.
func (p *proc) callError(ctx context.Context, d time.Duration, who, op string, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
		// The connection broke: the process may be dying; go-plugin notices
		// a moment later, once its output is closed. What it started may
		// hold that open: they go too.
		p.waitExit(2 * time.Second)
		if !p.client.Exited() && p.zombie() {
			p.killGroup()
			p.waitExit(2 * time.Second)
		}
	}
	switch {
	case p.client.Exited():
		if info := p.exitInfo(); info != "" {
			return fmt.Errorf("%s: %s: %w (%s)", who, op, ErrPluginShutdown, info)
		}
		return fmt.Errorf("%s: %s: %w", who, op, ErrPluginShutdown)
	case d > 0 && ctx.Err() != context.Canceled && (errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.Canceled):
		// The plugin's gRPC server may give up at the deadline a moment
		// before this side does.
		return fmt.Errorf("%s: %s: no answer within %s; the plugin is stuck (WIZ_LOG_LEVEL=debug shows its log)", who, op, d)
	}
	return fmt.Errorf("%s: %s: %w", who, op, grpcMessage(err))
}

// proc is a plugin process: its go-plugin client, its command, and the tail
// of what it wrote to stderr.
type proc struct {
	client *plugin.Client
	cmd    *exec.Cmd
	stderr *tailWriter
}

// connect starts the process and dispenses kind from it within timeout. A
// process that has not connected by then is killed with what it started.
func (p *proc) connect(timeout time.Duration, kind string) (any, error) {
	type result struct {
		raw any
		err error
	}
	done := make(chan result, 1)
	go func() {
		rpc, err := p.client.Client()
		if err != nil {
			done <- result{err: err}
			return
		}
		raw, err := rpc.Dispense(kind)
		if err != nil {
			err = &kindError{err}
		}
		done <- result{raw, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.raw, r.err
	case <-timer.C:
		// Killing the process ends the stuck connection attempt: go-plugin
		// gives up when its process exits.
		p.killGroup()
		<-done
		if p.client.NegotiatedVersion() != 0 { // read after Client returned
			return nil, errConnectTimeout
		}
		return nil, errStartTimeout
	}
}

// kindError is a plugin that started but does not serve the kind asked.
type kindError struct{ err error }

func (e *kindError) Error() string { return e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

var (
	errStartTimeout   = errors.New("no handshake in time")
	errConnectTimeout = errors.New("handshake answered, but no connection in time")
)

// killGroup kills the plugin's process group: the plugin and whatever it
// started that did not leave the group.
func (p *proc) killGroup() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// kill stops the plugin (gracefully if it answers) and reaps it, then kills
// what is left of its process group, whose members may hold its output open.
func (p *proc) kill() {
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		p.client.Kill()
	}()
	timer := time.NewTimer(3 * time.Second)
	defer timer.Stop()
	for {
		select {
		case <-stopped:
			p.killGroup()
			return
		case <-timer.C:
			// go-plugin waits for the plugin's output to close; a child
			// holding it would keep Kill waiting.
			p.killGroup()
			<-stopped
			return
		}
	}
}

// waitExit waits up to d for the plugin process to exit, as a process
// whose start failed does a moment later.
func (p *proc) waitExit(d time.Duration) {
	for deadline := time.Now().Add(d); !p.client.Exited() && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// zombie reports whether the plugin process has exited but is not reaped
// yet: go-plugin reaps it once its output is closed.
func (p *proc) zombie() bool {
	if p.cmd.Process == nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return false
	}
	// pid (comm) state …: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// exitInfo describes how the plugin process ended and what it last wrote to
// stderr; "" while it runs.
func (p *proc) exitInfo() string {
	if !p.client.Exited() || p.cmd.ProcessState == nil {
		return ""
	}
	info := exitStatus(p.cmd.ProcessState.Sys())
	if tail := p.stderr.Tail(); tail != "" {
		info += "; its stderr ended: " + tail
	}
	return info
}

func exitStatus(sys any) string {
	ws, ok := sys.(syscall.WaitStatus)
	switch {
	case !ok:
		return "it exited"
	case ws.Signaled():
		return fmt.Sprintf("it was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	default:
		return fmt.Sprintf("it exited with status %d", ws.ExitStatus())
	}
}

// tailWriter keeps the last lines a process wrote, up to a few hundred bytes
// of them, for error messages.
type tailWriter struct {
	mu  sync.Mutex
	buf []byte
}

const tailKeep = 4096

// Write takes one line (go-plugin writes the process's stderr line by line,
// without the newline).
func (w *tailWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(append(w.buf, b...), '\n')
	if len(w.buf) > tailKeep {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-tailKeep:]...)
	}
	return len(b), nil
}

// Tail returns the last three non-empty lines, joined by " | ", at most 300
// bytes.
func (w *tailWriter) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(string(w.buf), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	s := strings.Join(lines, " | ")
	if len(s) > 300 {
		s = "…" + strings.ToValidUTF8(s[len(s)-300:], "")
	}
	return s
}
