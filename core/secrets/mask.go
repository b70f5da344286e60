package secrets

import (
	"bytes"
	"encoding/base64"
	"io"
	"slices"
	"strings"
)

// Mask is what a secret's value is replaced with.
const Mask = "***"

// Masker finds the values of secrets, and their base64 forms, in bytes. A
// multi-line value is also found line by line (a program may print it
// so). The zero Masker masks nothing.
type Masker struct {
	pats  [][]byte // longest first
	first [256]bool
	max   int
}

// NewMasker returns a Masker of values.
func NewMasker(values [][]byte) *Masker {
	m := &Masker{}
	seen := map[string]bool{}
	add := func(p string) {
		if p == "" || seen[p] {
			return
		}
		seen[p] = true
		m.pats = append(m.pats, []byte(p))
	}
	for _, v := range values {
		s := string(v)
		add(s)
		add(base64.StdEncoding.EncodeToString(v))
		add(base64.RawStdEncoding.EncodeToString(v))
		if strings.ContainsAny(s, "\r\n") {
			for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
				add(line)
			}
		}
	}
	slices.SortStableFunc(m.pats, func(a, b []byte) int { return len(b) - len(a) })
	for _, p := range m.pats {
		m.first[p[0]] = true
		m.max = max(m.max, len(p))
	}
	return m
}

// Empty reports whether m masks nothing.
func (m *Masker) Empty() bool { return m == nil || len(m.pats) == 0 }

// Bytes returns b with every value masked.
func (m *Masker) Bytes(b []byte) []byte {
	if m.Empty() {
		return b
	}
	out, rest := m.scan(nil, b, true)
	_ = rest
	return out
}

// String is Bytes of a string.
func (m *Masker) String(s string) string {
	if m.Empty() {
		return s
	}
	return string(m.Bytes([]byte(s)))
}

// scan appends buf, masked, to out. When final is false it stops before a
// tail that could be the start of a value, and returns that tail.
func (m *Masker) scan(out, buf []byte, final bool) ([]byte, []byte) {
	i, lit := 0, 0
	for i < len(buf) {
		if !m.first[buf[i]] {
			i++
			continue
		}
		if !final && len(buf)-i < m.max && m.partial(buf[i:]) {
			break
		}
		if p := m.match(buf[i:]); p > 0 {
			out = append(out, buf[lit:i]...)
			out = append(out, Mask...)
			i += p
			lit = i
			continue
		}
		i++
	}
	out = append(out, buf[lit:i]...)
	return out, buf[i:]
}

// match returns the length of the longest value b starts with; 0: none.
func (m *Masker) match(b []byte) int {
	for _, p := range m.pats {
		if bytes.HasPrefix(b, p) {
			return len(p)
		}
	}
	return 0
}

// partial reports whether b is a proper prefix of a value: more bytes could
// make it one (or a longer one).
func (m *Masker) partial(b []byte) bool {
	for _, p := range m.pats {
		if len(p) > len(b) && bytes.HasPrefix(p, b) {
			return true
		}
	}
	return false
}

// Writer returns a writer that writes what it is given to w with every
// value masked, also across writes. Close writes what it held back (a
// possible start of a value) and does not close w.
func (m *Masker) Writer(w io.Writer) io.WriteCloser {
	return &maskWriter{m: m, w: w}
}

type maskWriter struct {
	m    *Masker
	w    io.Writer
	held []byte
	out  []byte
}

func (mw *maskWriter) Write(p []byte) (int, error) {
	buf := append(mw.held, p...)
	var rest []byte
	mw.out, rest = mw.m.scan(mw.out[:0], buf, false)
	mw.held = append(mw.held[:0:0], rest...)
	if len(mw.out) > 0 {
		if _, err := mw.w.Write(mw.out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (mw *maskWriter) Close() error {
	if len(mw.held) == 0 {
		return nil
	}
	out, _ := mw.m.scan(nil, mw.held, true)
	mw.held = nil
	_, err := mw.w.Write(out)
	return err
}
