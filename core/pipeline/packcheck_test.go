package pipeline_test

import (
	"regexp"
	"testing"

	"github.com/wiz-run/wiz/core/pipeline"
)

// checkingCatalog is fakeCatalog plus acme/match, whose pack checks its
// pattern (ConfigValidator) and which declares its input "text", and the
// installed executor backends.
type checkingCatalog struct {
	fakeCatalog
	asked []map[string]any
}

func (c *checkingCatalog) ValidateConfig(typ string, cfg map[string]any) ([]pipeline.Diagnostic, error) {
	c.asked = append(c.asked, cfg)
	if p, ok := cfg["pattern"].(string); ok {
		if _, err := regexp.Compile(p); err != nil {
			return []pipeline.Diagnostic{{Path: []string{"pattern"}, Message: err.Error()}}, nil
		}
	}
	return nil, nil
}

func (c *checkingCatalog) Backends() []string { return []string{"kubernetes", "local"} }

// ValidateSettings knows one setting of kubernetes, namespace.
func (c *checkingCatalog) ValidateSettings(backend string, settings map[string]any) ([]pipeline.Diagnostic, error) {
	var ds []pipeline.Diagnostic
	for k := range settings {
		if backend != "kubernetes" || k != "namespace" {
			ds = append(ds, pipeline.Diagnostic{Path: []string{k}, Message: "unknown setting " + k})
		}
	}
	return ds, nil
}

func newCheckingCatalog() *checkingCatalog {
	c := &checkingCatalog{fakeCatalog: fakeCatalog{}}
	for k, v := range catalog {
		c.fakeCatalog[k] = v
	}
	c.fakeCatalog["acme/match"] = &pipeline.TypeSpec{Type: "acme/match", Validates: true, DeclaresInputs: true,
		Fields: []pipeline.FieldSpec{{Name: "pattern", Type: "string", Required: true}, {Name: "label", Type: "string"}},
		Inputs: []pipeline.InputSpec{{Name: "text", Required: true}}}
	return c
}

func TestPackChecksConfigAndInputs(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"bad pattern at its field", `name: p
processors:
  src: {uses: std/exec, with: {command: [echo]}}
  m:
    uses: acme/match
    inputs: {text: src}
    with:
      label: x
      pattern: "a(b"
`, "p.yaml:9:7: field \"pattern\" of acme/match: error parsing regexp: missing closing ): `a(b`"},
		{"an input not declared, a required one unbound", `name: p
processors:
  src: {uses: std/exec, with: {command: [echo]}}
  m:
    uses: acme/match
    inputs: {txt: src}
    with: {pattern: a}
`, "p.yaml:4:3: processor m does not bind the input \"text\" that acme/match requires: add `inputs: {text: PROCESSOR}`\n" +
			"p.yaml:6:19: acme/match has no input \"txt\" (its inputs: text)"},
		{"an executor backend not installed", `name: p
executor: nomad
processors:
  a: {uses: std/exec, with: {command: [echo]}, executor: {backend: kubernetes}}
  b: {uses: std/exec, with: {command: [echo]}}
`, "p.yaml:2:11: unknown executor backend \"nomad\" (installed: kubernetes, local); install it with `wiz plugin install PATH`"},
		{"a backend's setting it does not take, at the setting; a defaults.executor checked once", `name: p
defaults:
  executor:
    backend: kubernetes
    namespace: ci
    namespaec: x
processors:
  a: {uses: std/exec, with: {command: [echo]}}
  b: {uses: std/exec, with: {command: [echo]}}
  c: {uses: std/exec, with: {command: [echo]}, executor: {backend: kubernetes, namespace: "${{ 'x' }}"}}
`, "p.yaml:6:5: setting \"namespaec\" of executor kubernetes: unknown setting namespaec"},
		{"fine", `name: p
processors:
  src: {uses: std/exec, with: {command: [echo]}}
  m: {uses: acme/match, inputs: {text: src}, with: {pattern: "^a+$"}}
`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := pipeline.Parse("p.yaml", []byte(c.src))
			if err != nil {
				t.Fatal(err)
			}
			err = p.Validate(newCheckingCatalog())
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != c.want {
				t.Errorf("error:\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// A field holding an expression is known only when the task runs: the pack
// is not shown it at apply.
func TestPackCheckSkipsExpressions(t *testing.T) {
	p, err := pipeline.Parse("p.yaml", []byte(`name: p
inputs:
  pat: {type: string}
processors:
  src: {uses: std/exec, with: {command: [echo]}}
  m: {uses: acme/match, inputs: {text: src}, with: {pattern: "${{ inputs.pat }}", label: x}}
`))
	if err != nil {
		t.Fatal(err)
	}
	cat := newCheckingCatalog()
	if err := p.Validate(cat); err != nil {
		t.Fatal(err)
	}
	if len(cat.asked) != 1 || cat.asked[0]["label"] != "x" || cat.asked[0]["pattern"] != nil {
		t.Fatalf("the pack was asked %v, want label alone", cat.asked)
	}
}
