package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/wiz-run/wiz/core/expr"
	"github.com/wiz-run/wiz/core/scheduler"
	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/simple"
)

// ErrCycle is matched, through errors.Is, by the Error that reports a cycle
// among processors, and so by the ErrorList that holds it.
var ErrCycle = errors.New("pipeline has a cycle")

// Position is a place in a pipeline file. Line and Col start at 1.
type Position struct {
	File string
	Line int
	Col  int
}

// String returns the position as "file:line:col", or "line:col" when File is
// empty.
func (p Position) String() string {
	if p.File == "" {
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// compare orders positions by file, line and column.
func (p Position) compare(q Position) int {
	return cmp.Or(
		strings.Compare(p.File, q.File),
		cmp.Compare(p.Line, q.Line),
		cmp.Compare(p.Col, q.Col),
	)
}

// Error is one problem in a pipeline file. Msg says what is wrong and what
// would be valid. Err, when set, is a sentinel the problem is an instance of
// (ErrCycle), returned by Unwrap.
type Error struct {
	Pos Position
	Msg string
	Err error
}

// Error returns "file:line:col: message".
func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Unwrap returns e.Err.
func (e *Error) Unwrap() error { return e.Err }

// ErrorList is the problems found in a pipeline file, sorted by position.
// Functions of this package return it, as an error, only when it is not empty.
type ErrorList []*Error

// Error returns the errors, one per line.
func (l ErrorList) Error() string {
	if len(l) == 0 {
		return "no errors"
	}
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap returns the errors of the list, so that errors.Is and errors.As
// look at each of them.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// sort orders the list by position, keeping the order of errors at the same
// position.
func (l ErrorList) sort() {
	slices.SortStableFunc(l, func(a, b *Error) int { return a.Pos.compare(b.Pos) })
}

// err returns the sorted list as an error, or nil when it is empty.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	l.sort()
	return l
}

// Input types: the value's type in expressions, and how --input is checked.
const (
	InputString = expr.TypeString // the value is the text itself
	InputInt    = expr.TypeInt    // a base-10 int64
	InputNumber = expr.TypeNumber // a JSON number
	InputBool   = expr.TypeBool   // true or false, in any case
	InputJSON   = expr.TypeJSON   // JSON text
	InputFile   = expr.TypeFile   // the value names a file, passed to processors as a Wiz File
)

// InputDecl declares one input of a pipeline: a value given to each run.
type InputDecl struct {
	Name    string
	Type    string  // one of the Input constants; InputString by default
	Default *string // nil when the input has no default and must be given
	Doc     string
	Pos     Position // position of the input's key
	// Enum, when not nil, lists the allowed values (string, int, number).
	Enum []string
	// Min and Max bound an int or number; nil: no bound.
	Min, Max *float64
	// Pattern is an unanchored RE2 a string must match; nil: any.
	Pattern *regexp.Regexp
}

// Ref names where an input of a processor comes from: either a pipeline
// input (Input is set) or an output of another processor (Processor and
// Output are set).
type Ref struct {
	Input     string // pipeline input name, when the reference is "inputs.NAME"
	Processor string // processor name, when the reference is "NAME" or "NAME.OUTPUT"
	Output    string // output name; "out" when the reference has no ".OUTPUT"
	Pos       Position
}

// DefaultOutput is the output a reference to a processor names when it names
// none.
const DefaultOutput = "out"

// String returns the reference as written in a file, with the output always
// named: "inputs.text", "words.out".
func (r Ref) String() string {
	if r.Input != "" {
		return "inputs." + r.Input
	}
	return r.Processor + "." + r.Output
}

// InputBinding says that the processor input Name comes From a pipeline
// input or another processor's output.
type InputBinding struct {
	Name string
	From Ref
}

// Outcomes an after: entry waits for.
const (
	OutcomeDefault   = ""          // a plain name: the upstream succeeded or was skipped
	OutcomeSucceeded = "succeeded" // it succeeded
	OutcomeFailed    = "failed"    // it failed
	OutcomeEnded     = "ended"     // it ended, however
)

// Retry is a processor's retry policy: the scheduler's, which decides
// retries (limit, backoff, factor, max_backoff, jitter, max_duration,
// exit_codes).
type Retry = scheduler.Retry

// DefaultRetry is the policy of retries: N and of retry: fields not given.
var DefaultRetry = Retry{Backoff: time.Second, Factor: 2, MaxBackoff: 30 * time.Second, Jitter: 0.1, MaxDuration: 10 * time.Minute}

// ForEach is a processor's for_each: an expression (Expr set) or a literal
// YAML list (List set).
type ForEach struct {
	Expr *Expr
	List []any
	Pos  Position
}

// ChildRef names the pipeline a processor runs as a sub-pipeline.
type ChildRef struct {
	// Pipeline is a stored pipeline's name (uses: pipeline/NAME), and
	// Version its version number (@N; 0: the newest at each run).
	Pipeline string
	Version  int
	// File is a pipeline file relative to this one (uses: ./child.yaml),
	// applied with it.
	File string
	Pos  Position
}

// ChildPack is the pack name of sub-pipelines, reserved: "pipeline/NAME".
const ChildPack = "pipeline"

// OutputDecl is one output a pipeline returns to a parent that runs it:
// `outputs: {NAME: PROCESSOR.OUTPUT}`.
type OutputDecl struct {
	Name string
	From Ref
	Pos  Position
}

// Cache is a processor's cache policy.
type Cache struct {
	// TTL bounds the age of a reused result; 0: no bound.
	TTL time.Duration
}

// MaxInstances bounds the instances of one for_each.
const MaxInstances = 10000

// Expr is an expression of a pipeline file: a bare `when:` condition.
type Expr struct {
	Src  string
	Pos  Position
	Prog *expr.Program // set by Validate
}

// OnError values.
const (
	OnErrorFail = ""     // a failure of the processor fails the run
	OnErrorWarn = "warn" // a failure of the processor becomes a warning
)

// ProcessorNode is one processor of a pipeline and a node of its graph.
// Pipeline.Graph.Node(id) returns the *ProcessorNode itself, so changes made
// through the graph are seen through Pipeline.Processors and back.
type ProcessorNode struct {
	id int64 // graph node id, index in Pipeline.Processors

	Name string
	// Uses is the processor type, "PACK/NAME", without any version
	// constraint.
	Uses string
	// UsesVersion is the version constraint written after "@" in uses, e.g.
	// "^1.2" from "acme/resize@^1.2"; empty when none.
	UsesVersion string
	// With is the processor's config as decoded YAML: map[string]any, []any,
	// string, int64, uint64, float64, bool and nil. It is nil when the file
	// has no `with`.
	With    map[string]any
	Inputs  []InputBinding // sorted by Name
	After   []string       // order-only dependencies, in file order
	Timeout time.Duration  // 0 when none
	OnError string         // OnErrorFail or OnErrorWarn
	// executorPos is where the processor's executor is named (its own
	// `executor:`, or defaults.executor).
	executorPos  Position
	executorKeys map[string]Position // position of each setting's key
	// Executor overrides the pipeline's executor; empty means the
	// pipeline's.
	Executor string
	// ExecutorConfig holds the settings of the processor's `executor:`
	// mapping other than backend; nil when it names a backend only.
	ExecutorConfig map[string]any
	// Resources holds `resources:` (requests and limits), which the executor
	// backend applies; nil when none.
	Resources map[string]any
	// MaxOutput is the largest output in bytes the processor may make (its
	// own `max_output_size`, else the pipeline's); 0: no limit.
	MaxOutput int64
	// MaxLog is the processor's log budget (its own `max_log_size`, else
	// the pipeline's); 0: DefaultMaxLog.
	MaxLog  int64
	Pos     Position            // position of the processor's key
	WithPos map[string]Position // position of each top-level `with` key

	// AfterOutcome holds, for each After entry, the outcome it waits for:
	// OutcomeDefault (a plain name), or OutcomeSucceeded, OutcomeFailed,
	// OutcomeEnded of a {NAME: OUTCOME} entry.
	AfterOutcome []string
	// When is the processor's condition; nil: none.
	When *Expr
	// Retry is the processor's retry policy (its own, else defaults').
	Retry Retry
	// Finally marks a processor of the file's `finally:` map.
	Finally bool
	// ForEach makes the processor run once per element; nil: once.
	ForEach *ForEach
	// MaxParallel bounds how many of a for_each's instances run at once; 0:
	// no bound but the run's.
	MaxParallel int
	// Cache lets a run reuse the outputs of an earlier identical execution
	// instead of running the processor; nil: never (the default).
	Cache *Cache
	// SecretFiles maps a path in the task's working directory to the
	// secret the file holds (`secret_files:`); native types only.
	SecretFiles    map[string]string
	secretFileRefs []SecretRef
	secretFilesPos Position
	// envSecretRefs are the secrets of its with.env (set by Validate).
	envSecretRefs []SecretRef
	// Child is set when the processor runs another pipeline (uses:
	// pipeline/NAME[@N] or ./FILE.yaml); nil for a processor type.
	Child *ChildRef
	// Handled says that a failure of this processor is handled by an
	// after: {NAME: failed|ended} entry somewhere in the file: it is not
	// fatal (set by Validate).
	Handled bool
	// Templates holds the expressions of `with`, compiled by Validate; nil
	// when `with` holds none.
	Templates *Templates

	withJSON []byte     // With as JSON when it refers to no input (set by Validate)
	usesPos  Position   // position of the uses value
	withPos  *Position  // position of the `with` key; nil when absent
	afterPos []Position // position of each After entry
}

// ID returns the node's id in the pipeline's graph, which is its index in
// Pipeline.Processors. It implements graph.Node.
func (n *ProcessorNode) ID() int64 { return n.id }

var _ graph.Node = (*ProcessorNode)(nil)

// Pipeline is a parsed pipeline file.
//
// Parse fills everything but the graph's edges; Validate adds them. A
// Pipeline is not safe for concurrent use while Validate runs; afterwards it
// may be read concurrently.
type Pipeline struct {
	File         string
	Source       []byte
	Name         string
	Inputs       []InputDecl      // in file order
	Processors   []*ProcessorNode // in file order; Processors[i].ID() == int64(i)
	Executor     string           // default "local"
	executorPos  Position
	executorKeys map[string]Position
	// ExecutorConfig holds the settings of the pipeline's `executor:` mapping
	// other than backend; nil when it names a backend only.
	ExecutorConfig map[string]any
	// InlineMax is the size above which outputs become Wiz Files instead of
	// inline Wiz Data; 0: the default (1 MiB).
	InlineMax int64
	// MaxOutput is the pipeline-wide default of max_output_size; 0: none.
	MaxOutput int64
	// MaxLog is the pipeline-wide default of max_log_size; 0: DefaultMaxLog.
	MaxLog      int64
	MaxParallel int // 0 means the executor's capacity
	Retries     int // pipeline-wide default retries
	// When is the pipeline's precondition (inputs only); nil: none.
	When *Expr
	// FailFast: a fatal failure cancels the processors in flight (true, the
	// default); false lets every processor not downstream of it run.
	FailFast bool
	// Timeout bounds the whole run; 0: none.
	Timeout time.Duration
	// Env reaches every native processor (defaults.env over the top-level
	// env); a processor's with.env wins. Values may hold ${{ }} of inputs.
	Env map[string]string
	// Schedules fire runs of the pipeline in a service process (wiz
	// daemon), in file order.
	Schedules []*Schedule
	// Triggers start runs of the pipeline on events, in a service process
	// (wiz daemon), in file order.
	Triggers []*Trigger
	// Retention bounds the runs wiz daemon keeps of the pipeline; nil: the
	// daemon's default.
	Retention *Retention
	// EnvTemplates holds Env's expressions, compiled by Validate.
	EnvTemplates map[string]*Template
	// envSecretRefs are the secrets Env uses (set by Validate).
	envSecretRefs []SecretRef
	// Exprs compiles the pipeline's expressions; set by Validate.
	Exprs *expr.Env
	// Outputs are what the pipeline returns when it runs as a
	// sub-pipeline, in file order.
	Outputs []OutputDecl
	// Graph holds the processors as nodes. An edge u->v means v depends on
	// u, for data (v's inputs name u) or order (v's after names u).
	Graph *simple.DirectedGraph

	byName map[string]*ProcessorNode
	order  []*ProcessorNode
	edges  [][2]int // (from, to) node IDs, set by Validate
}

// Edges returns the graph's edges as (from, to) node IDs, successors of each
// node in topological order: what a scheduler needs, without walking the
// graph per run. The slice is shared; do not change it. Nil before Validate.
func (p *Pipeline) Edges() [][2]int { return p.edges }

// DefaultExecutor is the executor of a pipeline that names none.
const DefaultExecutor = "local"

// Node returns the processor called name.
func (p *Pipeline) Node(name string) (*ProcessorNode, bool) {
	n, ok := p.byName[name]
	return n, ok
}

// Input returns the declared input called name.
func (p *Pipeline) Input(name string) (*InputDecl, bool) {
	for i := range p.Inputs {
		if p.Inputs[i].Name == name {
			return &p.Inputs[i], true
		}
	}
	return nil, false
}

// Order returns the processors in a topological order: each after all those
// it depends on. It is nil until Validate succeeds. The order is stable for
// a given file. The caller may change the returned slice.
func (p *Pipeline) Order() []*ProcessorNode {
	return slices.Clone(p.order)
}

// FieldSpec describes one config field of a processor type.
type FieldSpec struct {
	Name string
	// Type is one of "string", "int", "bool", "number", "list", "map",
	// "duration" (a string like "30s") or "any". An unknown type is treated
	// as "any".
	Type     string
	Required bool
	Doc      string
}

// DefaultMaxLog is a processor's log budget when the file sets none: what
// the Manager keeps of its logs (the head and the tail, half each).
const DefaultMaxLog = 16 << 20

// TypeSpec describes a processor type's config, as its pack described it.
type TypeSpec struct {
	Type   string // "std/exec"
	Fields []FieldSpec
	// Native says that the executor runs the type's program itself (a
	// native-program wrapper like std/exec): only such a processor takes
	// secrets.
	Native bool
	// Validates says that the type's pack checks its configs (a
	// ConfigValidator asks it).
	Validates bool
	// DeclaresInputs says that Inputs are all the inputs the type reads.
	DeclaresInputs bool
	Inputs         []InputSpec
	// DeclaresOutputs says that Outputs, with the keys of any field of type
	// FieldOutputs, are all the outputs the type makes.
	DeclaresOutputs bool
	Outputs         []string
}

// InputSpec is an input a processor type declares.
type InputSpec struct {
	Name     string
	Required bool
}

// ConfigValidator is implemented by a Catalog that can have a type's pack
// check a config (TypeSpec.Validates) when a pipeline is validated.
type ConfigValidator interface {
	// ValidateConfig returns the pack's diagnostics of config, the
	// processor's literal `with` (fields holding expressions left out).
	ValidateConfig(typ string, config map[string]any) ([]Diagnostic, error)
}

// Diagnostic is one problem a pack found in a config: Path names the field
// (its name, then indexes or keys within it).
type Diagnostic struct {
	Path    []string
	Message string
}

// Catalog is what Validate needs to know about the installed processor types.
// Validate calls it from one goroutine.
type Catalog interface {
	// Lookup returns the spec of the processor type typ ("std/exec"), or of the
	// version a constraint selects when typ carries one ("acme/resize@^1.2").
	Lookup(typ string) (*TypeSpec, bool)
	// Types returns the installed types, sorted, for error messages.
	Types() []string
}

// BackendCatalog is implemented by a Catalog that also knows the installed
// executor backends: Validate then refuses a backend that is not installed.
type BackendCatalog interface {
	// Backends returns the installed executor backends' names, sorted.
	Backends() []string
}

// SettingsValidator is implemented by a Catalog that can have an executor
// backend check the settings of an `executor:` when a pipeline is
// validated.
type SettingsValidator interface {
	// ValidateSettings returns the backend's diagnostics of settings (those
	// holding ${{ }} left out); paths start at a setting's name.
	ValidateSettings(backend string, settings map[string]any) ([]Diagnostic, error)
}
