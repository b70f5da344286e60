package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wiz-run/wiz/core/expr"
	"github.com/wiz-run/wiz/core/secrets"
	"go.yaml.in/yaml/v3"
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
	topKeys       = []string{"defaults", "env", "executor", "fail_fast", "finally", "inline_max_size", "inputs", "max_log_size", "max_output_size", "max_parallel", "name", "outputs", "processors", "retention", "retries", "schedules", "timeout", "triggers", "when"}
	inputKeys     = []string{"default", "doc", "enum", "max", "min", "pattern", "type"}
	processorKeys = []string{"after", "cache", "executor", "for_each", "inputs", "max_log_size", "max_output_size", "max_parallel", "on_error", "resources", "retries", "retry", "secret_files", "timeout", "uses", "when", "with"}
	resourceKeys  = []string{"limits", "requests"}
)

// Parse reads the pipeline file called file (the name is used in positions)
// whose content is src. It checks the YAML syntax, the keys, the types of
// fields and the uniqueness of names, and builds the processors as nodes of
// Pipeline.Graph, without edges: Validate resolves references.
//
// On any problem Parse returns a nil Pipeline and an ErrorList holding every
// problem found.
func Parse(file string, src []byte) (*Pipeline, error) {
	defer collectHarder(len(src))()
	d := &decoder{file: file, src: src}
	p := d.parse(src)
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	p.File = file
	p.Source = src
	return p, nil
}

// decoder turns the YAML nodes of a file into a Pipeline, collecting errors.
type decoder struct {
	file string
	src  []byte
	errs ErrorList

	lines []int // offset in src of the start of each line; see lineStarts

	// active holds the lists and mappings value is converting, so that an
	// alias to one of them, which would recurse forever, is an error.
	active map[*yaml.Node]bool
	// values counts the values converted by value: aliases can make a
	// small file expand to a huge value ("billion laughs").
	values int
}

// maxValues bounds the values converted from a file of n bytes. A file
// without aliases has fewer than n values.
func maxValues(n int) int { return 4*n + 100_000 }

func (d *decoder) errorf(pos Position, format string, args ...any) {
	d.errs = append(d.errs, &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

// at returns the position at line and column col, as yaml.v3 counts them
// (from 1, col in characters).
func (d *decoder) at(line, col int) Position {
	return Position{File: d.file, Line: max(line, 1), Col: max(col, 1)}
}

// pos returns the position of node n: its first key for a block mapping, and
// its content, after any anchor and tag, for other nodes.
func (d *decoder) pos(n *yaml.Node) Position {
	if n == nil {
		return d.at(1, 1)
	}
	if n.Kind == yaml.MappingNode && n.Style&yaml.FlowStyle == 0 && len(n.Content) > 0 {
		return d.pos(n.Content[0])
	}
	if (n.Anchor != "" || n.Style&yaml.TaggedStyle != 0) && !isImplicitNull(n) {
		return d.skipProperties(n.Line, n.Column)
	}
	return d.at(n.Line, n.Column)
}

func (d *decoder) parse(src []byte) *Pipeline {
	// Read every document first, so that a syntax error anywhere is reported
	// alone, before anything else.
	var bodies []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.syntaxError(err)
			return nil
		}
		if body := documentBody(&doc); body != nil {
			bodies = append(bodies, body)
		}
	}
	if len(bodies) == 0 {
		d.errorf(d.at(1, 1), "empty pipeline file: want a mapping with name and processors")
		return nil
	}
	if len(bodies) > 1 {
		d.errorf(d.pos(bodies[1]), "a pipeline file holds one YAML document; found a second one")
		return nil
	}
	return d.pipeline(bodies[0])
}

// documentBody returns the content of a document, or nil when it has none
// (an empty document, such as the one after a final "---").
func documentBody(doc *yaml.Node) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	body := doc.Content[0]
	if isImplicitNull(body) && body.Anchor == "" && body.Style&yaml.TaggedStyle == 0 {
		return nil
	}
	return body
}

// Problems that yaml.v3 reports from its parser rather than its scanner:
// for these, the line in its message counts from 0 instead of 1.
var yamlParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// Problems that yaml.v3 reports from its reader, about the encoding, without
// a line.
var yamlReaderProblems = []string{
	"invalid leading UTF-8 octet",
	"incomplete UTF-8 octet sequence",
	"invalid trailing UTF-8 octet",
	"invalid length of a UTF-8 sequence",
	"invalid Unicode character",
	"control characters are not allowed",
}

var unknownAnchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// splitYAMLError splits an error of yaml.v3, "yaml: line N: problem", into
// N (0 when the message has none) and the problem.
func splitYAMLError(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, problem, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				return n, problem
			}
		}
	}
	return 0, msg
}

// decodeAll decodes every document that r holds, returning the first error.
func decodeAll(r io.Reader) error {
	dec := yaml.NewDecoder(r)
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// syntaxError records a YAML syntax error with its position.
//
// yaml.v3 reports errors as "yaml: line N: problem", without a column, and
// with N the line of the construct the problem is in (a mapping, a quoted
// scalar), counting from 0 for some problems. syntaxError reports the
// problem where yaml.v3 detects it, found by parsing prefixes of the file
// (see locate), except for an unclosed bracket, reported at the bracket.
func (d *decoder) syntaxError(err error) {
	line, msg := splitYAMLError(err)
	if m := unknownAnchorRE.FindStringSubmatch(msg); m != nil {
		pos, hint := d.at(1, 1), ""
		if off, ok := d.locate(msg); ok { // the end of the alias
			off = max(off-len(m[1]), 0)
			pos = d.posOf(off)
			anchor := regexp.MustCompile(`&` + regexp.QuoteMeta(m[1]) + `(?:[\s,\[\]{}]|$)`)
			if anchor.Match(d.src[off:]) {
				hint = fmt.Sprintf(" (an alias must come after its anchor %q)", "&"+m[1])
			}
		}
		d.errorf(pos, "unknown alias %q%s", "*"+m[1], hint)
		return
	}
	if slices.ContainsFunc(yamlReaderProblems, func(p string) bool { return strings.HasPrefix(msg, p) }) {
		pos := d.badCharPos()
		d.errorf(pos, "YAML syntax error: %s%s", escapeControl(msg), d.tabHint(pos.Line))
		return
	}
	switch {
	case line == 0:
		// yaml.v3 omits line 0, of either count.
		line = 1
	case yamlParserProblems[msg]:
		line++
	}
	line = min(line, len(d.lineStarts())) // one past the last line for a problem at the end
	pos := d.at(line, 1)
	opening, closing, what := byte(0), byte(0), ""
	switch msg {
	case "did not find expected ',' or ']'":
		opening, closing, what = '[', ']', "list"
	case "did not find expected ',' or '}'":
		opening, closing, what = '{', '}', "mapping"
	}
	col := 0
	if opening != 0 {
		col = d.unclosedCol(line, opening, closing)
	}
	if col > 0 {
		pos = d.at(line, col)
		msg += " in the " + what + " that starts here"
	} else if off, ok := d.locate(msg); ok {
		pos = d.posOf(off)
		switch r, _ := utf8.DecodeRune(d.src[off:]); {
		case msg == "found character that cannot start any token":
			msg = fmt.Sprintf("found character '%s' that cannot start any token", string(r))
		case msg == "found unexpected end of stream" && (r == '\'' || r == '"'):
			msg = "found unexpected end of file in the quoted string that starts here"
		}
	}
	d.errorf(pos, "YAML syntax error: %s%s", escapeControl(msg), d.tabHint(pos.Line))
}

// tabHint is the hint for an error on a line, or just before a line, that a
// tab indents: YAML indents with spaces only.
func (d *decoder) tabHint(line int) string {
	starts := d.lineStarts()
	for l := line; l <= line+1 && l >= 1 && l <= len(starts); l++ {
		for _, c := range d.src[starts[l-1]:] {
			if c == '\t' {
				return fmt.Sprintf(" (line %d is indented with a tab: indent with spaces)", l)
			}
			if c != ' ' {
				break
			}
		}
	}
	return ""
}

// maxLocate bounds the size of the files in which locate looks for a
// problem, as it parses the file several times.
const maxLocate = 1 << 20

// locate returns the offset in d.src of the character at which yaml.v3
// detects problem: the last character of the shortest prefix of d.src whose
// parsing fails with problem.
func (d *decoder) locate(problem string) (int, bool) {
	if len(d.src) > maxLocate {
		return 0, false
	}
	fails := func(n int) bool {
		err := decodeAll(bytes.NewReader(d.src[:n]))
		if err == nil {
			return false
		}
		_, p := splitYAMLError(err)
		return p == problem
	}
	// A parse that reads the file byte by byte stops reading right after
	// the problem, give or take the line.
	r := &byteReader{src: d.src}
	if err := decodeAll(r); err == nil {
		return 0, false
	} else if _, p := splitYAMLError(err); p != problem {
		return 0, false
	}
	// Find lo < hi where the prefix of lo bytes parses and that of hi
	// fails, then narrow it down.
	hi, step := r.off, 32
	lo := max(hi-step, 0)
	for lo > 0 && fails(lo) {
		hi, step = lo, step*2
		lo = max(hi-step, 0)
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	_, size := utf8.DecodeLastRune(d.src[:hi])
	return hi - size, true
}

// byteReader reads src one byte at a time, so that off tells how far a
// reader has got.
type byteReader struct {
	src []byte
	off int
}

func (r *byteReader) Read(p []byte) (int, error) {
	if r.off >= len(r.src) {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.src[r.off]
	r.off++
	return 1, nil
}

// escapeControl writes control characters, such as a tab in "found
// character '\t'", as Go escapes.
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

// lineStarts returns the offset in d.src of the start of each line, breaking
// lines where yaml.v3 does: at "\r\n", "\r", "\n", U+0085, U+2028 and
// U+2029.
func (d *decoder) lineStarts() []int {
	if d.lines != nil {
		return d.lines
	}
	d.lines = []int{0}
	src := d.src
	for i := 0; i < len(src); {
		n := breakLen(src[i:])
		if n == 0 {
			i++
			continue
		}
		i += n
		if i < len(src) {
			d.lines = append(d.lines, i)
		}
	}
	return d.lines
}

// breakLen returns the length of the line break b starts with, or 0.
func breakLen(b []byte) int {
	switch {
	case len(b) == 0:
		return 0
	case b[0] == '\n':
		return 1
	case b[0] == '\r':
		if len(b) > 1 && b[1] == '\n' {
			return 2
		}
		return 1
	case b[0] == 0xc2 && len(b) > 1 && b[1] == 0x85:
		return 2
	case b[0] == 0xe2 && len(b) > 2 && b[1] == 0x80 && (b[2] == 0xa8 || b[2] == 0xa9):
		return 3
	}
	return 0
}

// lineText returns line (from 1) of d.src, without its break.
func (d *decoder) lineText(line int) []byte {
	starts := d.lineStarts()
	if line < 1 || line > len(starts) {
		return nil
	}
	text := d.src[starts[line-1]:]
	if line < len(starts) {
		text = text[:starts[line]-starts[line-1]]
	}
	for i := range text {
		if breakLen(text[i:]) > 0 {
			return text[:i]
		}
	}
	return text
}

// byteIndex returns the index in lineText(line) of column col.
func (d *decoder) byteIndex(line, col int) int {
	text := d.lineText(line)
	i := 0
	for c := 1; c < col && i < len(text); c++ {
		_, n := utf8.DecodeRune(text[i:])
		i += n
	}
	return i
}

// posOf returns the position of the byte at offset off of d.src.
func (d *decoder) posOf(off int) Position {
	starts := d.lineStarts()
	line, found := slices.BinarySearch(starts, off)
	if !found {
		line-- // index of the line holding off
	}
	return d.at(line+1, utf8.RuneCount(d.src[starts[line]:off])+1)
}

// skipProperties returns the position of the content of the node at line
// and col: past its anchor and tag and the blanks and comments after them.
func (d *decoder) skipProperties(line, col int) Position {
	starts := d.lineStarts()
	if line < 1 || line > len(starts) {
		return d.at(line, col)
	}
	off := starts[line-1] + d.byteIndex(line, col)
	src := d.src
	for off < len(src) {
		switch c := src[off]; {
		case c == ' ' || c == '\t':
			off++
		case breakLen(src[off:]) > 0:
			off += breakLen(src[off:])
		case c == '#':
			for off < len(src) && breakLen(src[off:]) == 0 {
				off++
			}
		case c == '&' || c == '!':
			for off < len(src) && !isBlank(src[off]) && breakLen(src[off:]) == 0 && !isFlowIndicator(src[off]) {
				off++
			}
		default:
			return d.posOf(off)
		}
	}
	return d.at(line, col) // no content: keep the properties' position
}

func isBlank(c byte) bool         { return c == ' ' || c == '\t' }
func isFlowIndicator(c byte) bool { return strings.IndexByte(",[]{}", c) >= 0 }

// scanLine calls visit with the index of each byte of line that is outside
// quoted scalars and comments, and whether it can start a token, until visit
// returns false. It sees one line only, so a quoted scalar continued from an
// earlier line looks unquoted.
func scanLine(line []byte, visit func(i int, tokenStart bool) bool) {
	for i := 0; i < len(line); i++ {
		c := line[i]
		tokenStart := i == 0 || isBlank(line[i-1]) || strings.IndexByte("[{,", line[i-1]) >= 0
		switch {
		case c == '#' && (i == 0 || isBlank(line[i-1])):
			return
		case c == '\'' && tokenStart:
			for i++; i < len(line); i++ {
				if line[i] == '\'' {
					if i+1 < len(line) && line[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
		case c == '"' && tokenStart:
			for i++; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' {
					i++
				}
			}
		default:
			if !visit(i, tokenStart) {
				return
			}
		}
	}
}

// unclosedCol returns the column of the last bracket open that line leaves
// open: where the flow collection yaml.v3 did not find the end of starts.
// It returns 0 when there is none.
func (d *decoder) unclosedCol(line int, opening, closing byte) int {
	text := d.lineText(line)
	var opened []int // indexes of the brackets still open
	scanLine(text, func(i int, tokenStart bool) bool {
		switch {
		case text[i] == opening && tokenStart:
			opened = append(opened, i)
		case text[i] == closing && len(opened) > 0:
			opened = opened[:len(opened)-1]
		}
		return true
	})
	if len(opened) == 0 {
		return 0
	}
	return utf8.RuneCount(text[:opened[len(opened)-1]]) + 1
}

// badCharPos returns the position of the first byte of d.src that is not
// valid UTF-8 or is a character YAML does not allow.
func (d *decoder) badCharPos() Position {
	for off := 0; off < len(d.src); {
		r, n := utf8.DecodeRune(d.src[off:])
		allowed := r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7e || r == 0x85 ||
			r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= 0x10ffff
		if r == utf8.RuneError && n == 1 || !allowed {
			return d.posOf(off)
		}
		off += n
	}
	return d.at(1, 1)
}

// resolve returns the node that n stands for, through aliases. It returns
// nil, after recording an error, for an alias to a value that value is
// converting, which contains the alias.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for range 100 { // bounds alias chains; yaml.v3 allows no loops of aliases alone
		if n == nil || n.Kind != yaml.AliasNode {
			return n
		}
		if d.active[n.Alias] {
			d.errorf(d.pos(n), "alias %q stands for a value that contains it", "*"+n.Value)
			return nil
		}
		n = n.Alias
	}
	d.errorf(d.pos(n), "alias chain too long")
	return nil
}

// isImplicitNull reports whether n is the null of a key with nothing after
// it ("key:").
func isImplicitNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "" && n.Tag == "!!null"
}

// scalarKind is the type of a scalar.
type scalarKind int

const (
	kindString scalarKind = iota
	kindNull
	kindBool
	kindInt   // int64 when negative, else uint64
	kindFloat // float64, including infinities and NaN
)

// scalar returns the kind and the value of the scalar node n. Only a plain
// scalar can be another kind than a string; tags other than !!str are
// ignored. Resolution follows YAML 1.2's core schema, as the package always
// has: "yes" and "on" are strings, "0755" and "0o755" are octal integers.
func scalar(n *yaml.Node) (scalarKind, any) {
	const quoted = yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
	if n.Style&quoted != 0 || n.Style&yaml.TaggedStyle != 0 && n.Tag == "!!str" {
		return kindString, n.Value
	}
	switch s := n.Value; s {
	case "", "~", "null", "Null", "NULL":
		return kindNull, nil
	case "true", "True", "TRUE":
		return kindBool, true
	case "false", "False", "FALSE":
		return kindBool, false
	case ".inf", ".Inf", ".INF":
		return kindFloat, math.Inf(1)
	case "-.inf", "-.Inf", "-.INF":
		return kindFloat, math.Inf(-1)
	case ".nan", ".NaN", ".NAN":
		return kindFloat, math.NaN()
	default:
		if v, ok := parseNumber(s); ok {
			if _, isFloat := v.(float64); isFloat {
				return kindFloat, v
			}
			return kindInt, v
		}
		return kindString, s
	}
}

// parseNumber parses an integer (decimal, or 0x, 0o, 0b or 0-prefixed
// octal, with optional "_" separators and sign) or a number with one ".",
// returning int64 for a negative integer, uint64 for another and float64 for
// a number with a ".".
func parseNumber(s string) (any, bool) {
	if s == "" || strings.IndexByte("+-.0123456789", s[0]) < 0 {
		return nil, false // the common case of a word, without the errors of strconv
	}
	dots := strings.Count(s, ".")
	if dots > 1 {
		return nil, false
	}
	negative := s[0] == '-'
	digits := strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(s, "+"), "-"), "_", "")
	base := 10
	switch {
	case strings.HasPrefix(digits, "0x"):
		digits, base = digits[2:], 16
	case strings.HasPrefix(digits, "0o"):
		digits, base = digits[2:], 8
	case strings.HasPrefix(digits, "0b"):
		digits, base = digits[2:], 2
	case strings.HasPrefix(digits, "0") && len(digits) > 1 && dots == 0:
		base = 8
	case dots == 1:
		base = 0 // a float
	}
	if negative {
		digits = "-" + digits
	}
	switch {
	case base == 0:
		f, err := strconv.ParseFloat(digits, 64)
		return f, err == nil
	case negative:
		i, err := strconv.ParseInt(digits, base, 64)
		return i, err == nil
	default:
		u, err := strconv.ParseUint(digits, base, 64)
		return u, err == nil
	}
}

// entry is one key and value of a mapping.
type entry struct {
	key    string
	keyPos Position
	val    *yaml.Node // resolved value
	valPos Position
}

// mapping returns the entries of the mapping n, in file order. A null value
// is an empty mapping. what names the mapping in errors ("processor
// \"words\""); kind names its keys ("key", "processor", "input").
func (d *decoder) mapping(n *yaml.Node, what, kind string) ([]entry, bool) {
	n = d.resolve(n)
	if n == nil {
		return nil, false
	}
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(d.pos(n), "%s must be a mapping, got %s", what, kindOf(n))
		return nil, false
	}
	entries := make([]entry, 0, len(n.Content)/2)
	seen := make(map[string]Position, len(n.Content)/2)
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, keyPos, good := d.key(n.Content[i])
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
		val := d.resolve(n.Content[i+1])
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
func (d *decoder) valuePos(n *yaml.Node, keyPos Position) Position {
	if isImplicitNull(n) {
		return keyPos
	}
	return d.pos(n)
}

// key returns the text of a mapping key.
func (d *decoder) key(k *yaml.Node) (string, Position, bool) {
	pos := d.pos(k)
	if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
		d.errorf(pos, "merge keys (<<) are not supported")
		return "", pos, false
	}
	if r := d.resolve(k); r != nil && r.Kind == yaml.ScalarNode {
		return r.Value, pos, true
	} else if r != nil {
		k = r
	}
	d.errorf(pos, "a key must be a string, got %s", kindOf(k))
	return "", pos, false
}

// unknownKey records an unknown key of a mapping, listing the valid ones.
func (d *decoder) unknownKey(e entry, where string, valid []string) {
	d.errorf(e.keyPos, "unknown key %q %s (valid keys: %s)", e.key, where, strings.Join(valid, ", "))
}

// isString reports whether n is a string scalar.
func isString(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	k, _ := scalar(n)
	return k == kindString
}

// str returns the string value of e.
func (d *decoder) str(e entry) (string, bool) {
	if isString(e.val) {
		return e.val.Value, true
	}
	d.errorf(e.valPos, "%s must be a string, got %s", e.key, kindOf(e.val))
	return "", false
}

// count returns the value of e, an integer ≥ 0.
func (d *decoder) count(e entry) (int, bool) {
	if e.val.Kind == yaml.ScalarNode {
		switch _, v := scalar(e.val); i := v.(type) {
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
	if e.val.Kind == yaml.ScalarNode {
		if k, _ := scalar(e.val); k != kindNull {
			return e.val.Value, true
		}
	}
	d.errorf(e.valPos, "%s must be a string, got %s", e.key, kindOf(e.val))
	return "", false
}

func (d *decoder) pipeline(body *yaml.Node) *Pipeline {
	top, ok := d.mapping(body, "a pipeline file", "key")
	if !ok {
		return nil
	}
	p := &Pipeline{Executor: DefaultExecutor, FailFast: true}
	var (
		hasName     bool
		processors  *entry
		finally     *entry
		defaults    *entry
		executorSet *entry
		retriesSet  *entry
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
			executorSet = &e
			p.Executor, p.ExecutorConfig, p.executorKeys = d.executorAt(e)
			p.executorPos = e.valPos
		case "inline_max_size":
			p.InlineMax = d.size(e)
		case "max_output_size":
			p.MaxOutput = d.size(e)
		case "max_log_size":
			p.MaxLog = d.size(e)
		case "max_parallel":
			p.MaxParallel, _ = d.count(e)
		case "retries":
			retriesSet = &e
			p.Retries, _ = d.count(e)
		case "inputs":
			p.Inputs = d.inputs(e)
		case "processors":
			processors = &e
		case "finally":
			finally = &e
		case "defaults":
			defaults = &e
		case "when":
			p.When = d.when(e)
		case "fail_fast":
			p.FailFast = d.boolean(e)
		case "timeout":
			p.Timeout = d.timeout(e)
		case "env":
			p.Env = mergeEnv(p.Env, d.env(e))
		case "outputs":
			p.Outputs = d.outputs(e)
		case "schedules":
			p.Schedules = d.schedules(e)
		case "retention":
			p.Retention = d.retention(e)
		case "triggers":
			p.Triggers = d.triggers(e)
		default:
			d.unknownKey(e, "in pipeline", topKeys)
		}
	}
	def := &processorDefaults{retry: DefaultRetry, executor: p.Executor, executorConfig: p.ExecutorConfig, executorPos: p.executorPos, executorKeys: p.executorKeys}
	def.retry.Limit = p.Retries
	if defaults != nil {
		d.defaults(p, def, *defaults, executorSet, retriesSet)
	}
	if !hasName {
		d.errorf(d.pos(body), "missing required key \"name\"")
	}
	if processors == nil {
		d.errorf(d.pos(body), "missing required key \"processors\"")
	} else {
		d.processors(p, *processors, def, false)
	}
	if finally != nil {
		d.processors(p, *finally, def, true)
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
					if !slices.Contains(expr.InputTypes, s) {
						d.errorf(f.valPos, "unknown input type %q (valid types: %s)", s, strings.Join(expr.InputTypes, ", "))
					}
					decl.Type = s
				}
			case "doc":
				decl.Doc, _ = d.str(f)
			case "default", "enum", "min", "max", "pattern":
				// read below, once the type is known
			default:
				d.unknownKey(f, fmt.Sprintf("in input %q", e.key), inputKeys)
			}
		}
		for _, f := range fields {
			d.inputConstraint(&decl, f)
		}
		if decl.Default != nil {
			if err := decl.Check(*decl.Default); err != nil {
				d.errorf(decl.Pos, "input %s: default: %v", decl.Name, err)
			}
		}
		decls = append(decls, decl)
	}
	return decls
}

func (d *decoder) processors(p *Pipeline, procs entry, def *processorDefaults, finally bool) {
	entries, _ := d.mapping(procs.val, procs.key, "processor")
	if len(entries) == 0 && !finally {
		if procs.val.Kind == yaml.MappingNode || isNull(procs.val) {
			d.errorf(procs.keyPos, "pipeline has no processors")
		}
	}
	if p.byName == nil {
		p.byName = make(map[string]*ProcessorNode, len(entries))
		p.Graph = simple.NewDirectedGraph()
	}
	for _, e := range entries {
		if first, dup := p.byName[e.key]; dup {
			d.errorf(e.keyPos, "duplicate processor %q (first defined at line %d): finally processors share the namespace of processors", e.key, first.Pos.Line)
			continue
		}
		n := d.processor(p, e, def)
		n.Finally = finally
		n.id = int64(len(p.Processors))
		p.Processors = append(p.Processors, n)
		p.byName[n.Name] = n
		p.Graph.AddNode(n)
	}
}

func (d *decoder) processor(p *Pipeline, pe entry, def *processorDefaults) *ProcessorNode {
	n := &ProcessorNode{Name: pe.key, Pos: pe.keyPos, MaxOutput: p.MaxOutput, MaxLog: p.MaxLog}
	var set processorFields
	defer func() { def.apply(n, set) }()
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
	var maxParPos *Position
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
			if set.retry {
				d.errorf(e.keyPos, "retries and retry both set: retries: N is short for retry: {limit: N}; keep one")
			}
			set.retry = true
			n.Retry = DefaultRetry
			n.Retry.Limit, _ = d.count(e)
		case "retry":
			if set.retry {
				d.errorf(e.keyPos, "retries and retry both set: retries: N is short for retry: {limit: N}; keep one")
			}
			set.retry = true
			n.Retry = d.retry(e)
		case "when":
			n.When = d.when(e)
		case "for_each":
			n.ForEach = d.forEach(e)
		case "cache":
			set.cache = true
			n.Cache = d.cache(e)
		case "max_parallel":
			n.MaxParallel, _ = d.count(e)
			if n.MaxParallel == 0 {
				d.errorf(e.valPos, "max_parallel must be at least 1")
			}
			maxParPos = &e.keyPos
		case "timeout":
			set.timeout = true
			n.Timeout = d.timeout(e)
		case "on_error":
			set.onError = true
			n.OnError = d.onError(e)
		case "executor":
			set.executor = true
			n.Executor, n.ExecutorConfig, n.executorKeys = d.executorAt(e)
			n.executorPos = e.valPos
		case "resources":
			set.resources = true
			n.Resources = d.resources(e)
		case "max_output_size":
			n.MaxOutput = d.size(e)
		case "max_log_size":
			n.MaxLog = d.size(e)
		case "secret_files":
			n.SecretFiles, n.secretFileRefs = d.secretFiles(e)
			n.secretFilesPos = e.keyPos
		default:
			d.unknownKey(e, "in "+what, processorKeys)
		}
	}
	if !hasUses {
		d.errorf(pe.keyPos, "processor %q is missing required key \"uses\" (a processor type like std/exec)", pe.key)
	}
	if maxParPos != nil && n.ForEach == nil {
		d.errorf(*maxParPos, "max_parallel on a processor bounds its for_each instances; %s has no for_each (the pipeline's max_parallel bounds the run)", pe.key)
	}
	return n
}

// secretFiles reads a processor's `secret_files: {PATH: NAME}`: PATH is
// relative to the task's working directory, NAME a secret, written bare or
// as ${{ secrets.NAME }}.
func (d *decoder) secretFiles(e entry) (map[string]string, []SecretRef) {
	entries, ok := d.mapping(e.val, "secret_files", "path")
	if !ok {
		return nil, nil
	}
	out := make(map[string]string, len(entries))
	var refs []SecretRef
	for _, f := range entries {
		s, ok := d.str(f)
		if !ok {
			continue
		}
		name := strings.TrimSpace(s)
		if m := secretRefRE.FindStringSubmatch(name); m != nil {
			name = m[1]
		}
		if err := secrets.CheckName(name); err != nil {
			d.errorf(f.valPos, "secret_files.%s: %v; write the secret's name, like API_TOKEN", f.key, err)
			continue
		}
		clean := path.Clean(f.key)
		switch {
		case f.key == "" || path.IsAbs(f.key) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../"):
			d.errorf(f.keyPos, "secret_files: %q must be a path inside the task's working directory, like creds/token.txt", f.key)
			continue
		}
		out[clean] = name
		refs = append(refs, SecretRef{Name: name, Pos: f.valPos})
	}
	return out, refs
}

func (d *decoder) uses(n *ProcessorNode, e entry) {
	s, ok := d.str(e)
	if !ok {
		return
	}
	n.usesPos = e.valPos
	if strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") {
		if !strings.HasSuffix(s, ".yaml") && !strings.HasSuffix(s, ".yml") {
			d.errorf(e.valPos, "uses %q: a sub-pipeline file ends in .yaml or .yml", s)
		}
		n.Uses, n.Child = s, &ChildRef{File: s, Pos: e.valPos}
		return
	}
	typ, version, hasVersion := strings.Cut(s, "@")
	n.Uses, n.UsesVersion = typ, version
	if pack, name, _ := strings.Cut(typ, "/"); pack == ChildPack {
		n.Child = &ChildRef{Pipeline: name, Pos: e.valPos}
		if hasVersion {
			v, err := strconv.Atoi(version)
			if err != nil || v < 1 {
				d.errorf(e.valPos, "uses %q: a sub-pipeline's version is a number, pipeline/NAME@N", s)
			}
			n.Child.Version = v
		}
		if !pipelineNameRE.MatchString(name) {
			d.errorf(e.valPos, "uses %q: %q is not a pipeline name", s, name)
		}
		return
	}
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
func (d *decoder) value(n *yaml.Node) (any, bool) {
	if n == nil {
		return nil, false
	}
	if d.values++; d.values > maxValues(len(d.src)) {
		if d.values == maxValues(len(d.src))+1 {
			d.errorf(d.pos(n), "too many values: aliases expand the file beyond %d values", maxValues(len(d.src)))
		}
		return nil, false
	}
	switch n.Kind {
	case yaml.ScalarNode:
		_, v := scalar(n)
		return v, true
	case yaml.SequenceNode:
		d.enter(n)
		defer delete(d.active, n)
		list := make([]any, 0, len(n.Content))
		ok := true
		for _, item := range n.Content {
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
	case yaml.MappingNode:
		d.enter(n)
		defer delete(d.active, n)
		entries, ok := d.mapping(n, "a mapping", "key")
		m := make(map[string]any, len(entries))
		for _, e := range entries {
			x, good := d.value(e.val)
			ok = ok && good
			m[e.key] = x
		}
		return m, ok
	}
	d.errorf(d.pos(n), "unsupported YAML value %s", kindOf(n))
	return nil, false
}

// enter marks the list or mapping n as being converted by value.
func (d *decoder) enter(n *yaml.Node) {
	if d.active == nil {
		d.active = map[*yaml.Node]bool{}
	}
	d.active[n] = true
}

func (d *decoder) bindings(e entry) []InputBinding {
	refs := d.namedRefs(e, "input", "inputs.NAME, PROCESSOR or PROCESSOR.OUTPUT", true)
	bindings := make([]InputBinding, len(refs))
	for i, r := range refs {
		bindings[i] = InputBinding{Name: r.name, From: r.ref}
	}
	slices.SortFunc(bindings, func(a, b InputBinding) int { return strings.Compare(a.Name, b.Name) })
	return bindings
}

// namedRef is one NAME: REFERENCE entry of inputs: or outputs:.
type namedRef struct {
	name    string
	namePos Position
	ref     Ref
}

// namedRefs reads a mapping of names to references (a processor's inputs:,
// a pipeline's outputs:), in file order; kind names the keys in errors,
// want the valid references; a reference to a pipeline input is valid
// only with allowInputs.
func (d *decoder) namedRefs(e entry, kind, want string, allowInputs bool) []namedRef {
	entries, _ := d.mapping(e.val, e.key, kind)
	out := make([]namedRef, 0, len(entries))
	for _, f := range entries {
		if !bindingNameRE.MatchString(f.key) {
			d.errorf(f.keyPos, "invalid %s name %q: use letters, digits, \"_\", \".\" and \"-\"", kind, f.key)
			continue
		}
		s, ok := d.str(f)
		if !ok {
			continue
		}
		ref, ok := parseRef(s)
		if !ok || ref.Input != "" && !allowInputs {
			what := "reference"
			if !allowInputs {
				what = kind + " reference"
			}
			d.errorf(f.valPos, "invalid %s %q (want %s)", what, s, want)
			continue
		}
		ref.Pos = f.valPos
		out = append(out, namedRef{name: f.key, namePos: f.keyPos, ref: ref})
	}
	return out
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
	var items []*yaml.Node
	switch {
	case e.val.Kind == yaml.SequenceNode:
		items = e.val.Content
	case isString(e.val), e.val.Kind == yaml.MappingNode:
		items = []*yaml.Node{e.val}
	default:
		d.errorf(e.valPos, "after must be a list of processor names or {NAME: succeeded|failed|ended}, got %s", kindOf(e.val))
		return
	}
	for _, item := range items {
		item = d.resolve(item)
		if item == nil {
			continue
		}
		if item.Kind == yaml.MappingNode {
			entries, _ := d.mapping(item, "an after entry", "processor")
			for _, f := range entries {
				o, ok := d.str(f)
				if ok && o != OutcomeSucceeded && o != OutcomeFailed && o != OutcomeEnded {
					d.errorf(f.valPos, "invalid outcome %q for %s in after (valid: succeeded, failed, ended)", o, f.key)
					continue
				}
				n.After = append(n.After, f.key)
				n.AfterOutcome = append(n.AfterOutcome, o)
				n.afterPos = append(n.afterPos, f.keyPos)
			}
			continue
		}
		if !isString(item) {
			d.errorf(d.pos(item), "after must be a list of processor names or {NAME: succeeded|failed|ended}, got an item that is %s", kindOf(item))
			continue
		}
		n.After = append(n.After, item.Value)
		n.AfterOutcome = append(n.AfterOutcome, OutcomeDefault)
		n.afterPos = append(n.afterPos, d.pos(item))
	}
}

// executor reads `executor:`, either a backend name ("kubernetes") or a
// mapping with `backend` and the backend's own settings.
func (d *decoder) executor(e entry) (string, map[string]any) {
	name, cfg, _ := d.executorAt(e)
	return name, cfg
}

// executorAt reads an `executor:` with the position of each setting's key.
func (d *decoder) executorAt(e entry) (string, map[string]any, map[string]Position) {
	if isString(e.val) {
		if !executorNameRE.MatchString(e.val.Value) {
			d.errorf(e.valPos, "invalid executor name %q", e.val.Value)
		}
		return e.val.Value, nil, nil
	}
	if e.val.Kind != yaml.MappingNode {
		d.errorf(e.valPos, "executor must be a backend name like \"local\" or a mapping with \"backend\" and its settings, got %s", kindOf(e.val))
		return "", nil, nil
	}
	keyPos := map[string]Position{}
	entries, _ := d.mapping(e.val, "executor", "key")
	name := ""
	cfg := map[string]any{}
	for _, f := range entries {
		if f.key == "backend" {
			if s, ok := d.str(f); ok {
				if !executorNameRE.MatchString(s) {
					d.errorf(f.valPos, "invalid executor name %q", s)
				}
				name = s
			}
			continue
		}
		if v, ok := d.value(f.val); ok {
			cfg[f.key] = v
			keyPos[f.key] = f.keyPos
		}
	}
	if name == "" {
		d.errorf(e.valPos, "executor settings need \"backend\", the executor backend's name (for example backend: kubernetes)")
	}
	return name, cfg, keyPos
}

// resources reads a processor's `resources:` (requests and limits of cpu,
// memory and the like), which the executor backend applies; quantities are
// checked by the backend, which knows its units.
func (d *decoder) resources(e entry) map[string]any {
	entries, ok := d.mapping(e.val, "resources", "key")
	if !ok {
		return nil
	}
	out := map[string]any{}
	for _, f := range entries {
		if f.key != "requests" && f.key != "limits" {
			d.unknownKey(f, "in resources", resourceKeys)
			continue
		}
		qs, ok := d.mapping(f.val, "resources."+f.key, "resource name")
		if !ok {
			continue
		}
		m := map[string]any{}
		for _, q := range qs {
			t, ok := d.scalarText(q)
			if !ok {
				continue
			}
			m[q.key] = t
		}
		out[f.key] = m
	}
	return out
}

// size reads a byte size: an integer, or a number with a unit such as
// "512KiB", "100MiB", "2GiB", "1GB".
func (d *decoder) size(e entry) int64 {
	if e.val.Kind == yaml.ScalarNode {
		if n, err := ParseSize(e.val.Value); err == nil && n > 0 {
			return n
		}
	}
	d.errorf(e.valPos, "%s must be a size like \"1MiB\", \"500MB\" or \"2GiB\", got %s", e.key, describe(e.val))
	return 0
}

// ParseSize parses a byte size: digits with an optional unit B, KB, MB, GB,
// TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q does not start with a number", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	units := map[string]int64{"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
	mult, ok := units[strings.TrimSpace(s[i:])]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit (use B, KB, MB, GB, KiB, MiB, GiB)", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

func (d *decoder) timeout(e entry) time.Duration {
	if isString(e.val) {
		t, err := time.ParseDuration(e.val.Value)
		if err == nil && t > 0 {
			return t
		}
	}
	d.errorf(e.valPos, "timeout must be a positive duration like \"30s\" or \"5m\", got %s", describe(e.val))
	return 0
}

func isNull(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	k, _ := scalar(n)
	return k == kindNull
}

// kindOf names the kind of a YAML node for error messages.
func kindOf(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return kindOf(n.Alias)
	case yaml.ScalarNode:
		switch k, _ := scalar(n); k {
		case kindString:
			return "a string"
		case kindInt:
			return "an integer"
		case kindFloat:
			return "a number"
		case kindBool:
			return "a boolean"
		}
	}
	return "nothing"
}

// describe names a YAML value for error messages: its text for a one-line
// scalar, its kind otherwise.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
		switch k, _ := scalar(n); k {
		case kindString:
			return fmt.Sprintf("%q", n.Value)
		case kindInt, kindFloat, kindBool:
			return n.Value
		}
	}
	return kindOf(n)
}
