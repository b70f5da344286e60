package blob_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/sdk/blob"
)

func TestSpill(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		inlineMax int64
		max       int64
		writes    []string
		inline    string // want inline bytes
		blob      string // want a blob with this content
		err       error
	}{
		{name: "empty stays inline", inlineMax: 4, writes: nil, inline: ""},
		{name: "at the threshold stays inline", inlineMax: 4, writes: []string{"ab", "cd"}, inline: "abcd"},
		{name: "past the threshold spills", inlineMax: 4, writes: []string{"ab", "cd", "e"}, blob: "abcde"},
		{name: "one big write spills", inlineMax: 4, writes: []string{"abcdefgh"}, blob: "abcdefgh"},
		{name: "at the limit is fine", inlineMax: 2, max: 5, writes: []string{"abc", "de"}, blob: "abcde"},
		{name: "past the limit fails", inlineMax: 2, max: 5, writes: []string{"abc", "def"}, err: blob.ErrTooLarge},
		{name: "past the limit inline fails", inlineMax: 100, max: 5, writes: []string{"abcdef"}, err: blob.ErrTooLarge},
		{name: "default threshold is 1 MiB", writes: []string{strings.Repeat("x", 1<<20)}, inline: strings.Repeat("x", 1<<20)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			sp := s.NewSpill(tt.inlineMax, tt.max)
			var werr error
			for _, w := range tt.writes {
				if _, werr = sp.Write([]byte(w)); werr != nil {
					break
				}
			}
			inline, digest, size, err := sp.Commit()
			if tt.err != nil {
				if !errors.Is(werr, tt.err) || !errors.Is(err, tt.err) || !errors.Is(sp.Err(), tt.err) {
					t.Fatalf("write error %v, commit error %v, want %v", werr, err, tt.err)
				}
				if !strings.Contains(err.Error(), "max_output_size") {
					t.Errorf("error %q does not name max_output_size", err)
				}
				if got := files(t, s.Dir(), "sha256"); got != nil {
					t.Errorf("a failed value left blobs %v", got)
				}
				if got := files(t, s.Dir(), "tmp"); got != nil {
					t.Errorf("a failed value left temp files %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.blob == "" {
				if digest != "" || string(inline) != tt.inline || size != int64(len(tt.inline)) {
					t.Fatalf("got inline %d bytes, digest %q, size %d; want inline %d bytes", len(inline), digest, size, len(tt.inline))
				}
				if got := files(t, s.Dir(), "sha256"); got != nil {
					t.Errorf("an inline value made blobs %v", got)
				}
				return
			}
			if inline != nil || digest != digestOf([]byte(tt.blob)) || size != int64(len(tt.blob)) {
				t.Fatalf("got inline %q, digest %s, size %d; want the blob of %q", inline, digest, size, tt.blob)
			}
			got, err := readBlob(s, digest)
			if err != nil || string(got) != tt.blob {
				t.Fatalf("blob holds %q, %v", got, err)
			}
			if got := files(t, s.Dir(), "tmp"); got != nil {
				t.Errorf("temp files left: %v", got)
			}
		})
	}
}

func TestSpillAbort(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	sp := s.NewSpill(2, 0)
	if _, err := io.Copy(sp, bytes.NewReader([]byte("more than two bytes"))); err != nil {
		t.Fatal(err)
	}
	sp.Abort()
	if got := files(t, s.Dir(), "tmp"); got != nil {
		t.Errorf("Abort left temp files %v", got)
	}
	if got := files(t, s.Dir(), "sha256"); got != nil {
		t.Errorf("Abort left blobs %v", got)
	}
}

func TestOpenFileVerifies(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	digest, _, err := s.Put(strings.NewReader("content"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := blob.OpenFile(s.Path(digest), digest)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); err != nil || string(b) != "content" {
		t.Fatalf("read %q, %v", b, err)
	}
	r.Close()
	other := digestOf([]byte("other"))
	r, err = blob.OpenFile(s.Path(digest), other)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = io.ReadAll(r)
	if !errors.Is(err, blob.ErrDigestMismatch) || !strings.Contains(err.Error(), s.Path(digest)) {
		t.Fatalf("reading with the wrong digest: %v, want ErrDigestMismatch naming the file", err)
	}
	if _, err := blob.OpenFile(s.Path(digest), "md5:x"); !errors.Is(err, blob.ErrBadDigest) {
		t.Fatalf("bad digest: %v", err)
	}
}

func TestSize(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{
		0: "0 bytes", 1023: "1023 bytes", 1024: "1 KiB (1024 bytes)",
		1 << 20: "1 MiB (1048576 bytes)", 1000000: "976.6 KiB (1000000 bytes)", 3 << 30: "3 GiB (3221225472 bytes)",
	} {
		if got := blob.Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

// A Spill collects a value of unknown size: inline while small, a blob past
// the threshold.
func ExampleStore_NewSpill() {
	dir, _ := os.MkdirTemp("", "wiz-blobs")
	defer os.RemoveAll(dir)
	s, err := blob.Open(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, v := range []string{"small", "larger than sixteen bytes"} {
		sp := s.NewSpill(16, 1<<20)
		io.WriteString(sp, v)
		inline, digest, size, err := sp.Commit()
		fmt.Printf("inline=%q blob=%v size=%d err=%v\n", inline, digest != "", size, err)
	}
	sp := s.NewSpill(16, 8)
	_, err = io.WriteString(sp, "too long for the limit")
	fmt.Println(errors.Is(err, blob.ErrTooLarge))
	// Output:
	// inline="small" blob=false size=5 err=<nil>
	// inline="" blob=true size=25 err=<nil>
	// true
}
