package pluginhost

import (
	"os"
	"path/filepath"
	"testing"
)

// A binary that passed its check is not hashed again while its identity is
// unchanged; a write to it (same size, even) or another digest asks for the
// check again, and so does a check made too soon after the binary changed.
func TestVerifiedCache(t *testing.T) {
	dir := t.TempDir()
	bin, cache := filepath.Join(dir, "plugin"), filepath.Join(dir, "cache", "verified.json")
	if err := os.WriteFile(bin, []byte("binary one"), 0o755); err != nil {
		t.Fatal(err)
	}
	id, ok, known := verifiedBefore(cache, bin, "aa")
	if !ok || known {
		t.Fatalf("before any check: ok %v known %v, want ok and not known", ok, known)
	}
	recordVerified(cache, bin, "aa", id) // changed just now: not remembered
	if _, _, known := verifiedBefore(cache, bin, "aa"); known {
		t.Fatal("a check made right after the binary changed was remembered")
	}
	old := verifiedSettle
	verifiedSettle = 0
	defer func() { verifiedSettle = old }()
	recordVerified(cache, bin, "aa", id)
	if _, _, known := verifiedBefore(cache, bin, "aa"); !known {
		t.Fatal("an unchanged binary that passed is not known")
	}
	if _, _, known := verifiedBefore(cache, bin, "bb"); known {
		t.Error("known under another digest")
	}
	if err := os.WriteFile(bin, []byte("binary two"), 0o755); err != nil { // same size
		t.Fatal(err)
	}
	if _, _, known := verifiedBefore(cache, bin, "aa"); known {
		t.Error("a binary written since its check is still known")
	}
}
