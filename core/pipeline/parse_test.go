package pipeline_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/pipeline"
)

// TestParseYAMLErrors checks the positions of YAML syntax errors, which
// yaml.v3 reports without a column and often on the line where the broken
// construct starts.
func TestParseYAMLErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"bad indentation", procs("  a:\n    uses: std/exec\n   with: {command: [ls]}\n"),
			`p.yaml:5:4: YAML syntax error: did not find expected key`},
		{"unclosed quote", procs("  a:\n    uses: std/exec\n    with:\n      command: \"ls\n  b:\n    uses: std/exec\n"),
			`p.yaml:6:16: YAML syntax error: found unexpected end of file in the quoted string that starts here`},
		{"tab in indentation", procs("  a:\n    uses: std/exec\n\twith: 1\n"),
			`p.yaml:5:1: YAML syntax error: found a tab character that violates indentation (line 5 is indented with a tab: indent with spaces)`},
		{"missing colon", procs("  a:\n    uses: std/exec\n  b\n  c: {uses: std/json}\n"),
			`p.yaml:5:3: YAML syntax error: could not find expected ':'`},
		{"two colons", procs("  a:\n    uses: std/exec\n    with: command: [ls]\n"),
			`p.yaml:5:18: YAML syntax error: mapping values are not allowed in this context`},
		{"unclosed mapping", procs("  a: {uses: std/exec, with: {command: [ls]}\n  b: {uses: std/json}\n"),
			`p.yaml:3:6: YAML syntax error: did not find expected ',' or '}' in the mapping that starts here`},
		{"extra brace", procs("  a: {uses: std/exec, with: {command: [ls]}}}\n"),
			`p.yaml:3:45: YAML syntax error: did not find expected key`},
		{"reserved character", procs("  a: {uses: @json}\n"),
			`p.yaml:3:13: YAML syntax error: found character '@' that cannot start any token`},
		{"in a second document", "name: t\nprocessors: {a: {uses: std/json}}\n---\nname: [\n",
			`p.yaml:4:7: YAML syntax error: did not find expected node content`},
		{"invalid UTF-8", procs("  a: {uses: std/json}\n  \xff: 1\n"),
			`p.yaml:4:3: YAML syntax error: invalid leading UTF-8 octet`},
		{"unknown alias after look-alikes", "name: t\n# uses: *typ\nprocessors:\n  a:\n    with: {x: \"*typ\"}\n    uses: *typ\n",
			`p.yaml:6:11: unknown alias "*typ"`},
		{"alias before its anchor", procs("  a: {uses: std/json, after: *l}\n  b: {uses: std/json, after: &l [a]}\n"),
			`p.yaml:3:30: unknown alias "*l" (an alias must come after its anchor "&l")`},
		{"alias inside its anchor", procs("  a: &a {uses: std/json, with: {self: *a}}\n"),
			`p.yaml:3:39: alias "*a" stands for a value that contains it`},
		{"merge key in with", procs("  a: {uses: std/json, with: {<<: {x: 1}}}\n"),
			`p.yaml:3:30: merge keys (<<) are not supported`},
		{"positions past anchors", procs("  a:\n    uses: &u exec\n    after: &l\n      - 1\n"),
			"p.yaml:4:14: invalid processor type \"exec\": want PACK/NAME, like std/exec\n" +
				"p.yaml:6:9: after must be a list of processor names or {NAME: succeeded|failed|ended}, got an item that is an integer"},
		{"CRLF", "name: t\r\nprocessors:\r\n  a: {uses: exec}\r\n",
			`p.yaml:3:13: invalid processor type "exec": want PACK/NAME, like std/exec`},
		{"columns count characters", "name: t\nprocessors:\n  é: {uses: \"é\", after: ü}\n",
			"p.yaml:3:3: invalid processor name \"é\": use letters, digits, \"_\" and \"-\"\n" +
				"p.yaml:3:13: invalid processor type \"é\": want PACK/NAME, like std/exec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := pipeline.Parse("p.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want error:\n%s", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestParseScalars checks the Go values of the scalars of `with`: YAML 1.2's
// core schema, with non-negative integers as uint64.
func TestParseScalars(t *testing.T) {
	t.Parallel()
	src := procs(`  a:
    uses: std/json
    with:
      int: 12
      neg: -12
      plus: +5
      hex: 0x1F
      neghex: -0x1F
      octal: 0o17
      oldoctal: 017
      notoctal: 08
      sep: 1_000
      big: 18446744073709551615
      float: 1.5
      exp: 1.5e3
      noexp: 1e3
      inf: .inf
      neginf: -.Inf
      "true": true
      "false": FALSE
      yes: yes
      "on": on
      null: null
      tilde: ~
      empty:
      date: 2001-12-14
      quoted: "12"
      single: '.inf'
      tagged: !!str 12
      custom: !thing 7
      literal: |
        two
        lines
      folded: >-
        one
        line
      tab: "a\tb"
      alias: &n 3
      again: *n
      list: [1, a, ~]
`)
	p, err := pipeline.Parse("s.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	with := p.Processors[0].With
	want := map[string]any{
		"int": uint64(12), "neg": int64(-12), "plus": uint64(5), "hex": uint64(31), "neghex": int64(-31),
		"octal": uint64(15), "oldoctal": uint64(15), "notoctal": "08", "sep": uint64(1000),
		"big": uint64(math.MaxUint64), "float": 1.5, "exp": 1500.0, "noexp": "1e3",
		"inf": math.Inf(1), "neginf": math.Inf(-1), "true": true, "false": false, "yes": "yes", "on": "on",
		"null": nil, "tilde": nil, "empty": nil, "date": "2001-12-14", "quoted": "12", "single": ".inf",
		"tagged": "12", "custom": uint64(7), "literal": "two\nlines\n", "folded": "one line", "tab": "a\tb",
		"alias": uint64(3), "again": uint64(3), "list": []any{uint64(1), "a", nil},
	}
	check(t, "with", with, want)
	if len(with) != len(want) {
		t.Errorf("with has %d keys, want %d", len(with), len(want))
	}
}

// TestParseBlockScalars checks that folded and literal scalars are strings
// wherever a string is expected.
func TestParseBlockScalars(t *testing.T) {
	t.Parallel()
	p, err := pipeline.Parse("b.yaml", []byte(procs("  a:\n    uses: >-\n      std/json\n    timeout: |-\n      30s\n    after: |-\n      b\n  b: {uses: std/json}\n")))
	if err != nil {
		t.Fatal(err)
	}
	a := p.Processors[0]
	check(t, "uses", a.Uses, "std/json")
	check(t, "timeout", a.Timeout, 30*time.Second)
	check(t, "after", a.After, []string{"b"})
}

// TestParseAliasExpansion checks that aliases cannot make a small file
// expand into a huge value.
func TestParseAliasExpansion(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("name: t\nprocessors:\n  a:\n    uses: std/json\n    with:\n      l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		prev := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "      l%d: &l%d [%s%s]\n", i, i, strings.Repeat(prev+", ", 9), prev)
	}
	start := time.Now()
	_, err := pipeline.Parse("l.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too many values") {
		t.Errorf("Parse: %v; want too many values", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

// TestValidateManyErrors checks that messages listing processors stay short
// in a large pipeline.
func TestValidateManyErrors(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("name: t\nprocessors:\n")
	for i := range 200 {
		fmt.Fprintf(&b, "  p%03d: {uses: std/json, after: [nope]}\n", i)
	}
	p, err := pipeline.Parse("m.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Validate(catalog)
	list, _ := err.(pipeline.ErrorList)
	if len(list) != 200 {
		t.Fatalf("got %d errors, want 200", len(list))
	}
	want := `m.yaml:3:34: unknown processor "nope" in after (processors: p000, p001, `
	if got := list[0].Error(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, ", p049 and 150 more)") {
		t.Errorf("error:\n got %s\nwant %s...p049 and 150 more)", got, want)
	}
}
