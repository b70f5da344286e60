package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Info names and versions a backend.
type Info struct {
	// Name is what pipelines write in `executor:`, e.g. "local".
	Name string
	// Version is the backend's semantic version.
	Version string
}

// Backend is an executor backend. Its methods may be called concurrently.
// Errors are shown to the user: say what failed and how to fix it.
type Backend interface {
	// Provision starts one `wiz executor` and returns how to reach it. It
	// returns once the executor accepts connections.
	Provision(ctx context.Context, req *ProvisionRequest) (*ProvisionResponse, error)
	// Teardown stops the executor Provision started and removes what it made.
	// Tearing down an unknown or already stopped executor is not an error.
	Teardown(ctx context.Context, req *TeardownRequest) (*TeardownResponse, error)
}

// SettingsValidator is implemented by a Backend that checks the settings of
// a pipeline's `executor:` when the pipeline is applied, before anything
// runs: unknown settings, values it cannot use. wiz shows each Diagnostic at
// the setting its Path names (FILE:LINE:COL) and refuses the file (exit 2).
// Backends that do not implement it get any settings, as before.
type SettingsValidator interface {
	ValidateSettings(settings map[string]any) []Diagnostic
}

// Diagnostic is one problem in a backend's settings.
type Diagnostic struct {
	// Path names the setting, then list indexes or map keys within it
	// ("namespace"; "resources", "limits"). Empty: the settings as a whole.
	Path []string
	// Message says what is wrong and, where it can, how to fix it.
	Message string
}

// ProvisionRequest asks for one executor.
type ProvisionRequest struct {
	// RunID is the run the executor serves.
	RunID string
	// WizBinary is the path of the `wiz` binary on the Manager's machine.
	WizBinary string
	// Config holds backend-specific settings from the pipeline, as JSON.
	Config json.RawMessage
	// Slots is how many tasks the executor may run at once; 0 lets it decide.
	Slots int
	// BlobDir is the Manager's blob store, for executors on the same machine.
	BlobDir string
	// LogLevel is the hclog level the user chose.
	LogLevel string
	// CacheDir is where an executor on the Manager's machine may cache
	// invocation plans across runs; empty: in memory only.
	CacheDir string
	// TaskDir is where an executor on the Manager's machine records the
	// process groups of running tasks (pass it as --task-dir).
	TaskDir string
	// OrphanTimeout, when not 0, asks for an executor that outlives its
	// Manager's death that long: pass it as --orphan-timeout, and keep the
	// executor (and what it runs in) alive without this backend process for
	// at least that long, so that a restarted Manager can Adopt it. Only a
	// service Manager (wiz daemon) asks for it.
	OrphanTimeout time.Duration
}

// ProvisionResponse says how to reach a provisioned executor.
type ProvisionResponse struct {
	// ExecutorID identifies the executor in Teardown.
	ExecutorID string
	// Endpoint is where the executor listens.
	Endpoint Endpoint
	// Remote says the executor does not share the Manager's file system (a
	// pod, another machine). The Manager then sends it pack binaries and input
	// blobs by digest and fetches its output blobs over the executor API;
	// otherwise both use ProvisionRequest.BlobDir in place.
	Remote bool
}

// Endpoint is where and how to reach a `wiz executor`.
type Endpoint struct {
	// Address is host:port.
	Address string
	// CACertPEM is the trust anchor of the executor's TLS certificate.
	CACertPEM []byte
	// ServerName is the TLS server name to verify.
	ServerName string
	// Token is the bearer token the executor accepts.
	Token string
}

// TeardownRequest asks to stop one executor.
type TeardownRequest struct {
	// ExecutorID is what Provision returned.
	ExecutorID string
}

// TeardownResponse is empty; fields may be added.
type TeardownResponse struct{}

// Adopter is implemented by backends whose executors can outlive the
// Manager that provisioned them (a pod; see ProvisionRequest.OrphanTimeout).
// When a killed service Manager restarts, it continues its runs: it asks the
// backend (a new process of it) to Adopt each executor those runs used, then
// re-attaches the tasks it still runs and collects their results, instead
// of running them again. Adopt takes over what Provision did for the
// executor (keeping it alive, its Teardown) and returns how to reach it.
// It returns an error wrapping ErrGone when the executor no longer exists;
// the tasks then run again. Backends without it have their tasks run again.
type Adopter interface {
	Adopt(ctx context.Context, req *AdoptRequest) (*AdoptResponse, error)
}

// ErrGone says that an executor to adopt no longer exists.
var ErrGone = errors.New("executor is gone")

// AdoptRequest names an executor an earlier process of the backend
// provisioned.
type AdoptRequest struct {
	// ExecutorID is what Provision returned.
	ExecutorID string
	// RunID is the run it serves.
	RunID string
	// Config holds the settings it was provisioned with, as JSON.
	Config json.RawMessage
}

// AdoptResponse says how to reach an adopted executor, as ProvisionResponse.
type AdoptResponse struct {
	Endpoint Endpoint
	Remote   bool
}

// Diagnoser is implemented by backends that can say why an executor is gone
// or failing. The Manager asks when it loses an executor mid-task and shows
// the reason with the processor's error, e.g. "pod wiz-abc was OOMKilled".
// It is optional: a backend without it gets a generic message.
type Diagnoser interface {
	Diagnose(ctx context.Context, req *DiagnoseRequest) (*DiagnoseResponse, error)
}

// DiagnoseRequest names the executor to diagnose.
type DiagnoseRequest struct {
	// ExecutorID is what Provision returned.
	ExecutorID string
}

// DiagnoseResponse says what the backend knows.
type DiagnoseResponse struct {
	// Reason is one line in the backend's words; empty when nothing is known.
	Reason string
}

// CheckSettings is a ValidateSettings for a backend that knows the names of
// its settings and how to parse them: a name not in names is a Diagnostic at
// that setting; then each setting is parsed alone with parse (its JSON
// object of that one setting), and an error is a Diagnostic at it; last,
// all of them are parsed together, for problems between settings.
func CheckSettings(settings map[string]any, names []string, parse func(settingsJSON []byte) error) []Diagnostic {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ds []Diagnostic
	for _, k := range keys {
		if !slices.Contains(names, k) {
			ds = append(ds, Diagnostic{Path: []string{k}, Message: fmt.Sprintf("unknown setting %q (valid: %s)", k, strings.Join(names, ", "))})
			continue
		}
		one, err := json.Marshal(map[string]any{k: settings[k]})
		if err != nil {
			ds = append(ds, Diagnostic{Path: []string{k}, Message: err.Error()})
			continue
		}
		if err := parse(one); err != nil {
			ds = append(ds, Diagnostic{Path: []string{k}, Message: err.Error()})
		}
	}
	if len(ds) > 0 {
		return ds
	}
	all, err := json.Marshal(settings)
	if err == nil {
		err = parse(all)
	}
	if err != nil {
		return []Diagnostic{{Message: err.Error()}}
	}
	return nil
}
