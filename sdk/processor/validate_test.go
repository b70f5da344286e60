package processor

import (
	"context"
	"regexp"
	"testing"

	"github.com/wiz-run/wiz/proto/wizrpc"
)

// matchType has a regexp field, checked when a pipeline is applied, and
// declares its one input.
func matchType() Type {
	return Type{
		Name:   "match",
		Fields: []Field{{Name: "pattern", Type: "string", Required: true}, {Name: "rules", Type: "list of string"}},
		Validate: func(cfg map[string]any) []Diagnostic {
			var ds []Diagnostic
			if p, ok := cfg["pattern"].(string); ok {
				if _, err := regexp.Compile(p); err != nil {
					ds = append(ds, Diagnostic{Path: []string{"pattern"}, Message: err.Error()})
				}
			}
			if rules, ok := cfg["rules"].([]any); ok && len(rules) > 1 {
				panic("too many rules")
			}
			return ds
		},
		Inputs: []Input{{Name: "text", Required: true, Doc: "the text to match"}},
		Processor: ProcessorFunc(func(context.Context, *Request, Emitter) error {
			return nil
		}),
	}
}

func TestServeValidateConfig(t *testing.T) {
	p := &Pack{Name: "acme", Version: "1.0.0", Types: []Type{matchType(), {Name: "plain", Processor: ProcessorFunc(func(context.Context, *Request, Emitter) error { return nil })}}}
	c := dial(t, p)
	d, err := c.Describe(context.Background(), &wizrpc.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range d.Types {
		switch ts.Name {
		case "match":
			if !ts.Validates || !ts.DeclaresInputs || len(ts.Inputs) != 1 || ts.Inputs[0].Name != "text" || !ts.Inputs[0].Required {
				t.Errorf("match: validates %v, declares inputs %v %v; want validates and the required input text", ts.Validates, ts.DeclaresInputs, ts.Inputs)
			}
		case "plain": // declares nothing: as before
			if ts.Validates || ts.DeclaresInputs || len(ts.Inputs) != 0 {
				t.Errorf("plain: validates %v, declares inputs %v; want neither", ts.Validates, ts.DeclaresInputs)
			}
		}
	}
	for _, c2 := range []struct {
		name, config string
		want         []string // path.message
	}{
		{"valid", `{"pattern": "^a+$"}`, nil},
		{"bad regexp", `{"pattern": "a(b"}`, []string{"pattern: error parsing regexp: missing closing ): `a(b`"}},
		{"panic", `{"pattern": "a", "rules": ["x", "y"]}`, []string{": match panicked while validating its config: too many rules"}},
	} {
		t.Run(c2.name, func(t *testing.T) {
			resp, err := c.ValidateConfig(context.Background(), &wizrpc.ValidateConfigRequest{Type: "match", ConfigJson: []byte(c2.config)})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range resp.Diagnostics {
				path := ""
				for i, e := range d.Path {
					if i > 0 {
						path += "."
					}
					path += e
				}
				got = append(got, path+": "+d.Message)
			}
			if len(got) != len(c2.want) {
				t.Fatalf("diagnostics %q, want %q", got, c2.want)
			}
			for i := range got {
				if got[i] != c2.want[i] {
					t.Errorf("diagnostic %d = %q, want %q", i, got[i], c2.want[i])
				}
			}
		})
	}
	if _, err := c.ValidateConfig(context.Background(), &wizrpc.ValidateConfigRequest{Type: "nope"}); err == nil {
		t.Error("unknown type: no error")
	}
}
