package expr_test

import (
	"strings"
	"testing"

	"github.com/wiz-run/wiz/core/expr"
)

func env(t *testing.T) *expr.Env {
	t.Helper()
	e, err := expr.NewEnv(map[string]string{"count": expr.TypeInt, "name": expr.TypeString, "go": expr.TypeBool,
		"ratio": expr.TypeNumber, "cfg": expr.TypeJSON, "data": expr.TypeFile, "my-x": expr.TypeString})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var scope = &expr.Scope{Processors: []string{"a", "b", "c"}, Upstream: func(n string) bool { return n == "a" }, Processor: "c"}

func TestEvalText(t *testing.T) {
	t.Parallel()
	e := env(t)
	vars := &expr.Vars{
		Inputs: map[string]any{"count": int64(21), "name": "x y", "go": true, "ratio": 0.5, "cfg": map[string]any{"k": []any{int64(1), 2.5}},
			"data": expr.FileInput("in.txt", 3, "sha256:ab")},
		Processors: map[string]*expr.Processor{"a": {State: "Succeeded", Outputs: map[string]any{"out": `{"n": 3, "big": 1e30}`}, ExitCode: 0, Attempts: 1, Warnings: []string{"w"}}},
		Run:        &expr.Run{ID: "RUN", Pipeline: "p"},
	}
	for _, tc := range []struct{ src, want string }{
		{"inputs.count * 2", "42"},
		{"inputs.name", "x y"},
		{"inputs.ratio", "0.5"},
		{"2.0", "2"},
		{"inputs.go", "true"},
		{"inputs.cfg", `{"k":[1,2.5]}`},
		{"inputs.cfg.k[0] + 1", "2"},
		{"inputs.data.name", "in.txt"},
		{"processors.a.state", "Succeeded"},
		{`processors["a"].exit_code`, "0"},
		{"json(processors.a.outputs.out).n + 1", "4"},
		{"json(processors.a.outputs.out).big", "1e+30"},
		{"processors.a.warnings", `["w"]`},
		{"run.id + '/' + run.pipeline", "RUN/p"},
		{"'a,b'.split(',')", `["a","b"]`},
		{"inputs.name.upperAscii()", "X Y"},
		{"null", ""},
		{"duration('90s')", "1m30s"},
		{"timestamp('2026-01-02T03:04:05Z')", "2026-01-02T03:04:05Z"},
		{"{'b': 1, 'a': '<&>'}", `{"a":"<&>","b":1}`},
	} {
		p, err := e.Compile(tc.src, scope, false)
		if err != nil {
			t.Errorf("Compile(%q): %v", tc.src, err)
			continue
		}
		got, err := p.EvalText(vars)
		if err != nil {
			t.Errorf("Eval(%q): %v", tc.src, err)
			continue
		}
		if got != tc.want {
			t.Errorf("Eval(%q) = %q, want %q", tc.src, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	e := env(t)
	for _, tc := range []struct {
		src      string
		wantBool bool
		want     string
	}{
		{"inputs.nope", false, `names input "nope", which is not declared (declared inputs: cfg, count, data, go, my-x, name, ratio)`},
		{"processors.b.state", false, "which is not upstream of c: add `after: [b]` to c"},
		{"processors.zz.state", false, `names processor "zz", which does not exist (processors: a, b, c)`},
		{"processors.c.state", false, `names processor "c" itself`},
		{"processors.a.nope", false, "undefined field 'nope'"},
		{"inputs.count + 'x'", false, "no matching overload"},
		{"inputs.count", true, `"inputs.count" is an int, not a bool`},
		{"inputs.count +", false, "syntax error"},
		{"foo.bar", false, `unknown name "foo"`},
		{"run.status", false, "only finally processors see"},
		{"files.x", false, "write ${{ files.NAME }} alone"},
		{"item + 1", false, "uses item, which only the instances of a processor with for_each have"},
	} {
		_, err := e.Compile(tc.src, scope, tc.wantBool)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%q) = %v, want an error containing %q", tc.src, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("Compile(%q): error has several lines: %q", tc.src, err)
		}
	}
}

func TestInstanceScope(t *testing.T) {
	t.Parallel()
	e := env(t)
	// A comprehension variable named item is the user's own.
	if _, err := e.Compile("[1, 2].map(item, item * 2)", scope, false); err != nil {
		t.Errorf("comprehension over item: %v", err)
	}
	fe := *scope
	fe.ForEach = true
	p, err := e.Compile(`"${index}=" + string(item.n) + key`, &fe, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.EvalText(&expr.Vars{Instance: &expr.Instance{Item: map[string]any{"n": int64(7)}, Index: 2, Key: "k"}})
	if err != nil || got != "${index}=7k" {
		t.Errorf("got %q, %v", got, err)
	}
	l, err := e.Compile(`{"b": 1, "a": 2}`, &fe, false)
	if err != nil {
		t.Fatal(err)
	}
	items, keys, err := l.EvalList(nil)
	if err != nil || len(items) != 2 || keys[0] != "a" || items[0] != int64(2) {
		t.Errorf("EvalList of a map: %v %v %v", items, keys, err)
	}
}

func TestRefsAndOutputs(t *testing.T) {
	t.Parallel()
	p, err := env(t).Compile(`processors.a.outputs.out + processors["a"].outputs.log`, scope, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Refs, ",") != "a" || strings.Join(p.Outputs, ",") != "a.log,a.out" {
		t.Errorf("Refs %v Outputs %v", p.Refs, p.Outputs)
	}
}

func TestCostLimit(t *testing.T) {
	t.Parallel()
	p, err := env(t).Compile(`[1,2,3,4,5,6,7,8,9,10].map(a, [1,2,3,4,5,6,7,8,9,10].map(b, [1,2,3,4,5,6,7,8,9,10].map(c, [1,2,3,4,5,6,7,8,9,10].map(d, [1,2,3,4,5,6,7,8,9,10].map(e, [1,2,3,4,5,6,7,8,9,10].map(f, a+b+c+d+e+f))))))`, scope, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Eval(&expr.Vars{}); err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Errorf("Eval = %v, want the cost limit", err)
	}
}

func TestInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ, text string
		want      any
		bad       bool
	}{
		{expr.TypeInt, "42", int64(42), false},
		{expr.TypeInt, "4.2", nil, true},
		{expr.TypeInt, "0x10", nil, true},
		{expr.TypeNumber, "0.5", 0.5, false},
		{expr.TypeNumber, "3", 3.0, false},
		{expr.TypeNumber, "x", nil, true},
		{expr.TypeBool, "TRUE", true, false},
		{expr.TypeBool, "yes", nil, true},
		{expr.TypeString, "$(touch p)", "$(touch p)", false},
		{expr.TypeJSON, "[1", nil, true},
	} {
		got, err := expr.Input(tc.typ, tc.text)
		if (err != nil) != tc.bad || !tc.bad && got != tc.want {
			t.Errorf("Input(%s, %q) = %v, %v", tc.typ, tc.text, got, err)
		}
	}
}

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	parts, err := expr.ParseTemplate("ver-${{ a }}-${{b}} $${{ c }}")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range parts {
		if p.IsExpr() {
			b.WriteString("<" + p.Expr + ">")
		} else {
			b.WriteString(p.Lit)
		}
	}
	if got := b.String(); got != "ver-<a>-<b> ${{ c }}" {
		t.Errorf("got %q", got)
	}
	if _, err := expr.ParseTemplate("${{ a "); err == nil {
		t.Error("unclosed: no error")
	}
	if _, err := expr.ParseTemplate("${{ }}"); err == nil {
		t.Error("empty: no error")
	}
}
