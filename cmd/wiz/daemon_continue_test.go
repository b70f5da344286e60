package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// contRun is what TestDaemonContinue reads of `wiz runs show -o json`.
type contRun struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	Reason     string `json:"reason"`
	Continued  int    `json:"continued"`
	Processors []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Attempts int    `json:"attempts"`
		ChildRun string `json:"child_run"`
	} `json:"processors"`
}

// contShow reads run id with a wiz command of args (a client of a daemon,
// or a short command on the data dir).
func contShow(t *testing.T, e *daemonEnv, args []string, id string) contRun {
	t.Helper()
	r := e.exec(filepath.Join(binDir, "wiz"), append(args, "runs", "show", id, "-o", "json")...)
	var run contRun
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &run) != nil {
		t.Fatalf("runs show %s: %s", id, r)
	}
	return run
}

// contLog reads the lines the processors appended ("RUN NAME"), counted.
func contLog(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != "" {
			out[line]++
		}
	}
	return out
}

// TestDaemonContinue: kill -9 of the daemon in the middle of 20 runs of a
// 50-processor pipeline, then a restart: the restarted daemon continues
// every run in place (same ID), all 20 end Succeeded, no processor that
// had Succeeded runs again, and at most those that were Running run again,
// each counted as a further attempt. The first restart's clients are gone;
// nobody needs to resume anything by hand.
func TestDaemonContinue(t *testing.T) {
	e := daemonNewEnv(t)
	data := filepath.Join(e.dir, "data")
	d := e.daemon(data, "WIZ_CAPACITY=12")
	admin := d.admin
	logPath := filepath.Join(e.dir, "ran.log")
	var p strings.Builder
	p.WriteString("name: wide\nprocessors:\n")
	for i := range 50 {
		fmt.Fprintf(&p, "  p%02d:\n    uses: std/shell\n    with:\n      script: |\n        echo \"$WIZ_RUN_ID p%02d\" >> %s\n        sleep 0.2\n      stdout: false\n", i, i, logPath)
		if i >= 5 {
			fmt.Fprintf(&p, "    after: [p%02d]\n", i-5) // five chains of ten
		}
	}
	e.file("wide.yaml", p.String())
	d.ok(admin, "pipeline", "apply", "wide.yaml")

	var ids []string
	for range 20 {
		c := e.start("wiz run", nil, d.args(admin, "run", "wide")...)
		ids = append(ids, daemonWaitID(t, c))
	}
	// Killed once a good part of the work is done, and none of it all.
	for deadline := time.Now().Add(daemonPollMax); ; time.Sleep(50 * time.Millisecond) {
		n := 0
		for _, c := range contLog(t, logPath) {
			n += c
		}
		if n >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d processors ran within %v", n, daemonPollMax)
		}
	}
	d.signal(syscall.SIGKILL, daemonStopMax)

	// What the store holds then, read by short commands on the data dir,
	// which leave the daemon's runs alone.
	short := []string{"--home", data}
	succeeded := map[string]bool{} // "RUN NAME"
	runningAtKill := map[string]bool{}
	running := 0
	unfinished := 0
	for _, id := range ids {
		run := contShow(t, e, short, id)
		if run.State != "Running" {
			t.Fatalf("run %s is %s after the daemon was killed, want Running (the next daemon's)", id, run.State)
		}
		for _, pr := range run.Processors {
			switch pr.State {
			case "Succeeded":
				succeeded[id+" "+pr.Name] = true
			case "Running":
				running++
				runningAtKill[id+" "+pr.Name] = true
			}
		}
		if len(run.Processors) < 50 || strings.Contains(fmt.Sprint(run.Processors), "Idle") {
			unfinished++
		}
	}
	if len(succeeded) == 0 || unfinished == 0 {
		t.Fatalf("killed at a bad moment: %d processors had Succeeded, %d runs unfinished", len(succeeded), unfinished)
	}
	// The killed daemon's executors run on (for their orphan timeout), with
	// the tasks it had sent them: the next daemon adopts them.
	d = e.daemon(data, "WIZ_CAPACITY=12")
	for _, id := range ids {
		d.waitRun(admin, id, "ended", func(r daemonRun) bool { return r.State != "Running" })
		run := contShow(t, e, d.args(admin), id)
		if run.State != "Succeeded" || run.Continued != 1 || len(run.Processors) != 50 {
			t.Errorf("run %s after the restart: %s (%s), continued %d×, %d processors; want Succeeded, continued once, 50 processors",
				id, run.State, run.Reason, run.Continued, len(run.Processors))
		}
		for _, pr := range run.Processors {
			if pr.State != "Succeeded" {
				t.Errorf("run %s: processor %s is %s", id, pr.Name, pr.State)
			}
			if pr.Attempts < 1 || pr.Attempts > 2 {
				t.Errorf("run %s: processor %s made %d attempts, want 1 (or 2: Running when the daemon was killed)", id, pr.Name, pr.Attempts)
			}
		}
	}
	if !regexp.MustCompile(`(?m)^wiz daemon: continuing 20 run\(s\) an earlier daemon left Running: `).MatchString(d.stdout.String()) {
		t.Errorf("the restarted daemon did not say it continues the 20 runs:\n%s", d.stdout)
	}
	ran := contLog(t, logPath)
	again, reattached := 0, 0
	for _, id := range ids {
		run := contShow(t, e, d.args(admin), id)
		attempts := map[string]int{}
		for _, pr := range run.Processors {
			attempts[pr.Name] = pr.Attempts
		}
		for i := range 50 {
			name := fmt.Sprintf("p%02d", i)
			k := id + " " + name
			switch n := ran[k]; {
			case n == 0:
				t.Errorf("%s never ran", k)
			case n > 1 && succeeded[k]:
				t.Errorf("%s had Succeeded before the daemon was killed, and ran %d times", k, n)
			case n > 2:
				t.Errorf("%s ran %d times", k, n)
			case n == 2:
				again++
			}
			if runningAtKill[k] && ran[k] == 1 && attempts[name] == 1 {
				reattached++ // Running when the daemon was killed: collected, not run again
			}
		}
	}
	// A task recorded Running is re-attached on its executor, unless it
	// ended before the kill and only its Succeeded record was lost: then it
	// runs again. Most are re-attached.
	if running > 0 && reattached == 0 {
		t.Errorf("none of the %d processors recorded Running when the daemon was killed was re-attached (each ran again)", running)
	}
	if left := e.waitGone("wiz executor"); len(left) > 0 {
		t.Errorf("executors still run after every run ended (adopted ones are torn down too):\n%s", strings.Join(left, "\n"))
	}
	t.Logf("killed with %d processors Succeeded, %d recorded Running; %d re-attached, %d ran again", len(succeeded), running, reattached, again)
}

// TestDaemonContinueNested: a run killed with its daemon while a
// sub-pipeline's processor runs, after a for_each fanned out: the restarted
// daemon continues the run and its child run in place (the same child run,
// not a new one), the instances and the child's processor that had
// Succeeded do not run again, and the one in flight is re-attached on the
// executor that outlived the daemon: it runs once.
func TestDaemonContinueNested(t *testing.T) {
	testContinueNested(t, "", 1, func(d *daemonServer) {
		d.signal(syscall.SIGKILL, daemonStopMax)
	})
}

// TestDaemonStopLeavesRuns: the same when the daemon is stopped with
// SIGTERM and its runs outlast the grace period: it exits 0 and leaves them
// Running (sub-pipeline runs too) for its next start, which continues them;
// none ends Failed "cancelled". Its executors are torn down as it stops, so
// the task in flight runs again.
func TestDaemonStopLeavesRuns(t *testing.T) {
	testContinueNested(t, "the daemon stopped before the run ended; its next start continues the run", 2, func(d *daemonServer) {
		if code := d.signal(syscall.SIGTERM, daemonStopMax); code != 0 {
			t.Fatalf("the daemon exited %d after SIGTERM, want 0\nstderr:\n%s", code, d.stderr)
		}
		if !strings.Contains(d.stderr.String(), "left a run still going after the grace period to the next start") {
			t.Errorf("the stopped daemon did not log the run it left:\n%s", d.stderr)
		}
	}, "--grace", "1s")
}

// testContinueNested stops the daemon with stop while the run is in its
// sub-pipeline; the run and its child run are then Running with reason
// (why, while no Manager holds them). c2Runs is how often the child's
// processor in flight runs in all.
func testContinueNested(t *testing.T, reason string, c2Runs int, stop func(*daemonServer), args ...string) {
	e := daemonNewEnv(t)
	data := filepath.Join(e.dir, "data")
	d := e.daemonArgs(data, nil, args...)
	admin := d.admin
	logPath, gate := filepath.Join(e.dir, "ran.log"), filepath.Join(e.dir, "gate")
	e.file("child.yaml", fmt.Sprintf(`name: child
processors:
  c1:
    uses: std/shell
    with: {script: 'echo "$WIZ_RUN_ID c1" >> %[1]s', stdout: false}
  c2:
    uses: std/shell
    after: [c1]
    with:
      script: |
        echo "$WIZ_RUN_ID c2" >> %[1]s
        while [ ! -e %[2]s ]; do sleep 0.05; done
      stdout: false
`, logPath, gate))
	e.file("nest.yaml", fmt.Sprintf(`name: nest
processors:
  each:
    uses: std/shell
    for_each: [a, b, c]
    with: {script: 'echo "$WIZ_RUN_ID each-${{ item }}" >> %[1]s', stdout: false}
  sub:
    uses: ./child.yaml
    after: [each]
  last:
    uses: std/shell
    after: [sub]
    with: {script: 'echo "$WIZ_RUN_ID last" >> %[1]s', stdout: false}
`, logPath))
	c := e.start("wiz run", nil, d.args(admin, "run", "nest.yaml")...)
	id := daemonWaitID(t, c)
	for deadline := time.Now().Add(daemonPollMax); ; time.Sleep(20 * time.Millisecond) {
		if b, _ := os.ReadFile(logPath); strings.Contains(string(b), " c2\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c2 did not start within %v", daemonPollMax)
		}
	}
	before := contShow(t, e, d.args(admin), id)
	childID := ""
	for _, pr := range before.Processors {
		if pr.Name == "sub" {
			childID = pr.ChildRun
		}
	}
	if childID == "" {
		t.Fatalf("sub has no child run: %+v", before)
	}
	stop(d)
	// Its client says what happens to the run, and how to follow it.
	if code := c.wait(daemonPollMax); code != 1 || !strings.HasSuffix(c.stderr.String(), "a daemon restarted on its data dir continues the run (unless started with --on-restart fail); `wiz runs watch "+id+"` follows it then\n") {
		t.Errorf("the client of the killed daemon: exit %d, want 1 and what becomes of run %s\nstderr:\n%s", code, id, c.stderr)
	}

	// Meanwhile a short command on the data dir sees both runs Running.
	for _, rid := range []string{id, childID} {
		if r := contShow(t, e, []string{"--home", data}, rid); r.State != "Running" || r.Reason != reason {
			t.Fatalf("run %s is %s (%q) once its daemon is gone, want Running (%q): %+v", rid, r.State, r.Reason, reason, r)
		}
	}

	d = e.daemonArgs(data, nil, args...)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Live as soon as the daemon listens: runs watch follows it to the end.
	if r := d.ok(admin, "runs", "watch", id); !regexp.MustCompile(`(?m)^run ` + id + ` Succeeded in `).MatchString(r.stdout) {
		t.Errorf("runs watch %s after the restart: want it followed to Succeeded: %s", id, r)
	}
	run := contShow(t, e, d.args(admin), id)
	if run.State != "Succeeded" || run.Continued != 1 || run.Reason != "" {
		t.Fatalf("run %s after the restart: %s (%s), continued %d×; want Succeeded, continued once", id, run.State, run.Reason, run.Continued)
	}
	for _, pr := range run.Processors {
		if pr.Name == "sub" && (pr.ChildRun != childID || pr.Attempts != 2) {
			t.Errorf("sub ran child run %s in %d attempts after the restart, want the same child run %s continued, as attempt 2", pr.ChildRun, pr.Attempts, childID)
		}
	}
	child := contShow(t, e, d.args(admin), childID)
	if child.State != "Succeeded" || child.Continued != 1 {
		t.Errorf("child run %s: %s (%s), continued %d×; want Succeeded, continued once", childID, child.State, child.Reason, child.Continued)
	}
	for _, pr := range child.Processors {
		if want := map[string]int{"c1": 1, "c2": c2Runs}[pr.Name]; pr.Attempts != want {
			t.Errorf("child processor %s made %d attempts, want %d", pr.Name, pr.Attempts, want)
		}
	}
	ran := contLog(t, logPath)
	want := map[string]int{id + " each-a": 1, id + " each-b": 1, id + " each-c": 1, childID + " c1": 1, childID + " c2": c2Runs, id + " last": 1}
	for k, n := range want {
		if ran[k] != n {
			t.Errorf("%s ran %d times, want %d", k, ran[k], n)
		}
	}
	if len(ran) != len(want) {
		t.Errorf("ran %v, want %v", ran, want)
	}
	var runs []daemonRun
	d.decode(&runs, admin, "runs", "list", "-n", "0", "-o", "json")
	if len(runs) != 2 {
		t.Errorf("runs list: %d runs, want the run and its child run: %+v", len(runs), runs)
	}
}
