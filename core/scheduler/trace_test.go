package scheduler_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
//	new n=N [edges=A>B,...] [allow=K,...] [prio=P0,P1,...] [warn=I,J,...] [window=W]
//	    [cond=I,J,...] [finally=I,J,...] [done=I,J,...] [keepgoing] [timeout=D] [seed=S]
//	    [foreach=NODE[:MAXPARALLEL],...]
//	    [retry=NODE:LIMIT:BACKOFF:FACTOR:MAXBACKOFF:JITTER:MAXDURATION[:CODE/CODE...];...]
//	start
//	finish NODE ok|fail|cancel|lost [code=C]
//	eval NODE run|skip|error
//	expand NODE N|error [done=I,J,...]   (instance indexes already done)
//	tick D           (Advance to logical time D, a Go duration)
//	cancel
//	state            (prints result, warned and the blocked nodes)
//
// An allow K is one edge's set of upstream end states, in the order of
// edges: data (succeeded only), after (succeeded or skipped), succeeded,
// failed, ended.
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
			if len(f) < 3 {
				return "", fmt.Errorf("line %d: want: finish NODE ok|fail|cancel|lost [code=C]", i+1)
			}
			node, err := strconv.Atoi(f[1])
			if err != nil {
				return "", fmt.Errorf("line %d: %v", i+1, err)
			}
			var end scheduler.End
			switch f[2] {
			case "ok":
				end.Outcome = scheduler.Succeeded
			case "fail":
				end.Outcome = scheduler.Failed
			case "cancel":
				end.Outcome = scheduler.Cancelled
			case "lost":
				end = scheduler.End{Outcome: scheduler.Failed, Lost: true}
			default:
				return "", fmt.Errorf("line %d: unknown outcome %q", i+1, f[2])
			}
			if len(f) == 4 {
				c, ok := strings.CutPrefix(f[3], "code=")
				code, err := strconv.Atoi(c)
				if !ok || err != nil {
					return "", fmt.Errorf("line %d: want code=C, got %q", i+1, f[3])
				}
				end.Code, end.HasCode = code, true
			}
			acts = s.Ended(node, end)
		case "eval":
			if len(f) != 3 {
				return "", fmt.Errorf("line %d: want: eval NODE run|skip|error", i+1)
			}
			node, err := strconv.Atoi(f[1])
			if err != nil {
				return "", fmt.Errorf("line %d: %v", i+1, err)
			}
			v, ok := map[string]scheduler.Verdict{"run": scheduler.Run, "skip": scheduler.SkipIt, "error": scheduler.Error}[f[2]]
			if !ok {
				return "", fmt.Errorf("line %d: unknown verdict %q", i+1, f[2])
			}
			acts = s.Evaluated(node, v)
		case "expand":
			if len(f) < 3 {
				return "", fmt.Errorf("line %d: want: expand NODE N|error [done=I,...]", i+1)
			}
			node, err := strconv.Atoi(f[1])
			if err != nil {
				return "", fmt.Errorf("line %d: %v", i+1, err)
			}
			k := -1
			if f[2] != "error" {
				if k, err = strconv.Atoi(f[2]); err != nil {
					return "", fmt.Errorf("line %d: %v", i+1, err)
				}
			}
			var done []bool
			if len(f) == 4 {
				v, ok := strings.CutPrefix(f[3], "done=")
				if !ok {
					return "", fmt.Errorf("line %d: want done=I,...", i+1)
				}
				done = make([]bool, max(k, 0))
				for _, x := range strings.Split(v, ",") {
					d, err := strconv.Atoi(x)
					if err != nil || d >= len(done) {
						return "", fmt.Errorf("line %d: bad done index %q", i+1, x)
					}
					done[d] = true
				}
			}
			acts = s.Expanded(node, k, done)
			if first, n := s.Instances(node); n > 0 {
				fmt.Fprintf(&out, "> instances %d..%d\n", first, first+n-1)
			}
		case "tick":
			if len(f) != 2 {
				return "", fmt.Errorf("line %d: want: tick DURATION", i+1)
			}
			d, err := time.ParseDuration(f[1])
			if err != nil {
				return "", fmt.Errorf("line %d: %v", i+1, err)
			}
			acts = s.Advance(d)
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
	var warn, cond, finally []int
	for _, a := range args {
		if a == "keepgoing" {
			spec.KeepGoing = true
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return spec, fmt.Errorf("argument %q is not key=value", a)
		}
		var err error
		switch k {
		case "cond":
			cond, err = ints(v)
		case "foreach":
			if spec.N == 0 {
				return spec, fmt.Errorf("foreach before n")
			}
			spec.ForEach, spec.MaxParallel = make([]bool, spec.N), make([]int, spec.N)
			for _, x := range strings.Split(v, ",") {
				node, limit, _ := strings.Cut(x, ":")
				nd, err1 := strconv.Atoi(node)
				if err1 != nil {
					return spec, fmt.Errorf("foreach %q: %v", x, err1)
				}
				spec.ForEach[nd] = true
				if limit != "" {
					if spec.MaxParallel[nd], err = strconv.Atoi(limit); err != nil {
						return spec, fmt.Errorf("foreach %q: %v", x, err)
					}
				}
			}
		case "done":
			var done []int
			if done, err = ints(v); err == nil {
				spec.Done = make([]bool, spec.N)
				for _, d := range done {
					spec.Done[d] = true
				}
			}
		case "finally":
			finally, err = ints(v)
		case "timeout":
			spec.Timeout, err = time.ParseDuration(v)
		case "seed":
			spec.Seed, err = strconv.ParseUint(v, 10, 64)
		case "allow":
			for _, name := range strings.Split(v, ",") {
				al, ok := allowNames[name]
				if !ok {
					return spec, fmt.Errorf("unknown allow %q", name)
				}
				spec.Allow = append(spec.Allow, al)
			}
		case "retry":
			if spec.N == 0 {
				return spec, fmt.Errorf("retry before n")
			}
			spec.Retry = make([]scheduler.Retry, spec.N)
			for _, r := range strings.Split(v, ";") {
				node, r, err := parseRetry(r)
				if err != nil {
					return spec, err
				}
				spec.Retry[node] = r
			}
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
	mark := func(nodes []int) []bool {
		if nodes == nil {
			return nil
		}
		out := make([]bool, spec.N)
		for _, w := range nodes {
			out[w] = true
		}
		return out
	}
	spec.WarnOnly, spec.Cond, spec.Finally = mark(warn), mark(cond), mark(finally)
	if spec.Allow != nil && len(spec.Allow) != len(spec.Edges) {
		return spec, fmt.Errorf("%d allows for %d edges", len(spec.Allow), len(spec.Edges))
	}
	return spec, nil
}

var allowNames = map[string]scheduler.Allow{
	"data": scheduler.AllowData, "after": scheduler.AllowAfter, "succeeded": scheduler.AllowSucceeded,
	"failed": scheduler.AllowFailed, "ended": scheduler.AllowEnded,
}

// parseRetry parses NODE:LIMIT:BACKOFF:FACTOR:MAXBACKOFF:JITTER:MAXDURATION[:CODE/CODE...].
func parseRetry(s string) (int, scheduler.Retry, error) {
	var r scheduler.Retry
	f := strings.Split(s, ":")
	if len(f) < 7 || len(f) > 8 {
		return 0, r, fmt.Errorf("retry %q: want NODE:LIMIT:BACKOFF:FACTOR:MAXBACKOFF:JITTER:MAXDURATION[:CODES]", s)
	}
	node, err1 := strconv.Atoi(f[0])
	limit, err2 := strconv.Atoi(f[1])
	backoff, err3 := time.ParseDuration(f[2])
	factor, err4 := strconv.ParseFloat(f[3], 64)
	maxBackoff, err5 := time.ParseDuration(f[4])
	jitter, err6 := strconv.ParseFloat(f[5], 64)
	maxDuration, err7 := time.ParseDuration(f[6])
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return 0, r, fmt.Errorf("retry %q: %v", s, err)
	}
	r = scheduler.Retry{Limit: limit, Backoff: backoff, Factor: factor, MaxBackoff: maxBackoff, Jitter: jitter, MaxDuration: maxDuration}
	if len(f) == 8 {
		for _, c := range strings.Split(f[7], "/") {
			code, err := strconv.Atoi(c)
			if err != nil {
				return 0, r, fmt.Errorf("retry %q: %v", s, err)
			}
			r.ExitCodes = append(r.ExitCodes, code)
		}
	}
	return node, r, nil
}

func actionString(a scheduler.Action, s *scheduler.Scheduler) string {
	switch a.Kind {
	case scheduler.Dispatch:
		return fmt.Sprintf("dispatch %d", a.Node)
	case scheduler.CancelTask:
		return fmt.Sprintf("cancel-task %d", a.Node)
	case scheduler.Done:
		return "done " + resultName(s.Result())
	case scheduler.Evaluate:
		return fmt.Sprintf("evaluate %d", a.Node)
	case scheduler.Skip:
		if a.Cause < 0 {
			return fmt.Sprintf("skip %d (condition false)", a.Node)
		}
		return fmt.Sprintf("skip %d (%d %s)", a.Node, a.Cause, stateName(a.CauseState))
	case scheduler.Retrying:
		return fmt.Sprintf("retry %d at %s (attempt %d)", a.Node, a.At, s.Attempts(a.Node)+1)
	case scheduler.Wake:
		return fmt.Sprintf("wake at %s", a.At)
	case scheduler.TimedOut:
		return "timed-out"
	case scheduler.Finally:
		return "finally"
	case scheduler.Expand:
		return fmt.Sprintf("expand %d", a.Node)
	case scheduler.Gathered:
		return fmt.Sprintf("gathered %d %s", a.Node, stateName(a.CauseState))
	}
	return fmt.Sprintf("unknown action %d on %d", a.Kind, a.Node)
}

func stateName(st scheduler.State) string {
	switch st {
	case scheduler.StateSucceeded:
		return "succeeded"
	case scheduler.StateFailed:
		return "failed"
	case scheduler.StateSkipped:
		return "skipped"
	}
	return "not-run"
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
