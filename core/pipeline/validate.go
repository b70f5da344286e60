package pipeline

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"gonum.org/v1/gonum/graph"
	"gonum.org/v1/gonum/graph/simple"
	"gonum.org/v1/gonum/graph/topo"
)

// Validate checks what Parse cannot check alone and builds the edges of
// p.Graph:
//
//   - each processor's type is installed (else the error lists the
//     installed types);
//   - each `with` field is one the type declares (else the error lists the
//     valid fields), has the declared type, and required fields are present;
//     a string that is only "${{ inputs.NAME }}" stands for any scalar type;
//   - each reference to a pipeline input, in `inputs` or in a
//     "${{ inputs.NAME }}" of `with`, names a declared input (else the error
//     lists them);
//   - each reference to a processor, in `inputs` or `after`, names one (else
//     the error lists them);
//   - there is no cycle. A cycle's error is positioned at its processor that
//     comes first in the file and prints the path following the edges, from
//     each processor to one that depends on it: "a -> b -> c -> a". It
//     matches ErrCycle. A processor that depends on itself is a cycle.
//
// Validate returns an ErrorList of all the problems found, or nil; then
// Order returns a topological order. A nil cat skips the checks of types and
// config. Validate can be called again, after changing p; it rebuilds the
// graph's edges.
func (p *Pipeline) Validate(cat Catalog) error {
	var errs ErrorList
	errorf := func(pos Position, format string, args ...any) {
		errs = append(errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
	}

	p.order = nil
	p.Graph = simple.NewDirectedGraph()
	p.byName = make(map[string]*ProcessorNode, len(p.Processors))
	for i, n := range p.Processors {
		n.id = int64(i)
		p.Graph.AddNode(n)
		p.byName[n.Name] = n
	}

	inputs := make(map[string]bool, len(p.Inputs))
	for _, in := range p.Inputs {
		inputs[in.Name] = true
	}
	// The lists of names for messages are built once: a file can have
	// many errors, each listing them.
	declared := sync.OnceValue(func() string {
		if len(p.Inputs) == 0 {
			return "no inputs are declared"
		}
		names := make([]string, len(p.Inputs))
		for i, in := range p.Inputs {
			names[i] = in.Name
		}
		return "declared inputs: " + nameList(names)
	})
	processors := sync.OnceValue(func() string {
		names := make([]string, 0, len(p.Processors))
		for _, n := range p.Processors {
			names = append(names, n.Name)
		}
		return "processors: " + nameList(names)
	})

	selfCycle := map[*ProcessorNode]bool{}
	dependOn := func(v *ProcessorNode, name string) bool {
		u, ok := p.byName[name]
		if !ok {
			return false
		}
		if u == v {
			selfCycle[v] = true
		} else {
			p.Graph.SetEdge(p.Graph.NewEdge(u, v))
		}
		return true
	}

	specs := make([]*TypeSpec, len(p.Processors))
	for i, n := range p.Processors {
		n.Handled = false
		if cat != nil && n.Child == nil { // a sub-pipeline's with is its inputs, checked by the Manager
			specs[i] = p.checkConfig(n, cat, errorf)
		}
		n.checkSecretFiles(specs[i], errorf)
		for _, b := range n.Inputs {
			switch {
			case b.From.Input != "":
				if !inputs[b.From.Input] {
					errorf(b.From.Pos, "unknown input %q in reference %q (%s)", b.From.Input, b.From.String(), declared())
				}
			case !dependOn(n, b.From.Processor):
				errorf(b.From.Pos, "unknown processor %q in reference %q (%s)", b.From.Processor, b.From.String(), processors())
			case !n.Finally && p.byName[b.From.Processor].Finally:
				errorf(b.From.Pos, "processor %s takes input from %s, a finally processor: finally processors run after all others, so only other finally processors may use them", n.Name, b.From.Processor)
			}
		}
		for i, name := range n.After {
			pos := n.Pos
			if i < len(n.afterPos) {
				pos = n.afterPos[i]
			}
			if !dependOn(n, name) {
				errorf(pos, "unknown processor %q in after (%s)", name, processors())
				continue
			}
			if u := p.byName[name]; u.Finally && !n.Finally {
				errorf(pos, "processor %s is after %s, a finally processor: finally processors run after all others, so only other finally processors may wait for them", n.Name, name)
			}
			if i < len(n.AfterOutcome) && (n.AfterOutcome[i] == OutcomeFailed || n.AfterOutcome[i] == OutcomeEnded) {
				p.byName[name].Handled = true
			}
		}
	}

	p.checkSchedules(errorf)
	p.checkTriggers(errorf)
	p.checkOutputRefs(specs, errorf)
	if bc, ok := cat.(BackendCatalog); ok {
		p.checkBackends(bc.Backends(), errorf)
		if sv, ok := cat.(SettingsValidator); ok && len(errs) == 0 {
			p.checkSettings(sv, errorf)
		}
	}

	for _, o := range p.Outputs {
		u, ok := p.byName[o.From.Processor]
		switch {
		case !ok:
			errorf(o.From.Pos, "output %s: unknown processor %q (%s)", o.Name, o.From.Processor, processors())
		case u.Finally:
			errorf(o.From.Pos, "output %s: %s is a finally processor; a pipeline returns what its main processors make", o.Name, o.From.Processor)
		}
	}
	for _, n := range p.Processors {
		if selfCycle[n] {
			errs = append(errs, cycleError(n, []*ProcessorNode{n, n}))
		}
	}
	sorted, err := topo.SortStabilized(p.Graph, nil)
	var unorderable topo.Unorderable
	switch {
	case errors.As(err, &unorderable):
		for _, component := range unorderable {
			path := p.cyclePath(component)
			errs = append(errs, cycleError(path[0], path))
		}
	case err != nil:
		return err // not expected: topo returns only Unorderable
	}

	if len(errs) == 0 {
		p.compileExprs(specs, errorf)
		p.checkExprOutputs(specs, errorf)
	}
	if err := errs.err(); err != nil {
		return err
	}
	p.order = make([]*ProcessorNode, len(sorted))
	for i, n := range sorted {
		p.order[i] = n.(*ProcessorNode)
	}
	for _, n := range p.Processors {
		n.encodeStatic()
	}
	p.edges = p.edges[:0]
	for _, n := range p.order { // in order, so the list is the same every time
		succ := p.Graph.From(n.ID())
		first := len(p.edges)
		for succ.Next() {
			p.edges = append(p.edges, [2]int{int(n.ID()), int(succ.Node().ID())})
		}
		slices.SortFunc(p.edges[first:], func(a, b [2]int) int { return a[1] - b[1] })
	}
	return nil
}

// maxListed bounds the names a message lists.
const maxListed = 50

// nameList returns names sorted and joined with ", ", listing only the first
// maxListed, and how many more there are.
func nameList(names []string) string {
	slices.Sort(names)
	if len(names) > maxListed {
		return fmt.Sprintf("%s and %d more", strings.Join(names[:maxListed], ", "), len(names)-maxListed)
	}
	return strings.Join(names, ", ")
}

// cycleShown is how many processors of a long cycle its error names at each
// end: a cycle through thousands of processors is still one readable line.
const cycleShown = 5

// checkOutputRefs refuses a reference to an output that the upstream's type
// declares it does not make (`report.reprt`), in inputs: and in the
// pipeline's outputs:. specs are the processors' types (nil: unknown).
func (p *Pipeline) checkOutputRefs(specs []*TypeSpec, errorf func(Position, string, ...any)) {
	check := func(r Ref) {
		u, ok := p.byName[r.Processor]
		if r.Processor == "" || !ok || int(u.id) >= len(specs) {
			return
		}
		names, declared := outputsOf(u, specs[u.id])
		if declared && !slices.Contains(names, r.Output) {
			errorf(r.Pos, "%s (%s) has no output %q (its outputs: %s)", u.Name, u.Uses, r.Output, strings.Join(names, ", "))
		}
	}
	for _, n := range p.Processors {
		for _, b := range n.Inputs {
			check(b.From)
		}
	}
	for _, o := range p.Outputs {
		check(o.From)
	}
}

// checkExprOutputs refuses processors.NAME.outputs.OUT in a processor's
// expressions (with, when, for_each) when NAME's type declares its outputs
// and OUT is not one of them.
func (p *Pipeline) checkExprOutputs(specs []*TypeSpec, errorf func(Position, string, ...any)) {
	check := func(n *ProcessorNode, pos Position, where string, outs []string) {
		for _, o := range outs {
			name, out, _ := strings.Cut(o, ".")
			u, ok := p.byName[name]
			if !ok || int(u.id) >= len(specs) {
				continue
			}
			if names, declared := outputsOf(u, specs[u.id]); declared && !slices.Contains(names, out) {
				errorf(pos, "%s of %s: processors.%s.outputs.%s: %s (%s) has no output %q (its outputs: %s)",
					where, n.Name, name, out, name, u.Uses, out, strings.Join(names, ", "))
			}
		}
	}
	for _, n := range p.Processors {
		if t := n.Templates; t != nil {
			pos := n.Pos
			if n.withPos != nil {
				pos = *n.withPos
			}
			check(n, pos, "with", t.Outputs)
		}
		if w := n.When; w != nil && w.Prog != nil {
			check(n, w.Pos, "when", w.Prog.Outputs)
		}
		if fe := n.ForEach; fe != nil && fe.Expr != nil && fe.Expr.Prog != nil {
			check(n, fe.Pos, "for_each", fe.Expr.Prog.Outputs)
		}
	}
}

// outputsOf returns the outputs processor n makes, sorted, and whether its
// type declares them: its Outputs and the keys of its fields of type
// FieldOutputs. A field whose value is an expression makes them unknown.
func outputsOf(n *ProcessorNode, spec *TypeSpec) ([]string, bool) {
	if spec == nil {
		return nil, false
	}
	declared := spec.DeclaresOutputs
	names := slices.Clone(spec.Outputs)
	for _, f := range spec.Fields {
		if f.Type != FieldOutputs {
			continue
		}
		declared = true
		switch v := n.With[f.Name].(type) {
		case nil:
		case map[string]any:
			for k := range v {
				names = append(names, k)
			}
		default:
			return nil, false // an expression: known when the task runs
		}
	}
	slices.Sort(names)
	return slices.Compact(names), declared
}

// checkBackends refuses an executor backend named in the file that is not
// installed, at the position that names it (the pipeline's, defaults' or
// the processor's `executor:`). An executor the file does not name is the
// bundled "local".
func (p *Pipeline) checkBackends(installed []string, errorf func(Position, string, ...any)) {
	seen := map[Position]bool{}
	check := func(name string, pos Position) {
		if name == "" || pos.Line == 0 || seen[pos] || slices.Contains(installed, name) {
			return
		}
		seen[pos] = true
		have := "none is installed"
		if len(installed) > 0 {
			have = "installed: " + strings.Join(installed, ", ")
		}
		errorf(pos, "unknown executor backend %q (%s); install it with `wiz plugin install PATH`", name, have)
	}
	check(p.Executor, p.executorPos)
	for _, n := range p.Processors {
		check(n.Executor, n.executorPos)
	}
}

// checkSettings has each backend check the settings the file gives it, once
// per `executor:` (a defaults.executor shared by processors is checked once).
func (p *Pipeline) checkSettings(sv SettingsValidator, errorf func(Position, string, ...any)) {
	seen := map[Position]bool{}
	check := func(backend string, settings map[string]any, pos Position, keys map[string]Position) {
		if settings == nil || pos.Line == 0 || seen[pos] {
			return
		}
		seen[pos] = true
		literal := make(map[string]any, len(settings))
		for k, v := range settings {
			if !holdsExpr(v) {
				literal[k] = v
			}
		}
		ds, err := sv.ValidateSettings(backend, literal)
		if err != nil {
			errorf(pos, "executor backend %s cannot check its settings: %v", backend, err)
			return
		}
		for _, d := range ds {
			at, where := pos, "executor "+backend
			if len(d.Path) > 0 {
				if kp, ok := keys[d.Path[0]]; ok {
					at = kp
				}
				where = fmt.Sprintf("setting %q of executor %s", strings.Join(d.Path, "."), backend)
			}
			errorf(at, "%s: %s", where, d.Message)
		}
	}
	check(p.Executor, p.ExecutorConfig, p.executorPos, p.executorKeys)
	for _, n := range p.Processors {
		check(n.Executor, n.ExecutorConfig, n.executorPos, n.executorKeys)
	}
}

func cycleError(at *ProcessorNode, path []*ProcessorNode) *Error {
	names := make([]string, len(path))
	for i, n := range path {
		names[i] = n.Name
	}
	text := strings.Join(names, " -> ")
	if len(names) > 2*cycleShown+1 {
		text = fmt.Sprintf("%s -> ... (%d more) -> %s (a cycle of %d processors)",
			strings.Join(names[:cycleShown], " -> "), len(names)-2*cycleShown, strings.Join(names[len(names)-cycleShown:], " -> "), len(names)-1)
	}
	return &Error{
		Pos: at.Pos,
		Msg: ErrCycle.Error() + ": " + text,
		Err: ErrCycle,
	}
}

// cyclePath returns a shortest cycle through the first processor (by file
// order) of a strongly connected component, starting and ending with it.
func (p *Pipeline) cyclePath(component []graph.Node) []*ProcessorNode {
	in := make(map[int64]bool, len(component))
	start := component[0].ID()
	for _, n := range component {
		in[n.ID()] = true
		start = min(start, n.ID())
	}
	// Breadth-first from start, successors in file order, until an edge
	// leads back to start.
	parent := map[int64]int64{start: -1}
	queue := []int64{start}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, v := range successors(p.Graph, u) {
			if v == start {
				var path []*ProcessorNode
				for x := u; x != -1; x = parent[x] {
					path = append(path, p.Processors[x])
				}
				slices.Reverse(path)
				return append(path, p.Processors[start])
			}
			if _, seen := parent[v]; in[v] && !seen {
				parent[v] = u
				queue = append(queue, v)
			}
		}
	}
	// Not reached: a strongly connected component has a cycle through each
	// of its nodes.
	return []*ProcessorNode{p.Processors[start], p.Processors[start]}
}

// successors returns the ids of the nodes u has edges to, sorted.
func successors(g graph.Directed, u int64) []int64 {
	var ids []int64
	it := g.From(u)
	for it.Next() {
		ids = append(ids, it.Node().ID())
	}
	slices.Sort(ids)
	return ids
}

// checkConfig checks n's `with` against the spec of its type, which it
// returns (nil when the type is unknown).
func (p *Pipeline) checkConfig(n *ProcessorNode, cat Catalog, errorf func(Position, string, ...any)) *TypeSpec {
	if n.Uses == "" {
		return nil
	}
	uses := n.Uses
	if n.UsesVersion != "" {
		uses += "@" + n.UsesVersion
	}
	spec, ok := cat.Lookup(uses)
	if !ok {
		if _, exists := cat.Lookup(n.Uses); exists && n.UsesVersion != "" {
			errorf(n.usesPos, "no installed version of %s matches %s; `wiz plugin list` shows the installed versions", n.Uses, n.UsesVersion)
			return nil
		}
		types := cat.Types()
		installed := "no processor types are installed"
		if len(types) > 0 {
			installed = "installed: " + strings.Join(types, ", ")
		}
		pack, _, _ := strings.Cut(n.Uses, "/")
		if !slices.ContainsFunc(types, func(t string) bool { return strings.HasPrefix(t, pack+"/") }) {
			errorf(n.usesPos, "unknown processor type %q: no pack named %q is installed; install it with `wiz plugin install PATH` (%s)", n.Uses, pack, installed)
			return nil
		}
		errorf(n.usesPos, "unknown processor type %q (%s)", n.Uses, installed)
		return nil
	}
	fields := make(map[string]FieldSpec, len(spec.Fields))
	names := make([]string, 0, len(spec.Fields))
	for _, f := range spec.Fields {
		fields[f.Name] = f
		names = append(names, f.Name)
	}
	slices.Sort(names)
	for name, pos := range sortedPositions(n.WithPos) {
		f, ok := fields[name]
		if !ok {
			valid := n.Uses + " has no config fields"
			if len(names) > 0 {
				valid = "valid fields: " + strings.Join(names, ", ")
			}
			errorf(pos, "unknown field %q for %s (%s)", name, n.Uses, valid)
			continue
		}
		if want, ok := checkType(f.Type, n.With[name]); !ok {
			errorf(pos, "field %q of %s must be %s, got %s", name, n.Uses, want, describeGot(f.Type, n.With[name]))
		}
	}
	for _, f := range spec.Fields {
		if _, ok := n.With[f.Name]; f.Required && !ok {
			pos := n.Pos
			if n.withPos != nil {
				pos = *n.withPos
			}
			errorf(pos, "missing required field %q for %s", f.Name, n.Uses)
		}
	}
	checkDeclaredInputs(n, spec, errorf)
	if cv, ok := cat.(ConfigValidator); ok && spec.Validates {
		p.packValidates(n, uses, cv, errorf)
	}
	return spec
}

// checkDeclaredInputs checks a processor's input bindings against the
// inputs its type declares, when it declares them.
func checkDeclaredInputs(n *ProcessorNode, spec *TypeSpec, errorf func(Position, string, ...any)) {
	if !spec.DeclaresInputs {
		return
	}
	declared := make([]string, len(spec.Inputs))
	for i, in := range spec.Inputs {
		declared[i] = in.Name
	}
	have := "it declares no inputs"
	if len(declared) > 0 {
		have = "its inputs: " + strings.Join(declared, ", ")
	}
	bound := map[string]bool{}
	for _, b := range n.Inputs {
		bound[b.Name] = true
		if !slices.Contains(declared, b.Name) {
			errorf(b.From.Pos, "%s has no input %q (%s)", n.Uses, b.Name, have)
		}
	}
	for _, in := range spec.Inputs {
		if in.Required && !bound[in.Name] {
			errorf(n.Pos, "processor %s does not bind the input %q that %s requires: add `inputs: {%s: PROCESSOR}`", n.Name, in.Name, n.Uses, in.Name)
		}
	}
}

// packValidates has the type's pack check the processor's config: its
// literal fields (those holding ${{ }} are known only when the task runs).
// Each diagnostic is reported at the field it names.
func (p *Pipeline) packValidates(n *ProcessorNode, uses string, cv ConfigValidator, errorf func(Position, string, ...any)) {
	cfg := make(map[string]any, len(n.With))
	for k, v := range n.With {
		if !holdsExpr(v) {
			cfg[k] = v
		}
	}
	ds, err := cv.ValidateConfig(uses, cfg)
	if err != nil {
		errorf(n.usesPos, "%s cannot check its config: %v", n.Uses, err)
		return
	}
	for _, d := range ds {
		pos, where := n.Pos, "config of "+n.Uses
		if n.withPos != nil {
			pos = *n.withPos
		}
		if len(d.Path) > 0 {
			if fp, ok := n.WithPos[d.Path[0]]; ok {
				pos = fp
			}
			where = fmt.Sprintf("field %q of %s", strings.Join(d.Path, "."), n.Uses)
		}
		errorf(pos, "%s: %s", where, d.Message)
	}
}

// holdsExpr reports whether a `with` value holds a ${{ }} anywhere.
func holdsExpr(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, "${{")
	case []any:
		return slices.ContainsFunc(x, holdsExpr)
	case map[string]any:
		for _, e := range x {
			if holdsExpr(e) {
				return true
			}
		}
	}
	return false
}

// checkType reports whether v has the field type typ; if not, it returns the
// wanted type as a phrase for messages.
func checkType(typ string, v any) (string, bool) {
	if s, ok := v.(string); ok && wholeExpr(s) {
		return "", true // the expression's value has the field's type, or the pack says so
	}
	switch typ {
	case "string", FieldScript, FieldCode:
		_, ok := v.(string)
		return "a string", ok
	case "int":
		switch v.(type) {
		case int64, uint64:
			return "an integer", true
		}
		return "an integer", false
	case "number":
		switch v.(type) {
		case int64, uint64, float64:
			return "a number", true
		}
		return "a number", false
	case "bool":
		_, ok := v.(bool)
		return "a boolean", ok
	case "list":
		_, ok := v.([]any)
		return "a list", ok
	case "list of string", "list of int", "list of number", "list of bool":
		elem := typ[len("list of "):]
		want := "a list of " + elem + "s"
		if elem == "bool" {
			want = "a list of booleans"
		}
		items, ok := v.([]any)
		if !ok {
			return want, false
		}
		for _, it := range items {
			if _, ok := checkType(elem, it); !ok {
				return want, false
			}
		}
		return want, true
	case "map", FieldOutputs:
		_, ok := v.(map[string]any)
		return "a map", ok
	case "duration":
		s, ok := v.(string)
		if ok {
			_, err := time.ParseDuration(s)
			ok = err == nil
		}
		return `a duration like "30s"`, ok
	}
	return "", true // "any", or a type this version does not know
}

// describeGot names a value that is not of type typ: for a list of one type,
// its first wrong item, which is usually the mistake (an unquoted true or 1
// among strings).
func describeGot(typ string, v any) string {
	elem, typed := strings.CutPrefix(typ, "list of ")
	items, isList := v.([]any)
	if !typed || !isList {
		return describeValue(v)
	}
	for i, it := range items {
		if _, ok := checkType(elem, it); !ok {
			hint := ""
			if elem == "string" {
				hint = " (quote it to make it a string)"
			}
			return fmt.Sprintf("%s as item %d%s", describeValue(it), i+1, hint)
		}
	}
	return describeValue(v)
}

// describeValue names a decoded value for error messages.
func describeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("the string %q", x)
	case int64, uint64:
		return fmt.Sprintf("the integer %d", x)
	case float64:
		return fmt.Sprintf("the number %v", x)
	case bool:
		return fmt.Sprintf("the boolean %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("%T", v)
}

// sortedPositions yields the entries of m in the order of their positions.
func sortedPositions(m map[string]Position) iter.Seq2[string, Position] {
	return func(yield func(string, Position) bool) {
		names := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return m[a].compare(m[b]) })
		for _, name := range names {
			if !yield(name, m[name]) {
				return
			}
		}
	}
}
