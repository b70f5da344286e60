package processor

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/wiz-run/wiz/sdk/blob"
)

// ErrTooLarge is returned when an output grows past the pipeline's
// max_output_size. It is blob.ErrTooLarge.
var ErrTooLarge = blob.ErrTooLarge

// OutputWriter writes one output of a data processor as a stream. While the
// output is small it is kept in memory and emitted inline as Wiz Data; once
// it passes the pipeline's inline_max_size (1 MiB by default) it is moved to a
// blob in the executor's blob store and emitted as a Wiz File, so a processor
// never holds a large output whole in memory. Writing past the pipeline's
// max_output_size fails with an error wrapping ErrTooLarge and keeps nothing.
//
// An OutputWriter is used by one goroutine. Close emits the output; Abort
// (or a failed Write) discards it. Calling Abort after Close does nothing, so
// `defer w.Abort()` is safe.
type OutputWriter struct {
	emit        Emitter
	name        string
	contentType string
	spill       *blob.Spill  // nil: an Emitter the SDK did not make
	buf         bytes.Buffer // the whole output when spill is nil
	done        bool
}

// outputStore is implemented by the Emitter the SDK hands a data processor
// when it serves a pack: it knows the task's blob store and limits.
type outputStore interface {
	newSpill() (*blob.Spill, error)
	blobs() (*blob.Store, error)
	maxOutputBytes() int64
}

// CreateOutput starts output name (with the given content type) of the task
// that emit belongs to, written as a stream. The Emitter a served pack gets
// spills to the executor's blob store; any other Emitter (a test's fake)
// gets the whole output through Output when the writer is closed.
func CreateOutput(emit Emitter, name, contentType string) (*OutputWriter, error) {
	w := &OutputWriter{emit: emit, name: name, contentType: contentType}
	if st, ok := emit.(outputStore); ok {
		sp, err := st.newSpill()
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		w.spill = sp
	}
	return w, nil
}

// Write implements io.Writer. An error names the output.
func (w *OutputWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("output %s: write after Close or Abort", w.name)
	}
	if w.spill == nil {
		return w.buf.Write(p)
	}
	n, err := w.spill.Write(p)
	if err != nil {
		return n, fmt.Errorf("output %s: %w", w.name, err)
	}
	return n, nil
}

// Close commits the output and emits it: inline when it stayed small, else as
// one Wiz File named after the output.
func (w *OutputWriter) Close() error {
	if w.done {
		return fmt.Errorf("output %s: already closed or aborted", w.name)
	}
	w.done = true
	if w.spill == nil {
		return w.emit.Output(w.name, &Data{Bytes: w.buf.Bytes(), ContentType: w.contentType})
	}
	inline, digest, size, err := w.spill.Commit()
	if err != nil {
		return fmt.Errorf("output %s: %w", w.name, err)
	}
	d := &Data{Bytes: inline, ContentType: w.contentType}
	if digest != "" {
		d = &Data{ContentType: w.contentType, Files: []File{{Digest: digest, Size: size, Name: w.name}}}
	}
	return w.emit.Output(w.name, d)
}

// Abort discards the output. It does nothing after Close.
func (w *OutputWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	if w.spill != nil {
		w.spill.Abort()
	}
	w.buf = bytes.Buffer{}
}

// errNoBlobDir is returned when a task carries no blob dir to spill to.
var errNoBlobDir = errors.New("the executor gave no blob dir for outputs")
