// Package processortest runs a processor pack in a test the way wiz runs
// it: served through the SDK's real go-plugin gRPC shim, over an in-process
// connection, so that configs, defaults, inputs, outputs, warnings, logs and
// panics cross the same wire as in production, without building a binary.
package processortest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/blob"
	"github.com/wiz-run/wiz/sdk/processor"
)

// Pack is a pack served for one test.
type Pack struct {
	// Client is the wire client, as wiz holds it.
	Client  wizrpc.ProcessorPackClient
	blobDir string
}

// Serve serves p for the test t; it stops when the test ends.
func Serve(t testing.TB, p *processor.Pack) *Pack {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, processor.PluginSet(p))
	t.Cleanup(func() { client.Close() })
	return &Pack{Client: wizrpc.NewProcessorPackClient(client.Conn), blobDir: t.TempDir()}
}

// Describe returns what wiz sees of the pack.
func (p *Pack) Describe() (*wizrpc.DescribeResponse, error) {
	return p.Client.Describe(context.Background(), &wizrpc.DescribeRequest{})
}

// Validate returns the diagnostics of typ's Validate for config, as wiz
// asks when a pipeline is applied.
func (p *Pack) Validate(typ string, config map[string]any) ([]processor.Diagnostic, error) {
	b, err := encode(config)
	if err != nil {
		return nil, err
	}
	resp, err := p.Client.ValidateConfig(context.Background(), &wizrpc.ValidateConfigRequest{Type: typ, ConfigJson: b})
	if err != nil {
		return nil, err
	}
	var out []processor.Diagnostic
	for _, d := range resp.Diagnostics {
		out = append(out, processor.Diagnostic{Path: d.Path, Message: d.Message})
	}
	return out, nil
}

// Plan returns a native type's invocation plan for config.
func (p *Pack) Plan(typ string, config map[string]any) (*wizrpc.Plan, error) {
	b, err := encode(config)
	if err != nil {
		return nil, err
	}
	resp, err := p.Client.Plan(context.Background(), &wizrpc.PlanRequest{Type: typ, ConfigJson: b})
	if err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("%s", resp.Error)
	}
	return resp.Plan, nil
}

// Result is what one run of a data processor emitted.
type Result struct {
	// Outputs are the outputs' bytes, by name (Wiz Files read back whole).
	Outputs  map[string][]byte
	Warnings []string
	// Logs are the log chunks, each "STREAM: TEXT".
	Logs []string
	// Error is the processor's failure; "" when it succeeded.
	Error string
}

// Process runs a data processor with inputs given as bytes, as wiz would
// with those values, and collects what it emits. The error is for the
// harness (the wire, a blob); a failing processor is Result.Error.
func (p *Pack) Process(typ string, config map[string]any, inputs map[string][]byte) (*Result, error) {
	b, err := encode(config)
	if err != nil {
		return nil, err
	}
	req := &wizrpc.ProcessRequest{Type: typ, ConfigJson: b, Inputs: map[string]*wizpb.Data{}, BlobDir: p.blobDir}
	for name, v := range inputs {
		req.Inputs[name] = &wizpb.Data{Inline: v, ContentType: "application/octet-stream"}
	}
	stream, err := p.Client.Process(context.Background(), req)
	if err != nil {
		return nil, err
	}
	res := &Result{Outputs: map[string][]byte{}}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return nil, err
		}
		switch e := ev.Event.(type) {
		case *wizrpc.ProcessEvent_Log:
			res.Logs = append(res.Logs, e.Log.Stream+": "+string(e.Log.Data))
		case *wizrpc.ProcessEvent_Warning:
			res.Warnings = append(res.Warnings, e.Warning)
		case *wizrpc.ProcessEvent_Error:
			res.Error = e.Error
		case *wizrpc.ProcessEvent_Output:
			data, err := p.read(e.Output.Data)
			if err != nil {
				return nil, fmt.Errorf("output %s: %w", e.Output.Name, err)
			}
			res.Outputs[e.Output.Name] = data
		}
	}
}

// read returns an output's bytes: inline, or its Wiz Files' blobs in order.
func (p *Pack) read(d *wizpb.Data) ([]byte, error) {
	if len(d.Files) == 0 {
		return d.Inline, nil
	}
	store, err := blob.Open(p.blobDir)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, f := range d.Files {
		r, err := store.Open(f.Digest)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// encode is a config as the wire carries it.
func encode(config map[string]any) ([]byte, error) {
	b, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return b, nil
}
