package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/hinshun/vt10x"
	"github.com/rogpeppe/go-internal/testscript"
)

// scriptVersion is the version the test binaries are built with, so that
// scripts can assert it.
const scriptVersion = "0.0.0-script"

// binDir holds the real wiz, wiz-executor-local and wiz-processors-std
// binaries, built once by TestMain. wiz finds its bundled plugins next to
// its own binary, so the three must share a directory.
var binDir string

// repoRoot is the root of the wiz repository: tests run in cmd/wiz.
var repoRoot string

// pluginDir holds the plugin binaries that buildacme and buildproto2 build.
var pluginDir string

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
	if repoRoot, err = filepath.Abs(filepath.Join("..", "..")); err != nil {
		fmt.Fprintf(os.Stderr, "find the repository root: %v\n", err)
		return 1
	}
	if pluginDir, err = os.MkdirTemp("", "wiz-script-plugins-"); err != nil {
		fmt.Fprintf(os.Stderr, "make plugin dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(pluginDir)
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
		// [mountable]: this process may mount a tmpfs (root or
		// CAP_SYS_ADMIN), for the scripts that fill a small disk.
		// [ext4]: it may also loop-mount an ext4 image and turn it
		// read-only as an I/O error does (mkfs.ext4, loop devices and
		// ext4's trigger_fs_error), for the scripts of a failing disk.
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "mountable":
				return canMount(), nil
			case "ext4":
				return canExt4(), nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"buildacme":    cmdBuildacme,
			"buildflood":   cmdBuildflood,
			"buildmute":    cmdBuildmute,
			"buildproto2":  cmdBuildproto2,
			"buildsubproc": cmdBuildsubproc,
			"capture":      cmdCapture,
			"exits":        cmdExits,
			"inrange":      cmdInrange,
			"killproc":     cmdKillproc,
			"fserror":      cmdFserror,
			"mountext4":    cmdMountext4,
			"mounttmpfs":   cmdMounttmpfs,
			"procs":        cmdProcs,
			"ptyscreen":    cmdPtyscreen,
			"waitfile":     cmdWaitfile,
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
// canMount reports whether this process may mount a tmpfs.
func canMount() bool {
	dir, err := os.MkdirTemp("", "mountable")
	if err != nil {
		return false
	}
	defer os.Remove(dir)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		return false
	}
	return syscall.Unmount(dir, 0) == nil
}

var ext4Once = sync.OnceValue(func() bool {
	dir, err := os.MkdirTemp("", "ext4")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	mnt := filepath.Join(dir, "m")
	if err := mountExt4(filepath.Join(dir, "img"), mnt, 16); err != nil {
		return false
	}
	defer syscall.Unmount(mnt, syscall.MNT_DETACH)
	dev, err := ext4Dev(mnt)
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join("/sys/fs/ext4", dev, "trigger_fs_error"))
	return err == nil
})

// canExt4 reports whether this process may loop-mount an ext4 image and
// trigger an error on it.
func canExt4() bool { return canMount() && ext4Once() }

// mountExt4 makes an ext4 image of mib MiB (sparse) at img and mounts it
// on dir with errors=remount-ro.
func mountExt4(img, dir string, mib int) error {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		mkfs = "/sbin/mkfs.ext4" // not on PATH for users other than root
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	err = f.Truncate(int64(mib) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop,errors=remount-ro", img, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount -o loop: %v: %s", err, out)
	}
	return nil
}

// ext4Dev returns the device name (loopN) of the ext4 mounted on dir.
func ext4Dev(dir string) (string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == dir && f[2] == "ext4" {
			return filepath.Base(f[0]), nil
		}
	}
	return "", fmt.Errorf("no ext4 is mounted on %s", dir)
}

// cmdMountext4 is `mountext4 DIR MIB`: it mounts an ext4 image of MIB MiB,
// made (or mounted again) at DIR.img, on DIR with errors=remount-ro, until
// the script ends or `mountext4 -u DIR`.
func cmdMountext4(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mountext4 DIR MIB | mountext4 -u DIR")
	}
	if args[0] == "-u" {
		if err := syscall.Unmount(ts.MkAbs(args[1]), 0); err != nil {
			ts.Fatalf("unmount %s: %v", args[1], err)
		}
		return
	}
	dir := ts.MkAbs(args[0])
	mib, err := strconv.Atoi(args[1])
	if err != nil {
		ts.Fatalf("mountext4: bad size %q", args[1])
	}
	img := dir + ".img"
	if _, err := os.Stat(img); err == nil {
		// Mounted again: as after a repair, with what the disk kept.
		if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
			ts.Fatalf("mount %s again: %v: %s", img, err, out)
		}
	} else if err := mountExt4(img, dir, mib); err != nil {
		ts.Fatalf("mount an ext4 image on %s: %v (guard the script with [!ext4] skip)", dir, err)
	}
	ts.Defer(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}

// cmdFserror is `fserror DIR`: the ext4 mounted on DIR reports an error, as
// after a failed write to its disk, and (errors=remount-ro) takes no more
// writes: every one fails with "read-only file system".
func cmdFserror(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: fserror DIR")
	}
	dev, err := ext4Dev(ts.MkAbs(args[0]))
	if err != nil {
		ts.Fatalf("fserror: %v", err)
	}
	if err := os.WriteFile(filepath.Join("/sys/fs/ext4", dev, "trigger_fs_error"), []byte("wiz test\n"), 0); err != nil {
		ts.Fatalf("fserror: %v", err)
	}
}

// cmdMounttmpfs is `mounttmpfs DIR MIB [INODES]`: it mounts a tmpfs of MIB
// MiB (and at most INODES files) on DIR (made if missing) for the rest of
// the script, a small disk to fill.
func cmdMounttmpfs(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: mounttmpfs DIR MIB [INODES]")
	}
	opts := "size=" + args[1] + "m"
	if len(args) == 3 {
		opts += ",nr_inodes=" + args[2]
	}
	dir := ts.MkAbs(args[0])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ts.Fatalf("mounttmpfs: %v", err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		ts.Fatalf("mount a tmpfs on %s: %v (guard the script with [!mountable] skip)", dir, err)
	}
	ts.Defer(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			ts.Logf("unmount %s: %v", dir, err)
		}
	})
}

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

// procsAppear is how long `procs` waits for a matching process to show. A
// process that `exec … &` has just started can show an empty environment and
// command line for a moment: its parent resumes (vfork) when the kernel
// switches it to the new program, before the program's argument and
// environment area is set up.
const procsAppear = 5 * time.Second

// cmdProcs is `procs PREFIX`: it succeeds when a live process of this script
// runs a command line starting with PREFIX (waiting up to procsAppear for
// one), and lists them on stdout.
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
		deadline := time.Now().Add(procsAppear)
		for {
			found := procLines(findProcs(work, prefix))
			if len(found) > 0 {
				fmt.Fprintln(ts.Stdout(), strings.Join(found, "\n"))
				return
			}
			if time.Now().After(deadline) {
				ts.Fatalf("no process of this script runs %q (waited %v)", prefix, procsAppear)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	deadline := time.Now().Add(procsGone)
	for waited := false; ; waited = true {
		found := procLines(findProcs(work, prefix))
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

// proc is a live process of a script: its PID and its command line, argv
// with argv[0] reduced to its base name, joined by spaces.
type proc struct {
	pid  int
	line string
}

// procLines returns "PID: COMMAND LINE" of each of ps.
func procLines(ps []proc) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%d: %s", p.pid, p.line))
	}
	return out
}

// findProcs returns the live processes whose environment holds the entry
// work and whose command line starts with prefix.
func findProcs(work, prefix string) []proc {
	return matchProcs(work, func(line string) bool { return strings.HasPrefix(line, prefix) })
}

// matchProcs returns the live processes whose environment holds the entry
// work and whose command line satisfies match.
func matchProcs(work string, match func(line string) bool) []proc {
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []proc
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == self {
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
		if match(line) {
			out = append(out, proc{pid: pid, line: line})
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

// cmdKillproc is `killproc PATTERN`: it sends SIGKILL to every live process
// of this script (as procs sees them: WORK in its environment) whose command
// line contains PATTERN, and lists them on stdout. It fails when there is
// none.
func cmdKillproc(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: killproc PATTERN")
	}
	pattern := args[0]
	found := matchProcs("WORK="+ts.Getenv("WORK"), func(line string) bool { return strings.Contains(line, pattern) })
	if len(found) == 0 {
		ts.Fatalf("no process of this script runs a command line containing %q", pattern)
	}
	for _, p := range found {
		if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			ts.Fatalf("kill %d (%s): %v", p.pid, p.line, err)
		}
	}
	fmt.Fprintln(ts.Stdout(), strings.Join(procLines(found), "\n"))
}

// cmdCapture is `capture NAME REGEXP`: it sets the environment variable NAME
// to the first submatch of REGEXP (multi-line mode, as in stdout) in the
// stdout of the previous command, which it leaves as it is. It fails when
// REGEXP does not match.
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture NAME REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	if err != nil {
		ts.Fatalf("capture: %v", err)
	}
	if re.NumSubexp() < 1 {
		ts.Fatalf("capture: %q has no (submatch)", args[1])
	}
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if m == nil {
		ts.Fatalf("capture: no match for %q in stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}

// pluginBuilds holds the plugin binaries built for scripts so far, by what
// they are: scripts share them, so each is built once per test binary.
var (
	pluginMu     sync.Mutex
	pluginBuilds = map[string]*pluginBuild{}
)

type pluginBuild struct {
	once sync.Once
	path string
	err  error
}

// buildPlugin builds the main package in the directory pkgDir (relative to
// the repository root) with ldflags, once per key, and copies the binary to
// dir/name.
func buildPlugin(ts *testscript.TestScript, key, pkgDir, ldflags, dir, name string) {
	pluginMu.Lock()
	b := pluginBuilds[key]
	if b == nil {
		b = &pluginBuild{path: filepath.Join(pluginDir, key, name)}
		pluginBuilds[key] = b
	}
	pluginMu.Unlock()
	b.once.Do(func() {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", b.path, ".")
		cmd.Dir = filepath.Join(repoRoot, pkgDir)
		// The test's own environment, with its Go build cache; not the
		// script's, whose HOME is its work directory.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build in %s: %v\n%s", pkgDir, err, out)
		}
	})
	if b.err != nil {
		ts.Fatalf("build %s: %v", key, b.err)
	}
	bin, err := os.ReadFile(b.path)
	ts.Check(err)
	dir = ts.MkAbs(dir)
	ts.Check(os.MkdirAll(dir, 0o755))
	ts.Check(os.WriteFile(filepath.Join(dir, name), bin, 0o755))
}

// cmdBuildacme is `buildacme VERSION DIR`: it puts the example acme pack
// (examples/acme-pack, its own Go module), built with its version set to
// VERSION, in DIR/wiz-processors-acme.
func cmdBuildacme(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: buildacme VERSION DIR")
	}
	buildPlugin(ts, "acme-"+args[0], filepath.Join("examples", "acme-pack"),
		"-X main.version="+args[0], args[1], "wiz-processors-acme")
}

// cmdBuildsubproc is `buildsubproc DIR`: it puts the example executor
// backend (examples/subproc-backend, its own Go module) in
// DIR/wiz-executor-subproc.
func cmdBuildsubproc(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: buildsubproc DIR")
	}
	buildPlugin(ts, "subproc", filepath.Join("examples", "subproc-backend"), "", args[0], "wiz-executor-subproc")
}

// cmdBuildproto2 is `buildproto2 DIR`: it puts the test plugin that answers
// the wiz handshake but speaks plugin protocol 2
// (internal/pluginhost/testdata/proto2) in DIR/wiz-processors-proto2.
func cmdBuildproto2(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: buildproto2 DIR")
	}
	buildPlugin(ts, "proto2", filepath.Join("internal", "pluginhost", "testdata", "proto2"),
		"", args[0], "wiz-processors-proto2")
}

// cmdBuildmute is `buildmute DIR`: it puts the test plugin that answers the
// wiz handshake and then never serves (internal/pluginhost/testdata/mute) in
// DIR/wiz-processors-mute.
func cmdBuildmute(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: buildmute DIR")
	}
	buildPlugin(ts, "mute", filepath.Join("internal", "pluginhost", "testdata", "mute"),
		"", args[0], "wiz-processors-mute")
}

// cmdBuildflood is `buildflood DIR`: it puts the test pack whose
// flood/shout logs as much as it is told (internal/pluginhost/testdata/flood)
// in DIR/wiz-processors-flood.
func cmdBuildflood(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: buildflood DIR")
	}
	buildPlugin(ts, "flood", filepath.Join("internal", "pluginhost", "testdata", "flood"),
		"", args[0], "wiz-processors-flood")
}

// cmdInrange is `inrange N LO HI`: it succeeds when the integer N is at least
// LO and at most HI; `! inrange` when it is not.
func cmdInrange(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: inrange N LO HI")
	}
	var v [3]int64
	for i, a := range args {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			ts.Fatalf("inrange: %q is not an integer", a)
		}
		v[i] = n
	}
	in := v[1] <= v[0] && v[0] <= v[2]
	switch {
	case in && neg:
		ts.Fatalf("%d is in [%d, %d]", v[0], v[1], v[2])
	case !in && !neg:
		ts.Fatalf("%d is not in [%d, %d]", v[0], v[1], v[2])
	}
}

// cmdPtyscreen is `ptyscreen ROWS COLS FILE PROGRAM [ARGS...]`: it runs
// PROGRAM (found in PATH) in a pseudo-terminal of that size, with its stdin,
// stdout and stderr on it, renders everything it writes with a terminal
// emulator (vt10x), and writes the final screen, one line per row with
// trailing spaces cut, to FILE. With !, PROGRAM must fail.
func cmdPtyscreen(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 4 {
		ts.Fatalf("usage: ptyscreen ROWS COLS FILE PROGRAM [ARGS...]")
	}
	rows, err1 := strconv.Atoi(args[0])
	cols, err2 := strconv.Atoi(args[1])
	if err1 != nil || err2 != nil || rows < 1 || cols < 1 {
		ts.Fatalf("ptyscreen: bad size %s x %s", args[0], args[1])
	}
	prog, err := exec.LookPath(args[3])
	if filepath.Base(args[3]) == args[3] {
		// testscript's PATH, not the test process's.
		for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
			if p := filepath.Join(dir, args[3]); fileExecutable(p) {
				prog, err = p, nil
				break
			}
		}
	}
	if err != nil {
		ts.Fatalf("ptyscreen: %v", err)
	}
	cmd := exec.Command(prog, args[4:]...)
	cmd.Dir = ts.MkAbs(".")
	cmd.Env = scriptEnv(ts)
	vt := vt10x.New(vt10x.WithSize(cols, rows))
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: uint16(rows), Cols: uint16(cols)})
	if err != nil {
		ts.Fatalf("ptyscreen: start %s: %v", args[3], err)
	}
	// Read until the program and everything holding the terminal are gone
	// (EIO on Linux).
	_, copyErr := io.Copy(vt, f)
	werr := cmd.Wait()
	f.Close()
	if copyErr != nil && !errors.Is(copyErr, syscall.EIO) {
		ts.Fatalf("ptyscreen: read the terminal: %v", copyErr)
	}
	var screen strings.Builder
	for _, line := range strings.Split(vt.String(), "\n") {
		screen.WriteString(strings.TrimRight(line, " "))
		screen.WriteByte('\n')
	}
	if err := os.WriteFile(ts.MkAbs(args[2]), []byte(screen.String()), 0o644); err != nil {
		ts.Fatalf("ptyscreen: %v", err)
	}
	switch {
	case werr != nil && !neg:
		ts.Fatalf("%s: %v; screen:\n%s", args[3], werr, screen.String())
	case werr == nil && neg:
		ts.Fatalf("%s succeeded unexpectedly; screen:\n%s", args[3], screen.String())
	}
}

// scriptEnv is the environment of the script's commands.
func scriptEnv(ts *testscript.TestScript) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "WIZ_HOME", "WIZ_BIN", "WIZ_CAPACITY", "WIZ_LOG_LEVEL", "WORK", "TMPDIR", "GOCOVERDIR"} {
		if v := ts.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env, "TERM=xterm")
}

func fileExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
