package executorserver

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/core/secrets"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

func TestWithSecretsReplacesMarkersAndLeavesThePlanAlone(t *testing.T) {
	plan := []string{"A=plain", "B=Bearer " + secrets.Marker("T"), "C=" + secrets.Marker("T") + secrets.Marker("U")}
	got, err := withSecrets(plan, map[string][]byte{"T": []byte("t0k"), "U": []byte("u")})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "A=plain,B=Bearer t0k,C=t0ku" {
		t.Fatalf("got %q", got)
	}
	if plan[1] != "B=Bearer "+secrets.Marker("T") {
		t.Fatalf("the cached plan's env was changed: %q", plan)
	}
	if _, err := withSecrets([]string{"X=" + secrets.Marker("T")}, map[string][]byte{"T": []byte("a\x00b")}); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("a value with a NUL byte: %v", err)
	}
	if _, err := withSecrets([]string{"X=" + secrets.Marker("V")}, map[string][]byte{"T": []byte("a")}); err == nil || !strings.Contains(err.Error(), "secret V was not sent") {
		t.Fatalf("a marker of a secret not sent: %v", err)
	}
}

func TestSecretFilesStayInTheWorkingDirectory(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	vals := map[string][]byte{"K": []byte("v")}
	if _, err := writeSecretFiles(dir, map[string]string{"link/k": "K"}, vals); err == nil {
		t.Fatal("a secret file was written through a symlink out of the working directory")
	}
	if _, err := os.Stat(filepath.Join(outside, "k")); err == nil {
		t.Fatal("the file is outside the working directory")
	}
	remove, err := writeSecretFiles(dir, map[string]string{"a/b/k": "K"}, vals)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "a", "b", "k"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", st, err)
	}
	remove()
	remove()
	if _, err := os.Stat(filepath.Join(dir, "a", "b", "k")); err == nil {
		t.Fatal("the secret file is still there after remove")
	}
	if err := os.WriteFile(filepath.Join(dir, "taken"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := writeSecretFiles(dir, map[string]string{"taken": "K"}, vals); err == nil || !strings.Contains(err.Error(), "already in the working directory") {
		t.Fatalf("a path an input holds: %v", err)
	}
}

// pieces is a reader that returns each of its chunks, then errWouldBlock
// after each one but the last, then io.EOF: a non-blocking pipe.
type pieces struct {
	chunks []string
	block  bool
}

func (p *pieces) Read(b []byte) (int, error) {
	if p.block {
		p.block = false
		return 0, errWouldBlock
	}
	if len(p.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.chunks[0])
	p.chunks = p.chunks[1:]
	p.block = len(p.chunks) > 0
	return n, nil
}

func TestStderrScannerMasksALineReadInPieces(t *testing.T) {
	var got strings.Builder
	se := &stderrScanner{mask: secrets.NewMasker([][]byte{[]byte("hunter2")})}
	se.emit = func(ev *wizrpc.ExecuteEvent) { got.Write(ev.GetLog().GetData()) }
	r := &pieces{chunks: []string{"pass hun", "ter2 ok\nhunt", "er2"}}
	for se.scan(r); se.err == errWouldBlock; se.scan(r) {
	}
	se.flush()
	if got.String() != "pass *** ok\n***" {
		t.Fatalf("got %q", got.String())
	}
	if se.tail() != "pass *** ok\n***" {
		t.Fatalf("tail %q", se.tail())
	}
}
