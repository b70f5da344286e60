package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogsAreBounded: a processor writes 300 MB to stderr; every wiz
// process of the run (`wiz run`, the backend, `wiz executor`, the pack)
// stays under 100 MiB peak RSS, and `runs logs` shows the head, the dropped count and
// the tail, the count again on its last line.
func TestLogsAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binaries; not in -short mode")
	}
	// Not parallel: the peak RSS is of this run, not of a machine full of
	// other tests' processes competing for the CPU.
	dir := t.TempDir()
	pipeline := filepath.Join(dir, "loud.yaml")
	if err := os.WriteFile(pipeline, []byte(`name: loud
processors:
  shout:
    uses: std/shell
    with:
      stdout: false
      script: |
        echo first-line >&2
        yes "$(head -c 99 /dev/zero | tr '\0' x)" | head -c 300000000 >&2
        echo last-line >&2
`), 0o644); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	env := append(os.Environ(), "WIZ_HOME="+home, "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd := exec.Command(filepath.Join(binDir, "wiz"), "run", "-q", pipeline)
	cmd.Env, cmd.Dir = env, dir
	// Each wiz process's peak RSS (VmHWM, of its own image: a child's
	// rusage would include the pages of the test binary it was forked
	// from), read every 20 ms while the run goes; the processes are those
	// whose environment holds this WIZ_HOME.
	stop := make(chan struct{})
	peaks := make(chan map[string]int64, 1)
	go func() {
		max := map[string]int64{}
		for {
			for _, p := range matchProcs("WIZ_HOME="+home, func(line string) bool { return strings.HasPrefix(line, "wiz") }) {
				if b := vmHWM(p.pid); b > max[p.line] {
					max[p.line] = b
				}
			}
			select {
			case <-stop:
				peaks <- max
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	out, err := cmd.CombinedOutput()
	close(stop)
	seen := <-peaks
	if err != nil {
		t.Fatalf("wiz run: %v\n%s", err, out)
	}
	if len(seen) < 2 {
		t.Fatalf("saw %d wiz processes of the run, want wiz run and wiz executor at least: %v", len(seen), seen)
	}
	for line, b := range seen {
		if b > 100<<20 {
			t.Errorf("%s: peak RSS %d MiB, want < 100", line, b>>20)
		}
	}
	logs := exec.Command(filepath.Join(binDir, "wiz"), "runs", "logs", "last")
	logs.Env, logs.Dir = env, dir
	out, err = logs.Output()
	if err != nil {
		t.Fatalf("runs logs: %v", err)
	}
	s := string(out)
	if len(s) > 20<<20 {
		t.Errorf("runs logs printed %d MiB, want about the 16 MiB budget", len(s)>>20)
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if !strings.Contains(lines[0], "first-line") {
		t.Errorf("the logs do not start with the head: %q", lines[0])
	}
	if !strings.Contains(s, "of logs dropped (max_log_size keeps the first and the last 8.0 MiB)") {
		t.Error("the logs do not count what was dropped between the head and the tail")
	}
	if !strings.Contains(s, "last-line") {
		t.Error("the logs lack the tail's last line")
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "MiB of this processor's logs were dropped in the middle (max_log_size)") {
		t.Errorf("the last line does not repeat the count: %q", last)
	}
}
