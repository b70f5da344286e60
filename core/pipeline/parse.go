package pipeline

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	yamlparser "github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
	"gonum.org/v1/gonum/graph/simple"
)

var (
	pipelineNameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	identRE         = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)              // processor and input names
	bindingNameRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`) // processor input names, outputs
	processorTypeRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
	executorNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// Keys of the mappings of a pipeline file.
var (
	topKeys       = []string{"executor", "inputs", "max_parallel", "name", "processors", "retries"}
	inputKeys     = []string{"default", "doc", "type"}
	processorKeys = []string{"after", "executor", "inputs", "on_error", "retries", "timeout", "uses", "with"}
)

// Parse reads the pipeline file called file (the name is used in positions)
// whose content is src. It checks the YAML syntax, the keys, the types of
// fields and the uniqueness of names, and builds the processors as nodes of
// Pipeline.Graph, without edges: Validate resolves references.
//
// On any problem Parse returns a nil Pipeline and an ErrorList holding every
// problem found.
func Parse(file string, src []byte) (*Pipeline, error) {
	d := &decoder{file: file}
	p := d.parse(src)
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	p.File = file
	p.Source = src
	return p, nil
}

// decoder turns the YAML AST of a file into a Pipeline, collecting errors.
type decoder struct {
	file    string
	errs    ErrorList
	anchors map[string]ast.Node
}

func (d *decoder) errorf(pos Position, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) tokenPos(tk *token.Token) Position {
	if tk == nil || tk.Position == nil {
		return Position{File: d.file, Line: 1, Col: 1}
	}
	return Position{File: d.file, Line: tk.Position.Line, Col: tk.Position.Column}
}

// pos returns the position of node n: its first key for a block mapping,
// whose own token is the first ":".
func (d *decoder) pos(n ast.Node) Position {
	if m, ok := n.(*ast.MappingNode); ok && !m.IsFlowStyle && len(m.Values) > 0 {
		return d.pos(m.Values[0].Key)
	}
	if n == nil {
		return d.tokenPos(nil)
	}
	return d.tokenPos(n.GetToken())
}

func (d *decoder) parse(src []byte) *Pipeline {
	f, err := yamlparser.ParseBytes(src, 0, yamlparser.AllowDuplicateMapKey())
	if err != nil {
		d.syntaxError(err)
		return nil
	}
	var body ast.Node
	for i, doc := range f.Docs {
		if doc.Body == nil {
			continue
		}
		if body != nil {
			d.errorf(d.pos(f.Docs[i].Body), "a pipeline file holds one YAML document; found a second one")
			return nil
		}
		body = doc.Body
	}
	if body == nil {
		d.errorf(d.tokenPos(nil), "empty pipeline file: want a mapping with name and processors")
		return nil
	}
	d.collectAnchors(body)
	return d.pipeline(body)
}

// syntaxError records a YAML syntax error with its position.
func (d *decoder) syntaxError(err error) {
	var yerr yaml.Error
	if errors.As(err, &yerr) {
		d.errorf(d.tokenPos(yerr.GetToken()), "YAML syntax error: %s", escapeControl(yerr.GetMessage()))
		return
	}
	d.errorf(d.tokenPos(nil), "YAML syntax error: %v", err)
}

// escapeControl writes control characters, such as the tab the YAML
// lexer quotes in "found character '\t'", as Go escapes.
func escapeControl(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// collectAnchors records every anchor of the document, so that aliases can
// be resolved.
func (d *decoder) collectAnchors(n ast.Node) {
	d.anchors = map[string]ast.Node{}
	ast.Walk(anchorVisitor(d.anchors), n)
}

type anchorVisitor map[string]ast.Node

func (v anchorVisitor) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		v[a.Name.GetToken().Value] = a.Value
	}
	return v
}

// resolve returns the node that n stands for, through anchors and aliases.
// It returns nil, after recording an error, for an unknown alias.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for range 100 { // bounds alias chains; YAML forbids recursive aliases
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			name := ""
			if v.Value != nil {
				name = v.Value.GetToken().Value
			}
			target, ok := d.anchors[name]
			if !ok {
				d.errorf(d.pos(v), "unknown alias %q", "*"+name)
				return nil
			}
			n = target
		default:
			return n
		}
	}
	d.errorf(d.pos(n), "alias chain too long")
	return nil
}

// entry is one key and value of a mapping.
type entry struct {
	key    string
	keyPos Position
	val    ast.Node // resolved value
	valPos Position
}

// mapping returns the entries of the mapping n, in file order. A null value
// is an empty mapping. what names the mapping in errors ("processor
// \"words\""); kind names its keys ("key", "processor", "input").
func (d *decoder) mapping(n ast.Node, what, kind string) ([]entry, bool) {
	n = d.resolve(n)
	if n == nil {
		return nil, false
	}
	if _, ok := n.(*ast.NullNode); ok {
		return nil, true
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		d.errorf(d.pos(n), "%s must be a mapping, got %s", what, kindOf(n))
		return nil, false
	}
	entries := make([]entry, 0, len(m.Values))
	seen := map[string]Position{}
	ok = true
	for _, mv := range m.Values {
		key, keyPos, good := d.key(mv.Key)
		if !good {
			ok = false
			continue
		}
		if first, dup := seen[key]; dup {
			d.errorf(keyPos, "duplicate %s %q (first defined at line %d)", kind, key, first.Line)
			ok = false
			continue
		}
		seen[key] = keyPos
		val := d.resolve(mv.Value)
		if val == nil {
			ok = false
			continue
		}
		entries = append(entries, entry{key: key, keyPos: keyPos, val: val, valPos: d.valuePos(val, keyPos)})
	}
	return entries, ok
}

// valuePos returns the position of the value n of a key at keyPos: the key's
// for an implicit null ("key:" with nothing after it).
func (d *decoder) valuePos(n ast.Node, keyPos Position) Position {
	if null, ok := n.(*ast.NullNode); ok && null.Token != nil && null.Token.Type == token.ImplicitNullType {
		return keyPos
	}
	return d.pos(n)
}

// key returns the text of a mapping key.
func (d *decoder) key(k ast.MapKeyNode) (string, Position, bool) {
	var n ast.Node = k
	if mk, ok := n.(*ast.MappingKeyNode); ok {
		n = mk.Value
	}
	pos := d.pos(n)
	if k.IsMergeKey() {
		d.errorf(pos, "merge keys (<<) are not supported")
		return "", pos, false
	}
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, pos, true
	case ast.ScalarNode:
		if tk := v.GetToken(); tk != nil {
			return tk.Value, pos, true
		}
	}
	d.errorf(pos, "a key must be a string, got %s", kindOf(n))
	return "", pos, false
}

// unknownKey records an unknown key of a mapping, listing the valid ones.
func (d *decoder) unknownKey(e entry, where string, valid []string) {
	d.errorf(e.keyPos, "unknown key %q %s (valid keys: %s)", e.key, where, strings.Join(valid, ", "))
}

// str returns the string value of e.
func (d *decoder) str(e entry) (string, bool) {
	switch v := e.val.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	}
	d.errorf(e.valPos, "%s must be a string, got %s", e.key, kindOf(e.val))
	return "", false
}

// count returns the value of e, an integer ≥ 0.
func (d *decoder) count(e entry) (int, bool) {
	if v, ok := e.val.(*ast.IntegerNode); ok {
		switch i := v.Value.(type) {
		case int64:
			if i >= 0 && i <= math.MaxInt32 {
				return int(i), true
			}
		case uint64:
			if i <= math.MaxInt32 {
				return int(i), true
			}
		}
	}
	d.errorf(e.valPos, "%s must be an integer ≥ 0, got %s", e.key, describe(e.val))
	return 0, false
}

// scalarText returns the text of a scalar value, as written.
func (d *decoder) scalarText(e entry) (string, bool) {
	switch v := e.val.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return v.GetToken().Value, true
	}
	d.errorf(e.valPos, "%s must be a string, got %s", e.key, kindOf(e.val))
	return "", false
}

func (d *decoder) pipeline(body ast.Node) *Pipeline {
	top, ok := d.mapping(body, "a pipeline file", "key")
	if !ok {
		return nil
	}
	p := &Pipeline{Executor: DefaultExecutor}
	var (
		hasName    bool
		processors *entry
	)
	for _, e := range top {
		switch e.key {
		case "name":
			hasName = true
			if s, ok := d.str(e); ok {
				if !pipelineNameRE.MatchString(s) {
					d.errorf(e.valPos, "invalid pipeline name %q: use lower-case letters, digits, \".\", \"_\" and \"-\", starting with a letter or digit", s)
				}
				p.Name = s
			}
		case "executor":
			if s, ok := d.str(e); ok {
				if !executorNameRE.MatchString(s) {
					d.errorf(e.valPos, "invalid executor name %q", s)
				}
				p.Executor = s
			}
		case "max_parallel":
			p.MaxParallel, _ = d.count(e)
		case "retries":
			p.Retries, _ = d.count(e)
		case "inputs":
			p.Inputs = d.inputs(e)
		case "processors":
			processors = &e
		default:
			d.unknownKey(e, "in pipeline", topKeys)
		}
	}
	if !hasName {
		d.errorf(d.pos(body), "missing required key \"name\"")
	}
	if processors == nil {
		d.errorf(d.pos(body), "missing required key \"processors\"")
	} else {
		d.processors(p, *processors)
	}
	return p
}

func (d *decoder) inputs(inputs entry) []InputDecl {
	entries, _ := d.mapping(inputs.val, "inputs", "input")
	decls := make([]InputDecl, 0, len(entries))
	for _, e := range entries {
		decl := InputDecl{Name: e.key, Type: InputString, Pos: e.keyPos}
		if !identRE.MatchString(e.key) {
			d.errorf(e.keyPos, "invalid input name %q: use letters, digits, \"_\" and \"-\"", e.key)
		}
		fields, _ := d.mapping(e.val, fmt.Sprintf("input %q", e.key), "key")
		for _, f := range fields {
			switch f.key {
			case "type":
				if s, ok := d.str(f); ok {
					if s != InputString && s != InputFile {
						d.errorf(f.valPos, "unknown input type %q (valid types: %s, %s)", s, InputFile, InputString)
					}
					decl.Type = s
				}
			case "default":
				if s, ok := d.scalarText(f); ok {
					decl.Default = &s
				}
			case "doc":
				decl.Doc, _ = d.str(f)
			default:
				d.unknownKey(f, fmt.Sprintf("in input %q", e.key), inputKeys)
			}
		}
		decls = append(decls, decl)
	}
	return decls
}

func (d *decoder) processors(p *Pipeline, procs entry) {
	entries, _ := d.mapping(procs.val, "processors", "processor")
	if len(entries) == 0 {
		if _, isMap := procs.val.(*ast.MappingNode); isMap || isNull(procs.val) {
			d.errorf(procs.keyPos, "pipeline has no processors")
		}
	}
	p.byName = make(map[string]*ProcessorNode, len(entries))
	p.Graph = simple.NewDirectedGraph()
	for _, e := range entries {
		n := d.processor(p, e)
		n.id = int64(len(p.Processors))
		p.Processors = append(p.Processors, n)
		p.byName[n.Name] = n
		p.Graph.AddNode(n)
	}
}

func (d *decoder) processor(p *Pipeline, pe entry) *ProcessorNode {
	n := &ProcessorNode{Name: pe.key, Pos: pe.keyPos, Retries: p.Retries}
	switch {
	case pe.key == "inputs":
		d.errorf(pe.keyPos, "processor name \"inputs\" is reserved for references to pipeline inputs")
	case !identRE.MatchString(pe.key):
		d.errorf(pe.keyPos, "invalid processor name %q: use letters, digits, \"_\" and \"-\"", pe.key)
	}
	what := fmt.Sprintf("processor %q", pe.key)
	fields, ok := d.mapping(pe.val, what, "key")
	if !ok {
		return n
	}
	if isNull(pe.val) {
		d.errorf(pe.keyPos, "processor %q is empty: it needs at least uses", pe.key)
		return n
	}
	hasUses := false
	for _, e := range fields {
		switch e.key {
		case "uses":
			hasUses = true
			d.uses(n, e)
		case "with":
			pos := e.keyPos
			n.withPos = &pos
			n.With, n.WithPos = d.with(e)
		case "inputs":
			n.Inputs = d.bindings(e)
		case "after":
			d.after(n, e)
		case "retries":
			n.Retries, _ = d.count(e)
		case "timeout":
			n.Timeout = d.timeout(e)
		case "on_error":
			if s, ok := d.str(e); ok {
				switch s {
				case "fail":
					n.OnError = OnErrorFail
				case OnErrorWarn:
					n.OnError = OnErrorWarn
				default:
					d.errorf(e.valPos, "invalid on_error %q (valid values: fail, warn)", s)
				}
			}
		case "executor":
			if s, ok := d.str(e); ok {
				if !executorNameRE.MatchString(s) {
					d.errorf(e.valPos, "invalid executor name %q", s)
				}
				n.Executor = s
			}
		default:
			d.unknownKey(e, "in "+what, processorKeys)
		}
	}
	if !hasUses {
		d.errorf(pe.keyPos, "processor %q is missing required key \"uses\" (a processor type like std/exec)", pe.key)
	}
	return n
}

func (d *decoder) uses(n *ProcessorNode, e entry) {
	s, ok := d.str(e)
	if !ok {
		return
	}
	n.usesPos = e.valPos
	typ, version, hasVersion := strings.Cut(s, "@")
	n.Uses, n.UsesVersion = typ, version
	if !processorTypeRE.MatchString(typ) {
		d.errorf(e.valPos, "invalid processor type %q: want PACK/NAME, like std/exec", s)
	}
	if hasVersion && strings.TrimSpace(version) == "" {
		d.errorf(e.valPos, "empty version constraint in %q: want PACK/NAME@CONSTRAINT, like acme/resize@^1.2", s)
	}
}

func (d *decoder) with(e entry) (map[string]any, map[string]Position) {
	entries, _ := d.mapping(e.val, "with", "key")
	with := make(map[string]any, len(entries))
	pos := make(map[string]Position, len(entries))
	for _, f := range entries {
		if v, ok := d.value(f.val); ok {
			with[f.key] = v
			pos[f.key] = f.keyPos
		}
	}
	return with, pos
}

// value converts a resolved YAML node to a Go value.
func (d *decoder) value(n ast.Node) (any, bool) {
	switch v := n.(type) {
	case *ast.NullNode:
		return nil, true
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	case *ast.IntegerNode:
		return v.Value, true
	case *ast.FloatNode:
		return v.Value, true
	case *ast.InfinityNode:
		return v.Value, true
	case *ast.NanNode:
		return math.NaN(), true
	case *ast.BoolNode:
		return v.Value, true
	case *ast.TagNode:
		if v.Start != nil && v.Start.Value == "!!str" {
			if s, ok := v.Value.(ast.ScalarNode); ok {
				return s.GetToken().Value, true
			}
		}
		return d.value(d.resolve(v.Value))
	case *ast.SequenceNode:
		list := make([]any, 0, len(v.Values))
		ok := true
		for _, item := range v.Values {
			item = d.resolve(item)
			if item == nil {
				ok = false
				continue
			}
			x, good := d.value(item)
			ok = ok && good
			list = append(list, x)
		}
		return list, ok
	case *ast.MappingNode:
		entries, ok := d.mapping(v, "a mapping", "key")
		m := make(map[string]any, len(entries))
		for _, e := range entries {
			x, good := d.value(e.val)
			ok = ok && good
			m[e.key] = x
		}
		return m, ok
	case nil:
		return nil, false
	}
	d.errorf(d.pos(n), "unsupported YAML value %s", n.Type())
	return nil, false
}

func (d *decoder) bindings(e entry) []InputBinding {
	entries, _ := d.mapping(e.val, "inputs", "input")
	bindings := make([]InputBinding, 0, len(entries))
	for _, f := range entries {
		if !bindingNameRE.MatchString(f.key) {
			d.errorf(f.keyPos, "invalid input name %q: use letters, digits, \"_\", \".\" and \"-\"", f.key)
			continue
		}
		s, ok := d.str(f)
		if !ok {
			continue
		}
		ref, ok := parseRef(s)
		if !ok {
			d.errorf(f.valPos, "invalid reference %q (want inputs.NAME, PROCESSOR or PROCESSOR.OUTPUT)", s)
			continue
		}
		ref.Pos = f.valPos
		bindings = append(bindings, InputBinding{Name: f.key, From: ref})
	}
	slices.SortFunc(bindings, func(a, b InputBinding) int { return strings.Compare(a.Name, b.Name) })
	return bindings
}

// parseRef parses "inputs.NAME", "PROCESSOR" or "PROCESSOR.OUTPUT".
func parseRef(s string) (Ref, bool) {
	head, tail, dotted := strings.Cut(s, ".")
	if head == "inputs" {
		return Ref{Input: tail}, dotted && identRE.MatchString(tail)
	}
	if !identRE.MatchString(head) {
		return Ref{}, false
	}
	if !dotted {
		return Ref{Processor: head, Output: DefaultOutput}, true
	}
	return Ref{Processor: head, Output: tail}, bindingNameRE.MatchString(tail)
}

// after reads `after`: a list of processor names, or one name.
func (d *decoder) after(n *ProcessorNode, e entry) {
	var items []ast.Node
	switch v := e.val.(type) {
	case *ast.SequenceNode:
		items = v.Values
	case *ast.StringNode:
		items = []ast.Node{v}
	default:
		d.errorf(e.valPos, "after must be a list of processor names, got %s", kindOf(e.val))
		return
	}
	for _, item := range items {
		item = d.resolve(item)
		if item == nil {
			continue
		}
		s, ok := item.(*ast.StringNode)
		if !ok {
			d.errorf(d.pos(item), "after must be a list of processor names, got an item that is %s", kindOf(item))
			continue
		}
		n.After = append(n.After, s.Value)
		n.afterPos = append(n.afterPos, d.pos(item))
	}
}

func (d *decoder) timeout(e entry) time.Duration {
	if s, ok := e.val.(*ast.StringNode); ok {
		t, err := time.ParseDuration(s.Value)
		if err == nil && t > 0 {
			return t
		}
	}
	d.errorf(e.valPos, "timeout must be a positive duration like \"30s\" or \"5m\", got %s", describe(e.val))
	return 0
}

func isNull(n ast.Node) bool {
	_, ok := n.(*ast.NullNode)
	return ok
}

// kindOf names the kind of a YAML node for error messages.
func kindOf(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode:
		return "an integer"
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.NullNode:
		return "nothing"
	case nil:
		return "nothing"
	}
	return "a " + n.Type().String()
}

// describe names a YAML value for error messages: its text for a scalar,
// its kind otherwise.
func describe(n ast.Node) string {
	switch v := n.(type) {
	case *ast.StringNode:
		return fmt.Sprintf("%q", v.Value)
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return v.GetToken().Value
	}
	return kindOf(n)
}
