package pipeline

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
)

// inputRefRE matches "${{ inputs.NAME }}", with optional spaces inside the
// braces.
var inputRefRE = regexp.MustCompile(`\$\{\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}\}`)

// Substitute returns a deep copy of with in which every "${{ inputs.NAME }}"
// (spaces inside the braces optional) in a string value, at any depth, is
// replaced by values[NAME]. References to names missing from values are left
// as they are; map keys are never changed. It returns nil when with is nil.
func Substitute(with map[string]any, values map[string]string) map[string]any {
	if with == nil {
		return nil
	}
	return substitute(with, values).(map[string]any)
}

func substitute(v any, values map[string]string) any {
	switch x := v.(type) {
	case string:
		return inputRefRE.ReplaceAllStringFunc(x, func(ref string) string {
			name := inputRefRE.FindStringSubmatch(ref)[1]
			if val, ok := values[name]; ok {
				return val
			}
			return ref
		})
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = substitute(item, values)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[k] = substitute(item, values)
		}
		return out
	}
	return v
}

// inputRefs returns the input names that v's strings refer to with
// "${{ inputs.NAME }}", sorted and without repeats.
func inputRefs(v any) []string {
	var names []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			for _, m := range inputRefRE.FindAllStringSubmatch(x, -1) {
				names = append(names, m[1])
			}
		case []any:
			for _, item := range x {
				walk(item)
			}
		case map[string]any:
			for _, item := range x {
				walk(item)
			}
		}
	}
	walk(v)
	slices.Sort(names)
	return slices.Compact(names)
}

// wholeInputRef reports whether s is only one "${{ inputs.NAME }}".
func wholeInputRef(s string) bool {
	loc := inputRefRE.FindStringIndex(s)
	return loc != nil && loc[0] == 0 && loc[1] == len(s)
}

// ConfigJSON returns the processor's `with` as JSON, with "${{ inputs.NAME }}"
// replaced from values. Validate encodes a `with` that refers to no input
// once, so that runs of a large pipeline do not copy and encode every
// processor's config again.
func (n *ProcessorNode) ConfigJSON(values map[string]string) ([]byte, error) {
	if n.withJSON != nil {
		return n.withJSON, nil
	}
	return json.Marshal(Substitute(n.With, values))
}

// encodeStatic sets withJSON when `with` holds no input reference.
func (n *ProcessorNode) encodeStatic() {
	if hasRef(n.With) {
		return
	}
	if b, err := json.Marshal(n.With); err == nil {
		n.withJSON = b
	}
}

func hasRef(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.Contains(x, "${{")
	case []any:
		for _, it := range x {
			if hasRef(it) {
				return true
			}
		}
	case map[string]any:
		for _, it := range x {
			if hasRef(it) {
				return true
			}
		}
	}
	return false
}
