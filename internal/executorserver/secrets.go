package executorserver

// A task's secrets: substituted into its environment, written as its secret
// files for as long as its program runs, and masked in everything the task
// sends back (logs, warnings, messages, outputs). Nothing of them is kept
// after the task.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/wiz-run/wiz/core/secrets"
	"github.com/wiz-run/wiz/proto/wizrpc"
)

// secretsMasker returns the masker of t's secret values.
func secretsMasker(t *wizrpc.Task) *secrets.Masker {
	vals := make([][]byte, 0, len(t.Secrets))
	for _, v := range t.Secrets {
		vals = append(vals, v)
	}
	return secrets.NewMasker(vals)
}

// maskEvents returns emit with the secrets of mask masked in every log,
// warning and message of the events it sends.
func maskEvents(mask *secrets.Masker, emit func(*wizrpc.ExecuteEvent)) func(*wizrpc.ExecuteEvent) {
	return func(ev *wizrpc.ExecuteEvent) {
		switch e := ev.Event.(type) {
		case *wizrpc.ExecuteEvent_Log:
			e.Log.Data = mask.Bytes(e.Log.Data)
		case *wizrpc.ExecuteEvent_Warning:
			e.Warning.Message = mask.String(e.Warning.Message)
		case *wizrpc.ExecuteEvent_Finished:
			e.Finished.Error = mask.String(e.Finished.Error)
		}
		emit(ev)
	}
}

// withSecrets returns env with the secret markers of its values replaced by
// the secrets' values.
func withSecrets(env []string, values map[string][]byte) ([]string, error) {
	if len(values) == 0 {
		return env, nil
	}
	out := env // shared with the cached plan until a value changes
	cloned := false
	for i, kv := range env {
		if !secrets.HasMarker(kv) {
			continue
		}
		if !cloned {
			out, cloned = slices.Clone(env), true
		}
		v, err := secrets.Substitute(kv, values)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// writeSecretFiles writes each secret file (path relative to dir: secret
// name) with mode 0600, inside dir (a path cannot leave it, by symlink
// either). remove deletes them; it is safe to call more than once.
func writeSecretFiles(dir string, files map[string]string, values map[string][]byte) (remove func(), err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return func() {}, fmt.Errorf("secret_files: open the working directory: %w", err)
	}
	var written []string
	cleanup := func() {
		for _, p := range written {
			_ = root.Remove(p)
		}
		written = nil
	}
	for _, path := range slices.Sorted(maps.Keys(files)) {
		if err := writeSecretFile(root, path, files[path], values); err != nil {
			cleanup()
			root.Close()
			return func() {}, err
		}
		written = append(written, path)
	}
	closed := false
	return func() {
		if !closed {
			closed = true
			cleanup()
			root.Close()
		}
	}, nil
}

// writeSecretFile writes the file at path (in root) of secret name.
func writeSecretFile(root *os.Root, path, name string, values map[string][]byte) error {
	v, ok := values[name]
	if !ok {
		return fmt.Errorf("secret_files.%s: secret %s was not sent with the task", path, name)
	}
	if d := filepath.Dir(path); d != "." {
		if err := root.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("secret_files.%s: %w", path, err)
		}
	}
	f, err := root.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("secret_files.%s: a file of that name is already in the working directory (an input?); choose another path", path)
		}
		return fmt.Errorf("secret_files.%s: %w", path, err)
	}
	_, err = f.Write(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = root.Remove(path)
		return fmt.Errorf("secret_files.%s: %w", path, err)
	}
	return nil
}

// maskFiles masks the secrets of mask in the file or the files of the
// directory rel (relative to dir), in place, before they become outputs.
func maskFiles(mask *secrets.Masker, dir, rel string) error {
	top := filepath.Join(dir, rel)
	if _, err := os.Lstat(top); err != nil {
		return nil // missing: collect says so
	}
	return filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return maskFile(mask, path)
	})
}

func maskFile(mask *secrets.Masker, path string) (err error) {
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".wiz-mask-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	w := mask.Writer(tmp)
	if _, err = io.Copy(w, src); err == nil {
		err = w.Close()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), st.Mode().Perm())
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
