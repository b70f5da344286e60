package processortest_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/sdk/processor"
	"github.com/wiz-run/wiz/sdk/processor/processortest"
)

// grep is a data processor with a regexp field checked at apply.
var grep = &processor.Pack{Name: "acme", Version: "1.0.0", Types: []processor.Type{{
	Name:   "grep",
	Fields: []processor.Field{{Name: "pattern", Type: "string", Required: true}},
	Validate: func(cfg map[string]any) []processor.Diagnostic {
		if _, err := regexp.Compile(cfg["pattern"].(string)); err != nil {
			return []processor.Diagnostic{{Path: []string{"pattern"}, Message: err.Error()}}
		}
		return nil
	},
	Inputs: []processor.Input{{Name: "in", Required: true}},
	Processor: processor.ProcessorFunc(func(ctx context.Context, req *processor.Request, emit processor.Emitter) error {
		var cfg struct {
			Pattern string `json:"pattern"`
		}
		if err := req.Decode(&cfg); err != nil {
			return err
		}
		d, ok := req.Inputs["in"]
		if !ok {
			return errors.New("grep needs its input in")
		}
		in, err := d.ReadAll()
		if err != nil {
			return err
		}
		re := regexp.MustCompile(cfg.Pattern)
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(string(in)), "\n") {
			if re.MatchString(line) {
				out = append(out, line)
			}
		}
		if len(out) == 0 {
			emit.Warn("no line matched")
		}
		return emit.Output("out", processor.Text(strings.Join(out, "\n")+"\n"))
	}),
}}}

// TestGrepThroughTheShim is how a pack's own tests use the harness: serve
// the pack, then describe, validate and process as wiz does.
func TestGrepThroughTheShim(t *testing.T) {
	p := processortest.Serve(t, grep)
	d, err := p.Describe()
	if err != nil || len(d.Types) != 1 || !d.Types[0].Validates || !d.Types[0].DeclaresInputs {
		t.Fatalf("describe: %v, %v", d, err)
	}
	ds, err := p.Validate("grep", map[string]any{"pattern": "a(b"})
	if err != nil || len(ds) != 1 || ds[0].Path[0] != "pattern" {
		t.Fatalf("validate: %+v, %v; want the pattern refused", ds, err)
	}
	res, err := p.Process("grep", map[string]any{"pattern": "^b"}, map[string][]byte{"in": []byte("apple\nbanana\nblueberry\n")})
	if err != nil || res.Error != "" {
		t.Fatalf("process: %+v, %v", res, err)
	}
	if got := string(res.Outputs["out"]); got != "banana\nblueberry\n" {
		t.Errorf("out = %q", got)
	}
	res, err = p.Process("grep", map[string]any{"pattern": "^z"}, map[string][]byte{"in": []byte("apple\n")})
	if err != nil || len(res.Warnings) != 1 || res.Warnings[0] != "no line matched" {
		t.Errorf("no match: %+v, %v; want a warning", res, err)
	}
	// A failing processor is the result's Error, as wiz shows it.
	res, err = p.Process("grep", map[string]any{"pattern": "x"}, nil)
	if err != nil || res.Error != "grep needs its input in" {
		t.Errorf("no input: %+v, %v; want the processor's error", res, err)
	}
}
