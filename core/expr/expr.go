package expr

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
)

// Input types, as declared in a pipeline file's `inputs:`.
const (
	TypeString = "string"
	TypeInt    = "int"
	TypeNumber = "number"
	TypeBool   = "bool"
	TypeJSON   = "json"
	TypeFile   = "file"
)

// InputTypes lists the input types, for messages.
var InputTypes = []string{TypeBool, TypeFile, TypeInt, TypeJSON, TypeNumber, TypeString}

// CostLimit bounds the work of one evaluation, in cel-go's cost units (about
// one per operation): an expression that loops over a huge list stops with
// an error instead of holding the run.
const CostLimit = 1_000_000

// Processor is a processor as expressions see it: processors.NAME.
type Processor struct {
	// State is "Succeeded", "Failed" or "Idle" (skipped or never run).
	State string `cel:"state"`
	// Outputs holds the outputs an expression names: each a string, or for
	// a for_each processor a list of the instances' texts in element order.
	Outputs map[string]any `cel:"outputs"`
	// ExitCode is the program's exit code; 0 when none.
	ExitCode int64 `cel:"exit_code"`
	// Attempts counts the processor's attempts.
	Attempts int64 `cel:"attempts"`
	// Warnings are the processor's warnings.
	Warnings []string `cel:"warnings"`
}

// Run is the run as expressions see it: run.
type Run struct {
	ID       string `cel:"id"`
	Pipeline string `cel:"pipeline"`
	// Trigger is what started the run: "manual", "schedule/NAME",
	// "webhook/NAME" or "file/NAME"; ScheduledTime the tick it stands for
	// (the start, for a manual run).
	Trigger       string    `cel:"trigger"`
	ScheduledTime time.Time `cel:"scheduled_time"`
	// Status, Failed and Reason are set for finally processors only.
	Status string   `cel:"status"`
	Failed []string `cel:"failed"`
	Reason string   `cel:"reason"`
}

// finallyFields are the fields of run that only finally processors may use.
var finallyFields = map[string]bool{"status": true, "failed": true, "reason": true}

// Env compiles the expressions of one pipeline. It is safe for concurrent
// use once made.
type Env struct {
	cel    *cel.Env
	inputs map[string]string // name → type
}

// NewEnv makes the environment of a pipeline whose inputs have these types
// (name → one of the Type constants).
func NewEnv(inputs map[string]string) (*Env, error) {
	opts := []cel.EnvOption{
		ext.Strings(),
		ext.NativeTypes(ext.ParseStructTags(true), reflect.TypeFor[Processor](), reflect.TypeFor[Run]()),
		cel.Variable("processors", cel.MapType(cel.StringType, cel.ObjectType("expr.Processor"))),
		cel.Variable("run", cel.ObjectType("expr.Run")),
		cel.Variable("item", cel.DynType),
		cel.Variable("index", cel.IntType),
		cel.Variable("key", cel.StringType),
		cel.Function("json", cel.Overload("json_string", []*cel.Type{cel.StringType}, cel.DynType,
			cel.UnaryBinding(jsonDecode))),
	}
	for _, name := range sorted(mapsKeys(inputs)) {
		if !identRE.MatchString(name) {
			continue // checked by walk, with a message
		}
		opts = append(opts, cel.Variable("inputs."+name, celType(inputs[name])))
	}
	e, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("expression environment: %w", err)
	}
	return &Env{cel: e, inputs: inputs}, nil
}

func mapsKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func celType(t string) *cel.Type {
	switch t {
	case TypeInt:
		return cel.IntType
	case TypeNumber:
		return cel.DoubleType
	case TypeBool:
		return cel.BoolType
	case TypeJSON:
		return cel.DynType
	case TypeFile:
		return cel.MapType(cel.StringType, cel.DynType)
	}
	return cel.StringType
}

// Scope says what one expression may name, besides the pipeline's inputs.
type Scope struct {
	// Processors are every processor of the pipeline, for messages.
	Processors []string
	// Upstream holds the processors the expression's processor depends on,
	// through inputs: or after:, directly or not: the only ones it may name.
	Upstream func(name string) bool
	// Processor names the processor the expression belongs to ("" for the
	// pipeline's own `when`), for messages.
	Processor string
	// Finally allows run.status, run.failed and run.reason.
	Finally bool
	// NoProcessors forbids naming processors (the pipeline's `when`).
	NoProcessors bool
	// ForEach allows item, and index (Map false) or key (Map true unknown:
	// both), which only a for_each processor's instances have.
	ForEach bool
}

// Program is a compiled, type-checked expression.
type Program struct {
	// Source is the expression's text.
	Source string
	// Refs are the processors it names, sorted, without repeats.
	Refs []string
	// Outputs are the outputs it names, as "PROCESSOR.OUTPUT", sorted.
	Outputs []string
	// Bool says the expression's type is bool (not dyn).
	Bool bool
	prg  cel.Program
}

// Compile parses and type-checks src in scope. wantBool requires a bool (or
// a dynamic value, checked when evaluated). The error is one line, without
// a position.
func (e *Env) Compile(src string, scope *Scope, wantBool bool) (*Program, error) {
	parsed, iss := e.cel.Parse(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("syntax error in %q: %s", src, issueText(iss))
	}
	p := &Program{Source: src}
	if err := e.walk(parsed, scope, p); err != nil {
		return nil, err
	}
	checked, iss := e.cel.Check(parsed)
	if iss.Err() != nil {
		return nil, fmt.Errorf("in %q: %s", src, issueText(iss))
	}
	out := checked.OutputType()
	switch {
	case out.IsExactType(cel.BoolType):
		p.Bool = true
	case wantBool && !out.IsExactType(cel.DynType):
		example := src + ` == "yes"`
		if out.IsExactType(cel.IntType) || out.IsExactType(cel.DoubleType) {
			example = src + " > 0"
		} else if !out.IsExactType(cel.StringType) {
			example = "size(" + src + ") > 0"
		}
		return nil, fmt.Errorf("%q is %s, not a bool: a condition must be true or false (compare it, e.g. %s)", src, typeName(out), example)
	}
	prg, err := e.cel.Program(checked, cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("in %q: %w", src, err)
	}
	p.prg = prg
	return p, nil
}

func typeName(t *cel.Type) string {
	switch {
	case t.IsExactType(cel.StringType):
		return "a string"
	case t.IsExactType(cel.IntType):
		return "an int"
	case t.IsExactType(cel.DoubleType):
		return "a number"
	}
	return "of type " + t.String()
}

// issueText returns cel-go's issues as one line: each message with its
// column in the expression.
func issueText(iss *cel.Issues) string {
	var msgs []string
	for _, e := range iss.Errors() {
		msg := e.Message
		if m := undeclaredRE.FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("unknown name %q (in scope: inputs.NAME, processors.NAME, run, json(), and the strings extension)", m[1])
		}
		msgs = append(msgs, fmt.Sprintf("column %d: %s", e.Location.Column()+1, msg))
	}
	return strings.Join(msgs, "; ")
}

var undeclaredRE = regexp.MustCompile(`^undeclared reference to '([^']*)'`)

// walk checks the names an expression uses and records the processors and
// outputs it names.
func (e *Env) walk(a *cel.Ast, scope *Scope, p *Program) error {
	var errs []error
	refs := map[string]bool{}
	outs := map[string]bool{}
	processor := func(name string) {
		switch {
		case scope.NoProcessors:
			errs = append(errs, fmt.Errorf("%q names processor %q: the pipeline's when may use inputs only", p.Source, name))
		case !slices.Contains(scope.Processors, name):
			errs = append(errs, fmt.Errorf("%q names processor %q, which does not exist (processors: %s)", p.Source, name, strings.Join(sorted(scope.Processors), ", ")))
		case name == scope.Processor:
			errs = append(errs, fmt.Errorf("%q names processor %q itself: an expression sees upstream processors only", p.Source, name))
		case scope.Upstream == nil || !scope.Upstream(name):
			errs = append(errs, fmt.Errorf("%q names processor %q, which is not upstream of %s: add `after: [%s]` to %s", p.Source, name, scope.Processor, name, scope.Processor))
		default:
			refs[name] = true
		}
	}
	// root returns the identifier and the first field or constant index of
	// e, when e is IDENT.FIELD or IDENT["FIELD"].
	root := func(x ast.Expr) (string, string, bool) {
		switch x.Kind() {
		case ast.SelectKind:
			s := x.AsSelect()
			if s.Operand().Kind() == ast.IdentKind {
				return s.Operand().AsIdent(), s.FieldName(), true
			}
		case ast.CallKind:
			c := x.AsCall()
			if c.FunctionName() == "_[_]" && len(c.Args()) == 2 && c.Args()[0].Kind() == ast.IdentKind && c.Args()[1].Kind() == ast.LiteralKind {
				if s, ok := c.Args()[1].AsLiteral().(types.String); ok {
					return c.Args()[0].AsIdent(), string(s), true
				}
			}
		}
		return "", "", false
	}
	// Comprehension variables (list.map(item, ...)) are the user's own.
	bound := map[string]bool{}
	ast.PreOrderVisit(a.NativeRep().Expr(), ast.NewExprVisitor(func(x ast.Expr) {
		if x.Kind() == ast.ComprehensionKind {
			c := x.AsComprehension()
			bound[c.IterVar()], bound[c.IterVar2()], bound[c.AccuVar()] = true, true, true
		}
	}))
	ast.PreOrderVisit(a.NativeRep().Expr(), ast.NewExprVisitor(func(x ast.Expr) {
		id, field, ok := root(x)
		if !ok {
			if x.Kind() == ast.IdentKind {
				switch name := x.AsIdent(); {
				case name == "files":
					errs = append(errs, fmt.Errorf("%q uses files: write ${{ files.NAME }} alone, as the whole expression", p.Source))
				case (name == "item" || name == "index" || name == "key") && !scope.ForEach && !bound[name]:
					errs = append(errs, fmt.Errorf("%q uses %s, which only the instances of a processor with for_each have", p.Source, name))
				}
			}
			return
		}
		switch id {
		case "inputs":
			if _, ok := e.inputs[field]; !ok {
				errs = append(errs, fmt.Errorf("%q names input %q, which is not declared (%s)", p.Source, field, declared(e.inputs)))
			} else if !identRE.MatchString(field) {
				errs = append(errs, fmt.Errorf("%q: input %q cannot be named in an expression; rename it with \"_\" instead of \"-\"", p.Source, field))
			}
		case "processors":
			processor(field)
		case "run":
			if finallyFields[field] && !scope.Finally {
				errs = append(errs, fmt.Errorf("%q uses run.%s, which only finally processors see", p.Source, field))
			}
		}
	}))
	// processors.NAME.outputs.OUT: the outputs whose text is needed.
	ast.PreOrderVisit(a.NativeRep().Expr(), ast.NewExprVisitor(func(x ast.Expr) {
		if x.Kind() != ast.SelectKind {
			return
		}
		out := x.AsSelect()
		if out.Operand().Kind() != ast.SelectKind || out.Operand().AsSelect().FieldName() != "outputs" {
			return
		}
		if id, name, ok := root(out.Operand().AsSelect().Operand()); ok && id == "processors" {
			outs[name+"."+out.FieldName()] = true
		}
	}))
	if len(errs) > 0 {
		return errs[0]
	}
	p.Refs = sorted(mapsKeys(refs))
	p.Outputs = sorted(mapsKeys(outs))
	return nil
}

func declared(inputs map[string]string) string {
	if len(inputs) == 0 {
		return "no inputs are declared"
	}
	return "declared inputs: " + strings.Join(sorted(mapsKeys(inputs)), ", ")
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// Vars are the values an evaluation sees.
type Vars struct {
	// Inputs are the run's inputs by name, as Input returns them.
	Inputs map[string]any
	// Processors are the upstream processors by name.
	Processors map[string]*Processor
	Run        *Run
	// Instance holds item, index and key of a for_each instance; nil else.
	Instance *Instance
}

// Instance is what a for_each instance's expressions see.
type Instance struct {
	Item  any
	Index int64  // element order, also of a map's keys
	Key   string // a map's key; "" for a list
}

// ErrCost is wrapped by evaluation errors when the cost limit was reached.
var ErrCost = errors.New("expression exceeded its cost limit")

// Eval evaluates the program.
func (p *Program) Eval(v *Vars) (ref.Val, error) {
	if v == nil {
		v = &Vars{}
	}
	act := make(map[string]any, len(v.Inputs)+2)
	for name, val := range v.Inputs {
		act["inputs."+name] = val
	}
	procs := make(map[string]Processor, len(v.Processors))
	for name, pr := range v.Processors {
		procs[name] = *pr
	}
	act["processors"] = procs
	run := Run{}
	if v.Run != nil {
		run = *v.Run
	}
	act["run"] = run
	if in := v.Instance; in != nil {
		act["item"], act["index"], act["key"] = in.Item, in.Index, in.Key
	}
	out, _, err := p.prg.Eval(act)
	if err != nil {
		if strings.Contains(err.Error(), "cost limit") {
			return nil, fmt.Errorf("%q: %w (%d)", p.Source, ErrCost, CostLimit)
		}
		return nil, fmt.Errorf("%q: %w", p.Source, err)
	}
	if types.IsError(out) {
		return nil, fmt.Errorf("%q: %v", p.Source, out)
	}
	return out, nil
}

// EvalBool evaluates a condition.
func (p *Program) EvalBool(v *Vars) (bool, error) {
	out, err := p.Eval(v)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%q is %s, not a bool", p.Source, out.Type().TypeName())
	}
	return bool(b), nil
}

// EvalText evaluates the program and renders its value as text.
func (p *Program) EvalText(v *Vars) (string, error) {
	out, err := p.Eval(v)
	if err != nil {
		return "", err
	}
	s, err := Text(out)
	if err != nil {
		return "", fmt.Errorf("%q: %w", p.Source, err)
	}
	return s, nil
}

// EvalList evaluates a for_each: a list gives its elements in order; a map
// gives its entries ordered by key (byte order), each with its key.
func (p *Program) EvalList(v *Vars) (items []any, keys []string, err error) {
	out, err := p.Eval(v)
	if err != nil {
		return nil, nil, err
	}
	n, err := native(out)
	if err != nil {
		return nil, nil, fmt.Errorf("%q: %w", p.Source, err)
	}
	switch x := n.(type) {
	case []any:
		return x, nil, nil
	case map[string]any:
		keys = sorted(mapsKeys(x))
		items = make([]any, len(keys))
		for i, k := range keys {
			items[i] = x[k]
		}
		return items, keys, nil
	}
	return nil, nil, fmt.Errorf("%q is %s, not a list or a map", p.Source, out.Type().TypeName())
}

// EvalNative evaluates the program and returns its value as Go JSON-like
// data (string, int64, float64, bool, nil, []any, map[string]any): for a
// typed field whose whole value is one expression.
func (p *Program) EvalNative(v *Vars) (any, error) {
	out, err := p.Eval(v)
	if err != nil {
		return nil, err
	}
	n, err := native(out)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", p.Source, err)
	}
	return n, nil
}
