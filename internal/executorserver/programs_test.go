package executorserver

import (
	"os"
	"path/filepath"
	"testing"
)

func TestProgramDigestFollowsTheFile(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho one\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var p programs
	first, err := p.digest(prog, "")
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.digest(prog, "")
	if err != nil || again != first {
		t.Fatalf("same file: digest %q, %v; want %q", again, err, first)
	}
	// Same size, rewritten in place: the identity (ctime at least) changes.
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho two\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	changed, err := p.digest(prog, "")
	if err != nil {
		t.Fatal(err)
	}
	if changed == first {
		t.Fatalf("rewritten program kept digest %s", first)
	}
	// Relative to a dir.
	rel, err := p.digest("prog", dir)
	if err != nil || rel != changed {
		t.Fatalf("relative to dir: %q, %v; want %q", rel, err, changed)
	}
	// Relative without a dir: a file of the task's fresh dir, i.e. an input.
	if in, err := p.digest("./prog", ""); err != nil || in != programInput {
		t.Fatalf("relative without dir: %q, %v; want %q", in, err, programInput)
	}
	if _, err := p.digest(filepath.Join(dir, "missing"), ""); err == nil {
		t.Fatal("missing program: no error")
	}
}
