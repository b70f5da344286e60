// Package secrets keeps the values of a wiz home's secrets encrypted at rest
// and masks them where they could show.
//
// A Keyring holds the home's secrets key: an age X25519 identity in a file
// (0600) beside the store, never in it. Values are encrypted to it with age
// (filippo.io/age) before they reach the store. The same key, through a
// derived HMAC key, names a secret's value in a cache key (MAC) without
// revealing it.
package secrets

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"filippo.io/age"
)

// KeyFile is the secrets key's file name in the store's data directory.
const KeyFile = "secrets.key"

// MaxValue is the largest secret value: a secret reaches a program as an
// environment variable or a small file.
const MaxValue = 64 << 10

// NameRE is what a secret's name may be: an identifier, as in
// ${{ secrets.NAME }}.
var NameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// CheckName returns an error naming the rule when name is not a valid
// secret name.
func CheckName(name string) error {
	if !NameRE.MatchString(name) {
		return fmt.Errorf("invalid secret name %q: use letters, digits and _, not starting with a digit (at most 128)", name)
	}
	return nil
}

// Keyring encrypts and decrypts secret values with a home's secrets key.
// It reads (or creates) the key file on first use.
type Keyring struct {
	path string
	// explicit: the file was named by the user; it is never created.
	explicit bool

	once sync.Once
	id   *age.X25519Identity
	err  error
}

// NewKeyring returns the keyring of the key file path. When explicit is
// false the file is created (0600) the first time a value is encrypted; an
// explicit file (--secrets-key-file) must exist.
func NewKeyring(path string, explicit bool) *Keyring {
	return &Keyring{path: path, explicit: explicit}
}

// Path returns the key file's path.
func (k *Keyring) Path() string { return k.path }

// load reads the key file; create makes it when it is missing and may be
// created.
func (k *Keyring) load(create bool) (*age.X25519Identity, error) {
	k.once.Do(func() {
		k.id, k.err = k.read()
	})
	if k.err != nil && errors.Is(k.err, fs.ErrNotExist) && create && !k.explicit {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, fmt.Errorf("make the secrets key: %w", err)
		}
		if err := writeKey(k.path, id); err != nil {
			return nil, err
		}
		k.id, k.err = id, nil
	}
	if k.err != nil {
		return nil, k.err
	}
	return k.id, nil
}

func (k *Keyring) read() (*age.X25519Identity, error) {
	b, err := os.ReadFile(k.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("secrets key %s does not exist: restore it, or name the right file with --secrets-key-file or WIZ_SECRETS_KEY_FILE: %w", k.path, err)
		}
		return nil, fmt.Errorf("read the secrets key: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, err := age.ParseX25519Identity(line)
		if err != nil {
			return nil, fmt.Errorf("secrets key %s: not an age identity (AGE-SECRET-KEY-1…): %w", k.path, err)
		}
		return id, nil
	}
	return nil, fmt.Errorf("secrets key %s holds no age identity (AGE-SECRET-KEY-1…)", k.path)
}

// writeKey writes id to path (0600) so that no reader sees a partial file.
func writeKey(path string, id *age.X25519Identity) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write the secrets key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".secrets-key-*")
	if err != nil {
		return fmt.Errorf("write the secrets key: %w", err)
	}
	defer os.Remove(tmp.Name())
	body := "# wiz secrets key: the store's secrets are encrypted to it. Keep it with backups of the store, apart from them.\n" + id.String() + "\n"
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(body)
		if err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// Link, not rename: a key another process made first wins.
		err = os.Link(tmp.Name(), path)
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("write the secrets key %s: %w", path, err)
	}
	return nil
}

// Encrypt returns value encrypted to the key, creating the key file when it
// is missing and may be created.
func (k *Keyring) Encrypt(value []byte) ([]byte, error) {
	id, err := k.load(true)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	w, err := age.Encrypt(&b, id.Recipient())
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if _, err := w.Write(value); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return b.Bytes(), nil
}

// Decrypt returns the value of ciphertext.
func (k *Keyring) Decrypt(ciphertext []byte) ([]byte, error) {
	id, err := k.load(false)
	if err != nil {
		return nil, err
	}
	r, err := age.Decrypt(bytes.NewReader(ciphertext), id)
	if err != nil {
		return nil, fmt.Errorf("decrypt with %s (is it the key these secrets were set with?): %w", k.path, err)
	}
	v, err := io.ReadAll(io.LimitReader(r, MaxValue+1))
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return v, nil
}

// MAC returns a keyed digest of value (hex HMAC-SHA256 with a key derived
// from the secrets key): it changes when the value does and says nothing of
// it without the key.
func (k *Keyring) MAC(value []byte) (string, error) {
	id, err := k.load(false)
	if err != nil {
		return "", err
	}
	dk := sha256.Sum256([]byte("wiz secret mac v1\x00" + id.String()))
	h := hmac.New(sha256.New, dk[:])
	h.Write(value)
	return hex.EncodeToString(h.Sum(nil)), nil
}
