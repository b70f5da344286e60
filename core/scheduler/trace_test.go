package scheduler_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/core/scheduler"
)

var update = flag.Bool("update", false, "rewrite the golden traces in testdata/ with what the scheduler does")

// TestTraces replays the scripts in testdata/*.txt, golden-trace style (after
// etcd-io/raft's interaction tests). A script is a list of commands; after each
// command the file holds the actions the scheduler returned, as "> " lines.
// The test re-runs the commands and compares the whole file; run with -update
// to rewrite the files after a deliberate change, then review the diff.
//
// Commands:
//
//	new n=N [edges=A>B,...] [prio=P0,P1,...] [warn=I,J,...] [window=W]
//	start
//	finish NODE ok|fail|cancel
//	cancel
//	state            (prints result, warned and the blocked nodes)
func TestTraces(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no traces in testdata/")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			want := string(b)
			got, err := replay(want)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("%s: trace differs (-want +got):\n%s", file, lineDiff(want, got))
			}
		})
	}
}

// replay runs a script and returns it with fresh "> " lines.
func replay(script string) (string, error) {
	var (
		out   strings.Builder
		s     *scheduler.Scheduler
		n     int
		lines = strings.Split(strings.TrimSuffix(script, "\n"), "\n")
	)
	for i, line := range lines {
		if strings.HasPrefix(line, ">") {
			continue // old output
		}
		out.WriteString(line + "\n")
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "new" && s == nil {
			return "", fmt.Errorf("line %d: %q before new", i+1, f[0])
		}
		var acts []scheduler.Action
		switch f[0] {
		case "new":
			spec, err := parseSpec(f[1:])
			if err != nil {
				return "", fmt.Errorf("line %d: %v", i+1, err)
			}
			s, n = scheduler.New(spec), spec.N
			continue
		case "start":
			acts = s.Start()
		case "cancel":
			acts = s.Cancel()
		case "finish":
			if len(f) != 3 {
				return "", fmt.Errorf("line %d: want: finish NODE ok|fail|cancel", i+1)
			}
			node, err := strconv.Atoi(f[1])
			if err != nil {
				return "", fmt.Errorf("line %d: %v", i+1, err)
			}
			o, ok := map[string]scheduler.Outcome{"ok": scheduler.Succeeded, "fail": scheduler.Failed, "cancel": scheduler.Cancelled}[f[2]]
			if !ok {
				return "", fmt.Errorf("line %d: unknown outcome %q", i+1, f[2])
			}
			acts = s.Finished(node, o)
		case "state":
			var blocked []string
			for i := 0; i < n; i++ {
				if s.Blocked(i) {
					blocked = append(blocked, strconv.Itoa(i))
				}
			}
			if blocked == nil {
				blocked = []string{"none"}
			}
			fmt.Fprintf(&out, "> result=%s warned=%d blocked=%s\n", resultName(s.Result()), s.Warned(), strings.Join(blocked, ","))
			continue
		default:
			return "", fmt.Errorf("line %d: unknown command %q", i+1, f[0])
		}
		if len(acts) == 0 {
			out.WriteString("> (nothing)\n")
		}
		for _, a := range acts {
			fmt.Fprintf(&out, "> %s\n", actionString(a, s))
		}
	}
	return out.String(), nil
}

func parseSpec(args []string) (scheduler.Spec, error) {
	var spec scheduler.Spec
	ints := func(v string) ([]int, error) {
		var out []int
		for _, s := range strings.Split(v, ",") {
			x, err := strconv.Atoi(s)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	}
	var warn []int
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return spec, fmt.Errorf("argument %q is not key=value", a)
		}
		var err error
		switch k {
		case "n":
			spec.N, err = strconv.Atoi(v)
		case "window":
			spec.Window, err = strconv.Atoi(v)
		case "prio":
			spec.Priority, err = ints(v)
		case "warn":
			warn, err = ints(v)
		case "edges":
			for _, e := range strings.Split(v, ",") {
				from, to, ok := strings.Cut(e, ">")
				if !ok {
					return spec, fmt.Errorf("edge %q is not FROM>TO", e)
				}
				a, err1 := strconv.Atoi(from)
				b, err2 := strconv.Atoi(to)
				if err1 != nil || err2 != nil {
					return spec, fmt.Errorf("edge %q is not FROM>TO", e)
				}
				spec.Edges = append(spec.Edges, [2]int{a, b})
			}
		default:
			return spec, fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return spec, fmt.Errorf("%s: %v", k, err)
		}
	}
	if warn != nil {
		spec.WarnOnly = make([]bool, spec.N)
		for _, w := range warn {
			spec.WarnOnly[w] = true
		}
	}
	return spec, nil
}

func actionString(a scheduler.Action, s *scheduler.Scheduler) string {
	switch a.Kind {
	case scheduler.Dispatch:
		return fmt.Sprintf("dispatch %d", a.Node)
	case scheduler.CancelTask:
		return fmt.Sprintf("cancel-task %d", a.Node)
	case scheduler.Done:
		return "done " + resultName(s.Result())
	}
	return fmt.Sprintf("unknown action %d on %d", a.Kind, a.Node)
}

func resultName(r scheduler.Result) string {
	switch r {
	case scheduler.Running:
		return "running"
	case scheduler.RunSucceeded:
		return "succeeded"
	case scheduler.RunFailed:
		return "failed"
	}
	return fmt.Sprintf("result(%d)", r)
}

// lineDiff shows the lines where want and got differ, with a little context.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	first := 0
	for first < len(w) && first < len(g) && w[first] == g[first] {
		first++
	}
	lw, lg := len(w), len(g)
	for lw > first && lg > first && w[lw-1] == g[lg-1] {
		lw, lg = lw-1, lg-1
	}
	var b strings.Builder
	for i := max(first-3, 0); i < first; i++ {
		fmt.Fprintf(&b, "  %s\n", w[i])
	}
	for i := first; i < lw; i++ {
		fmt.Fprintf(&b, "- %s\n", w[i])
	}
	for i := first; i < lg; i++ {
		fmt.Fprintf(&b, "+ %s\n", g[i])
	}
	for i := lw; i < len(w) && i < lw+3; i++ {
		fmt.Fprintf(&b, "  %s\n", w[i])
	}
	return b.String()
}
