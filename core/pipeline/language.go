package pipeline

import (
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wiz-run/wiz/core/expr"
	"go.yaml.in/yaml/v3"
)

// defaultsKeys are the keys of `defaults:`.
var defaultsKeys = []string{"cache", "env", "executor", "on_error", "resources", "retry", "timeout"}

// retryKeys are the keys of `retry:`.
var retryKeys = []string{"backoff", "exit_codes", "factor", "jitter", "limit", "max_backoff", "max_duration"}

// processorFields records which defaultable fields a processor sets itself.
type processorFields struct {
	retry, timeout, onError, executor, resources, cache bool
}

// processorDefaults are what `defaults:` (and the top-level shorthands
// retries: and executor:) give every processor that does not set its own.
type processorDefaults struct {
	retry          Retry
	timeout        time.Duration
	onError        string
	executor       string
	executorConfig map[string]any
	executorPos    Position
	executorKeys   map[string]Position
	resources      map[string]any
	cache          *Cache
}

// apply fills the fields n does not set.
func (def *processorDefaults) apply(n *ProcessorNode, set processorFields) {
	if !set.retry {
		n.Retry = def.retry
	}
	if !set.timeout {
		n.Timeout = def.timeout
	}
	if !set.onError {
		n.OnError = def.onError
	}
	if !set.executor && (def.executor != DefaultExecutor || def.executorConfig != nil) {
		// The pipeline's own executor is the fallback already (executorOf);
		// only a defaults.executor needs copying.
		n.Executor, n.ExecutorConfig, n.executorPos, n.executorKeys = def.executor, def.executorConfig, def.executorPos, def.executorKeys
	}
	if !set.resources {
		n.Resources = def.resources
	}
	if !set.cache {
		n.Cache = def.cache
	}
}

// defaults reads `defaults:`. executor and retries are the top-level
// shorthands, when the file has them: setting both forms is an error.
func (d *decoder) defaults(p *Pipeline, def *processorDefaults, e entry, executor, retries *entry) {
	entries, _ := d.mapping(e.val, "defaults", "key")
	for _, f := range entries {
		switch f.key {
		case "retry":
			if retries != nil {
				d.errorf(f.keyPos, "defaults.retry and the top-level retries both set (line %d): retries: N is short for defaults.retry.limit; keep one", retries.keyPos.Line)
			}
			def.retry = d.retry(f)
		case "timeout":
			def.timeout = d.timeout(f)
		case "on_error":
			def.onError = d.onError(f)
		case "executor":
			if executor != nil {
				d.errorf(f.keyPos, "defaults.executor and the top-level executor both set (line %d): executor: is short for defaults.executor; keep one", executor.keyPos.Line)
			}
			def.executor, def.executorConfig, def.executorKeys = d.executorAt(f)
			def.executorPos = f.valPos
		case "resources":
			def.resources = d.resources(f)
		case "cache":
			def.cache = d.cache(f)
		case "env":
			p.Env = mergeEnv(p.Env, d.env(f))
		default:
			d.unknownKey(f, "in defaults", defaultsKeys)
		}
	}
}

// retry reads `retry:`, a mapping of the Retry fields.
func (d *decoder) retry(e entry) Retry {
	r := DefaultRetry
	entries, _ := d.mapping(e.val, "retry", "key")
	for _, f := range entries {
		switch f.key {
		case "limit":
			r.Limit, _ = d.count(f)
		case "backoff":
			r.Backoff = d.duration(f, true)
		case "max_backoff":
			r.MaxBackoff = d.duration(f, false)
		case "max_duration":
			r.MaxDuration = d.duration(f, false)
		case "factor":
			if v, ok := d.number(f); ok && v >= 1 && v <= 100 {
				r.Factor = v
			} else if ok {
				d.errorf(f.valPos, "retry.factor must be a number from 1 to 100, got %v", v)
			}
		case "jitter":
			if v, ok := d.number(f); ok && v >= 0 && v <= 1 {
				r.Jitter = v
			} else if ok {
				d.errorf(f.valPos, "retry.jitter must be a fraction from 0 to 1, got %v", v)
			}
		case "exit_codes":
			if f.val.Kind != yaml.SequenceNode {
				d.errorf(f.valPos, "retry.exit_codes must be a list of exit codes like [75], got %s", kindOf(f.val))
				continue
			}
			for _, item := range f.val.Content {
				c, ok := d.count(entry{key: "an exit code", val: item, valPos: d.pos(item)})
				if ok && c > 255 {
					d.errorf(d.pos(item), "exit code %d is above 255", c)
				}
				r.ExitCodes = append(r.ExitCodes, c)
			}
		default:
			d.unknownKey(f, "in retry", retryKeys)
		}
	}
	return r
}

// duration reads a duration like "1s"; zero is allowed unless positive.
func (d *decoder) duration(e entry, positive bool) time.Duration {
	if isString(e.val) {
		t, err := time.ParseDuration(e.val.Value)
		if err == nil && (t > 0 || !positive && t == 0) {
			return t
		}
	}
	d.errorf(e.valPos, "%s must be a duration like \"1s\" or \"5m\", got %s", e.key, describe(e.val))
	return 0
}

// number reads a number.
func (d *decoder) number(e entry) (float64, bool) {
	if e.val.Kind == yaml.ScalarNode {
		switch _, v := scalar(e.val); x := v.(type) {
		case int64:
			return float64(x), true
		case uint64:
			return float64(x), true
		case float64:
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				return x, true
			}
		}
	}
	d.errorf(e.valPos, "%s must be a number, got %s", e.key, describe(e.val))
	return 0, false
}

// boolean reads true or false.
func (d *decoder) boolean(e entry) bool {
	if e.val.Kind == yaml.ScalarNode {
		if k, v := scalar(e.val); k == kindBool {
			return v.(bool)
		}
	}
	d.errorf(e.valPos, "%s must be true or false, got %s", e.key, describe(e.val))
	return false
}

// onError reads on_error: fail or warn.
func (d *decoder) onError(e entry) string {
	s, ok := d.str(e)
	if !ok {
		return OnErrorFail
	}
	switch s {
	case "fail":
		return OnErrorFail
	case OnErrorWarn:
		return OnErrorWarn
	}
	d.errorf(e.valPos, "invalid on_error %q (valid values: fail, warn)", s)
	return OnErrorFail
}

// when reads a condition: a CEL expression, bare or as one "${{ }}".
func (d *decoder) when(e entry) *Expr {
	var src string
	switch {
	case isString(e.val):
		src = strings.TrimSpace(e.val.Value)
		if parts, err := expr.ParseTemplate(src); err == nil && len(parts) == 1 && parts[0].IsExpr() && parts[0].Offset == 0 && strings.HasSuffix(src, "}}") {
			src = parts[0].Expr
		}
	case e.val.Kind == yaml.ScalarNode && !isNull(e.val):
		src = e.val.Value // true, false, a number: the checker says what it is
	}
	if src == "" {
		d.errorf(e.valPos, "%s must be an expression like inputs.deploy == \"yes\", got %s", e.key, describe(e.val))
		return nil
	}
	return &Expr{Src: src, Pos: e.valPos}
}

// outputs reads a pipeline's outputs: NAME: PROCESSOR.OUTPUT (or PROCESSOR
// for its output "out").
func (d *decoder) outputs(e entry) []OutputDecl {
	var out []OutputDecl
	for _, r := range d.namedRefs(e, "output", "PROCESSOR or PROCESSOR.OUTPUT", false) {
		out = append(out, OutputDecl{Name: r.name, From: r.ref, Pos: r.namePos})
	}
	return out
}

// cache reads cache: true, false, or {ttl: DURATION}.
func (d *decoder) cache(e entry) *Cache {
	if e.val.Kind == yaml.MappingNode {
		c := &Cache{}
		entries, _ := d.mapping(e.val, "cache", "key")
		for _, f := range entries {
			if f.key != "ttl" {
				d.unknownKey(f, "in cache", []string{"ttl"})
				continue
			}
			c.TTL = d.duration(f, true)
		}
		return c
	}
	if d.boolean(e) {
		return &Cache{}
	}
	return nil
}

// forEach reads for_each: an expression (bare or one ${{ }}) or a literal
// list.
func (d *decoder) forEach(e entry) *ForEach {
	fe := &ForEach{Pos: e.valPos}
	if e.val.Kind == yaml.SequenceNode {
		v, ok := d.value(e.val)
		if !ok {
			return nil
		}
		fe.List = v.([]any)
		if len(fe.List) > MaxInstances {
			d.errorf(e.valPos, "for_each has %d items, over the %d a processor may have", len(fe.List), MaxInstances)
		}
		return fe
	}
	x := d.when(entry{key: "for_each", keyPos: e.keyPos, val: e.val, valPos: e.valPos})
	if x == nil {
		return nil
	}
	fe.Expr = x
	return fe
}

// env reads an env mapping of names to strings.
func (d *decoder) env(e entry) map[string]string {
	entries, _ := d.mapping(e.val, e.key, "variable")
	out := make(map[string]string, len(entries))
	for _, f := range entries {
		if !envNameRE.MatchString(f.key) {
			d.errorf(f.keyPos, "invalid environment variable name %q: use letters, digits and \"_\", not starting with a digit", f.key)
			continue
		}
		if s, ok := d.scalarText(f); ok {
			out[f.key] = s
		}
	}
	return out
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// mergeEnv returns a with b's entries over it.
func mergeEnv(a, b map[string]string) map[string]string {
	if a == nil {
		return b
	}
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// inputConstraint reads default, enum, min, max and pattern of an input
// whose type is known.
func (d *decoder) inputConstraint(decl *InputDecl, f entry) {
	what := fmt.Sprintf("input %s: %s", decl.Name, f.key)
	switch f.key {
	case "default":
		if s, ok := d.defaultText(decl, f); ok {
			decl.Default = &s
		}
	case "enum":
		if decl.Type != InputString && decl.Type != InputInt && decl.Type != InputNumber {
			d.errorf(f.keyPos, "%s applies to string, int and number inputs, not %s", what, decl.Type)
			return
		}
		if f.val.Kind != yaml.SequenceNode || len(f.val.Content) == 0 {
			d.errorf(f.valPos, "%s must be a list of the allowed values", what)
			return
		}
		for _, item := range f.val.Content {
			t, ok := d.defaultText(decl, entry{key: "enum item", val: item, valPos: d.pos(item)})
			if ok {
				if _, err := expr.Input(decl.Type, t); err != nil {
					d.errorf(d.pos(item), "%s: %v", what, err)
					continue
				}
				decl.Enum = append(decl.Enum, t)
			}
		}
	case "min", "max":
		if decl.Type != InputInt && decl.Type != InputNumber {
			d.errorf(f.keyPos, "%s applies to int and number inputs, not %s", what, decl.Type)
			return
		}
		if v, ok := d.number(f); ok {
			if f.key == "min" {
				decl.Min = &v
			} else {
				decl.Max = &v
			}
		}
	case "pattern":
		if decl.Type != InputString {
			d.errorf(f.keyPos, "%s applies to string inputs, not %s", what, decl.Type)
			return
		}
		if s, ok := d.str(f); ok {
			re, err := regexp.Compile(s)
			if err != nil {
				d.errorf(f.valPos, "%s: invalid RE2 pattern: %v", what, err)
				return
			}
			decl.Pattern = re
		}
	}
}

// defaultText returns the text of an input's default (or enum item), which
// must already have the input's type: a quoted "5" is no int, an unquoted 5
// no string.
func (d *decoder) defaultText(decl *InputDecl, f entry) (string, bool) {
	if decl.Type == InputJSON {
		v, ok := d.value(f.val)
		if !ok {
			return "", false
		}
		if s, isStr := v.(string); isStr {
			return s, true // JSON text
		}
		b, err := jsonText(v)
		if err != nil {
			d.errorf(f.valPos, "input %s: %s: %v", decl.Name, f.key, err)
			return "", false
		}
		return b, true
	}
	if f.val.Kind != yaml.ScalarNode || isNull(f.val) {
		d.errorf(f.valPos, "input %s: %s must be a %s value, got %s", decl.Name, f.key, decl.Type, kindOf(f.val))
		return "", false
	}
	k, v := scalar(f.val)
	ok := false
	switch decl.Type {
	case InputString, InputFile:
		ok = k == kindString
	case InputInt:
		_, ok = v.(int64)
		if u, isU := v.(uint64); isU && u <= math.MaxInt64 {
			return strconv.FormatUint(u, 10), true
		}
	case InputNumber:
		ok = k == kindInt || k == kindFloat
	case InputBool:
		ok = k == kindBool
	}
	if !ok {
		hint := ""
		if k == kindString && decl.Type != InputString {
			hint = " (unquote it)"
		} else if decl.Type == InputString {
			hint = " (quote it to make it a string)"
		}
		d.errorf(f.valPos, "input %s: %s must be a %s, got %s%s", decl.Name, f.key, decl.Type, describe(f.val), hint)
		return "", false
	}
	return f.val.Value, true
}

// Check checks a value given for the input, as text: its type, enum, min,
// max and pattern. The error says what is wrong with the value, e.g.
// "500 is above max 100".
func (decl *InputDecl) Check(text string) error {
	v, err := expr.Input(decl.Type, text)
	if err != nil {
		return err
	}
	if decl.Enum != nil {
		found := false
		for _, e := range decl.Enum {
			ev, _ := expr.Input(decl.Type, e)
			if ev == v {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%q is not one of %s", text, strings.Join(decl.Enum, ", "))
		}
	}
	var f float64
	switch x := v.(type) {
	case int64:
		f = float64(x)
	case float64:
		f = x
	}
	if decl.Min != nil && f < *decl.Min {
		return fmt.Errorf("%s is below min %s", text, strconv.FormatFloat(*decl.Min, 'g', -1, 64))
	}
	if decl.Max != nil && f > *decl.Max {
		return fmt.Errorf("%s is above max %s", text, strconv.FormatFloat(*decl.Max, 'g', -1, 64))
	}
	if decl.Pattern != nil && !decl.Pattern.MatchString(text) {
		return fmt.Errorf("%q does not match pattern %s", text, decl.Pattern)
	}
	return nil
}

// Value returns the value expressions see for the input's text (not for
// file inputs).
func (decl *InputDecl) Value(text string) (any, error) {
	return expr.Input(decl.Type, text)
}

var _ = slices.Contains[[]string]
