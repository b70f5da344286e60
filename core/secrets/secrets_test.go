package secrets_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/core/secrets"
)

func TestMaskerMasksAcrossEveryWriteBoundary(t *testing.T) {
	m := secrets.NewMasker([][]byte{[]byte("hunter2"), []byte("hunter22x")})
	in := "a hunter2 b hunter22x c hunte d aGdW" + base64.StdEncoding.EncodeToString([]byte("hunter2")) + " e hunter2"
	want := "a *** b *** c hunte d aGdW*** e ***"
	if got := m.String(in); got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	for split := 0; split <= len(in); split++ {
		for split2 := split; split2 <= len(in); split2 += 3 {
			var b bytes.Buffer
			w := m.Writer(&b)
			for _, part := range []string{in[:split], in[split:split2], in[split2:]} {
				if _, err := w.Write([]byte(part)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if b.String() != want {
				t.Fatalf("writes split at %d,%d: %q, want %q", split, split2, b.String(), want)
			}
		}
	}
}

func TestMaskerMasksEachLineOfAMultiLineValue(t *testing.T) {
	m := secrets.NewMasker([][]byte{[]byte("line-one\nline-two\n")})
	if got := m.String("x line-two y"); got != "x *** y" {
		t.Fatalf("got %q", got)
	}
	if got := m.String("line-one\nline-two\n!"); got != "***!" {
		t.Fatalf("got %q", got)
	}
}

func TestEmptyMaskerChangesNothing(t *testing.T) {
	var m *secrets.Masker
	if got := m.String("abc"); got != "abc" {
		t.Fatalf("got %q", got)
	}
}

func TestKeyringRoundTripAndKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "data", secrets.KeyFile)
	k := secrets.NewKeyring(path, false)
	ct, err := k.Encrypt([]byte("s3cret-value"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("s3cret-value")) {
		t.Fatal("the ciphertext holds the value")
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	// Another keyring on the same file (a later process) decrypts it.
	v, err := secrets.NewKeyring(path, false).Decrypt(ct)
	if err != nil || string(v) != "s3cret-value" {
		t.Fatalf("Decrypt = %q, %v", v, err)
	}
	mac1, _ := k.MAC([]byte("a"))
	mac2, _ := k.MAC([]byte("b"))
	if mac1 == mac2 || len(mac1) != 64 {
		t.Fatalf("MACs %s %s", mac1, mac2)
	}
	// A different key cannot decrypt: the error says which file was used.
	other := secrets.NewKeyring(filepath.Join(dir, "other.key"), false)
	if _, err := other.Encrypt([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Decrypt(ct); err == nil || !strings.Contains(err.Error(), "other.key") {
		t.Fatalf("Decrypt with another key: %v", err)
	}
}

func TestExplicitKeyFileMustExist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.key")
	_, err := secrets.NewKeyring(path, true).Encrypt([]byte("x"))
	if err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "--secrets-key-file") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("an explicit key file was created")
	}
}
