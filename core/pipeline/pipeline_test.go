package pipeline_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/expr"
	"github.com/wiz-run/wiz/core/pipeline"
)

// parseValid parses and validates src against catalog, failing the test on
// an error.
func parseValid(t *testing.T, src string) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(catalog); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeCatalog is a Catalog of a few std types.
type fakeCatalog map[string]*pipeline.TypeSpec

// Lookup serves every version of a type: "std/shell@^1.2" is std/shell; a
// constraint starting with "^9" matches no installed version.
func (c fakeCatalog) Lookup(typ string) (*pipeline.TypeSpec, bool) {
	typ, constraint, _ := strings.Cut(typ, "@")
	if strings.HasPrefix(constraint, "^9") {
		return nil, false
	}
	s, ok := c[typ]
	return s, ok
}

func (c fakeCatalog) Types() []string {
	var types []string
	for t := range c {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

var catalog = fakeCatalog{
	"std/exec": {Type: "std/exec", Fields: []pipeline.FieldSpec{
		{Name: "command", Type: "list of string", Required: true},
		{Name: "dir", Type: "string"},
		{Name: "env", Type: "map"},
		{Name: "grace", Type: "duration"},
	}},
	"std/shell": {Type: "std/shell", Fields: []pipeline.FieldSpec{
		{Name: "script", Type: "script", Required: true},
		{Name: "shell", Type: "string"},
		{Name: "lines", Type: "int"},
		{Name: "ratio", Type: "number"},
		{Name: "strict", Type: "bool"},
		{Name: "extra", Type: "any"},
	}},
	"std/json": {Type: "std/json"},
}

const wordCount = `name: word-count              # required
executor: local
max_parallel: 4
retries: 1
inputs:
  text: {type: file}
  top:  {type: string, default: "10", doc: how many}
processors:
  words:
    uses: std/exec
    with: {command: [tr, -cs, A-Za-z, "\n"]}
    inputs: {stdin: inputs.text}
  count:
    uses: std/shell@^1.2
    with:
      script: "sort | uniq -c | head -n ${{ inputs.top }}"
      lines: ${{inputs.top}}
    inputs: {stdin: words}
    retries: 2
    timeout: 30s
    on_error: warn
    executor: local
  summary:
    uses: std/json
    inputs: {in: count.out, words: words.counts}
    after: [words]
`

func TestParseValidate(t *testing.T) {
	t.Parallel()
	p, err := pipeline.Parse("pipe.yaml", []byte(wordCount))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if err := p.Validate(catalog); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	pos := func(line, col int) pipeline.Position {
		return pipeline.Position{File: "pipe.yaml", Line: line, Col: col}
	}
	ten := "10"
	check(t, "Name", p.Name, "word-count")
	check(t, "Executor", p.Executor, "local")
	check(t, "MaxParallel", p.MaxParallel, 4)
	check(t, "Retries", p.Retries, 1)
	check(t, "Inputs", p.Inputs, []pipeline.InputDecl{
		{Name: "text", Type: "file", Pos: pos(6, 3)},
		{Name: "top", Type: "string", Default: &ten, Doc: "how many", Pos: pos(7, 3)},
	})

	want := []*pipeline.ProcessorNode{
		{
			Name: "words", Uses: "std/exec",
			With:    map[string]any{"command": []any{"tr", "-cs", "A-Za-z", "\n"}},
			WithPos: map[string]pipeline.Position{"command": pos(11, 12)},
			Inputs: []pipeline.InputBinding{
				{Name: "stdin", From: pipeline.Ref{Input: "text", Pos: pos(12, 21)}},
			},
			Retry: retry(1),
			Pos:   pos(9, 3),
		},
		{
			Name: "count", Uses: "std/shell", UsesVersion: "^1.2",
			With: map[string]any{
				"script": "sort | uniq -c | head -n ${{ inputs.top }}",
				"lines":  "${{inputs.top}}",
			},
			WithPos: map[string]pipeline.Position{"script": pos(16, 7), "lines": pos(17, 7)},
			Inputs: []pipeline.InputBinding{
				{Name: "stdin", From: pipeline.Ref{Processor: "words", Output: "out", Pos: pos(18, 21)}},
			},
			Retry:    retry(2),
			Timeout:  30 * time.Second,
			OnError:  "warn",
			Executor: "local",
			Pos:      pos(13, 3),
		},
		{
			Name: "summary", Uses: "std/json",
			Inputs: []pipeline.InputBinding{
				{Name: "in", From: pipeline.Ref{Processor: "count", Output: "out", Pos: pos(25, 18)}},
				{Name: "words", From: pipeline.Ref{Processor: "words", Output: "counts", Pos: pos(25, 36)}},
			},
			After:        []string{"words"},
			AfterOutcome: []string{""},
			Retry:        retry(1),
			Pos:          pos(23, 3),
		},
	}
	if len(p.Processors) != len(want) {
		t.Fatalf("got %d processors, want %d", len(p.Processors), len(want))
	}
	for i, n := range p.Processors {
		check(t, "ID of "+n.Name, n.ID(), int64(i))
		got := *n
		w := *want[i]
		// Compare exported fields only, through a copy without the unexported ones.
		check(t, "processor "+n.Name, exported(got), exported(w))
		if node, ok := p.Node(n.Name); !ok || node != n {
			t.Errorf("Node(%q) = %v, %v; want the processor", n.Name, node, ok)
		}
		if p.Graph.Node(n.ID()).(*pipeline.ProcessorNode) != n {
			t.Errorf("Graph.Node(%d) is not processor %q", n.ID(), n.Name)
		}
	}
	if _, ok := p.Node("nope"); ok {
		t.Errorf("Node(nope) found a processor")
	}

	var edges []string
	for it := p.Graph.Edges(); it.Next(); {
		e := it.Edge()
		edges = append(edges, e.From().(*pipeline.ProcessorNode).Name+"->"+e.To().(*pipeline.ProcessorNode).Name)
	}
	slices.Sort(edges)
	check(t, "edges", edges, []string{"count->summary", "words->count", "words->summary"})
	check(t, "Order", names(p.Order()), []string{"words", "count", "summary"})
	check(t, "Ref strings", []string{
		p.Processors[0].Inputs[0].From.String(),
		p.Processors[1].Inputs[0].From.String(),
		p.Processors[2].Inputs[1].From.String(),
	}, []string{"inputs.text", "words.out", "words.counts"})
}

// retry returns the default retry policy with limit n.
func retry(n int) pipeline.Retry {
	r := pipeline.DefaultRetry
	r.Limit = n
	return r
}

// exported returns a ProcessorNode with n's exported fields.
func exported(n pipeline.ProcessorNode) pipeline.ProcessorNode {
	return pipeline.ProcessorNode{
		Name: n.Name, Uses: n.Uses, UsesVersion: n.UsesVersion, With: n.With, Inputs: n.Inputs,
		After: n.After, Retry: n.Retry, AfterOutcome: n.AfterOutcome, Timeout: n.Timeout, OnError: n.OnError,
		Executor: n.Executor, Pos: n.Pos, WithPos: n.WithPos,
	}
}

func names(nodes []*pipeline.ProcessorNode) []string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.Name)
	}
	return s
}

func check[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
	}
}

func TestOrderIsTopological(t *testing.T) {
	t.Parallel()
	src := `name: diamond
processors:
  d: {uses: std/json, inputs: {x: b, y: c}}
  c: {uses: std/json, inputs: {x: a}}
  b: {uses: std/json, inputs: {x: a}}
  a: {uses: std/json}
  e: {uses: std/json, after: d}
`
	p, err := pipeline.Parse("d.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Order(); got != nil {
		t.Errorf("Order before Validate = %v, want nil", names(got))
	}
	if err := p.Validate(catalog); err != nil {
		t.Fatal(err)
	}
	order := p.Order()
	index := map[string]int{}
	for i, n := range order {
		index[n.Name] = i
	}
	for _, dep := range [][2]string{{"a", "b"}, {"a", "c"}, {"b", "d"}, {"c", "d"}, {"d", "e"}} {
		if index[dep[0]] >= index[dep[1]] {
			t.Errorf("Order %v puts %s after %s", names(order), dep[0], dep[1])
		}
	}
	if len(order) != 5 {
		t.Errorf("Order has %d processors, want 5", len(order))
	}
}

// procs prefixes a processors section with a name.
func procs(s string) string { return "name: t\nprocessors:\n" + s }

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"empty", "", `p.yaml:1:1: empty pipeline file: want a mapping with name and processors`},
		{"comment only", "# nothing\n", `p.yaml:1:1: empty pipeline file: want a mapping with name and processors`},
		{"syntax", "name: t\nprocessors: [a\n", `p.yaml:2:13: YAML syntax error: did not find expected ',' or ']' in the list that starts here`},
		{"tab", "name: t\nprocessors:\n\ta: 1\n", `p.yaml:3:1: YAML syntax error: found character '\t' that cannot start any token (line 3 is indented with a tab: indent with spaces)`},
		{"two documents", "name: t\n---\nname: u\n", `p.yaml:3:1: a pipeline file holds one YAML document; found a second one`},
		{"not a mapping", "- a\n", `p.yaml:1:1: a pipeline file must be a mapping, got a list`},
		{"missing name and processors", "executor: local\n", "p.yaml:1:1: missing required key \"name\"\np.yaml:1:1: missing required key \"processors\""},
		{"no processors", "name: t\nprocessors: {}\n", `p.yaml:2:1: pipeline has no processors`},
		{"null processors", "name: t\nprocessors:\n", `p.yaml:2:1: pipeline has no processors`},
		{"unknown top key", "name: t\nprocesors: {}\nprocessors: {a: {uses: std/json}}\n",
			`p.yaml:2:1: unknown key "procesors" in pipeline (valid keys: defaults, env, executor, fail_fast, finally, inline_max_size, inputs, max_log_size, max_output_size, max_parallel, name, outputs, processors, retention, retries, schedules, timeout, triggers, when)`},
		{"bad name", "name: Word Count\nprocessors: {a: {uses: std/json}}\n",
			`p.yaml:1:7: invalid pipeline name "Word Count": use lower-case letters, digits, ".", "_" and "-", starting with a letter or digit`},
		{"name not string", "name: [a]\nprocessors: {a: {uses: std/json}}\n", `p.yaml:1:7: name must be a string, got a list`},
		{"negative max_parallel", "name: t\nmax_parallel: -1\nprocessors: {a: {uses: std/json}}\n", `p.yaml:2:15: max_parallel must be an integer ≥ 0, got -1`},
		{"retries not int", "name: t\nretries: two\nprocessors: {a: {uses: std/json}}\n", `p.yaml:2:10: retries must be an integer ≥ 0, got "two"`},
		{"duplicate top key", "name: t\nname: u\nprocessors: {a: {uses: std/json}}\n", `p.yaml:2:1: duplicate key "name" (first defined at line 1)`},
		{"duplicate processor", procs("  a: {uses: std/json}\n  b: {uses: std/json}\n  a: {uses: std/exec}\n"),
			`p.yaml:5:3: duplicate processor "a" (first defined at line 3)`},
		{"bad processor name", procs("  a.b: {uses: std/json}\n"), `p.yaml:3:3: invalid processor name "a.b": use letters, digits, "_" and "-"`},
		{"reserved processor name", procs("  inputs: {uses: std/json}\n"), `p.yaml:3:3: processor name "inputs" is reserved for references to pipeline inputs`},
		{"processor not mapping", procs("  a: std/json\n"), `p.yaml:3:6: processor "a" must be a mapping, got a string`},
		{"empty processor", procs("  a:\n"), `p.yaml:3:3: processor "a" is empty: it needs at least uses`},
		{"missing uses", procs("  a: {with: {x: 1}}\n"), `p.yaml:3:3: processor "a" is missing required key "uses" (a processor type like std/exec)`},
		{"unknown processor key", procs("  a:\n    uses: std/json\n    need: [b]\n"),
			`p.yaml:5:5: unknown key "need" in processor "a" (valid keys: after, cache, executor, for_each, inputs, max_log_size, max_output_size, max_parallel, on_error, resources, retries, retry, secret_files, timeout, uses, when, with)`},
		{"bad uses", procs("  a: {uses: exec}\n"), `p.yaml:3:13: invalid processor type "exec": want PACK/NAME, like std/exec`},
		{"empty version", procs("  a: {uses: std/exec@}\n"), `p.yaml:3:13: empty version constraint in "std/exec@": want PACK/NAME@CONSTRAINT, like acme/resize@^1.2`},
		{"bad timeout", procs("  a: {uses: std/json, timeout: 30}\n"), `p.yaml:3:32: timeout must be a positive duration like "30s" or "5m", got 30`},
		{"bad timeout string", procs("  a: {uses: std/json, timeout: soon}\n"), `p.yaml:3:32: timeout must be a positive duration like "30s" or "5m", got "soon"`},
		{"bad on_error", procs("  a: {uses: std/json, on_error: ignore}\n"), `p.yaml:3:33: invalid on_error "ignore" (valid values: fail, warn)`},
		{"bad reference", procs("  a: {uses: std/json, inputs: {x: a..b}}\n"), `p.yaml:3:35: invalid reference "a..b" (want inputs.NAME, PROCESSOR or PROCESSOR.OUTPUT)`},
		{"bare inputs reference", procs("  a: {uses: std/json, inputs: {x: inputs}}\n"), `p.yaml:3:35: invalid reference "inputs" (want inputs.NAME, PROCESSOR or PROCESSOR.OUTPUT)`},
		{"reference not string", procs("  a: {uses: std/json, inputs: {x: [b]}}\n"), `p.yaml:3:35: x must be a string, got a list`},
		{"after not list", procs("  a: {uses: std/json, after: 1}\n"), `p.yaml:3:30: after must be a list of processor names or {NAME: succeeded|failed|ended}, got an integer`},
		{"after bad outcome", procs("  a: {uses: std/json, after: [{b: done}]}\n"), `p.yaml:3:35: invalid outcome "done" for b in after (valid: succeeded, failed, ended)`},
		{"unknown input type", "name: t\ninputs:\n  x: {type: blob}\nprocessors: {a: {uses: std/json}}\n",
			`p.yaml:3:13: unknown input type "blob" (valid types: bool, file, int, json, number, string)`},
		{"unknown input key", "name: t\ninputs:\n  x: {kind: file}\nprocessors: {a: {uses: std/json}}\n",
			`p.yaml:3:7: unknown key "kind" in input "x" (valid keys: default, doc, enum, max, min, pattern, type)`},
		{"duplicate input", "name: t\ninputs:\n  x: {}\n  x: {}\nprocessors: {a: {uses: std/json}}\n",
			`p.yaml:4:3: duplicate input "x" (first defined at line 3)`},
		{"duplicate with key", procs("  a:\n    uses: std/exec\n    with:\n      dir: /a\n      dir: /b\n"),
			`p.yaml:7:7: duplicate key "dir" (first defined at line 6)`},
		{"unknown alias", procs("  a: {uses: *typ}\n"), `p.yaml:3:13: unknown alias "*typ"`},
		{"executor without backend", "name: t\nexecutor: {namespace: wiz}\nprocessors: {a: {uses: std/json}}\n",
			`p.yaml:2:11: executor settings need "backend", the executor backend's name (for example backend: kubernetes)`},
		{"executor list", procs("  a: {uses: std/json, executor: [local]}\n"),
			`p.yaml:3:33: executor must be a backend name like "local" or a mapping with "backend" and its settings, got a list`},
		{"bad resources key", procs("  a:\n    uses: std/json\n    resources: {request: {cpu: 1}}\n"),
			`p.yaml:5:17: unknown key "request" in resources (valid keys: limits, requests)`},
		{"bad size", "name: t\nmax_output_size: 10 parsecs\nprocessors: {a: {uses: std/json}}\n",
			`p.yaml:2:18: max_output_size must be a size like "1MiB", "500MB" or "2GiB", got "10 parsecs"`},
		{"zero size", procs("  a: {uses: std/json, max_output_size: 0}\n"),
			`p.yaml:3:40: max_output_size must be a size like "1MiB", "500MB" or "2GiB", got 0`},
		{"several, sorted", "name: t\nprocessors:\n  b: {uses: std/json, retries: x}\n  a: {}\nfoo: 1\n",
			"p.yaml:3:32: retries must be an integer ≥ 0, got \"x\"\n" +
				"p.yaml:4:3: processor \"a\" is missing required key \"uses\" (a processor type like std/exec)\n" +
				"p.yaml:5:1: unknown key \"foo\" in pipeline (valid keys: defaults, env, executor, fail_fast, finally, inline_max_size, inputs, max_log_size, max_output_size, max_parallel, name, outputs, processors, retention, retries, schedules, timeout, triggers, when)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := pipeline.Parse("p.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want error:\n%s", tt.want)
			}
			if p != nil {
				t.Errorf("Parse returned a pipeline with an error")
			}
			var list pipeline.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T is not an ErrorList", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestValidateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		src   string
		want  string
		cycle bool
	}{
		{"unknown type", procs("  a: {uses: std/nope}\n"),
			`p.yaml:3:13: unknown processor type "std/nope" (installed: std/exec, std/json, std/shell)`, false},
		{"unknown input", "name: t\ninputs: {text: {}, top: {}}\nprocessors:\n  a: {uses: std/json, inputs: {in: inputs.txt}}\n",
			`p.yaml:4:36: unknown input "txt" in reference "inputs.txt" (declared inputs: text, top)`, false},
		{"no inputs declared", procs("  a: {uses: std/json, inputs: {in: inputs.txt}}\n"),
			`p.yaml:3:36: unknown input "txt" in reference "inputs.txt" (no inputs are declared)`, false},
		{"unknown input in with", "name: t\ninputs: {top: {}}\nprocessors:\n  a:\n    uses: std/shell\n    with: {script: \"head -n ${{ inputs.tops }}\"}\n",
			`p.yaml:6:12: with.script of a: "inputs.tops" names input "tops", which is not declared (declared inputs: top)`, false},
		{"unknown processor", procs("  words: {uses: std/json}\n  count: {uses: std/json, inputs: {in: wrds.out}}\n"),
			`p.yaml:4:40: unknown processor "wrds" in reference "wrds.out" (processors: count, words)`, false},
		{"unknown after", procs("  words: {uses: std/json}\n  count: {uses: std/json, after: [words, word]}\n"),
			`p.yaml:4:42: unknown processor "word" in after (processors: count, words)`, false},
		{"unknown field", procs("  a: {uses: std/exec, with: {command: [ls], cmd: ls}}\n"),
			`p.yaml:3:45: unknown field "cmd" for std/exec (valid fields: command, dir, env, grace)`, false},
		{"field of type without fields", procs("  a: {uses: std/json, with: {x: 1}}\n"),
			`p.yaml:3:30: unknown field "x" for std/json (std/json has no config fields)`, false},
		{"wrong type list", procs("  a: {uses: std/exec, with: {command: ls}}\n"),
			`p.yaml:3:30: field "command" of std/exec must be a list of strings, got the string "ls"`, false},
		{"wrong list item", procs("  a: {uses: std/exec, with: {command: [test, -n, x, true]}}\n"),
			`p.yaml:3:30: field "command" of std/exec must be a list of strings, got the boolean true as item 4 (quote it to make it a string)`, false},
		{"wrong types", procs("  a:\n    uses: std/shell\n    with:\n      script: 1\n      lines: 1.5\n      ratio: x\n      strict: \"yes\"\n"),
			"p.yaml:6:7: field \"script\" of std/shell must be a string, got the integer 1\n" +
				"p.yaml:7:7: field \"lines\" of std/shell must be an integer, got the number 1.5\n" +
				"p.yaml:8:7: field \"ratio\" of std/shell must be a number, got the string \"x\"\n" +
				"p.yaml:9:7: field \"strict\" of std/shell must be a boolean, got the string \"yes\"", false},
		{"wrong duration", procs("  a: {uses: std/exec, with: {command: [ls], grace: 5}}\n"),
			`p.yaml:3:45: field "grace" of std/exec must be a duration like "30s", got the integer 5`, false},
		{"expression in a list field with text around", "name: t\ninputs: {c: {}}\nprocessors:\n  a: {uses: std/exec, with: {command: \"x ${{ inputs.c }}\"}}\n",
			`p.yaml:4:30: field "command" of std/exec must be a list of strings, got the string "x ${{ inputs.c }}"`, false},
		{"missing required field", procs("  a:\n    uses: std/exec\n    with: {dir: /tmp}\n"),
			`p.yaml:5:5: missing required field "command" for std/exec`, false},
		{"missing required field without with", procs("  a: {uses: std/exec}\n"),
			`p.yaml:3:3: missing required field "command" for std/exec`, false},
		{"self reference", procs("  a: {uses: std/json, inputs: {in: a}}\n"),
			`p.yaml:3:3: pipeline has a cycle: a -> a`, true},
		{"self after", procs("  a: {uses: std/json, after: [a]}\n"),
			`p.yaml:3:3: pipeline has a cycle: a -> a`, true},
		{"cycle of two", procs("  x: {uses: std/json}\n  a: {uses: std/json, inputs: {in: b.out}}\n  b: {uses: std/json, after: [a]}\n"),
			`p.yaml:4:3: pipeline has a cycle: a -> b -> a`, true},
		{"cycle of three", procs("  c: {uses: std/json, inputs: {in: b}}\n  a: {uses: std/json, inputs: {in: c, x: x}}\n  b: {uses: std/json, inputs: {in: a}}\n  x: {uses: std/json}\n"),
			`p.yaml:3:3: pipeline has a cycle: c -> a -> b -> c`, true},
		{"shortest cycle in component", procs("  a: {uses: std/json, inputs: {x: c, y: b}}\n  b: {uses: std/json, inputs: {x: a}}\n  c: {uses: std/json, inputs: {x: b}}\n"),
			`p.yaml:3:3: pipeline has a cycle: a -> b -> a`, true},
		{"two cycles and more", procs("  a: {uses: std/json, after: [b]}\n  b: {uses: std/json, after: [a]}\n  c: {uses: std/nope, after: [d]}\n  d: {uses: std/json, after: [c, e]}\n"),
			"p.yaml:3:3: pipeline has a cycle: a -> b -> a\n" +
				"p.yaml:5:3: pipeline has a cycle: c -> d -> c\n" +
				"p.yaml:5:13: unknown processor type \"std/nope\" (installed: std/exec, std/json, std/shell)\n" +
				"p.yaml:6:34: unknown processor \"e\" in after (processors: a, b, c, d)", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := pipeline.Parse("p.yaml", []byte(tt.src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = p.Validate(catalog)
			if err == nil {
				t.Fatalf("Validate succeeded, want error:\n%s", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
			if got := errors.Is(err, pipeline.ErrCycle); got != tt.cycle {
				t.Errorf("errors.Is(err, ErrCycle) = %v, want %v", got, tt.cycle)
			}
			if p.Order() != nil {
				t.Errorf("Order after a failed Validate = %v, want nil", names(p.Order()))
			}
		})
	}
}

func TestValidateAcceptsConfig(t *testing.T) {
	t.Parallel()
	src := `name: t
inputs: {n: {type: int, default: 3}, d: {}}
processors:
  a:
    uses: std/shell
    with:
      script: echo
      lines: ${{ inputs.n }}
      ratio: 2
      strict: true
      extra: {deep: [1, {x: null}]}
  b:
    uses: std/exec
    with:
      command: &cmd [ls, "${{ inputs.d }}"]
      grace: 1m30s
      env: {A: b}
  c:
    uses: std/exec
    with: {command: *cmd, dir: !!str 12}
`
	p, err := pipeline.Parse("ok.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(catalog); err != nil {
		t.Fatal(err)
	}
	three := "3"
	check(t, "default", p.Inputs[0].Default, &three)
	check(t, "a.with", p.Processors[0].With, map[string]any{
		"script": "echo", "lines": "${{ inputs.n }}", "ratio": uint64(2), "strict": true,
		"extra": map[string]any{"deep": []any{uint64(1), map[string]any{"x": nil}}},
	})
	check(t, "c.with", p.Processors[2].With, map[string]any{"command": []any{"ls", "${{ inputs.d }}"}, "dir": "12"})
	// Validating twice gives the same result.
	if err := p.Validate(catalog); err != nil {
		t.Fatal(err)
	}
	check(t, "Order", names(p.Order()), []string{"a", "b", "c"})
	// A nil catalog skips type checks.
	p2, err := pipeline.Parse("ok.yaml", []byte(procs("  a: {uses: x/y, with: {z: 1}}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Validate(nil); err != nil {
		t.Errorf("Validate(nil): %v", err)
	}
}

func TestErrorsIsAndPosition(t *testing.T) {
	t.Parallel()
	e := &pipeline.Error{Pos: pipeline.Position{File: "f.yaml", Line: 2, Col: 3}, Msg: "boom", Err: pipeline.ErrCycle}
	check(t, "Error", e.Error(), "f.yaml:2:3: boom")
	check(t, "Is", errors.Is(e, pipeline.ErrCycle), true)
	check(t, "no file", pipeline.Position{Line: 1, Col: 2}.String(), "1:2")
	list := pipeline.ErrorList{e, {Pos: pipeline.Position{File: "f.yaml", Line: 3, Col: 1}, Msg: "two"}}
	check(t, "list", list.Error(), "f.yaml:2:3: boom\nf.yaml:3:1: two")
	check(t, "wrapped list", errors.Is(fmt.Errorf("load: %w", list), pipeline.ErrCycle), true)
}

func TestRender(t *testing.T) {
	t.Parallel()
	src := `name: t
inputs:
  top: {type: int, default: 10}
  text: {}
processors:
  a: {uses: std/exec, with: {command: [echo, "n=${{ inputs.top * 2 }}", "${{ inputs.text }}", "$${{ x }}"]}}
  b:
    uses: std/shell
    inputs: {in: a}
    with: {script: 'echo "${{ processors.a.outputs.out }}" ${{ files.in }} $${{ y }}'}
`
	p := parseValid(t, src)
	vars := &expr.Vars{Inputs: map[string]any{"top": int64(10), "text": "a b; $(touch x)"},
		Processors: map[string]*expr.Processor{"a": {State: "Succeeded", Outputs: map[string]any{"out": "it's \"q\""}}}}
	r, err := p.Processors[0].Render(vars)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "a config", string(r.Config), `{"command":["echo","n=20","a b; $(touch x)","${{ x }}"]}`)
	check(t, "a env", r.Env, map[string]string(nil))
	r, err = p.Processors[1].Render(vars)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "b config", string(r.Config), `{"script":"echo \"${WIZ_EXPR_0}\" ${WIZ_EXPR_1} ${{ y }}"}`)
	check(t, "b env", r.Env, map[string]string{"WIZ_EXPR_0": `it's "q"`})
	check(t, "b files", r.FileEnv, map[string]string{"WIZ_EXPR_1": "in"})
}

func TestParseKeepsSource(t *testing.T) {
	t.Parallel()
	src := []byte(procs("  a: {uses: std/json}\n"))
	p, err := pipeline.Parse("s.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "File", p.File, "s.yaml")
	check(t, "Source", string(p.Source), string(src))
	check(t, "Executor default", p.Executor, "local")
	if !strings.HasPrefix(p.Processors[0].Pos.String(), "s.yaml:3:3") {
		t.Errorf("Pos = %v", p.Processors[0].Pos)
	}
}

func TestParseExecutorSettings(t *testing.T) {
	t.Parallel()
	src := `name: t
executor:
  backend: kubernetes
  namespace: wiz
  nodeSelector: {disk: ssd}
inline_max_size: 64KiB
max_output_size: 2GiB
processors:
  a:
    uses: std/json
    resources:
      requests: {cpu: 500m, memory: 256Mi}
      limits: {memory: 1Gi}
  b:
    uses: std/json
    executor: local
    max_output_size: 10MB
`
	p, err := pipeline.Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if p.Executor != "kubernetes" || p.ExecutorConfig["namespace"] != "wiz" {
		t.Errorf("executor = %q %v", p.Executor, p.ExecutorConfig)
	}
	if sel, _ := p.ExecutorConfig["nodeSelector"].(map[string]any); sel["disk"] != "ssd" {
		t.Errorf("nodeSelector = %v", p.ExecutorConfig["nodeSelector"])
	}
	if p.InlineMax != 64<<10 || p.MaxOutput != 2<<30 {
		t.Errorf("inline max %d, max output %d", p.InlineMax, p.MaxOutput)
	}
	a, _ := p.Node("a")
	b, _ := p.Node("b")
	req, _ := a.Resources["requests"].(map[string]any)
	if req["cpu"] != "500m" || req["memory"] != "256Mi" {
		t.Errorf("a resources = %v", a.Resources)
	}
	if a.MaxOutput != 2<<30 || b.MaxOutput != 10e6 {
		t.Errorf("max output a %d b %d", a.MaxOutput, b.MaxOutput)
	}
	if b.Executor != "local" || b.ExecutorConfig != nil {
		t.Errorf("b executor = %q %v", b.Executor, b.ExecutorConfig)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"1": 1, "10B": 10, "1KB": 1000, "1KiB": 1024, "3 MiB": 3 << 20, "2GB": 2e9, "1TiB": 1 << 40} {
		if got, err := pipeline.ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "1 parsec", "-1", "99999999999TiB"} {
		if _, err := pipeline.ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
}
