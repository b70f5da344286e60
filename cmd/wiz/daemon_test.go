package main

// Integration tests of `wiz daemon` with the real binaries that TestMain
// builds into binDir: a daemon on 127.0.0.1:0 with a data dir of its own,
// and `wiz --server ADDR` clients (and grpcurl) as separate processes.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Bounds. They only end a test that would otherwise hang; none is a timing
// assertion but daemonStopMax, which is generous (a daemon's default grace
// is 30 s, and no test leaves a run going when it stops one).
const (
	daemonStartMax = 60 * time.Second // from exec to "listening on"
	daemonStopMax  = 40 * time.Second // from SIGTERM to exit
	daemonCmdMax   = 3 * time.Minute  // one client command
	daemonPollMax  = 60 * time.Second // waiting for a run to reach a state
	daemonGoneMax  = 15 * time.Second // for processes killed by their parent's death signal to go
)

// daemonEnv is one test's world: a temp dir, and the environment of its
// daemons and clients (HOME, WIZ_HOME and TMPDIR in the temp dir, no WIZ_*
// variable of the caller's, and a marker entry that every process it starts
// inherits, so that the test finds its own processes in /proc).
type daemonEnv struct {
	t    *testing.T
	dir  string
	env  []string
	mark string
}

func daemonNewEnv(t *testing.T) *daemonEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the real wiz daemon; not in -short mode")
	}
	dir := t.TempDir()
	for _, d := range []string{"home", "wizhome", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &daemonEnv{t: t, dir: dir, mark: fmt.Sprintf("WIZ_DAEMON_TEST=%s.%d.%d", t.Name(), os.Getpid(), time.Now().UnixNano())}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "WIZ_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "TMPDIR=") {
			continue
		}
		e.env = append(e.env, kv)
	}
	e.env = append(e.env, "HOME="+filepath.Join(dir, "home"), "WIZ_HOME="+filepath.Join(dir, "wizhome"),
		"TMPDIR="+filepath.Join(dir, "tmp"), e.mark)
	// Runs after the daemons' cleanups (registered later): once every
	// daemon has stopped, no process of this test may be left.
	t.Cleanup(func() {
		left := e.waitGone("")
		if len(left) == 0 {
			return
		}
		t.Errorf("processes of this test left after its daemons stopped:\n%s", strings.Join(left, "\n"))
		for _, l := range left {
			var pid int
			if _, err := fmt.Sscanf(l, "%d:", &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return e
}

// file writes a file into the test's dir and returns its path.
func (e *daemonEnv) file(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// daemonBuf is a bytes.Buffer that a process writes while the test reads.
type daemonBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *daemonBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *daemonBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// daemonProc is a started process: a daemon or a client in the background.
type daemonProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdout *daemonBuf
	stderr *daemonBuf
	done   chan struct{}
	code   int  // the exit code, -1 for a signal; valid once done is closed
	ended  bool // the test stopped or killed it itself
}

// start starts a process of the test's environment in the background; a
// cleanup kills it if it still runs when the test ends.
func (e *daemonEnv) start(name string, env []string, args ...string) *daemonProc {
	e.t.Helper()
	p := &daemonProc{t: e.t, name: name, stdout: &daemonBuf{}, stderr: &daemonBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, "wiz"), args...)
	p.cmd.Env = append(slices.Clone(e.env), env...)
	p.cmd.Dir = e.dir
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.WaitDelay = 5 * time.Second // a leaked child holding stdout must not hang Wait
	if err := p.cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		if !p.exited() {
			p.signal(syscall.SIGKILL, daemonStopMax)
		}
	})
	return p
}

// wait waits up to max for the process to exit and returns its exit code;
// past max it fails the test, kills the process and returns -1.
func (p *daemonProc) wait(max time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(max):
	}
	p.t.Errorf("%s did not exit within %v; killing it\nstdout:\n%s\nstderr:\n%s", p.name, max, p.stdout, p.stderr)
	_ = p.cmd.Process.Kill()
	<-p.done
	return -1
}

// signal sends sig and waits up to max for the process to exit.
func (p *daemonProc) signal(sig syscall.Signal, max time.Duration) int {
	p.t.Helper()
	p.ended = true
	select {
	case <-p.done:
		return p.code
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	return p.wait(max)
}

func (p *daemonProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// daemonServer is a running `wiz daemon`.
type daemonServer struct {
	*daemonProc
	e     *daemonEnv
	data  string
	addr  string
	admin string // the admin secret it printed, or ""
}

// daemon starts `wiz daemon --data data --listen 127.0.0.1:0` and waits
// until it listens. Unless the test stops or kills it, a cleanup sends it
// SIGTERM and checks that it exits 0 within daemonStopMax.
func (e *daemonEnv) daemon(data string, env ...string) *daemonServer {
	e.t.Helper()
	return e.daemonArgs(data, env)
}

// daemonArgs is daemon with more arguments for wiz daemon.
func (e *daemonEnv) daemonArgs(data string, env []string, args ...string) *daemonServer {
	e.t.Helper()
	p := e.start("wiz daemon", env, append([]string{"daemon", "--data", data, "--listen", "127.0.0.1:0"}, args...)...)
	d := &daemonServer{daemonProc: p, e: e, data: data}
	e.t.Cleanup(func() {
		if p.ended {
			return
		}
		if code := p.signal(syscall.SIGTERM, daemonStopMax); code != 0 {
			e.t.Errorf("the daemon exited with status %d after SIGTERM\nstderr:\n%s", code, p.stderr)
		}
	})
	listening := regexp.MustCompile(`(?m)^wiz daemon: listening on (\S+)$`)
	for deadline := time.Now().Add(daemonStartMax); ; {
		if m := listening.FindStringSubmatch(p.stdout.String()); m != nil {
			d.addr = m[1]
			break
		}
		if p.exited() {
			e.t.Fatalf("the daemon exited with status %d before listening\nstdout:\n%s\nstderr:\n%s", p.code, p.stdout, p.stderr)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the daemon did not listen within %v\nstdout:\n%s\nstderr:\n%s", daemonStartMax, p.stdout, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := regexp.MustCompile(`(?m)^wiz daemon: admin token \(shown once; keep it safe\): (wiz_\S+)$`).FindStringSubmatch(p.stdout.String()); m != nil {
		d.admin = m[1]
	}
	return d
}

// args is a client's command line: --server, --insecure-skip-verify,
// --token unless token is "", then args.
func (d *daemonServer) args(token string, args ...string) []string {
	a := []string{"--server", d.addr, "--insecure-skip-verify"}
	if token != "" {
		a = append(a, "--token", token)
	}
	return append(a, args...)
}

// daemonResult is what a finished command did.
type daemonResult struct {
	cmd            string
	stdout, stderr string
	code           int   // -1: killed, or did not run
	err            error // set when the command did not run or timed out
}

func (r daemonResult) String() string {
	s := fmt.Sprintf("%s: exit %d", r.cmd, r.code)
	if r.err != nil {
		s += fmt.Sprintf(" (%v)", r.err)
	}
	return s + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// exec runs a program in the test's environment and dir, for at most
// daemonCmdMax. It does not touch t, so goroutines may call it.
func (e *daemonEnv) exec(name string, args ...string) daemonResult {
	ctx, cancel := context.WithTimeout(context.Background(), daemonCmdMax)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env, cmd.Dir = e.env, e.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := daemonResult{cmd: filepath.Base(name) + " " + strings.Join(args, " "), stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		r.code, r.err = -1, fmt.Errorf("did not finish within %v: %w", daemonCmdMax, err)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		r.code, r.err = -1, err
	}
	return r
}

// wiz runs a wiz client of d with token ("" for none). Goroutines may call it.
func (d *daemonServer) wiz(token string, args ...string) daemonResult {
	return d.e.exec(filepath.Join(binDir, "wiz"), d.args(token, args...)...)
}

// ok runs a wiz client of d and fails the test unless it exits 0.
func (d *daemonServer) ok(token string, args ...string) daemonResult {
	d.t.Helper()
	r := d.wiz(token, args...)
	if r.code != 0 || r.err != nil {
		d.t.Fatalf("want exit 0: %s", r)
	}
	return r
}

// decode runs a wiz client of d that prints JSON, and decodes it into v.
func (d *daemonServer) decode(v any, token string, args ...string) {
	d.t.Helper()
	r := d.ok(token, args...)
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		d.t.Fatalf("decode the JSON of %s: %v", r.cmd, err)
	}
}

// token creates a token with `wiz token create` and returns its secret.
func (d *daemonServer) token(admin, name, role string, extra ...string) string {
	d.t.Helper()
	r := d.ok(admin, append([]string{"token", "create", "--name", name, "--role", role}, extra...)...)
	secret := strings.TrimSpace(r.stdout)
	if !regexp.MustCompile(`^wiz_[A-Za-z0-9_-]{43}$`).MatchString(secret) {
		d.t.Fatalf("token create printed %q, want one secret", r.stdout)
	}
	if want := fmt.Sprintf("token %s (", name); !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, "role "+role) {
		d.t.Errorf("token create: stderr %q, want it to start %q and name role %s", r.stderr, want, role)
	}
	return secret
}

// daemonRun is `wiz runs show -o json` or an entry of `wiz runs list -o json`.
type daemonRun struct {
	ID         string `json:"id"`
	Pipeline   string `json:"pipeline"`
	Version    int    `json:"pipeline_version"`
	State      string `json:"state"`
	Reason     string `json:"reason"`
	Processors []struct {
		Name       string `json:"name"`
		State      string `json:"state"`
		Error      string `json:"error"`
		DurationNs int64  `json:"duration_ns"`
	} `json:"processors"`
}

// show returns `wiz runs show ID -o json`.
func (d *daemonServer) show(token, id string) daemonRun {
	d.t.Helper()
	var r daemonRun
	d.decode(&r, token, "runs", "show", id, "-o", "json")
	return r
}

// list returns every run, newest first.
func (d *daemonServer) list(token string) []daemonRun {
	d.t.Helper()
	var rs []daemonRun
	d.decode(&rs, token, "runs", "list", "-n", "0", "-o", "json")
	return rs
}

// waitRun polls `wiz runs show ID -o json` until cond holds, for at most
// daemonPollMax.
func (d *daemonServer) waitRun(token, id, what string, cond func(daemonRun) bool) daemonRun {
	d.t.Helper()
	deadline := time.Now().Add(daemonPollMax)
	for {
		r := d.wiz(token, "runs", "show", id, "-o", "json")
		var run daemonRun
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &run) == nil && cond(run) {
			return run
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("run %s: not %s within %v; last: %s", id, what, daemonPollMax, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// refused checks that a client was refused: exit 1, nothing on stdout and
// one line on stderr that starts with prefix and holds each of want.
func daemonRefused(t *testing.T, what string, r daemonResult, prefix string, want ...string) {
	t.Helper()
	line := strings.TrimSuffix(r.stderr, "\n")
	switch {
	case r.err != nil || r.code != 1:
		t.Errorf("%s: want exit 1: %s", what, r)
	case r.stdout != "":
		t.Errorf("%s: want nothing on stdout: %s", what, r)
	case line == "" || strings.Contains(line, "\n") || !strings.HasSuffix(r.stderr, "\n"):
		t.Errorf("%s: want one line on stderr: %s", what, r)
	case !strings.HasPrefix(line, prefix):
		t.Errorf("%s: want stderr to start %q: %s", what, prefix, r)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("%s: want stderr to hold %q: %s", what, w, r)
		}
	}
}

// procs returns "PID: COMMAND LINE" of the live processes of this test
// whose command line (argv[0] reduced to its base name, joined by spaces)
// starts with prefix.
func (e *daemonEnv) procs(prefix string) []string {
	self := fmt.Sprint(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []string
	for _, d := range dirs {
		pid := filepath.Base(d)
		if pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), e.mark) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join(d, "stat")); err != nil || daemonZombie(stat) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		argv[0] = filepath.Base(argv[0])
		if line := strings.Join(argv, " "); strings.HasPrefix(line, prefix) {
			out = append(out, pid+": "+line)
		}
	}
	return out
}

// waitGone waits up to daemonGoneMax for the processes of this test whose
// command line starts with prefix to go, and returns those left.
func (e *daemonEnv) waitGone(prefix string) []string {
	deadline := time.Now().Add(daemonGoneMax)
	for {
		left := e.procs(prefix)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemonZombie reports whether /proc/PID/stat describes an exited process
// not yet reaped.
func daemonZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	return stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// daemonSummary matches the summary line of a run on stdout.
var daemonSummary = regexp.MustCompile(`(?m)^run ([0-9A-Za-z]{27}) (Succeeded|Failed) in \S+ \(pipeline (\S+) v(\d+), (\d+) processors\)$`)

const daemonTruePipeline = `name: truth
processors:
  t:
    uses: std/exec
    with: {command: [/bin/true]}
`

// TestDaemonAuth: every call needs a valid token of a role that may make it;
// the CLI turns each refusal into one line; TLS is verified unless told not to.
func TestDaemonAuth(t *testing.T) {
	e := daemonNewEnv(t)
	d := e.daemon(filepath.Join(e.dir, "data"))
	if d.admin == "" {
		t.Fatalf("the daemon printed no admin token on first start:\n%s", d.stdout)
	}
	if !regexp.MustCompile(`(?m)^wiz daemon: TLS certificate sha256 fingerprint [0-9a-f]{64}$`).MatchString(d.stdout.String()) {
		t.Errorf("the daemon printed no certificate fingerprint:\n%s", d.stdout)
	}
	e.file("p.yaml", daemonTruePipeline)

	viewer := d.token(d.admin, "v", "viewer")
	runner := d.token(d.admin, "r", "runner")
	revoked := d.token(d.admin, "x", "viewer")
	if r := d.ok(d.admin, "token", "revoke", "x"); !strings.HasPrefix(r.stdout, "revoked token x (") {
		t.Errorf("token revoke: %s", r)
	}
	expiring := d.token(d.admin, "e", "viewer", "--expires", "1s")
	time.Sleep(2 * time.Second)

	const unauth = "wiz: authentication failed: "
	daemonRefused(t, "no token", d.wiz("", "runs", "list"), unauth+"no token")
	daemonRefused(t, "a wrong token", d.wiz("wiz_wrong", "runs", "list"), unauth+"unknown token")
	daemonRefused(t, "a revoked token", d.wiz(revoked, "runs", "list"), unauth, "token x was revoked")
	daemonRefused(t, "an expired token", d.wiz(expiring, "runs", "list"), unauth, "token e expired at ")
	daemonRefused(t, "a viewer starting a run", d.wiz(viewer, "run", "p.yaml"), "wiz: permission denied: ", "role viewer", "StartRun needs runner")
	daemonRefused(t, "a runner listing tokens", d.wiz(runner, "token", "list"), "wiz: permission denied: ", "role runner", "ListTokens needs admin")
	daemonRefused(t, "a viewer creating a token", d.wiz(viewer, "token", "create", "--name", "mine"), "wiz: permission denied: ", "CreateToken needs admin")

	r := d.ok(runner, "run", "p.yaml")
	m := daemonSummary.FindStringSubmatch(r.stdout)
	if m == nil || m[2] != "Succeeded" || m[3] != "truth" {
		t.Fatalf("runner's run: want a Succeeded summary: %s", r)
	}
	runID := m[1]
	if !regexp.MustCompile(`(?m)^t +Succeeded`).MatchString(r.stderr) {
		t.Errorf("runner's run: want the progress on stderr: %s", r)
	}
	if r := d.ok(viewer, "runs", "list"); !regexp.MustCompile(`(?m)^` + runID + ` +truth +v1 +Succeeded `).MatchString(r.stdout) {
		t.Errorf("viewer's runs list does not show the run: %s", r)
	}

	// gc through the daemon: admins only; the run just made is kept.
	daemonRefused(t, "a runner collecting garbage", d.wiz(runner, "gc", "--keep-last", "1"), "wiz: permission denied: ", "role runner", "GC needs admin")
	if r := d.ok(d.admin, "gc", "--keep-last", "1"); !strings.Contains(r.stdout, "deleted 0 runs and 0 blobs, freed 0 bytes (kept 1 runs)") {
		t.Errorf("admin's gc: want nothing deleted and one run kept: %s", r)
	}

	r = d.ok(d.admin, "token", "list")
	for _, want := range []string{
		`(?m)^\S+ +admin +admin +.* never +active$`,
		`(?m)^\S+ +v +viewer +.* never +active$`,
		`(?m)^\S+ +r +runner +.* never +active$`,
		`(?m)^\S+ +x +viewer +.* never +revoked$`,
		`(?m)^\S+ +e +viewer +.* expired$`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("token list: want a line matching %s: %s", want, r)
		}
	}
	if strings.Contains(r.stdout, "wiz_") {
		t.Errorf("token list shows a secret: %s", r)
	}

	// TLS: --ca with the daemon's certificate instead of skipping
	// verification; with neither, verification fails.
	ca := filepath.Join(d.data, "tls.crt")
	r = e.exec(filepath.Join(binDir, "wiz"), "--server", d.addr, "--ca", ca, "--token", viewer, "runs", "list", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, runID) {
		t.Errorf("--ca %s: want the runs: %s", ca, r)
	}
	r = e.exec(filepath.Join(binDir, "wiz"), "--server", d.addr, "--token", viewer, "runs", "list")
	daemonRefused(t, "no --ca and no --insecure-skip-verify", r, "wiz: cannot reach the Manager: ", "certificate")
	if !strings.Contains(r.stderr, "with --ca FILE or WIZ_CA") {
		t.Errorf("an untrusted certificate: want the --ca hint: %s", r)
	}
	// WIZ_CA is --ca.
	withCA := *e
	withCA.env = append(slices.Clone(e.env), "WIZ_CA="+ca)
	r = withCA.exec(filepath.Join(binDir, "wiz"), "--server", d.addr, "--token", viewer, "runs", "list", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, runID) {
		t.Errorf("WIZ_CA=%s: want the runs: %s", ca, r)
	}
}

// TestDaemonGrpcurl: grpcurl lists the services through reflection with a
// token, is refused without one, and checks health with or without one.
func TestDaemonGrpcurl(t *testing.T) {
	e := daemonNewEnv(t)
	grpcurl := daemonGrpcurl(t)
	const admin = "wiz_test-admin-secret"
	d := e.daemon(filepath.Join(e.dir, "data"), "WIZ_ADMIN_TOKEN="+admin)
	if out := d.stdout.String(); d.admin != "" || !strings.Contains(out, "wiz daemon: admin token taken from the configuration\n") {
		t.Errorf("with WIZ_ADMIN_TOKEN the daemon must print no secret, and say where the token came from:\n%s", out)
	}
	viewer := d.token(admin, "v", "viewer")
	bearer := func(tok string) []string { return []string{"-insecure", "-H", "authorization: Bearer " + tok} }

	for _, tok := range []string{admin, viewer} {
		r := e.exec(grpcurl, append(bearer(tok), d.addr, "list")...)
		if r.code != 0 {
			t.Fatalf("grpcurl list: %s", r)
		}
		services := strings.Fields(r.stdout)
		for _, s := range []string{"wizrpc.v1.Manager", "wizrpc.v1.Tokens", "grpc.health.v1.Health"} {
			if !slices.Contains(services, s) {
				t.Errorf("grpcurl list: want %s: %s", s, r)
			}
		}
	}
	// RFC 7235: the scheme is case-insensitive.
	r := e.exec(grpcurl, "-insecure", "-H", "authorization: bearer "+viewer, d.addr, "list")
	if r.code != 0 {
		t.Errorf("grpcurl list with a lower-case bearer scheme: %s", r)
	}
	r = e.exec(grpcurl, append(bearer(admin), d.addr, "list", "wizrpc.v1.Manager")...)
	if r.code != 0 || !strings.Contains(r.stdout, "wizrpc.v1.Manager.StartRun") {
		t.Errorf("grpcurl list wizrpc.v1.Manager: %s", r)
	}

	r = e.exec(grpcurl, "-insecure", d.addr, "list")
	if r.code == 0 || !strings.Contains(r.stderr, "Unauthenticated") {
		t.Errorf("grpcurl list without a token: want Unauthenticated: %s", r)
	}
	r = e.exec(grpcurl, append(bearer("wiz_wrong"), d.addr, "list")...)
	if r.code == 0 || !strings.Contains(r.stderr, "Unauthenticated") {
		t.Errorf("grpcurl list with a wrong token: want Unauthenticated: %s", r)
	}

	// Calls: a viewer may list runs, not tokens.
	r = e.exec(grpcurl, append(bearer(viewer), d.addr, "wizrpc.v1.Manager/ListRuns")...)
	if r.code != 0 {
		t.Errorf("grpcurl ListRuns as a viewer: %s", r)
	}
	r = e.exec(grpcurl, append(bearer(viewer), d.addr, "wizrpc.v1.Tokens/ListTokens")...)
	if r.code == 0 || !strings.Contains(r.stderr, "PermissionDenied") {
		t.Errorf("grpcurl ListTokens as a viewer: want PermissionDenied: %s", r)
	}

	// Health through reflection, which needs a token.
	r = e.exec(grpcurl, append(bearer(viewer), d.addr, "grpc.health.v1.Health/Check")...)
	if r.code != 0 || !strings.Contains(r.stdout, `"status": "SERVING"`) {
		t.Errorf("grpcurl Health/Check: want SERVING: %s", r)
	}
	// Health without a token, from a .proto file instead of reflection: it is
	// open to probes.
	e.file("health.proto", daemonHealthProto)
	r = e.exec(grpcurl, "-insecure", "-import-path", e.dir, "-proto", "health.proto", d.addr, "grpc.health.v1.Health/Check")
	if r.code != 0 || !strings.Contains(r.stdout, `"status": "SERVING"`) {
		t.Errorf("grpcurl Health/Check without a token: want SERVING: %s", r)
	}
}

// daemonHealthProto is the part of grpc/health/v1/health.proto that
// Health/Check needs.
const daemonHealthProto = `syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
`

// daemonGrpcurlVersion is the grpcurl the tests use.
const daemonGrpcurlVersion = "v1.9.4"

// daemonGrpcurl returns the path of grpcurl daemonGrpcurlVersion, installing
// it with `go install` into a cache dir outside the repository unless it is
// there already.
func daemonGrpcurl(t *testing.T) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("find a cache dir for grpcurl: %v", err)
	}
	dir := filepath.Join(cache, "wiz-test-tools")
	bin := filepath.Join(dir, "grpcurl")
	installed := func() bool {
		if exec.Command(bin, "-version").Run() != nil {
			return false
		}
		out, err := exec.Command("go", "version", "-m", bin).Output()
		return err == nil && regexp.MustCompile(`(?m)^\s+mod\s+github\.com/fullstorydev/grpcurl\s+`+regexp.QuoteMeta(daemonGrpcurlVersion)+`\s`).Match(out)
	}
	if installed() {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "install", "github.com/fullstorydev/grpcurl/cmd/grpcurl@"+daemonGrpcurlVersion)
	cmd.Dir = dir // outside any module
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install grpcurl %s into %s (this test needs it; without network access, fill the module cache or put a grpcurl %s there): go install: %v\n%s",
			daemonGrpcurlVersion, dir, daemonGrpcurlVersion, err, out)
	}
	if !installed() {
		t.Fatalf("go install put no working grpcurl %s at %s", daemonGrpcurlVersion, bin)
	}
	return bin
}

// TestDaemonManyClients: many clients start runs at once; every run
// Succeeds, once, and is listed once.
func TestDaemonManyClients(t *testing.T) {
	const clients, runsEach = 20, 10
	e := daemonNewEnv(t)
	d := e.daemon(filepath.Join(e.dir, "data"))
	runner := d.token(d.admin, "r", "runner")
	e.file("many.yaml", `name: many
processors:
  a:
    uses: std/exec
    with: {command: [/bin/true]}
  b:
    uses: std/exec
    with: {command: [/bin/true]}
    after: [a]
`)
	start := time.Now()
	var (
		mu       sync.Mutex
		ids      = map[string]int{}
		failures []string
		wg       sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			for i := range runsEach {
				r := d.wiz(runner, "run", "-q", "many.yaml")
				m := daemonSummary.FindStringSubmatch(r.stdout)
				mu.Lock()
				switch {
				case r.code != 0 || r.err != nil || m == nil || m[2] != "Succeeded" || m[3] != "many" || m[5] != "2" || r.stderr != "":
					failures = append(failures, fmt.Sprintf("client %d, run %d: %s", c, i, r))
				default:
					ids[m[1]]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d clients × %d runs: %v", clients, runsEach, elapsed)
	for i, f := range failures {
		if i == 5 {
			t.Errorf("… and %d more failures", len(failures)-5)
			break
		}
		t.Errorf("want exit 0 and a Succeeded summary, nothing on stderr: %s", f)
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("run %s was reported to %d clients", id, n)
		}
	}

	runs := d.list(runner)
	if len(runs) != clients*runsEach {
		t.Errorf("runs list: %d runs, want %d", len(runs), clients*runsEach)
	}
	seen := map[string]bool{}
	for _, r := range runs {
		if seen[r.ID] {
			t.Errorf("runs list: run %s twice", r.ID)
		}
		seen[r.ID] = true
		if r.State != "Succeeded" || r.Pipeline != "many" || r.Version != 1 {
			t.Errorf("runs list: run %s: %s of %s v%d, want Succeeded of many v1", r.ID, r.State, r.Pipeline, r.Version)
		}
		if _, ok := ids[r.ID]; !ok && len(failures) == 0 {
			t.Errorf("runs list: run %s was reported to no client", r.ID)
		}
	}
	for id := range ids {
		if !seen[id] {
			t.Errorf("runs list: no run %s, which a client was told Succeeded", id)
		}
	}
	if r := d.ok(runner, "pipeline", "show", "many"); regexp.MustCompile(`(?m)^2 +`).MatchString(r.stdout) { // a version 2 row
		t.Errorf("applying the same file concurrently made more than one version: %s", r)
	}
}

// daemonStep matches a plain progress line: a processor and its state.
var daemonStep = regexp.MustCompile(`(?m)^(\S+) +(Idle|Running|Succeeded|Failed)\b`)

// daemonCheckSteps checks that the progress on stderr shows each of procs
// go Running then Succeeded, one after the other, and never Failed.
func daemonCheckSteps(t *testing.T, who, stderr string, procs ...string) {
	t.Helper()
	var steps []string
	for _, m := range daemonStep.FindAllStringSubmatch(stderr, -1) {
		steps = append(steps, m[1]+" "+m[2])
	}
	prev := -1
	for _, p := range procs {
		for _, s := range []string{"Running", "Succeeded"} {
			i := slices.Index(steps, p+" "+s)
			if i <= prev {
				t.Errorf("%s: want %s %s after the steps before it; steps %q\nstderr:\n%s", who, p, s, steps, stderr)
				return
			}
			prev = i
		}
		if last := slices.Index(steps, p+" Succeeded"); slices.Contains(steps[last:], p+" Running") {
			t.Errorf("%s: %s Running again after Succeeded; steps %q", who, p, steps)
		}
	}
	for _, s := range steps {
		if strings.HasSuffix(s, " Failed") {
			t.Errorf("%s: %s; steps %q", who, s, steps)
		}
	}
}

// TestDaemonWatch: two watchers follow a run another client started; both
// see every processor go Running then Succeeded, in order, and the summary.
func TestDaemonWatch(t *testing.T) {
	e := daemonNewEnv(t)
	d := e.daemon(filepath.Join(e.dir, "data"))
	runner := d.token(d.admin, "r", "runner")
	viewer := d.token(d.admin, "v", "viewer")
	// a waits for the gate, so that the watchers are attached before
	// anything but a has happened; then a, b and c each sleep 0.5 s.
	gate := filepath.Join(e.dir, "gate")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) }) // before the daemon stops
	e.file("watch.yaml", fmt.Sprintf(`name: watch
processors:
  a:
    uses: std/shell
    with: {script: 'while [ ! -e %s ]; do sleep 0.05; done; sleep 0.5'}
    timeout: 120s
  b:
    uses: std/exec
    with: {command: [sleep, "0.5"]}
    after: [a]
  c:
    uses: std/exec
    with: {command: [sleep, "0.5"]}
    after: [b]
`, gate))
	run := e.start("wiz run", nil, d.args(runner, "run", "watch.yaml")...)
	id := daemonWaitID(t, run)
	d.waitRun(viewer, id, "Running with a Running", func(r daemonRun) bool {
		return r.State == "Running" && len(r.Processors) == 3 && r.Processors[0].Name == "a" && r.Processors[0].State == "Running"
	})

	var watchers []*daemonProc
	for i := range 2 {
		watchers = append(watchers, e.start(fmt.Sprintf("watcher %d", i+1), nil, d.args(viewer, "runs", "watch", "last")...))
	}
	attached := regexp.MustCompile(`(?m)^a +Running`)
	for deadline := time.Now().Add(daemonPollMax); ; time.Sleep(20 * time.Millisecond) {
		n := 0
		for _, w := range watchers {
			if attached.MatchString(w.stderr.String()) {
				n++
			} else if w.exited() {
				t.Fatalf("%s exited with %d before showing a Running\nstdout:\n%s\nstderr:\n%s", w.name, w.code, w.stdout, w.stderr)
			}
		}
		if n == len(watchers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watchers did not show a Running within %v", daemonPollMax)
		}
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, p := range append([]*daemonProc{run}, watchers...) {
		code := p.wait(daemonCmdMax)
		out := p.stdout.String()
		m := daemonSummary.FindStringSubmatch(out)
		if code != 0 || m == nil || m[1] != id || m[2] != "Succeeded" || m[3] != "watch" || m[5] != "3" {
			t.Errorf("%s: want exit 0 and the Succeeded summary of run %s; exit %d\nstdout:\n%s\nstderr:\n%s", p.name, id, code, out, p.stderr)
		}
		errOut := p.stderr.String()
		if !strings.HasPrefix(errOut, fmt.Sprintf("run %s started (pipeline watch v1)\n", id)) {
			t.Errorf("%s: want stderr to start with the run's first line:\n%s", p.name, errOut)
		}
		daemonCheckSteps(t, p.name, errOut, "a", "b", "c")
	}
	if r := d.show(viewer, id); r.State != "Succeeded" {
		t.Errorf("run %s: %s, want Succeeded", id, r.State)
	}
}

// daemonWaitID waits for a `wiz run` in the background to print its run's
// first line and returns the run's ID.
func daemonWaitID(t *testing.T, p *daemonProc) string {
	t.Helper()
	started := regexp.MustCompile(`(?m)^run ([0-9A-Za-z]{27}) started `)
	for deadline := time.Now().Add(daemonPollMax); ; time.Sleep(20 * time.Millisecond) {
		if m := started.FindStringSubmatch(p.stderr.String()); m != nil {
			return m[1]
		}
		if p.exited() {
			t.Fatalf("%s exited with %d before its run started\nstdout:\n%s\nstderr:\n%s", p.name, p.code, p.stdout, p.stderr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no run started within %v\nstderr:\n%s", p.name, daemonPollMax, p.stderr)
		}
	}
}

// TestDaemonRestart: what a daemon stopped with SIGTERM had is served again
// by the next one on the same data dir; a run that a SIGKILLed daemon left
// Running stays Running for short commands meanwhile, is ended Failed,
// "manager exited: …", by the next daemon started with --on-restart fail, and
// none of its processes is left.
func TestDaemonRestart(t *testing.T) {
	e := daemonNewEnv(t)
	data := filepath.Join(e.dir, "data")
	d := e.daemon(data)
	admin := d.admin
	if admin == "" {
		t.Fatalf("the daemon printed no admin token on first start:\n%s", d.stdout)
	}
	e.file("one.yaml", daemonTruePipeline)
	e.file("two.yaml", `name: two
processors:
  a:
    uses: std/exec
    with: {command: [/bin/true]}
  b:
    uses: std/exec
    with: {command: [/bin/true]}
    after: [a]
`)
	e.file("logs.yaml", `name: logs
processors:
  talk:
    uses: std/shell
    with: {script: 'echo hi >&2', stdout: false}
`)
	var ids []string
	for _, f := range []string{"one.yaml", "two.yaml", "logs.yaml"} {
		r := d.ok(admin, "run", "-q", f)
		m := daemonSummary.FindStringSubmatch(r.stdout)
		if m == nil || m[2] != "Succeeded" {
			t.Fatalf("want a Succeeded summary: %s", r)
		}
		ids = append(ids, m[1])
	}
	logsID := ids[2]
	viewer := d.token(admin, "keep", "viewer")

	if code := d.signal(syscall.SIGTERM, daemonStopMax); code != 0 {
		t.Fatalf("the daemon exited with status %d after SIGTERM\nstderr:\n%s", code, d.stderr)
	}

	d = e.daemon(data)
	if out := d.stdout.String(); d.admin != "" || strings.Contains(out, "admin token") {
		t.Errorf("the restarted daemon printed an admin token:\n%s", out)
	}
	runs := d.list(admin)
	var got []string
	for _, r := range runs {
		got = append(got, r.ID)
		if r.State != "Succeeded" {
			t.Errorf("after a restart, run %s is %s, want Succeeded", r.ID, r.State)
		}
	}
	slices.Reverse(got) // oldest first, like ids
	if !slices.Equal(got, ids) {
		t.Errorf("after a restart, runs list has %q, want %q", got, ids)
	}
	if r := d.ok(admin, "token", "list"); !regexp.MustCompile(`(?m)^\S+ +keep +viewer +.* never +active$`).MatchString(r.stdout) {
		t.Errorf("after a restart, token list does not list token keep: %s", r)
	}
	if r := d.ok(viewer, "runs", "logs", logsID); r.stdout != "talk | hi\n" {
		t.Errorf("after a restart, runs logs %s: want \"talk | hi\": %s", logsID, r)
	}
	if r := d.ok(viewer, "pipeline", "list"); !strings.Contains(r.stdout, "truth") || !strings.Contains(r.stdout, "two") || !strings.Contains(r.stdout, "logs") {
		t.Errorf("after a restart, pipeline list misses pipelines: %s", r)
	}

	// A run going on when the daemon is SIGKILLed.
	e.file("long.yaml", `name: long
processors:
  nap:
    uses: std/exec
    with: {command: [sleep, "61.5"]}
`)
	client := e.start("wiz run", nil, d.args(admin, "run", "long.yaml")...)
	longID := daemonWaitID(t, client)
	d.waitRun(viewer, longID, "Running with nap Running", func(r daemonRun) bool {
		return r.State == "Running" && len(r.Processors) == 1 && r.Processors[0].State == "Running"
	})
	for deadline := time.Now().Add(daemonPollMax); len(e.procs("sleep 61.5")) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no process runs sleep 61.5 within %v of the run Running", daemonPollMax)
		}
	}
	d.signal(syscall.SIGKILL, daemonStopMax)
	if code := client.wait(daemonPollMax); code != 1 {
		t.Errorf("the client of a killed daemon: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, client.stdout, client.stderr)
	}

	// A short command on the data dir meanwhile opens the store itself and
	// leaves the daemon's run alone: it is the next daemon start's.
	if r := e.exec(filepath.Join(binDir, "wiz"), "--home", data, "runs", "show", longID); r.code != 0 ||
		!regexp.MustCompile(`(?m)^state +Running$`).MatchString(r.stdout) {
		t.Errorf("runs show %s on the data dir of the killed daemon: want the run still Running: %s", longID, r)
	}

	d = e.daemonArgs(data, nil, "--on-restart", "fail") // TestDaemonContinue: the default, continue
	const settled = "manager exited: the daemon running it was killed or crashed; `wiz runs resume "
	r := d.ok(viewer, "runs", "show", "last")
	if !regexp.MustCompile(`(?m)^run +`+longID+`$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^state +Failed$`).MatchString(r.stdout) ||
		!regexp.MustCompile("(?m)^reason +"+regexp.QuoteMeta(settled+longID+"` continues it, reusing what succeeded")+"$").MatchString(r.stdout) {
		t.Errorf("runs show last after the daemon was killed: want run %s Failed, %s…: %s", longID, settled, r)
	}
	if run := d.show(viewer, longID); run.State != "Failed" || !strings.HasPrefix(run.Reason, settled) ||
		len(run.Processors) != 1 || run.Processors[0].State != "Failed" || !strings.HasPrefix(run.Processors[0].Error, settled) {
		t.Errorf("runs show %s -o json: %+v, want the run and nap Failed, %s…", longID, run, settled)
	}
	if !strings.Contains(d.stderr.String(), longID) {
		t.Errorf("the restarted daemon did not log the run it ended Failed:\n%s", d.stderr)
	}
	if left := e.waitGone("sleep 61.5"); len(left) > 0 {
		t.Errorf("sleep 61.5 still runs %v after its daemon was killed:\n%s", daemonGoneMax, strings.Join(left, "\n"))
	}
	if n := len(d.list(viewer)); n != 4 {
		t.Errorf("runs list: %d runs, want 4", n)
	}
}

// TestDaemonDisconnect: a run goes on, and Succeeds, when the client that
// started it is killed.
func TestDaemonDisconnect(t *testing.T) {
	e := daemonNewEnv(t)
	d := e.daemon(filepath.Join(e.dir, "data"))
	runner := d.token(d.admin, "r", "runner")
	// The processor waits for the gate, so that the client is surely killed
	// while the run goes on; then it sleeps 2 s.
	gate := filepath.Join(e.dir, "gate")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) }) // before the daemon stops
	e.file("nap.yaml", fmt.Sprintf(`name: nap
processors:
  nap:
    uses: std/shell
    with: {script: 'while [ ! -e %s ]; do sleep 0.05; done; sleep 2'}
    timeout: 120s
`, gate))
	client := e.start("wiz run", nil, d.args(runner, "run", "nap.yaml")...)
	id := daemonWaitID(t, client)
	d.waitRun(runner, id, "Running with nap Running", func(r daemonRun) bool {
		return r.State == "Running" && len(r.Processors) == 1 && r.Processors[0].State == "Running"
	})
	if code := client.signal(syscall.SIGKILL, daemonStopMax); code != -1 {
		t.Fatalf("the client exited %d before it was killed\nstdout:\n%s\nstderr:\n%s", code, client.stdout, client.stderr)
	}
	if r := d.show(runner, "last"); r.ID != id || r.State != "Running" {
		t.Fatalf("once its client is killed, run %s is %s, want Running", id, r.State)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := d.waitRun(runner, "last", "ended", func(r daemonRun) bool { return r.State != "Running" })
	if r.ID != id || r.State != "Succeeded" || len(r.Processors) != 1 || r.Processors[0].State != "Succeeded" {
		t.Errorf("run %s: %+v, want it and nap Succeeded", id, r)
	} else if r.Processors[0].DurationNs < int64(2*time.Second) {
		t.Errorf("nap took %v, less than its sleep 2", time.Duration(r.Processors[0].DurationNs))
	}
}

// TestDaemonSecrets: an admin sets a secret through the daemon, a runner
// lists and uses it but cannot set or remove it, a viewer cannot list; the
// value reaches the program, is masked in its output, and is nowhere in the
// daemon's data dir but encrypted.
func TestDaemonSecrets(t *testing.T) {
	e := daemonNewEnv(t)
	data := filepath.Join(e.dir, "data")
	d := e.daemon(data)
	const value = "daemon-s3cret-9f8e7d"
	valueFile := e.file("value.txt", value)
	e.file("p.yaml", `name: uses-secret
processors:
  show:
    uses: std/exec
    with:
      env: {TOKEN: "${{ secrets.DEPLOY_KEY }}"}
      command: [sh, -c, 'echo "len=${#TOKEN} value=$TOKEN"']
`)
	runner := d.token(d.admin, "r", "runner")
	viewer := d.token(d.admin, "v", "viewer")

	daemonRefused(t, "a runner setting a secret", d.wiz(runner, "secret", "set", "DEPLOY_KEY", "--from-file", valueFile), "wiz: permission denied: ", "SetSecret needs admin")
	if r := d.ok(d.admin, "secret", "set", "DEPLOY_KEY", "--from-file", valueFile); !strings.Contains(r.stderr, "secret DEPLOY_KEY created") {
		t.Errorf("secret set: %s", r)
	}
	if r := d.ok(runner, "secret", "list"); !regexp.MustCompile(`(?m)^DEPLOY_KEY +`).MatchString(r.stdout) || strings.Contains(r.stdout, value) {
		t.Errorf("runner's secret list: %s", r)
	}
	daemonRefused(t, "a viewer listing secrets", d.wiz(viewer, "secret", "list"), "wiz: permission denied: ", "ListSecrets needs runner")
	daemonRefused(t, "a runner removing a secret", d.wiz(runner, "secret", "rm", "DEPLOY_KEY"), "wiz: permission denied: ", "DeleteSecret needs admin")

	d.ok(runner, "run", "p.yaml")
	r := d.ok(runner, "runs", "output", "last", "show", "out")
	if want := fmt.Sprintf("len=%d value=***\n", len(value)); r.stdout != want {
		t.Errorf("the program's output: got %q, want %q", r.stdout, want)
	}
	if r := d.ok(runner, "runs", "show", "last", "-o", "json"); strings.Contains(r.stdout, value) {
		t.Errorf("runs show -o json holds the value: %s", r)
	}
	st, err := os.Stat(filepath.Join(data, "secrets.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the daemon's secrets key: %v %v, want a 0600 file", st, err)
	}
	err = filepath.WalkDir(data, func(path string, de fs.DirEntry, err error) error {
		if err != nil || !de.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(value)) {
			t.Errorf("%s holds the secret's value in plain text", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d.ok(d.admin, "secret", "rm", "DEPLOY_KEY")
	if r := d.wiz(d.admin, "secret", "rm", "DEPLOY_KEY"); r.code != 1 || !strings.Contains(r.stderr, "secret DEPLOY_KEY does not exist") {
		t.Errorf("removing a removed secret: want exit 1 and not found: %s", r)
	}
}

// schedRun is a run as `runs list -o json` shows it, for schedule tests.
type schedRun struct {
	ID            string    `json:"id"`
	Pipeline      string    `json:"pipeline"`
	State         string    `json:"state"`
	Trigger       string    `json:"trigger"`
	ScheduledTime time.Time `json:"scheduled_time"`
	Started       time.Time `json:"started"`
}

// schedInfo is a schedule as `schedules list -o json` shows it.
type schedInfo struct {
	Pipeline string `json:"pipeline"`
	Name     string `json:"name"`
	Skipped  []struct {
		Tick   time.Time `json:"tick"`
		Reason string    `json:"reason"`
	} `json:"skipped"`
}

// schedRuns returns the runs of pipeline, oldest tick first.
func schedRuns(d *daemonServer, token, pipeline string) []schedRun {
	var all, out []schedRun
	d.decode(&all, token, "runs", "list", "-n", "0", "--pipeline", pipeline, "-o", "json")
	for _, r := range all {
		if r.Pipeline == pipeline {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b schedRun) int { return a.ScheduledTime.Compare(b.ScheduledTime) })
	return out
}

// waitSchedRuns waits until pipeline has at least n runs that ended.
func waitSchedRuns(t *testing.T, d *daemonServer, token, pipeline string, n int, max time.Duration) []schedRun {
	t.Helper()
	for deadline := time.Now().Add(max); ; time.Sleep(200 * time.Millisecond) {
		rs := schedRuns(d, token, pipeline)
		done := 0
		for _, r := range rs {
			if r.State != "Running" {
				done++
			}
		}
		if done >= n {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d runs ended within %v, want %d: %+v\ndaemon stderr:\n%s", pipeline, done, max, n, rs, d.stderr)
		}
	}
}

// TestDaemonSchedules: the daemon fires a cron with seconds on time, with
// overlap skip and queue against a slow pipeline; killed with SIGKILL across
// several ticks and restarted, it runs each missed tick inside catchup once,
// none twice, and records the older ones skipped.
func TestDaemonSchedules(t *testing.T) {
	e := daemonNewEnv(t)
	data := filepath.Join(e.dir, "data")
	d := e.daemon(data)
	admin := d.admin
	e.file("ontime.yaml", `name: ontime
schedules:
  every3:
    cron: "*/3 * * * * *"
processors:
  t: {uses: std/exec, with: {command: ["true"]}}
`)
	for _, policy := range []string{"skip", "queue"} {
		e.file(policy+".yaml", `name: slow-`+policy+`
schedules:
  every2:
    cron: "*/2 * * * * *"
    overlap: `+policy+`
processors:
  nap: {uses: std/exec, with: {command: [sleep, "3"]}}
`)
	}
	e.file("catch.yaml", `name: catch
schedules:
  every1:
    cron: "* * * * * *"
    catchup: 4s
processors:
  t: {uses: std/exec, with: {command: ["true"]}}
`)
	for _, f := range []string{"ontime.yaml", "skip.yaml", "queue.yaml", "catch.yaml"} {
		d.ok(admin, "pipeline", "apply", f)
	}

	// On time: ticks at seconds divisible by 3, each run recorded within 2 s
	// of its tick (`make bench` measures the lag; this bound holds on a
	// loaded CI machine).
	rs := waitSchedRuns(t, d, admin, "ontime", 2, 20*time.Second)
	for i, r := range rs {
		if r.Trigger != "schedule/every3" || r.ScheduledTime.Second()%3 != 0 || r.ScheduledTime.Nanosecond() != 0 {
			t.Errorf("ontime run %d: trigger %q, scheduled %v; want schedule/every3 at a second divisible by 3", i, r.Trigger, r.ScheduledTime)
		}
		if lag := r.Started.Sub(r.ScheduledTime); lag < 0 || lag > 2*time.Second { // on a loaded CI machine too
			t.Errorf("ontime run %d started %v after its tick, want within 2s", i, lag)
		}
		if i > 0 && r.ScheduledTime.Sub(rs[i-1].ScheduledTime)%(3*time.Second) != 0 {
			t.Errorf("ontime runs %d and %d are not whole ticks apart: %v, %v", i-1, i, rs[i-1].ScheduledTime, r.ScheduledTime)
		}
	}

	// overlap: skip, a 3 s run every 2 s: the tick during a run is skipped.
	// overlap: queue: it waits and starts when the run ends.
	skipRuns := waitSchedRuns(t, d, admin, "slow-skip", 2, 30*time.Second)
	queueRuns := waitSchedRuns(t, d, admin, "slow-queue", 2, 30*time.Second)
	var infos []schedInfo
	d.decode(&infos, admin, "schedules", "list", "-o", "json")
	skipped := map[string]int{}
	for _, i := range infos {
		for _, s := range i.Skipped {
			if strings.HasPrefix(s.Reason, "overlap") {
				skipped[i.Pipeline]++
			}
		}
	}
	if skipped["slow-skip"] == 0 {
		t.Errorf("overlap skip: no tick was skipped for overlap: %+v", infos)
	}
	if skipped["slow-queue"] != 0 {
		t.Errorf("overlap queue: %d ticks skipped, want none", skipped["slow-queue"])
	}
	if gap := skipRuns[1].ScheduledTime.Sub(skipRuns[0].ScheduledTime); gap < 4*time.Second {
		t.Errorf("overlap skip: runs at ticks %v apart, want the tick during the first run skipped (≥ 4s)", gap)
	}
	if gap := queueRuns[1].ScheduledTime.Sub(queueRuns[0].ScheduledTime); gap != 2*time.Second {
		t.Errorf("overlap queue: runs at ticks %v apart, want the next tick (2s)", gap)
	}
	if start := queueRuns[1].Started.Sub(queueRuns[0].Started); start < 3*time.Second {
		t.Errorf("overlap queue: the queued run started %v after the first, want after it ended (≥ 3s)", start)
	}

	// kill -9 across several ticks of a per-second schedule with catchup 4s.
	waitSchedRuns(t, d, admin, "catch", 1, 20*time.Second)
	if code := d.signal(syscall.SIGKILL, daemonStopMax); code == 0 {
		t.Fatal("the daemon exited 0 after SIGKILL")
	}
	killed := time.Now()
	time.Sleep(7 * time.Second) // more missed ticks than catchup covers
	d = e.daemon(data)
	restarted := time.Now()
	time.Sleep(3 * time.Second)
	rs = schedRuns(d, admin, "catch")
	ticks := map[time.Time]int{}
	for _, r := range rs {
		ticks[r.ScheduledTime]++
		if ticks[r.ScheduledTime] > 1 {
			t.Errorf("tick %v has %d runs, want 1", r.ScheduledTime, ticks[r.ScheduledTime])
		}
	}
	// Every tick from (restart - catchup) to the restart ran once.
	for tk := restarted.Add(-4 * time.Second).Truncate(time.Second).Add(time.Second); tk.Before(restarted.Truncate(time.Second)); tk = tk.Add(time.Second) {
		if ticks[tk.UTC()] != 1 && tk.After(killed) {
			t.Errorf("missed tick %v inside catchup: %d runs, want 1", tk.UTC(), ticks[tk.UTC()])
		}
	}
	d.decode(&infos, admin, "schedules", "list", "-o", "json")
	missed := 0
	for _, i := range infos {
		if i.Pipeline != "catch" {
			continue
		}
		for _, s := range i.Skipped {
			if strings.HasPrefix(s.Reason, "missed while no wiz daemon ran") {
				missed++
				if ticks[s.Tick.UTC()] != 0 {
					t.Errorf("tick %v is recorded skipped and has a run", s.Tick)
				}
				if s.Tick.Before(killed.Add(-time.Second)) || s.Tick.After(restarted.Add(-4*time.Second)) {
					t.Errorf("tick %v skipped as missed, but it is not in the downtime older than catchup (killed %v, restarted %v)", s.Tick, killed, restarted)
				}
			}
		}
	}
	if missed == 0 {
		t.Errorf("no tick older than catchup was recorded skipped (killed %v, restarted %v): %+v", killed, restarted, infos)
	}
}

// TestDaemonMetrics: --metrics-listen serves Prometheus metrics that parse,
// with the runs, processor durations, schedule lag and store size of what
// the daemon did.
func TestDaemonMetrics(t *testing.T) {
	e := daemonNewEnv(t)
	d := e.daemonArgs(filepath.Join(e.dir, "data"), nil, "--metrics-listen", "127.0.0.1:0")
	m := regexp.MustCompile(`(?m)^wiz daemon: metrics on (http://\S+/metrics)$`).FindStringSubmatch(d.stdout.String())
	if m == nil {
		t.Fatalf("the daemon did not say where its metrics are:\n%s", d.stdout)
	}
	e.file("p.yaml", daemonTruePipeline)
	d.ok(d.admin, "run", "p.yaml")
	e.file("tick.yaml", `name: tick
schedules:
  s:
    cron: "* * * * * *"
processors:
  t: {uses: std/exec, with: {command: ["true"]}}
`)
	d.ok(d.admin, "pipeline", "apply", "tick.yaml")
	waitSchedRuns(t, d, d.admin, "tick", 1, 20*time.Second)

	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.LegacyValidation) // wiz's names are Prometheus' classic ones
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	value := func(name string, labels map[string]string) float64 {
		f := fams[name]
		if f == nil {
			t.Errorf("no %s in /metrics", name)
			return 0
		}
		for _, mt := range f.Metric {
			match := true
			for _, lp := range mt.Label {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					match = false
				}
			}
			if !match {
				continue
			}
			switch {
			case mt.Counter != nil:
				return mt.Counter.GetValue()
			case mt.Gauge != nil:
				return mt.Gauge.GetValue()
			case mt.Histogram != nil:
				return float64(mt.Histogram.GetSampleCount())
			}
		}
		t.Errorf("no %s%v in /metrics", name, labels)
		return 0
	}
	if v := value("wiz_runs_total", map[string]string{"pipeline": "truth", "state": "succeeded"}); v != 1 {
		t.Errorf("wiz_runs_total{pipeline=truth,state=succeeded} = %v, want 1", v)
	}
	if v := value("wiz_runs_started_total", map[string]string{"pipeline": "tick"}); v < 1 {
		t.Errorf("wiz_runs_started_total{pipeline=tick} = %v, want ≥ 1", v)
	}
	if v := value("wiz_processor_duration_seconds", map[string]string{"pipeline": "truth", "type": "std/exec", "outcome": "succeeded"}); v != 1 {
		t.Errorf("wiz_processor_duration_seconds count for truth = %v, want 1", v)
	}
	if v := value("wiz_schedule_lag_seconds", map[string]string{"pipeline": "tick", "schedule": "s"}); v < 1 {
		t.Errorf("wiz_schedule_lag_seconds count = %v, want ≥ 1", v)
	}
	if v := value("wiz_store_size_bytes", nil); v <= 0 {
		t.Errorf("wiz_store_size_bytes = %v, want > 0", v)
	}
	if v := value("wiz_capacity_slots", nil); v < 1 {
		t.Errorf("wiz_capacity_slots = %v", v)
	}
	value("wiz_tasks_running", nil)
	value("wiz_tasks_queued", nil)
	value("wiz_capacity_slots_in_use", nil)
}

// TestDaemonRetention: the daemon keeps a pipeline's `retention:` (runs,
// age) and its own default for pipelines without one; older runs go with
// their logs and the blobs only they used.
func TestDaemonRetention(t *testing.T) {
	e := daemonNewEnv(t)
	data := filepath.Join(e.dir, "data")
	d := e.daemonArgs(data, nil, "--retention-runs", "2")
	// inline_max_size 1: every output is a blob of its own (the run's ID).
	e.file("own.yaml", `name: own
retention: {runs: 3}
inline_max_size: 1
processors:
  w: {uses: std/exec, with: {command: [sh, -c, 'echo "$WIZ_RUN_ID"; echo log >&2']}}
`)
	e.file("dflt.yaml", `name: dflt
inline_max_size: 1
processors:
  w: {uses: std/exec, with: {command: [sh, -c, 'echo "$WIZ_RUN_ID"']}}
`)
	e.file("aged.yaml", `name: aged
retention: {age: 2s}
processors:
  w: {uses: std/exec, with: {command: ["true"]}}
`)
	runID := func(f string) string {
		r := d.ok(d.admin, "run", "-q", f)
		m := daemonSummary.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("no summary: %s", r)
		}
		return m[1]
	}
	var own, dflt []string
	for range 5 {
		own = append(own, runID("own.yaml"))
	}
	for range 4 {
		dflt = append(dflt, runID("dflt.yaml"))
	}
	first := runID("aged.yaml")
	time.Sleep(2500 * time.Millisecond) // past its age; the next run's end applies retention
	second := runID("aged.yaml")

	want := map[string][]string{"own": own[2:], "dflt": dflt[2:], "aged": {second}}
	for deadline := time.Now().Add(daemonPollMax); ; time.Sleep(100 * time.Millisecond) {
		got := map[string][]string{}
		for _, r := range d.list(d.admin) {
			got[r.Pipeline] = append([]string{r.ID}, got[r.Pipeline]...) // oldest first
		}
		ok := true
		for p, ids := range want {
			ok = ok && slices.Equal(got[p], ids)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs kept: %v, want %v (first aged run %s)", got, want, first)
		}
	}
	for _, id := range append(own[:2], dflt[0], first) {
		if r := d.wiz(d.admin, "runs", "logs", id); r.code != 1 {
			t.Errorf("runs logs %s of a deleted run: want exit 1 (not found): %s", id, r)
		}
	}
	// The blobs of the deleted runs' outputs went with them: nothing is left
	// for gc to free, and the kept runs' outputs are whole.
	if r := d.ok(d.admin, "gc", "--keep-last", "1000", "--dry-run"); !strings.Contains(r.stdout, " 0 blobs") {
		t.Errorf("after retention, gc would still free blobs: %s", r)
	}
	if r := d.ok(d.admin, "runs", "output", own[4], "w"); strings.TrimSpace(r.stdout) != own[4] {
		t.Errorf("a kept run's output: %s", r)
	}
}

// TestDaemonFileTrigger: 20 files dropped at once into a trigger's
// directory start 20 runs, one per file, each with its file as the input;
// a restart does not handle them again, a new file is; a directory the
// daemon cannot read (here: missing) shows the trigger failing with the
// OS's reason.
func TestDaemonFileTrigger(t *testing.T) {
	e := daemonNewEnv(t)
	data := filepath.Join(e.dir, "data")
	in := filepath.Join(e.dir, "in")
	if err := os.Mkdir(in, 0o755); err != nil {
		t.Fatal(err)
	}
	d := e.daemon(data)
	e.file("p.yaml", `name: ingest
inputs:
  data: {type: file}
  tag: {type: string, default: x}
triggers:
  incoming:
    files: {path: `+in+`, pattern: "*.csv", input: data, settle: 500ms}
  broken:
    files: {path: `+filepath.Join(e.dir, "missing")+`, input: data}
processors:
  count: {uses: std/exec, inputs: {data: inputs.data}, with: {command: [sh, -c, 'wc -c < "$WIZ_INPUT_DATA"']}}
`)
	d.ok(d.admin, "pipeline", "apply", "p.yaml")
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(in, fmt.Sprintf("f%02d.csv", i)), []byte(strings.Repeat("x", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(in, "skip.txt"), []byte("no"), 0o644); err != nil {
		t.Fatal(err)
	}
	rs := waitSchedRuns(t, d, d.admin, "ingest", 20, 60*time.Second)
	if len(rs) != 20 {
		t.Fatalf("%d runs for 20 files (and a .txt): %+v", len(rs), rs)
	}
	sizes := map[string]bool{}
	for _, r := range rs {
		if r.Trigger != "file/incoming" || r.State != "Succeeded" {
			t.Errorf("run %s: trigger %q, %s; want file/incoming, Succeeded", r.ID, r.Trigger, r.State)
		}
		out := d.ok(d.admin, "runs", "output", r.ID, "count")
		sizes[strings.TrimSpace(out.stdout)] = true
	}
	if len(sizes) != 20 {
		t.Errorf("the runs read %d different file sizes, want 20 (each its own file): %v", len(sizes), sizes)
	}
	var infos []map[string]any
	d.decode(&infos, d.admin, "schedules", "list", "-o", "json")
	found := false
	for _, i := range infos {
		if i["name"] == "broken" {
			found = true
			if i["state"] != "failing" || !strings.Contains(fmt.Sprint(i["error"]), "no such file or directory") {
				t.Errorf("the trigger on a missing directory: %v, want failing with the OS's reason", i)
			}
		}
	}
	if !found {
		t.Errorf("schedules list does not list the broken trigger: %v", infos)
	}

	if code := d.signal(syscall.SIGTERM, daemonStopMax); code != 0 {
		t.Fatalf("the daemon exited with status %d after SIGTERM", code)
	}
	admin := d.admin
	d = e.daemon(data)
	if err := os.WriteFile(filepath.Join(in, "new.csv"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitSchedRuns(t, d, admin, "ingest", 21, 30*time.Second)
	time.Sleep(2 * time.Second) // time for the old files to be (wrongly) taken again
	if rs = schedRuns(d, admin, "ingest"); len(rs) != 21 {
		t.Errorf("after a restart and one new file: %d runs, want 21", len(rs))
	}
}

// TestDaemonWebhook: a webhook trigger's URL and secret from `wiz triggers
// url`, served on the daemon's one TLS port beside gRPC: a good body starts
// a run with its inputs (201), a bad one starts none (400, the --input
// message), a wrong or missing secret is 401, an unknown trigger 404, a
// body over 1 MiB 413, and a retried POST with the same Idempotency-Key
// returns the same run (200).
func TestDaemonWebhook(t *testing.T) {
	e := daemonNewEnv(t)
	d := e.daemon(filepath.Join(e.dir, "data"))
	runner := d.token(d.admin, "r", "runner")
	e.file("p.yaml", `name: deploy
inputs:
  env: {type: string, enum: [dev, prod]}
  replicas: {type: int, default: 1}
triggers:
  go:
    webhook: {}
processors:
  show:
    uses: std/exec
    with:
      command: [sh, -c, 'echo "env=$E replicas=$R trigger=$T"']
      env: {E: "${{ inputs.env }}", R: "${{ inputs.replicas }}", T: "${{ run.trigger }}"}
`)
	d.ok(runner, "pipeline", "apply", "p.yaml")
	r := d.ok(runner, "triggers", "url", "deploy/go")
	m := regexp.MustCompile(`(?m)^url: (https://\S+/hooks/deploy/go)\nsecret: ([A-Za-z0-9_]{32,})\n$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("triggers url: want url: and secret: lines: %s", r)
	}
	url, secret := m[1], m[2]
	if r := d.ok(runner, "triggers", "url", "deploy/go"); r.stdout != "url: "+url+"\n" {
		t.Errorf("a second triggers url: want the URL only: %s", r)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 30 * time.Second}
	post := func(path, token, idem, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "bearer "+token) // the scheme in any case
		}
		if idem != "" {
			req.Header.Set("Idempotency-Key", idem)
		}
		req.Header.Set("Content-Type", "text/plain") // parsed as JSON whatever it says
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	runIDRE := regexp.MustCompile(`"run_id":"([0-9A-Za-z]{27})"`)

	code, body := post(url, secret, "", `{"env": "prod", "replicas": 3}`)
	mm := runIDRE.FindStringSubmatch(body)
	if code != http.StatusCreated || mm == nil {
		t.Fatalf("good body: %d %s, want 201 and a run_id", code, body)
	}
	d.waitRun(runner, mm[1], "Succeeded", func(r daemonRun) bool { return r.State == "Succeeded" })
	if r := d.ok(runner, "runs", "output", mm[1], "show"); r.stdout != "env=prod replicas=3 trigger=webhook/go\n" {
		t.Errorf("the webhook's run: %s", r)
	}
	before := len(schedRuns(d, runner, "deploy"))
	if code, body := post(url, secret, "", `{"env": "staging"}`); code != http.StatusBadRequest || !strings.Contains(body, `\"staging\" is not one of dev, prod`) {
		t.Errorf("bad input: %d %s, want 400 with the --input message", code, body)
	}
	if code, body := post(url, secret, "", `[1, 2]`); code != http.StatusBadRequest || !strings.Contains(body, "JSON object") {
		t.Errorf("not an object: %d %s, want 400", code, body)
	}
	if code, _ := post(url, "wrong", "", `{"env": "dev"}`); code != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d, want 401", code)
	}
	if code, _ := post(url, "", "", `{"env": "dev"}`); code != http.StatusUnauthorized {
		t.Errorf("no secret: %d, want 401", code)
	}
	if code, _ := post(strings.Replace(url, "/go", "/nope", 1), secret, "", `{"env": "dev"}`); code != http.StatusNotFound {
		t.Errorf("unknown trigger: %d, want 404", code)
	}
	if code, _ := post(url, secret, "", `{"env": "`+strings.Repeat("x", 1<<20)+`"}`); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over 1 MiB: %d, want 413", code)
	}
	if n := len(schedRuns(d, runner, "deploy")); n != before {
		t.Errorf("refused requests started runs: %d runs, want %d", n, before)
	}
	c1, b1 := post(url, secret, "key-1", `{"env": "dev"}`)
	c2, b2 := post(url, secret, "key-1", `{"env": "dev"}`)
	id1, id2 := runIDRE.FindStringSubmatch(b1), runIDRE.FindStringSubmatch(b2)
	if c1 != http.StatusCreated || c2 != http.StatusOK || id1 == nil || id2 == nil || id1[1] != id2[1] {
		t.Errorf("a retried POST with one Idempotency-Key: %d %s then %d %s, want 201 then 200 with the same run", c1, b1, c2, b2)
	}
	if n := len(schedRuns(d, runner, "deploy")); n != before+1 {
		t.Errorf("after an idempotent retry: %d runs, want %d", n, before+1)
	}
	// --rotate: a new secret; the old one stops working.
	r = d.ok(runner, "triggers", "url", "deploy/go", "--rotate")
	if m2 := regexp.MustCompile(`(?m)^secret: (\S+)$`).FindStringSubmatch(r.stdout); m2 == nil || m2[1] == secret {
		t.Errorf("--rotate: want a new secret: %s", r)
	}
	if code, _ := post(url, secret, "", `{"env": "dev"}`); code != http.StatusUnauthorized {
		t.Errorf("the old secret after --rotate: %d, want 401", code)
	}
}
