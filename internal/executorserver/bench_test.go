package executorserver

// Benchmarks of the manager → executor hop and of fork/exec, for the
// per-hop overhead breakdown that `make bench` prints (bench/hops.go). Each
// runs one task at a time, so ns/op is one task's latency; cpu-ns/op is the
// CPU this process and the children it waited for spent per task.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/internal/executorclient"
	"github.com/wiz-run/wiz/internal/pluginhost"
)

// BenchmarkForkExecTrue is the floor: fork/exec /bin/true and wait, the way
// the executor starts a native program (own process group, parent-death
// signal, stdout and stderr to pipes), without the executor around it.
func BenchmarkForkExecTrue(b *testing.B) {
	m := startCPU()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	for b.Loop() {
		outR, outW, err := newOutPipe()
		if err != nil {
			b.Fatal(err)
		}
		errR, errW, err := newOutPipe()
		if err != nil {
			b.Fatal(err)
		}
		pid, err := syscall.ForkExec("/bin/true", []string{"/bin/true"}, &syscall.ProcAttr{
			Files: []uintptr{devNull.Fd(), uintptr(outW), uintptr(errW)},
			Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
		})
		if err != nil {
			b.Fatal(err)
		}
		syscall.Close(outW)
		syscall.Close(errW)
		awaitExit(pid)
		if ws, _, err := reap(pid); err != nil || ws != 0 {
			b.Fatalf("wait: %v, status %v", err, ws)
		}
		outR.close()
		errR.close()
	}
	m.report(b)
}

// BenchmarkExecuteTrue sends a std/exec /bin/true task (stdout: false, its
// plan cached, as on every task of a run but the first) over a real
// executor's Execute stream — a unix socket, as the local backend's, and the
// Manager's own client — and waits for its Finished event: hop, executor bookkeeping and fork/exec.
func BenchmarkExecuteTrue(b *testing.B) { benchmarkExecuteTrue(b, true) }

// BenchmarkExecuteTrueNoTaskRecord is BenchmarkExecuteTrue with an executor
// that records no process groups (no TaskDir): the difference is what the
// per-task process-group record costs.
func BenchmarkExecuteTrueNoTaskRecord(b *testing.B) { benchmarkExecuteTrue(b, false) }

func benchmarkExecuteTrue(b *testing.B, taskRecord bool) {
	c, ref := benchExecutor(b, taskRecord)
	task := func(id string) *manager.Task {
		return &manager.Task{ID: id, Native: true, RunID: "benchrun", Processor: "n", Type: "std/exec", Pack: ref,
			Config: []byte(`{"command":["/bin/true"],"stdout":false}`)}
	}
	roundTrip(b, c, task("warm-up"), manager.OutcomeSucceeded) // asks the pack for the plan
	m := startCPU()
	i := 0
	for b.Loop() {
		i++
		roundTrip(b, c, task(fmt.Sprint(i)), manager.OutcomeSucceeded)
	}
	m.report(b)
}

// BenchmarkExecuteRoundTrip is the hop alone: a task the executor answers at
// once, without running anything — a data type the (warm) std pack does not
// have — so one task message goes out on the Execute stream and one Finished
// event comes back, as for a short native task. On a unix socket, as the
// local backend's executor listens.
func BenchmarkExecuteRoundTrip(b *testing.B) { benchmarkExecuteRoundTrip(b, true) }

// BenchmarkExecuteRoundTripTLS is BenchmarkExecuteRoundTrip on TLS over
// TCP, as the Manager reaches an executor pod.
func BenchmarkExecuteRoundTripTLS(b *testing.B) { benchmarkExecuteRoundTrip(b, false) }

func benchmarkExecuteRoundTrip(b *testing.B, unix bool) {
	c, ref := benchExecutorOn(b, true, unix)
	task := func(id string) *manager.Task {
		return &manager.Task{ID: id, RunID: "benchrun", Processor: "n", Type: "std/no-such-type", Pack: ref, Config: []byte(`{}`)}
	}
	roundTrip(b, c, task("warm-up"), manager.OutcomeFailed) // launches the pack
	m := startCPU()
	i := 0
	for b.Loop() {
		i++
		roundTrip(b, c, task(fmt.Sprint(i)), manager.OutcomeFailed)
	}
	m.report(b)
}

// roundTrip submits t and waits for its Finished event.
func roundTrip(b *testing.B, c *executorclient.Client, t *manager.Task, want manager.Outcome) {
	if err := c.Submit(t); err != nil {
		b.Fatal(err)
	}
	if err := c.Flush()[t.ID]; err != nil { // as a run does before it waits
		b.Fatal(err)
	}
	for ev := range c.Events() {
		if ev.TaskID != t.ID || ev.Kind != manager.EventFinished {
			continue
		}
		if ev.Outcome != want {
			b.Fatalf("task %s: outcome %d (%s), want %d", t.ID, ev.Outcome, ev.Message, want)
		}
		return
	}
	b.Fatal("the executor's event stream ended")
}

// benchExecutor starts an executor in this process (on a unix socket, a
// token, two slots) and connects the Manager's client to it. With
// taskRecord it records each task's process group in a task dir, as `wiz
// executor` does when the Manager gives it one (always).
func benchExecutor(b testing.TB, taskRecord bool) (*executorclient.Client, manager.PackRef) {
	b.Helper()
	return benchExecutorOn(b, taskRecord, true)
}

// benchExecutorOn is benchExecutor, on a unix socket (as the local backend
// starts it) when unix is set, else on TLS over TCP (as a pod).
func benchExecutorOn(b testing.TB, taskRecord, unix bool) (*executorclient.Client, manager.PackRef) {
	b.Helper()
	dir := b.TempDir()
	cfg := Config{Listen: "127.0.0.1:0", Token: "bench-token", Slots: 2, Version: "bench"}
	if taskRecord {
		cfg.TaskDir = filepath.Join(dir, "tasks")
	}
	if unix {
		cfg.Listen = "unix://" + filepath.Join(dir, "executor.sock")
	}
	te := startTestExecutor(b, dir, cfg)
	c := te.dial(b)
	b.Cleanup(func() {
		_ = c.Close(context.Background())
		te.stop()
		if err := <-te.done; err != nil {
			b.Errorf("executor: %v", err)
		}
	})
	return c, te.ref
}

// testExecutor is a `wiz executor` server run in the test's process.
type testExecutor struct {
	addr    string
	certPEM []byte
	token   string
	ref     manager.PackRef // the std pack
	done    <-chan error    // what Run returned
	stop    func()          // ends Run (also at the test's cleanup)
}

// startTestExecutor runs an executor with cfg (its work and blob dirs, TLS
// certificate and Ready filled in, under dir) until stop or the test's end.
func startTestExecutor(tb testing.TB, dir string, cfg Config) *testExecutor {
	tb.Helper()
	pack := stdPack(tb)
	sum, err := pluginhost.FileSHA256(pack)
	if err != nil {
		tb.Fatal(err)
	}
	certPEM, certFile, keyFile := benchCert(tb, dir)
	cfg.CertFile, cfg.KeyFile = certFile, keyFile
	cfg.WorkDir, cfg.BlobDir = filepath.Join(dir, "work"), filepath.Join(dir, "blobs")
	ready := make(chan string, 1)
	cfg.Ready = func(addr string) { ready <- addr }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }() // ends with cancel
	select {
	case addr := <-ready:
		tb.Cleanup(cancel)
		return &testExecutor{addr: addr, certPEM: certPEM, token: cfg.Token, done: done, stop: cancel,
			ref: manager.PackRef{Name: "std", Version: cfg.Version, Path: pack, SHA256: sum}}
	case err := <-done:
		cancel()
		tb.Fatalf("executor: %v", err)
		return nil
	}
}

// dial connects a Manager's client to the executor.
func (te *testExecutor) dial(tb testing.TB) *executorclient.Client {
	tb.Helper()
	c, err := executorclient.Dial(context.Background(), "test executor", executorclient.Endpoint{
		Address: te.addr, CACertPEM: te.certPEM, ServerName: "bench.wiz.invalid", Token: te.token,
	}, nil, executorclient.Hooks{})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// benchCert writes a self-signed certificate for bench.wiz.invalid.
func benchCert(b testing.TB, dir string) (certPEM []byte, certFile, keyFile string) {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench.wiz.invalid"},
		DNSNames: []string{"bench.wiz.invalid"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		b.Fatal(err)
	}
	return certPEM, certFile, keyFile
}

var (
	stdPackOnce sync.Once
	stdPackPath string
	stdPackErr  error
)

// stdPack returns the std processor pack binary: $WIZ_BENCH_STD_PACK when
// set (`make bench` passes bin/wiz-processors-std), else one built once for
// this test binary.
func stdPack(b testing.TB) string {
	b.Helper()
	stdPackOnce.Do(func() {
		if p := os.Getenv("WIZ_BENCH_STD_PACK"); p != "" {
			stdPackPath = p
			return
		}
		dir, err := os.MkdirTemp("", "wiz-bench-pack-*")
		if err != nil {
			stdPackErr = err
			return
		}
		stdPackPath = filepath.Join(dir, "wiz-processors-std")
		out, err := exec.Command("go", "build", "-o", stdPackPath, "github.com/wiz-run/wiz/plugins/processors/std").CombinedOutput()
		if err != nil {
			stdPackErr = fmt.Errorf("build the std pack: %v: %s", err, out)
		}
	})
	if stdPackErr != nil {
		b.Fatal(stdPackErr)
	}
	return stdPackPath
}

// cpuMeter measures the CPU of this process and of the children it waited
// for, over a benchmark's loop.
type cpuMeter struct{ self, children syscall.Rusage }

func startCPU() cpuMeter {
	var m cpuMeter
	syscall.Getrusage(syscall.RUSAGE_SELF, &m.self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &m.children)
	return m
}

// report adds cpu-ns/op: the CPU spent since startCPU, per iteration.
func (m cpuMeter) report(b *testing.B) {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	ns := rusageNs(&self) - rusageNs(&m.self) + rusageNs(&children) - rusageNs(&m.children)
	b.ReportMetric(float64(ns)/float64(b.N), "cpu-ns/op")
}

func rusageNs(r *syscall.Rusage) int64 { return r.Utime.Nano() + r.Stime.Nano() }

// BenchmarkRecordGroup is the process-group record alone: the executor
// notes a task's process group in the run's task journal when it starts and
// notes its end when it exits.
func BenchmarkRecordGroup(b *testing.B) {
	s := &Server{cfg: Config{TaskDir: b.TempDir()}}
	defer s.closeJournals()
	if s.journal("benchrun") == nil {
		b.Fatal("no task journal")
	}
	m := startCPU()
	pgid := 100000
	for b.Loop() {
		pgid++
		done := s.recordGroup("benchrun", pgid)
		done()
	}
	m.report(b)
}
