package processor

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/wiz-run/wiz/sdk/blob"
)

// Data is Wiz Data as a processor sees it: inline bytes, or files. A processor
// reading its input does not need to care which: Open gives a reader either way.
type Data struct {
	// Bytes holds the value inline.
	Bytes []byte
	// ContentType describes Bytes, e.g. "application/json".
	ContentType string
	// Metadata is free-form.
	Metadata map[string]string
	// Files hold the value when it is one file or a directory of files.
	Files []File
	// Directory says Files are a directory, even with one file or none
	// (CreateFiles sets it): a native program taking it gets a directory.
	Directory bool
}

// File is a Wiz File as a processor sees it. A program that needs a path
// rather than a reader can use Path, on the executor's machine; Data.Open
// reads it and checks its digest.
type File struct {
	// Digest is "sha256:<hex>".
	Digest string
	// Size in bytes.
	Size int64
	// Name is the file's name or slash-separated relative path.
	Name string
	// Path is where the file can be read on this machine.
	Path string
}

// Text returns Wiz Data holding s as text/plain.
func Text(s string) *Data {
	return &Data{Bytes: []byte(s), ContentType: "text/plain"}
}

// Bytes returns Wiz Data holding b with the given content type.
func Bytes(b []byte, contentType string) *Data {
	return &Data{Bytes: b, ContentType: contentType}
}

// Size is the total size of the value in bytes.
func (d *Data) Size() int64 {
	if d == nil {
		return 0
	}
	n := int64(len(d.Bytes))
	for _, f := range d.Files {
		n += f.Size
	}
	return n
}

// Open returns a reader of the value: the inline bytes, or the files one after
// the other, streamed from disk. Files with a sha256 digest are verified: the
// reader fails with an error wrapping blob.ErrDigestMismatch, naming the
// file, when one's content changed on disk.
func (d *Data) Open() (io.ReadCloser, error) {
	if d == nil {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if len(d.Files) == 0 {
		return io.NopCloser(bytes.NewReader(d.Bytes)), nil
	}
	rs := make([]io.Reader, 0, len(d.Files))
	cs := make([]io.Closer, 0, len(d.Files))
	for _, f := range d.Files {
		var fh io.ReadCloser
		var err error
		if blob.ValidDigest(f.Digest) {
			fh, err = blob.OpenFile(f.Path, f.Digest)
		} else {
			fh, err = os.Open(f.Path)
		}
		if err != nil {
			for _, c := range cs {
				c.Close()
			}
			return nil, fmt.Errorf("open input file %s (%s): %w", f.Name, f.Digest, err)
		}
		rs = append(rs, fh)
		cs = append(cs, fh)
	}
	return &multiReadCloser{Reader: io.MultiReader(rs...), cs: cs}, nil
}

// ReadAll reads the whole value into memory. Use Open for large values.
func (d *Data) ReadAll() ([]byte, error) {
	if d != nil && len(d.Files) == 0 {
		return d.Bytes, nil
	}
	r, err := d.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

type multiReadCloser struct {
	io.Reader
	cs []io.Closer
}

func (m *multiReadCloser) Close() error {
	var first error
	for _, c := range m.cs {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
