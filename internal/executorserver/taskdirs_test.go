package executorserver

import (
	"os"
	"path/filepath"
	"testing"
)

// TestTaskDirs: a directory a task left empty is handed to the next task;
// one with a file, another mode, or replaced by a link is removed.
func TestTaskDirs(t *testing.T) {
	t.Parallel()
	p := &taskDirs{parent: t.TempDir()}
	d1, err := p.get()
	if err != nil {
		t.Fatal(err)
	}
	p.put(d1)
	if d2, _ := p.get(); d2 != d1 {
		t.Errorf("an empty dir was not reused: got %s, want %s", d2, d1)
	}

	for name, spoil := range map[string]func(d string) error{
		"a file":    func(d string) error { return os.WriteFile(filepath.Join(d, "x"), nil, 0o600) },
		"mode 0755": func(d string) error { return os.Chmod(d, 0o755) },
		"a link": func(d string) error {
			if err := os.Remove(d); err != nil {
				return err
			}
			return os.Symlink(t.TempDir(), d)
		},
	} {
		d, err := p.get()
		if err != nil {
			t.Fatal(err)
		}
		if err := spoil(d); err != nil {
			t.Fatal(err)
		}
		p.put(d)
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("%s: the dir was kept (%v)", name, err)
		}
		if n, _ := p.get(); n == d {
			t.Errorf("%s: the dir was reused", name)
		}
	}
	p.close()
	if len(p.free) != 0 {
		t.Errorf("close left %d dirs", len(p.free))
	}
}
