// Command wiz-processors-acme is an example third-party processor pack, built
// from wiz's SDK alone. It serves acme/upper (a data processor), acme/stamp (a
// data processor whose output names the pack version, to show versions side
// by side), acme/wait (a long data task) and acme/greet (a native-program
// wrapper).
package main

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/wiz-run/wiz/sdk/processor"
)

// version is set at build time: go build -ldflags "-X main.version=2.0.0".
var version = "1.0.0"

func main() {
	processor.Serve(&processor.Pack{
		Name:    "acme",
		Version: version,
		Types: []processor.Type{
			{
				Name:      "upper",
				Doc:       "Upper-cases its input.",
				Processor: processor.ProcessorFunc(upper),
			},
			{
				Name: "stamp",
				Doc:  "Appends a line naming this pack's version.",
				Fields: []processor.Field{
					{Name: "label", Type: "string", Default: "stamped by", Doc: "text before the version"},
				},
				Processor: processor.ProcessorFunc(stamp),
			},
			{
				Name: "wait",
				Doc:  "Waits, then passes its input on: a long data task, for trying cancel and crashes.",
				Fields: []processor.Field{
					{Name: "for", Type: "duration", Default: "10s", Doc: "how long to wait"},
				},
				Processor: processor.ProcessorFunc(wait),
			},
			{
				Name:   "greet",
				Doc:    "Greets someone with echo, run by the executor.",
				Fields: []processor.Field{{Name: "who", Type: "string", Required: true, Doc: "whom to greet"}},
				Native: processor.NativeFunc(greet),
			},
		},
	})
}

func upper(_ context.Context, req *processor.Request, emit processor.Emitter) error {
	in, ok := req.Inputs["in"]
	if !ok {
		return fmt.Errorf("acme/upper needs an input named in")
	}
	b, err := in.ReadAll()
	if err != nil {
		return err
	}
	return emit.Output("out", processor.Text(string(bytes.ToUpper(b))))
}

func stamp(_ context.Context, req *processor.Request, emit processor.Emitter) error {
	var c struct {
		Label string `json:"label"`
	}
	if err := req.Decode(&c); err != nil {
		return err
	}
	var b []byte
	if in, ok := req.Inputs["in"]; ok {
		var err error
		if b, err = in.ReadAll(); err != nil {
			return err
		}
	}
	emit.Log("stderr", []byte("stamping with acme "+version+"\n"))
	processor.Logger().Info("stamp", "label", c.Label, "version", version)
	return emit.Output("out", processor.Text(fmt.Sprintf("%s%s acme %s\n", b, c.Label, version)))
}

func wait(ctx context.Context, req *processor.Request, emit processor.Emitter) error {
	var c struct {
		For string `json:"for"`
	}
	if err := req.Decode(&c); err != nil {
		return err
	}
	d, err := time.ParseDuration(c.For)
	if err != nil {
		return fmt.Errorf("acme/wait: for: %w", err)
	}
	emit.Log("stderr", []byte(fmt.Sprintf("waiting %s\n", d)))
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return ctx.Err()
	}
	in := req.Inputs["in"]
	if in == nil {
		in = processor.Text("waited " + d.String() + "\n")
	}
	return emit.Output("out", in)
}

func greet(_ context.Context, req *processor.PlanRequest) (*processor.Plan, error) {
	var c struct {
		Who string `json:"who"`
	}
	if err := req.Decode(&c); err != nil {
		return nil, err
	}
	return &processor.Plan{Argv: []string{"echo", "hello, " + c.Who}, Stdout: true, InheritEnv: true}, nil
}
