package pluginhost

// A benchmark of the executor → pack hop, for the per-hop overhead breakdown
// that `make bench` prints (bench/hops.go).

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// BenchmarkProcessHash calls a data processor of a warm pack — std/hash on
// one inline byte, which does next to nothing — through go-plugin's gRPC
// connection, the way `wiz executor` runs a data task, one call at a time.
// cpu-ns/op counts this process and the pack process (read from /proc).
func BenchmarkProcessHash(b *testing.B) {
	path := benchStdPack(b)
	sum, err := FileSHA256(path)
	if err != nil {
		b.Fatal(err)
	}
	p, err := Launch(Config{Name: "std@bench", Path: path, SHA256: sum})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Kill()
	req := &wizrpc.ProcessRequest{Type: "hash", ConfigJson: []byte(`{"algorithm":"sha256"}`),
		Inputs: map[string]*wizpb.Data{"in": {Inline: []byte("x")}}, BlobDir: b.TempDir()}
	call := func() {
		got := ""
		err := p.Process(context.Background(), req, func(ev *wizrpc.ProcessEvent) {
			switch e := ev.Event.(type) {
			case *wizrpc.ProcessEvent_Output:
				got = string(e.Output.Data.GetInline())
			case *wizrpc.ProcessEvent_Error:
				b.Fatalf("std/hash: %s", e.Error)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		if !strings.HasPrefix(got, "2d711642") { // sha256("x")
			b.Fatalf("std/hash output %q", got)
		}
	}
	call() // warm-up
	pid := p.proc.client.ReattachConfig().Pid
	selfStart, packStart := selfCPU(), procCPU(b, pid)
	for b.Loop() {
		call()
	}
	ns := selfCPU() - selfStart + procCPU(b, pid) - packStart
	b.ReportMetric(float64(ns)/float64(b.N), "cpu-ns/op")
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the utime+stime of a process, from /proc (10 ms ticks).
func procCPU(b *testing.B, pid int) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	i := bytes.LastIndexByte(st, ')')
	f := strings.Fields(string(st[i+1:]))
	var ut, stime int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &stime)
	const userHZ = 100
	return time.Duration(ut+stime) * time.Second / userHZ
}

// benchStdPack returns the std pack binary: $WIZ_BENCH_STD_PACK when set
// (`make bench` passes bin/wiz-processors-std), else one built for the
// benchmark.
func benchStdPack(b *testing.B) string {
	if p := os.Getenv("WIZ_BENCH_STD_PACK"); p != "" {
		return p
	}
	out := filepath.Join(b.TempDir(), "wiz-processors-std")
	if msg, err := exec.Command("go", "build", "-o", out, "github.com/wiz-run/wiz/plugins/processors/std").CombinedOutput(); err != nil {
		b.Fatalf("build the std pack: %v: %s", err, msg)
	}
	return out
}
