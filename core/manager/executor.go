package manager

import (
	"context"
	"encoding/json"
	"time"

	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// PackRef names the exact processor pack binary that serves a type.
type PackRef struct {
	Name    string
	Version string
	Path    string
	SHA256  string
}

// Catalog knows the installed processor types and which pack serves each.
type Catalog interface {
	pipeline.Catalog
	// Pack returns the pack that serves typ ("std/exec"), honouring a version
	// constraint when one is given, and whether typ is a native-program wrapper.
	Pack(typ, constraint string) (ref PackRef, native bool, err error)
}

// BackendRefs is implemented by a Catalog that knows the installed executor
// backends: a run then records each backend it uses beside its packs.
type BackendRefs interface {
	// BackendRef returns the executor backend binary that serves name.
	BackendRef(name string) (PackRef, error)
}

// Task is one attempt at one processor of a run, as sent to an executor.
type Task struct {
	ID        string
	Native    bool // a native-program wrapper: the executor may use a cached plan
	RunID     string
	Processor string
	Type      string
	Pack      PackRef
	Config    []byte // the processor's `with` as JSON
	Inputs    map[string]*wizpb.Data
	Timeout   time.Duration
	InlineMax int64 // outputs larger than this become Wiz Files; 0: the default
	MaxOutput int64 // an output larger than this fails the task; 0: no limit
	MaxLog    int64 // the task's log budget (head and tail kept); 0: no limit
	// Env is the pipeline's env, under the plan's own; ExprEnv the values of
	// a script's expressions, over everything; FileEnv names the input whose
	// path each variable holds. Native tasks only.
	Env, ExprEnv, FileEnv map[string]string
	// Secrets holds the values of the secrets the task uses, by name: its
	// env values hold markers where they go (secrets.Marker), and
	// SecretFiles names the secret of each file to write in its working
	// directory. Native tasks only; never recorded.
	Secrets     map[string][]byte
	SecretFiles map[string]string
	// KeepTemp keeps a failed task's temporary working directory.
	KeepTemp bool
	// ReportProgram asks for the native program's sha256 in the
	// EventFinished (Program). ReuseProgram, when set, is a cached result's
	// program sha256: an executor that finds the program unchanged ends the
	// task Succeeded with Reused, without running it.
	ReportProgram bool
	ReuseProgram  string
}

// EventKind says what a TaskEvent reports.
type EventKind uint8

// Event kinds.
const (
	EventStarted EventKind = iota + 1
	EventLog
	EventWarning
	EventOutput
	EventMetrics
	EventFinished
)

// Outcome is how a task ended.
type Outcome uint8

// Outcomes.
const (
	OutcomeSucceeded Outcome = iota + 1
	OutcomeFailed
	OutcomeCancelled
)

// TaskEvent is one event of a task, reported by an executor. A short task may
// report only its EventFinished, with its outputs and metrics in it and no
// EventStarted before it (Started then says it did start).
type TaskEvent struct {
	TaskID  string
	Kind    EventKind
	Stream  string                 // EventLog
	Data    []byte                 // EventLog
	Message string                 // EventWarning; EventFinished's error
	Name    string                 // EventOutput
	Output  *wizpb.Data            // EventOutput
	Outputs map[string]*wizpb.Data // EventFinished: outputs not reported before
	Metrics *wizpb.Metrics         // EventMetrics, EventFinished
	Outcome Outcome                // EventFinished
	Code    int                    // EventFinished: exit code
	Started bool                   // EventFinished: false when it never started
	Lost    bool                   // EventFinished: the executor went away mid-task
	Program string                 // EventFinished: the native program's sha256, when asked
	Reused  bool                   // EventFinished: a cached result stands; nothing ran
	Unknown bool                   // EventFinished: an adopted executor holds no such task; nothing ran
}

// Executor is one provisioned `wiz executor`, as the Manager sees it. Submit
// and Cancel are called from the run's goroutine only. Every submitted task
// ends with exactly one EventFinished, also when the executor dies (then with
// OutcomeFailed and a message naming the executor). Events is closed after
// Close.
type Executor interface {
	// Name names the executor in messages, e.g. "local executor (pid 123)".
	Name() string
	// Slots is how many tasks the executor runs at once.
	Slots() int
	// Local reports whether the executor runs on the Manager's machine,
	// whose capacity concurrent runs share.
	Local() bool
	// Resize changes how many tasks the executor runs at once.
	Resize(slots int) error
	// Submit sends a task, or holds it until Flush when the Executor is a
	// Batcher; it may be queued at the executor until a slot frees.
	Submit(t *Task) error
	// Cancel asks the executor to cancel a task.
	Cancel(taskID, reason string) error
	// Events delivers task events.
	Events() <-chan *TaskEvent
	// Close tears the executor down.
	Close(ctx context.Context) error
}

// ProvisionRequest asks a backend for an executor.
type ProvisionRequest struct {
	Backend  string // "local"
	Config   []byte // the backend's settings from the pipeline, as JSON; nil: none
	RunID    string
	Slots    int
	BlobDir  string
	CacheDir string // where executors on this machine may cache plans
	TaskDir  string // where executors on this machine record task process groups
	// OrphanTimeout: the executor keeps its tasks running this long when
	// this Manager is killed, for the next one to adopt (service Managers).
	OrphanTimeout time.Duration
}

// Adopter is implemented by Backends that can take over an executor a
// killed Manager provisioned (a pod outlives it), so that the runs a
// restarted service Manager continues collect the tasks it still runs.
type Adopter interface {
	// Adopt connects to executor req.ExecutorID of backend req.Backend and
	// attaches the tasks named by ids: each ends with one EventFinished, with
	// Unknown set when the executor does not hold it (it runs again).
	Adopt(ctx context.Context, req ProvisionRequest, executorID string, ids []string) (Executor, error)
}

// ExecutorIDer is implemented by Executors a backend provisioned: the ID
// the backend knows the executor by, recorded so that a restarted Manager
// can adopt it.
type ExecutorIDer interface {
	ExecutorID() string
}

// Backends provisions executors from executor backend plugins.
type Backends interface {
	Provision(ctx context.Context, req ProvisionRequest) (Executor, error)
}

// Batcher is implemented by Executors whose Submit holds tasks until Flush,
// so that the tasks a burst of events frees go out together. A run flushes
// its executors before it waits for anything.
type Batcher interface {
	// Flush sends the held tasks. It returns those it could not send, by
	// task ID; their executor never got them.
	Flush() map[string]error
}

// Prewarmer is implemented by Backends that can start a backend ahead of its
// first Provision. Prewarm returns at once; Provision waits for the start.
type Prewarmer interface {
	Prewarm(backend string)
}

// executorOf returns the executor backend a processor runs on and that
// backend's settings as JSON: the processor's own `executor:`, else the
// pipeline's, with the processor's `resources` added. A processor that names
// the pipeline's backend without settings takes the pipeline's settings.
// Processors with equal results share one executor in a run.
func executorOf(p *pipeline.Pipeline, n *pipeline.ProcessorNode) (string, []byte, error) {
	backend, cfg := n.Executor, n.ExecutorConfig
	if backend == "" {
		backend = p.Executor
	}
	if backend == "" {
		backend = pipeline.DefaultExecutor
	}
	if cfg == nil && backend == p.Executor {
		cfg = p.ExecutorConfig
	}
	if cfg == nil && n.Resources == nil {
		return backend, nil, nil
	}
	m := make(map[string]any, len(cfg)+1)
	for k, v := range cfg {
		m[k] = v
	}
	if n.Resources != nil {
		m["resources"] = n.Resources
	}
	b, err := json.Marshal(m) // sorted keys: equal settings give equal bytes
	if err != nil {
		return "", nil, err
	}
	return backend, b, nil
}
