package blob

import (
	"bytes"
	"errors"
	"fmt"
)

// DefaultInlineMax is the largest value kept inline as Wiz Data when no
// threshold is set: 1 MiB. Larger values are moved to a blob.
const DefaultInlineMax = 1 << 20

// ErrTooLarge is returned when a value grows past its size limit (a
// pipeline's max_output_size).
var ErrTooLarge = errors.New("over the size limit")

// Spill collects one value as it is written: in memory while it is at most
// InlineMax bytes, then in a blob of the store. With a Max, writing more than
// Max bytes fails with ErrTooLarge and discards what was written, so no
// partial blob is kept. A Spill is used by one goroutine at a time; it never
// holds more than InlineMax bytes in memory.
type Spill struct {
	store     *Store
	inlineMax int64
	max       int64
	buf       bytes.Buffer
	w         *Writer
	n         int64
	err       error
}

// NewSpill starts a value that stays inline up to inlineMax bytes (0: the
// default, DefaultInlineMax) and may not exceed max bytes (0: no limit).
func (s *Store) NewSpill(inlineMax, max int64) *Spill {
	if inlineMax <= 0 {
		inlineMax = DefaultInlineMax
	}
	return &Spill{store: s, inlineMax: inlineMax, max: max}
}

// Write implements io.Writer. After an error every Write fails with it.
func (sp *Spill) Write(p []byte) (int, error) {
	if sp.err != nil {
		return 0, sp.err
	}
	if sp.max > 0 && sp.n+int64(len(p)) > sp.max {
		sp.fail(fmt.Errorf("%w: more than %d bytes written, the limit (max_output_size) is %s", ErrTooLarge, sp.max, Size(sp.max)))
		return 0, sp.err
	}
	if sp.w == nil && sp.n+int64(len(p)) <= sp.inlineMax {
		sp.n += int64(len(p))
		return sp.buf.Write(p)
	}
	if sp.w == nil {
		w, err := sp.store.Create()
		if err != nil {
			sp.fail(err)
			return 0, err
		}
		sp.w = w
		if _, err := w.Write(sp.buf.Bytes()); err != nil {
			sp.fail(err)
			return 0, err
		}
		sp.buf = bytes.Buffer{}
	}
	n, err := sp.w.Write(p)
	sp.n += int64(n)
	if err != nil {
		sp.fail(err)
	}
	return n, err
}

func (sp *Spill) fail(err error) {
	sp.err = err
	sp.Abort()
}

// Err returns the error that stopped the value, if any: ErrTooLarge, or
// the store's (a full disk).
func (sp *Spill) Err() error { return sp.err }

// Size returns how many bytes were written so far.
func (sp *Spill) Size() int64 { return sp.n }

// Commit ends the value. It returns the bytes when the value stayed inline,
// or the digest and size of the blob it was moved to (and nil bytes). After a
// failed Write it returns that error and keeps nothing.
func (sp *Spill) Commit() (inline []byte, digest string, size int64, err error) {
	if sp.err != nil {
		return nil, "", 0, sp.err
	}
	if sp.w == nil {
		return sp.buf.Bytes(), "", sp.n, nil
	}
	digest, size, err = sp.w.Commit()
	if err != nil {
		sp.err = err
		return nil, "", 0, err
	}
	return nil, digest, size, nil
}

// Abort discards the value and any blob being written.
func (sp *Spill) Abort() {
	if sp.w != nil {
		sp.w.Abort()
	}
	sp.buf = bytes.Buffer{}
}

// Size formats a byte count for people: "1 MiB (1048576 bytes)".
func Size(n int64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	v, u := float64(n)/1024, 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	s := fmt.Sprintf("%.1f", v)
	if s[len(s)-2:] == ".0" {
		s = s[:len(s)-2]
	}
	return fmt.Sprintf("%s %s (%d bytes)", s, units[u], n)
}
