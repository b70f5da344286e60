package expr

import (
	"errors"
	"strings"
)

// Part is one piece of a template: literal text, or an expression.
type Part struct {
	// Lit is literal text when Expr is empty.
	Lit string
	// Expr is the source of an expression, without "${{" and "}}", trimmed.
	Expr string
	// Offset is the byte offset of the part in the template.
	Offset int
}

// IsExpr reports whether the part is an expression.
func (p Part) IsExpr() bool { return p.Expr != "" }

// ErrUnclosed is returned by ParseTemplate for a "${{" without "}}".
var ErrUnclosed = errors.New(`"${{" without a closing "}}" (write "$${{" for a literal "${{")`)

// ErrEmpty is returned by ParseTemplate for "${{ }}" with nothing inside.
var ErrEmpty = errors.New(`empty expression "${{ }}"`)

// ParseTemplate splits s into literal text and "${{ EXPR }}" expressions.
// "$${{" is a literal "${{". Adjacent literal text is merged; a string
// without expressions is one literal part (or none when empty).
func ParseTemplate(s string) ([]Part, error) {
	var parts []Part
	var lit strings.Builder
	litStart := 0
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, Part{Lit: lit.String(), Offset: litStart})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], "$${{") {
			if lit.Len() == 0 {
				litStart = i
			}
			lit.WriteString("${{")
			i += 4
			continue
		}
		if strings.HasPrefix(s[i:], "${{") {
			end := strings.Index(s[i+3:], "}}")
			if end < 0 {
				return nil, ErrUnclosed
			}
			src := strings.TrimSpace(s[i+3 : i+3+end])
			if src == "" {
				return nil, ErrEmpty
			}
			flush()
			parts = append(parts, Part{Expr: src, Offset: i})
			i += 3 + end + 2
			continue
		}
		if lit.Len() == 0 {
			litStart = i
		}
		lit.WriteByte(s[i])
		i++
	}
	flush()
	return parts, nil
}

// HasExpr reports whether s may hold an expression or an escaped "${{": a
// cheap test before ParseTemplate.
func HasExpr(s string) bool { return strings.Contains(s, "${{") }
