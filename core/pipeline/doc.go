// Package pipeline reads and checks wiz pipeline files.
//
// A pipeline file is YAML: a name, declared inputs, and named processors, each
// of which uses a processor type ("PACK/NAME") with config, takes its inputs
// from pipeline inputs or from other processors' outputs, and may run after
// other processors. [Parse] turns a file into a [Pipeline] and reports syntax,
// unknown keys, wrong field types and duplicate names. [Pipeline.Validate]
// resolves references against each other and against a [Catalog] of
// installed processor types, builds the dependency graph and finds cycles.
//
// Every problem is an [*Error] with the file, line and column it comes from
// and a message that says what would be valid; functions return all the
// problems they find as an [ErrorList], sorted by position.
//
// The package does no I/O: callers read the file and pass its bytes.
package pipeline
