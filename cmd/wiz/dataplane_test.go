package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rssBound is the peak RSS the Manager, the executor and the pack must each
// stay under while gigabytes flow through them.
const rssBound = 200 << 20

// TestLargeFileMemory sends a 2 GiB file through three std/exec cat
// processors and std/hash with the real binaries, and checks that no wiz
// process holds it in memory. Two measurements, both of peak RSS:
//   - the rusage of `wiz run` from wait4: Linux reports there the largest
//     peak of the process and of every descendant it (transitively) reaped —
//     the Manager, the executor backend, `wiz executor`, the std pack and the
//     cat processes all end reaped by their parents — so it bounds each;
//   - each process's VmHWM (its peak RSS) from /proc, read every 50 ms while
//     it runs, which tells the Manager, executor and pack apart; a peak
//     reached in the last 50 ms of a process's life could be missed there,
//     but not in the rusage.
func TestLargeFileMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 GiB through the real binaries; not in -short mode")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data.bin")
	const size = 2 << 30
	want := writeData(t, data, size)

	pipeline := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(pipeline, []byte(`name: big
inputs:
  data: {type: file}
processors:
  c1: {uses: std/exec, with: {command: [cat]}, inputs: {stdin: inputs.data}}
  c2: {uses: std/exec, with: {command: [cat]}, inputs: {stdin: c1}}
  c3: {uses: std/exec, with: {command: [cat]}, inputs: {stdin: c2}}
  digest: {uses: std/hash, inputs: {in: c3}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	env := append(os.Environ(), "WIZ_HOME="+home, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))

	cmd := exec.Command(filepath.Join(binDir, "wiz"), "run", pipeline, "-i", "data=@"+data)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	peaks := watchPeaks(cmd.Process.Pid)
	err := cmd.Wait()
	elapsed := time.Since(start)
	seen := peaks.stop()
	if err != nil {
		t.Fatalf("wiz run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("2 GiB through 3 cat processors and std/hash in %s", elapsed.Round(time.Millisecond))

	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage for wiz run")
	}
	tree := ru.Maxrss * 1024
	t.Logf("peak RSS of the largest process in wiz run's tree (wait4 rusage): %d MiB", tree>>20)
	if tree >= rssBound {
		t.Errorf("peak RSS of the largest process in wiz run's tree is %d MiB, want under %d MiB", tree>>20, rssBound>>20)
	}
	var sawManager, sawExecutor, sawPack bool
	for pid, p := range seen {
		t.Logf("pid %d %s: VmHWM %d MiB", pid, p.what, p.hwm>>20)
		switch p.what {
		case "manager (wiz run)":
			sawManager = true
		case "wiz executor":
			sawExecutor = true
		case "wiz-processors-std":
			sawPack = true
		}
		if p.hwm >= rssBound {
			t.Errorf("%s (pid %d) peaked at %d MiB, want under %d MiB", p.what, pid, p.hwm>>20, rssBound>>20)
		}
	}
	if !sawManager || !sawExecutor || !sawPack {
		t.Errorf("measured manager %v, executor %v, pack %v: each must be seen in /proc", sawManager, sawExecutor, sawPack)
	}

	c := exec.Command(filepath.Join(binDir, "wiz"), "runs", "output", "last", "digest")
	c.Env = env
	out, err := c.Output()
	if err != nil {
		t.Fatalf("wiz runs output: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("std/hash of the file after three cats = %s, want %s", got, want)
	}
}

// writeData writes size bytes of pseudo-random data to path and returns
// their sha256 in hex.
func writeData(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(block); i += 8 {
		binary.LittleEndian.PutUint64(block[i:], r.Uint64())
	}
	h := sha256.New()
	w := bufio.NewWriterSize(f, 1<<20)
	for n := int64(0); n < size; n += int64(len(block)) {
		binary.LittleEndian.PutUint64(block, uint64(n)) // every MiB differs
		w.Write(block)
		h.Write(block)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// peakWatcher polls the VmHWM of a process and its descendants.
type peakWatcher struct {
	root int
	mu   sync.Mutex
	seen map[int]*procPeak
	done chan struct{}
	wg   sync.WaitGroup
}

type procPeak struct {
	what string
	hwm  int64
}

func watchPeaks(root int) *peakWatcher {
	w := &peakWatcher{root: root, seen: map[int]*procPeak{}, done: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			w.poll()
			select {
			case <-w.done:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *peakWatcher) stop() map[int]*procPeak {
	close(w.done)
	w.wg.Wait()
	return w.seen
}

func (w *peakWatcher) poll() {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; split after ')'.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 {
				parent[pid], _ = strconv.Atoi(f[1])
			}
		}
	}
	for pid := range parent {
		if !w.descends(pid, parent) {
			continue
		}
		what := w.describe(pid)
		if what == "" {
			continue
		}
		hwm := vmHWM(pid)
		w.mu.Lock()
		p := w.seen[pid]
		if p == nil || p.what != what {
			// New, or it exec'd since (a forked child shows its parent's
			// command line until then): exec starts a fresh VmHWM.
			p = &procPeak{what: what}
			w.seen[pid] = p
		}
		if hwm > p.hwm {
			p.hwm = hwm
		}
		w.mu.Unlock()
	}
}

func (w *peakWatcher) descends(pid int, parent map[int]int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == w.root {
			return true
		}
		pid = parent[pid]
	}
	return false
}

// describe names the wiz processes; others (cat, sh) return "".
func (w *peakWatcher) describe(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	switch {
	case pid == w.root:
		return "manager (wiz run)"
	case filepath.Base(args[0]) == "wiz" && len(args) > 1 && args[1] == "executor":
		return "wiz executor"
	case filepath.Base(args[0]) == "wiz-processors-std":
		return "wiz-processors-std"
	case filepath.Base(args[0]) == "wiz-executor-local":
		return "wiz-executor-local"
	}
	return ""
}

// vmHWM is a process's peak RSS in bytes, from /proc/PID/status.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// TestDiskFull fills the blob store's file system (a 1 MiB tmpfs mounted on
// the wiz home's blobs dir) with a processor's stdout and with a declared
// output file: each fails its processor naming the output and the file
// system's error, and no partial blob or temp file stays. Mounting needs
// root (CAP_SYS_ADMIN); without it the test says so and skips.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binaries; not in -short mode")
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	blobs := filepath.Join(home, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", blobs).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", blobs).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", blobs, err, out)
		}
	})
	pipeline := filepath.Join(dir, "full.yaml")
	if err := os.WriteFile(pipeline, []byte(`name: full
processors:
  stdout:
    uses: std/shell
    with: {script: "head -c 3000000 /dev/zero"}
    on_error: warn
  file:
    uses: std/shell
    with:
      script: "head -c 3000000 /dev/zero > r.bin"
      outputs: {report: r.bin}
    on_error: warn
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "wiz"), "run", pipeline)
	cmd.Env = append(os.Environ(), "WIZ_HOME="+home)
	out, _ := cmd.CombinedOutput()
	for _, want := range []string{
		"output out (stdout of sh): write blob: write " + blobs + "/tmp/blob-",
		"output report: store r.bin: write blob: write " + blobs + "/tmp/blob-",
	} {
		i := strings.Index(string(out), want)
		if i < 0 {
			t.Errorf("wiz run output lacks %q:\n%s", want, out)
			continue
		}
		if line, _, _ := strings.Cut(string(out[i:]), "\n"); !strings.HasSuffix(line, "no space left on device") {
			t.Errorf("error %q does not end with the cause, no space left on device", line)
		}
	}
	for _, sub := range []string{"tmp", "sha256"} {
		var left []string
		filepath.WalkDir(filepath.Join(blobs, sub), func(p string, e os.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("a full disk left files in blobs/%s: %v", sub, left)
		}
	}
}
