package executortest_test

import (
	"context"
	"testing"

	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/executor"
	"github.com/wiz-run/wiz/sdk/executor/executortest"
)

// nomad is a backend that knows one setting and provisions nothing real.
type nomad struct{}

func (nomad) Provision(_ context.Context, req *executor.ProvisionRequest) (*executor.ProvisionResponse, error) {
	return &executor.ProvisionResponse{ExecutorID: "job-1", Endpoint: executor.Endpoint{Address: "10.0.0.7:7000"}, Remote: true}, nil
}

func (nomad) Teardown(context.Context, *executor.TeardownRequest) (*executor.TeardownResponse, error) {
	return &executor.TeardownResponse{}, nil
}

func (nomad) ValidateSettings(s map[string]any) []executor.Diagnostic {
	return executor.CheckSettings(s, []string{"datacenter"}, func([]byte) error { return nil })
}

// TestBackendThroughTheShim is how a backend's own tests use the harness:
// serve it, then call it as wiz does.
func TestBackendThroughTheShim(t *testing.T) {
	b := executortest.Serve(t, executor.Info{Name: "nomad", Version: "0.1.0"}, nomad{})
	d, err := b.Describe()
	if err != nil || d.Name != "nomad" || !d.ValidatesSettings {
		t.Fatalf("describe: %v, %v; want nomad, validating its settings", d, err)
	}
	ds, err := b.ValidateSettings(map[string]any{"datacentre": "eu"})
	if err != nil || len(ds) != 1 || ds[0].Path[0] != "datacentre" {
		t.Fatalf("settings: %+v, %v; want datacentre unknown", ds, err)
	}
	resp, err := b.Provision(context.Background(), &wizrpc.ProvisionRequest{RunId: "r1", WizBinary: "/usr/bin/wiz"})
	if err != nil || resp.ExecutorId != "job-1" || !resp.Remote {
		t.Fatalf("provision: %v, %v", resp, err)
	}
	if err := b.Teardown(context.Background(), resp.ExecutorId); err != nil {
		t.Fatal(err)
	}
}
