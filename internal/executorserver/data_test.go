package executorserver

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/proto/wizrpc"
	"github.com/wiz-run/wiz/sdk/blob"
)

// checkOutput holds what any pack sends to the task's limits, whatever SDK
// built the pack.
func TestCheckOutput(t *testing.T) {
	t.Parallel()
	store, err := blob.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{blobs: store}
	big := strings.Repeat("x", 100)

	// Inline bytes over the threshold move to a blob.
	d, err := s.checkOutput(&wizrpc.Task{InlineMaxBytes: 10}, "out", &wizpb.Data{Inline: []byte(big), ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Inline) != 0 || len(d.Files) != 1 || d.Files[0].Size != 100 || d.Files[0].Name != "out" || d.ContentType != "text/plain" {
		t.Fatalf("over the threshold: %v", d)
	}
	r, err := store.Open(d.Files[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(b) != big {
		t.Fatalf("blob holds %q, %v", b, err)
	}
	// At the threshold, or with the 1 MiB default, it stays inline.
	for _, task := range []*wizrpc.Task{{InlineMaxBytes: 100}, {}} {
		d, err := s.checkOutput(task, "out", &wizpb.Data{Inline: []byte(big)})
		if err != nil || string(d.Inline) != big || len(d.Files) != 0 {
			t.Errorf("inline max %d: %v, %v", task.InlineMaxBytes, d, err)
		}
	}
	// Over max_output_bytes, inline or files, fails naming the output.
	for _, in := range []*wizpb.Data{
		{Inline: []byte(big)},
		{Files: []*wizpb.FileRef{{Digest: "sha256:" + strings.Repeat("0", 64), Size: 60}, {Digest: "sha256:" + strings.Repeat("1", 64), Size: 41}}},
	} {
		_, err := s.checkOutput(&wizrpc.Task{MaxOutputBytes: 99}, "report", in)
		if !errors.Is(err, blob.ErrTooLarge) || !strings.HasPrefix(err.Error(), "output report is ") || !strings.Contains(err.Error(), "max_output_size is 99 bytes") {
			t.Errorf("over max_output_bytes: %v", err)
		}
	}
}
