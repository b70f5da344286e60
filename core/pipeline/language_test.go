package pipeline_test

import (
	"strings"
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/pipeline"
)

func TestLanguageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, src, want string }{
		{"not upstream", procs("  a: {uses: std/json}\n  b: {uses: std/json, when: 'processors.a.state == \"Failed\"'}\n"),
			"p.yaml:4:29: when of b: \"processors.a.state == \\\"Failed\\\"\" names processor \"a\", which is not upstream of b: add `after: [a]` to b"},
		{"when not bool", "name: t\ninputs: {n: {type: int, default: 1}}\nprocessors:\n  a: {uses: std/json, when: inputs.n}\n",
			`p.yaml:4:29: when of a: "inputs.n" is an int, not a bool`},
		{"when syntax", procs("  a: {uses: std/json, when: 'a +'}\n"), `p.yaml:3:29: when of a: syntax error in "a +"`},
		{"pipeline when names a processor", "name: t\nwhen: processors.a.state == 'x'\nprocessors:\n  a: {uses: std/json}\n",
			`p.yaml:2:7: when: "processors.a.state == 'x'" names processor "a": the pipeline's when may use inputs only`},
		{"single quotes", "name: t\ninputs: {x: {}}\nprocessors:\n  a: {uses: std/shell, with: {script: \"echo '${{ inputs.x }}'\"}}\n",
			"p.yaml:4:31: with.script of a: line 1 of the script: ${{ }} inside single quotes"},
		{"quoted heredoc", "name: t\ninputs: {x: {}}\nprocessors:\n  a:\n    uses: std/shell\n    with:\n      script: |\n        cat <<'EOF'\n        ${{ inputs.x }}\n        EOF\n",
			"p.yaml:7:7: with.script of a: line 2 of the script: ${{ }} inside a here-doc with a quoted delimiter"},
		{"second here-doc quoted", "name: t\ninputs: {x: {}}\nprocessors:\n  a:\n    uses: std/shell\n    with:\n      script: |\n        cat <<A <<'B'\n        a\n        A\n        ${{ inputs.x }}\n        B\n",
			"line 4 of the script: ${{ }} inside a here-doc with a quoted delimiter"},
		{"not a posix shell", "name: t\ninputs: {x: {}}\nprocessors:\n  a: {uses: std/shell, with: {shell: python3, script: \"print('${{ inputs.x }}')\"}}\n",
			`shell "python3" is not one`},
		{"files of a missing input", procs("  a: {uses: std/exec, with: {command: [cat, \"${{ files.nope }}\"]}}\n"),
			`p.yaml:3:30: with.command of a: ${{ files.nope }} names input "nope", which a does not have (it has no inputs; add inputs: {nope: PROCESSOR})`},
		{"retries and retry", procs("  a: {uses: std/json, retries: 1, retry: {limit: 2}}\n"), "retries and retry both set"},
		{"defaults executor twice", "name: t\nexecutor: local\ndefaults: {executor: local}\nprocessors:\n  a: {uses: std/json}\n", "defaults.executor and the top-level executor both set (line 2)"},
		{"int default quoted", "name: t\ninputs: {n: {type: int, default: \"5\"}}\nprocessors:\n  a: {uses: std/json}\n", `input n: default must be a int, got "5" (unquote it)`},
		{"default above max", "name: t\ninputs: {n: {type: int, default: 500, max: 100}}\nprocessors:\n  a: {uses: std/json}\n", "input n: default: 500 is above max 100"},
		{"bad pattern", "name: t\ninputs: {n: {pattern: '('}}\nprocessors:\n  a: {uses: std/json}\n", "input n: pattern: invalid RE2 pattern"},
		{"enum on bool", "name: t\ninputs: {n: {type: bool, enum: [true]}}\nprocessors:\n  a: {uses: std/json}\n", "enum applies to string, int and number inputs, not bool"},
		{"main after finally", "name: t\nprocessors:\n  a: {uses: std/json, after: [f]}\nfinally:\n  f: {uses: std/json}\n", "a finally processor"},
		{"run.status outside finally", procs("  a: {uses: std/json, when: run.status == 'Failed'}\n"), "only finally processors see"},
		{"output from an input", "name: t\ninputs: {x: {}}\noutputs: {o: inputs.x}\nprocessors:\n  a: {uses: std/json}\n",
			`p.yaml:3:14: invalid output reference "inputs.x" (want PROCESSOR or PROCESSOR.OUTPUT)`},
		{"output of an unknown processor", "name: t\noutputs: {o: b.out}\nprocessors:\n  a: {uses: std/json}\n",
			`p.yaml:2:14: output o: unknown processor "b" (processors: a)`},
		{"bad jitter", procs("  a: {uses: std/json, retry: {jitter: 2}}\n"), "retry.jitter must be a fraction from 0 to 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := pipeline.Parse("p.yaml", []byte(tc.src))
			if err == nil {
				err = p.Validate(catalog)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n got %v\nwant it to contain %s", err, tc.want)
			}
		})
	}
}

func TestLanguageFields(t *testing.T) {
	t.Parallel()
	p := parseValid(t, `name: t
when: inputs.go
fail_fast: false
timeout: 2s
env: {A: "a-${{ inputs.go }}"}
defaults:
  retry: {limit: 3, backoff: 2s, exit_codes: [75]}
  on_error: warn
  env: {B: b}
inputs:
  go: {type: bool, default: true}
processors:
  a: {uses: std/json}
  b: {uses: std/json, after: [{a: failed}], retries: 1, when: processors.a.exit_code == 3}
finally:
  f: {uses: std/shell, with: {script: 'echo "${{ run.status }}"'}}
`)
	check(t, "FailFast", p.FailFast, false)
	check(t, "Timeout", p.Timeout, 2*time.Second)
	check(t, "Env", p.Env, map[string]string{"A": "a-${{ inputs.go }}", "B": "b"})
	a, b, f := p.Processors[0], p.Processors[1], p.Processors[2]
	check(t, "a.Retry", a.Retry, pipeline.Retry{Limit: 3, Backoff: 2 * time.Second, Factor: 2, MaxBackoff: 30 * time.Second, Jitter: 0.1, MaxDuration: 10 * time.Minute, ExitCodes: []int{75}})
	check(t, "a.OnError", a.OnError, "warn")
	check(t, "a.Handled", a.Handled, true)
	check(t, "b.Retry.Limit", b.Retry.Limit, 1)
	check(t, "b.AfterOutcome", b.AfterOutcome, []string{"failed"})
	check(t, "f.Finally", f.Finally, true)
	env, err := p.RenderEnv(nil)
	if err == nil {
		t.Errorf("RenderEnv without vars: %v", env)
	}
}
