package executorserver

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// fsClockPast returns once the file system stamps times later than ts: the
// logical clock says the dir's ctime settled long ago, and on a kernel that
// stamps from a coarse tick a change in ts's own tick could keep ts, as the
// settle time rules out for real tasks. It touches a probe file until its
// ctime passes ts (one tick, a few ms at most).
func fsClockPast(t *testing.T, ts syscall.Timespec) {
	t.Helper()
	probe := filepath.Join(t.TempDir(), "probe")
	for i := 0; ; i++ {
		if err := os.WriteFile(probe, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(probe, &st); err != nil {
			t.Fatal(err)
		}
		if st.Ctim.Nano() > ts.Nano() {
			return
		}
		if err := os.Remove(probe); err != nil {
			t.Fatal(err)
		}
		if i == 1_000_000 {
			t.Fatalf("the file system clock did not pass %v", time.Unix(ts.Unix()))
		}
	}
}

// TestTaskDirs: a directory a task left empty is handed to the next task;
// one with a file, a file added and removed, another mode, or replaced by a
// link is removed — whether the task got the dir within the settle time of
// its last check (the dir is read again) or after it (its ctime is compared).
func TestTaskDirs(t *testing.T) {
	t.Parallel()
	for _, wait := range []time.Duration{0, 2 * settle} {
		now := time.Now()
		p := &taskDirs{parent: t.TempDir(), now: func() time.Time { return now }}
		d1, err := p.get()
		if err != nil {
			t.Fatal(err)
		}
		p.put(d1)
		now = now.Add(wait)
		if d2, _ := p.get(); d2.path != d1.path {
			t.Errorf("wait %v: an empty dir was not reused: got %s, want %s", wait, d2.path, d1.path)
		} else {
			p.put(d2)
		}

		for name, spoil := range map[string]func(d string) error{
			"a file": func(d string) error { return os.WriteFile(filepath.Join(d, "x"), nil, 0o600) },
			"a file added and removed": func(d string) error {
				if err := os.WriteFile(filepath.Join(d, "x"), nil, 0o600); err != nil {
					return err
				}
				return os.Remove(filepath.Join(d, "x"))
			},
			"mode 0755": func(d string) error { return os.Chmod(d, 0o755) },
			"a link": func(d string) error {
				if err := os.Remove(d); err != nil {
					return err
				}
				return os.Symlink(t.TempDir(), d)
			},
		} {
			// A dir seen empty (put once), then got again.
			d, err := p.get()
			if err != nil {
				t.Fatal(err)
			}
			p.put(d)
			now = now.Add(wait)
			if d, err = p.get(); err != nil {
				t.Fatal(err)
			}
			if wait > 0 {
				fsClockPast(t, d.ctime)
			}
			if err := spoil(d.path); err != nil {
				t.Fatal(err)
			}
			p.put(d)
			if name == "a file added and removed" {
				// Empty again: read, found empty, kept.
				if n, _ := p.get(); n.path != d.path {
					t.Errorf("wait %v: %s: the dir, empty again, was not reused", wait, name)
				} else {
					p.put(n)
				}
				continue
			}
			if _, err := os.Lstat(d.path); !os.IsNotExist(err) {
				t.Errorf("wait %v: %s: the dir was kept (%v)", wait, name, err)
			}
			if n, _ := p.get(); n.path == d.path {
				t.Errorf("wait %v: %s: the dir was reused", wait, name)
			} else {
				p.put(n)
			}
		}
		p.close()
		if len(p.free) != 0 {
			t.Errorf("close left %d dirs", len(p.free))
		}
	}
}
