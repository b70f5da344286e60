// Package expr is wiz's expression language: CEL (cel.dev/cel-go) over a
// pipeline's declared inputs, its upstream processors and the run, written
// as a bare expression in `when:` and as "${{ EXPR }}" inside strings.
//
// Expressions are compiled and type-checked once, when a pipeline file is
// applied (Compile), and evaluated by the Manager when a processor is
// dispatched (Program.Eval), under a cost limit. Values reach programs as
// text (Text) in environment variables or whole argv elements, never as
// script text: the splitting of a string into literal parts and expressions
// (ParseTemplate) is what lets the Manager keep them apart.
package expr
