package pipeline_test

import (
	"testing"

	"github.com/wiz-run/wiz/core/pipeline"
)

// FuzzParseValidate: no pipeline file makes Parse or Validate panic or hang;
// a file that parses and validates against the test catalog can be rendered.
func FuzzParseValidate(f *testing.F) {
	for _, s := range []string{
		wordCount,
		"name: t\ninputs: {x: {type: int, default: 1, max: 3}}\nprocessors:\n  a: {uses: std/shell, when: inputs.x > 1, with: {script: 'echo \"${{ inputs.x }}\" <<EOF\\n$${{ y }}\\nEOF'}}\n",
		"name: t\nprocessors:\n  a: {uses: std/exec, for_each: [1, 2], with: {command: [echo, '${{ item }}']}}\n  b: {uses: std/json, after: [{a: failed}]}\nfinally:\n  f: {uses: std/json}\n",
		"name: t\nprocessors:\n  a: {uses: std/shell, with: {script: \"echo '${{ x\"}}\n",
		"name: t\ndefaults: {retry: {limit: 2, exit_codes: [75]}, cache: {ttl: 1h}}\nprocessors:\n  a: {uses: std/json}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := pipeline.Parse("f.yaml", []byte(src))
		if err != nil {
			return
		}
		if err := p.Validate(catalog); err != nil {
			return
		}
		for _, n := range p.Processors {
			_, _ = n.Render(nil) // expressions may fail to evaluate without values; they must not panic
		}
	})
}

// FuzzParseSize: sizes parse or fail, never panic, and are never negative.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1MiB", "500MB", "2GiB", "0", "9223372036854775807", "99999999999TiB", " 1 KiB "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := pipeline.ParseSize(s); err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

// FuzzParseAge: ages parse or fail, never panic, and are never negative
// (a count of days too large for a duration is an error, not a wrap).
func FuzzParseAge(f *testing.F) {
	for _, s := range []string{"30d", "12h", "90m", "0", "-1d", "106751d", "9999999999999d", "1h30m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if a, err := pipeline.ParseAge(s); err == nil && a < 0 {
			t.Fatalf("ParseAge(%q) = %v", s, a)
		}
	})
}
