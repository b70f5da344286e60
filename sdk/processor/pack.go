package processor

import (
	"context"
	"encoding/json"
	"fmt"
)

// Pack is a processor pack: a named, versioned set of processor types.
type Pack struct {
	// Name is the pack's name, the PACK in "PACK/TYPE".
	Name string
	// Version is the pack's semantic version, e.g. "1.2.0".
	Version string
	// Types are the processor types the pack serves.
	Types []Type
}

// Type is one processor type of a pack. Exactly one of Processor and Native is set.
type Type struct {
	// Name is the type's name within the pack, the TYPE in "PACK/TYPE".
	Name string
	// Doc is a one-paragraph description.
	Doc string
	// Fields describe the config the type takes in a pipeline's `with`. wiz
	// validates pipelines against them before a run starts, and fills in defaults.
	Fields []Field
	// Validate, when set, checks a config beyond its fields' types when a
	// pipeline is applied, before anything runs: a pattern that does not
	// compile, fields that exclude each other. wiz shows each Diagnostic at
	// the position of the field its Path names (FILE:LINE:COL) and refuses
	// the file. The config has the type's defaults filled in. A field whose
	// value is an expression (${{ }}) is known only when the task runs: it is
	// left out of the config Validate sees.
	Validate func(config map[string]any) []Diagnostic
	// Inputs, when not nil, declares the inputs the type reads (the names
	// of Request.Inputs, or of a native plan's inputs): wiz refuses, at
	// apply, a pipeline that binds an input not declared or leaves a
	// required one unbound. Nil declares nothing: any inputs are accepted.
	Inputs []Input
	// Outputs, when not nil, declares the outputs the type makes: wiz
	// refuses, at apply, a pipeline that references another output of it
	// (`report.reprt`). The keys of a field of type "outputs" are outputs
	// too. Nil, with no such field, declares nothing.
	Outputs []string
	// Processor runs a data processor inside the pack.
	Processor Processor
	// Native plans a native program for the executor to run.
	Native Native
}

// Diagnostic is one problem Validate finds in a config.
type Diagnostic struct {
	// Path names the field: its name, then list indexes or map keys within
	// it ("pattern"; "rules", "2", "regexp"). Empty: the config as a whole.
	Path []string
	// Message says what is wrong and, where it can, how to fix it.
	Message string
}

// Input declares one input a processor type reads.
type Input struct {
	Name     string
	Required bool
	Doc      string
}

// Field describes one config field.
type Field struct {
	// Name is the key in `with`.
	Name string
	// Type is one of "string", "int", "bool", "number", "list", "map",
	// "duration", "any", or a list of one scalar type: "list of string",
	// "list of int", "list of number", "list of bool". A wiz that does not
	// know a type accepts any value for it.
	//
	// Two string types say that the field holds code, so that a value of an
	// expression never becomes code: "script" is a POSIX shell script, in
	// which wiz turns each ${{ EXPR }} into a reference to an environment
	// variable holding the value (a sibling field "shell", when set, must
	// name a POSIX shell); "code" is program text of another language (a jq
	// filter, a template), in which ${{ }} is refused when the pipeline is
	// applied. A native type's plan receives the rewritten script; the
	// variables are set by the executor.
	//
	// "outputs" is a map whose keys name outputs the processor makes (std/exec's
	// outputs: {NAME: PATH}): wiz checks references to its outputs against
	// them, besides the type's Outputs.
	Type string
	// Required fields must be set in the pipeline.
	Required bool
	// Default is used when the field is not set; it must marshal to JSON.
	Default any
	// Doc describes the field.
	Doc string
}

// Request is one invocation of a data processor.
type Request struct {
	// Type is the processor type's name within the pack.
	Type string
	// Config is the processor's `with`, decoded from JSON, with defaults filled in.
	Config map[string]any
	// Inputs are the processor's inputs by name.
	Inputs map[string]*Data
}

// Decode decodes the config into v (a pointer to a struct with json tags).
func (r *Request) Decode(v any) error {
	return decodeConfig(r.Config, v)
}

func decodeConfig(cfg map[string]any, v any) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	return nil
}

// Emitter receives what a data processor produces. Its methods may be called
// from one goroutine at a time.
type Emitter interface {
	// Log records a chunk of the processor's log on a stream ("stdout" or "stderr").
	Log(stream string, p []byte)
	// Warn records a warning. Warnings never fail a run.
	Warn(msg string)
	// Output emits a named output made whole; "out" is the default output.
	// Inline bytes over the pipeline's inline_max_size are moved to a blob,
	// and an output over max_output_size is an error wrapping ErrTooLarge.
	// For a large output, write it through CreateOutput instead.
	Output(name string, d *Data) error
}

// Processor is a data processor. Process reads req.Inputs, emits outputs
// through emit and returns nil, or returns an error that fails the processor
// (a fatal error). It must return soon after ctx is cancelled. Process may be
// called concurrently for different tasks.
type Processor interface {
	Process(ctx context.Context, req *Request, emit Emitter) error
}

// ProcessorFunc adapts a function to a Processor.
type ProcessorFunc func(ctx context.Context, req *Request, emit Emitter) error

// Process calls f.
func (f ProcessorFunc) Process(ctx context.Context, req *Request, emit Emitter) error {
	return f(ctx, req, emit)
}

// PlanRequest asks a native-program wrapper for its invocation plan.
type PlanRequest struct {
	// Type is the processor type's name within the pack.
	Type string
	// Config is the processor's `with` with defaults filled in.
	Config map[string]any
}

// Decode decodes the config into v (a pointer to a struct with json tags).
func (r *PlanRequest) Decode(v any) error {
	return decodeConfig(r.Config, v)
}

// Native is a native-program wrapper. Plan turns a config into an invocation
// plan; it must depend only on the config, since the executor caches the plan
// per config. A returned error is a config problem shown to the user.
type Native interface {
	Plan(ctx context.Context, req *PlanRequest) (*Plan, error)
}

// NativeFunc adapts a function to a Native.
type NativeFunc func(ctx context.Context, req *PlanRequest) (*Plan, error)

// Plan calls f.
func (f NativeFunc) Plan(ctx context.Context, req *PlanRequest) (*Plan, error) {
	return f(ctx, req)
}

// Plan is an invocation of a native program, carried out by `wiz executor`.
//
// The executor starts Argv[0] (looked up in PATH when it has no slash) in its
// own process group in Dir (a fresh temporary directory when empty). Inputs
// other than Stdin are placed as files in the working directory, and their
// paths are given in env vars WIZ_INPUT_<NAME> and substituted for
// "${{ files.NAME }}" in Argv and Env values (per task, so a plan stays valid
// for every task of its config). A non-zero exit is a fatal error carrying
// the exit code and the tail of stderr; stderr lines "::warning::TEXT"
// become warnings. Outputs are held to the pipeline's inline_max_size and
// max_output_size.
type Plan struct {
	Argv []string
	// Env is added to the environment; InheritEnv starts from the executor's own.
	Env        map[string]string
	InheritEnv bool
	Dir        string
	// Stdin names the input fed to the program's stdin; empty: no stdin.
	Stdin string
	// Stdout makes stdout the output "out".
	Stdout bool
	// Outputs are files the program writes, collected as Wiz Files.
	Outputs []PlanOutput
}

// PlanOutput declares a file output.
type PlanOutput struct {
	// Name is the output's name.
	Name string
	// Path is relative to the working directory: a file, a directory (every
	// file under it, named by its slash path inside it) or a glob (every
	// match, named by its path relative to the working directory). A path
	// the program did not write fails the task.
	Path string
}
