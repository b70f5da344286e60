package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// scriptVersion is the version the test binaries are built with, so that
// scripts can assert it.
const scriptVersion = "0.0.0-script"

// binDir holds the real wiz, wiz-executor-local and wiz-processors-std
// binaries, built once by TestMain. wiz finds its bundled plugins next to
// its own binary, so the three must share a directory.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run() // TestScript skips itself
	}
	dir, err := os.MkdirTemp("", "wiz-script-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "make bin dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// buildBinaries builds the three binaries of a wiz install into dir.
func buildBinaries(dir string) error {
	for _, b := range []struct{ name, pkg string }{
		{"wiz", "github.com/wiz-run/wiz/cmd/wiz"},
		{"wiz-executor-local", "github.com/wiz-run/wiz/plugins/executors/local"},
		{"wiz-processors-std", "github.com/wiz-run/wiz/plugins/processors/std"},
	} {
		cmd := exec.Command("go", "build", "-trimpath",
			"-ldflags", "-X main.version="+scriptVersion,
			"-o", filepath.Join(dir, b.name), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return nil
}

// TestScript runs the scripts in testdata/script against the real binaries.
func TestScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real binaries; not in -short mode")
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("WIZ_HOME", filepath.Join(env.WorkDir, "home"))
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("WIZ_BIN", binDir)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":    cmdExits,
			"procs":    cmdProcs,
			"waitfile": cmdWaitfile,
		},
	})
}

// cmdExits is `exits CODE PROGRAM [ARGS...]`: like exec, it runs PROGRAM and
// keeps its stdout and stderr for the next commands, and it checks that the
// program exits with status CODE exactly.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad exit code %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// waitfileMax bounds how long waitfile waits; it only ends a script that
// would otherwise hang.
const waitfileMax = 2 * time.Minute

// cmdWaitfile is `waitfile FILE`: it waits until FILE exists.
func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile FILE")
	}
	path := ts.MkAbs(args[0])
	for deadline := time.Now().Add(waitfileMax); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within %v", args[0], waitfileMax)
		}
	}
}

// procsGone is how long `! procs` waits for matching processes to exit. A
// process killed by its parent's death signal (Pdeathsig) can still be
// listed for a moment after the parent is gone; a leaked one stays.
const procsGone = 10 * time.Second

// cmdProcs is `procs PREFIX`: it succeeds when a live process of this script
// runs a command line starting with PREFIX, and lists them on stdout.
// `! procs PREFIX` succeeds when none is left, waiting up to procsGone for
// dying ones to go.
//
// A process belongs to the script when its environment holds the script's
// WORK variable: everything wiz starts (backend, `wiz executor`, packs,
// native programs) inherits it, and scripts running in parallel, or other
// processes on the machine, do not have it. The command line is argv with
// argv[0] reduced to its base name, joined by spaces: "wiz executor --listen
// …", "wiz-processors-std", "sleep 37.5".
func cmdProcs(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: procs PREFIX")
	}
	prefix := args[0]
	work := "WORK=" + ts.Getenv("WORK")
	if !neg {
		found := findProcs(work, prefix)
		if len(found) == 0 {
			ts.Fatalf("no process of this script runs %q", prefix)
		}
		fmt.Fprintln(ts.Stdout(), strings.Join(found, "\n"))
		return
	}
	deadline := time.Now().Add(procsGone)
	for waited := false; ; waited = true {
		found := findProcs(work, prefix)
		if len(found) == 0 {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("processes of this script still run %q after %v:\n%s", prefix, procsGone, strings.Join(found, "\n"))
		}
		if !waited {
			ts.Logf("waiting for %d process(es) running %q to exit", len(found), prefix)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// findProcs returns "PID: COMMAND LINE" of the live processes whose
// environment holds the entry work and whose command line starts with
// prefix.
func findProcs(work, prefix string) []string {
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []string
	for _, d := range dirs {
		pid := filepath.Base(d)
		if pid == fmt.Sprint(self) {
			continue
		}
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !hasEntry(env, work) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join(d, "stat")); err != nil || zombie(stat) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		argv[0] = filepath.Base(argv[0])
		line := strings.Join(argv, " ")
		if strings.HasPrefix(line, prefix) {
			out = append(out, pid+": "+line)
		}
	}
	return out
}

// hasEntry reports whether the NUL-separated environment env holds entry.
func hasEntry(env []byte, entry string) bool {
	for _, e := range bytes.Split(env, []byte{0}) {
		if string(e) == entry {
			return true
		}
	}
	return false
}

// zombie reports whether /proc/PID/stat describes a process that has exited
// but is not yet reaped.
func zombie(stat []byte) bool {
	// The state follows the command name, which is in parentheses and may
	// itself hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	s := stat[i+2]
	return s == 'Z' || s == 'X'
}
