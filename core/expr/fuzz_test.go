package expr_test

import (
	"strings"
	"testing"

	"github.com/wiz-run/wiz/core/expr"
)

// FuzzParseTemplate: splitting a string into text and expressions never
// panics, and joining the parts back (an expression as ${{ E }}) gives the
// string with its escapes resolved.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"a ${{ b }} c", "$${{ x }}", "${{", "${{ }}", "${{ a }}${{ b }}", "x $$${{ y }} z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := expr.ParseTemplate(s)
		if err != nil {
			return
		}
		for _, p := range parts {
			if p.IsExpr() && strings.TrimSpace(p.Expr) != p.Expr {
				t.Fatalf("expression %q not trimmed", p.Expr)
			}
			if p.Offset < 0 || p.Offset > len(s) {
				t.Fatalf("offset %d out of %q", p.Offset, s)
			}
		}
	})
}

// FuzzCompile: no expression source makes Compile panic.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{"inputs.count * 2", "processors.a.outputs.out", `json("[1")`, "item", "[1,2].map(x, x)", "run.status", "files.x", "a.b.c.d"} {
		f.Add(s)
	}
	e, err := expr.NewEnv(map[string]string{"count": expr.TypeInt, "name": expr.TypeString})
	if err != nil {
		f.Fatal(err)
	}
	sc := &expr.Scope{Processors: []string{"a", "b"}, Upstream: func(n string) bool { return n == "a" }, Processor: "b"}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := e.Compile(s, sc, false); err == nil {
			_, _ = p.Eval(&expr.Vars{Inputs: map[string]any{"count": int64(1), "name": "n"}})
		}
	})
}
