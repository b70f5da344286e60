package pipeline

import (
	"strings"

	"github.com/wiz-run/wiz/core/expr"
)

// wholeExpr reports whether s is only one "${{ EXPR }}", which stands for a
// value of any type in a typed field.
func wholeExpr(s string) bool {
	if !strings.HasPrefix(s, "${{") || !strings.HasSuffix(s, "}}") {
		return false
	}
	parts, err := expr.ParseTemplate(s)
	return err == nil && len(parts) == 1 && parts[0].IsExpr()
}

// staticJSON returns the processor's `with` as JSON, for a `with` without
// expressions. Validate encodes it once, so that runs of a large pipeline do
// not copy and encode every processor's config again.
func (n *ProcessorNode) staticJSON() ([]byte, error) {
	if n.withJSON != nil {
		return n.withJSON, nil
	}
	return jsonMarshal(n.With)
}

// encodeStatic sets withJSON when `with` holds no expression.
func (n *ProcessorNode) encodeStatic() {
	n.withJSON = nil
	if n.Templates != nil {
		return
	}
	if b, err := jsonMarshal(n.With); err == nil {
		n.withJSON = b
	}
}

// hasRef reports whether a config value holds "${{" in a string.
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
