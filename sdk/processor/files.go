package processor

import (
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/wiz-run/wiz/sdk/blob"
)

// FilesWriter writes one output as Wiz Files: a directory of files, each
// streamed into its own blob and named by its slash-separated path in the
// directory. The next processor gets the same tree back (a native program
// finds it as a directory in its working dir). The files together may not
// exceed the pipeline's max_output_size.
//
// A FilesWriter is used by one goroutine. Close emits the output; Abort
// discards it (blobs already stored stay until `wiz gc`, unreferenced).
// Calling Abort after Close does nothing, so `defer w.Abort()` is safe.
type FilesWriter struct {
	emit  Emitter
	name  string
	st    outputStore
	files []File
	seen  map[string]bool
	total int64
	max   int64
	done  bool
}

// CreateFiles starts output name of the task that emit belongs to, written
// as a directory of Wiz Files. It needs the Emitter a served pack gets, since
// files live in the executor's blob store; any other Emitter is an error.
func CreateFiles(emit Emitter, name string) (*FilesWriter, error) {
	st, ok := emit.(outputStore)
	if !ok {
		return nil, fmt.Errorf("output %s: CreateFiles needs the Emitter of a served pack (files go to the executor's blob store)", name)
	}
	return &FilesWriter{emit: emit, name: name, st: st, seen: map[string]bool{}, max: st.maxOutputBytes()}, nil
}

// Add stores everything read from r as the file at path (slash-separated,
// relative, without ".." — e.g. "pages/1.html"). Adding a path twice, or
// going over max_output_size, is an error naming the output and the path.
func (w *FilesWriter) Add(p string, r io.Reader) error {
	if w.done {
		return fmt.Errorf("output %s: add after Close or Abort", w.name)
	}
	clean := path.Clean(p)
	if p == "" || clean == "." || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(p, "\\") {
		return fmt.Errorf("output %s: file path %q must be relative, slash-separated and stay inside the output", w.name, p)
	}
	if w.seen[clean] {
		return fmt.Errorf("output %s: file %s added twice", w.name, clean)
	}
	store, err := w.st.blobs()
	if err != nil {
		return fmt.Errorf("output %s: %w", w.name, err)
	}
	bw, err := store.Create()
	if err != nil {
		return fmt.Errorf("output %s: file %s: %w", w.name, clean, err)
	}
	src := r
	if w.max > 0 {
		src = io.LimitReader(r, w.max-w.total+1)
	}
	n, err := io.Copy(bw, src)
	if err != nil {
		bw.Abort()
		return fmt.Errorf("output %s: file %s: %w", w.name, clean, err)
	}
	if w.max > 0 && w.total+n > w.max {
		bw.Abort()
		return fmt.Errorf("output %s: file %s: %w: more than %d bytes in all, the limit (max_output_size) is %s", w.name, clean, blob.ErrTooLarge, w.max, blob.Size(w.max))
	}
	digest, size, err := bw.Commit()
	if err != nil {
		return fmt.Errorf("output %s: file %s: %w", w.name, clean, err)
	}
	w.seen[clean] = true
	w.total += size
	w.files = append(w.files, File{Digest: digest, Size: size, Name: clean})
	return nil
}

// Close emits the output: every file added, in the order added.
func (w *FilesWriter) Close() error {
	if w.done {
		return fmt.Errorf("output %s: already closed or aborted", w.name)
	}
	w.done = true
	return w.emit.Output(w.name, &Data{ContentType: "application/octet-stream", Files: w.files, Directory: true})
}

// Abort discards the output. It does nothing after Close.
func (w *FilesWriter) Abort() {
	w.done = true
}
