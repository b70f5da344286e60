package executorserver

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// taskDirs hands out the fresh, empty working directories of native tasks.
// Making and removing a directory costs about 0.3 ms of system time on the
// ext4 disks measured here (8 µs on tmpfs), as much as the rest of a short
// task: so a directory that a task leaves as it got it — empty, still a
// 0700 directory of its own — is kept for a later task rather than removed
// and made again. A directory with anything in it is removed. Every task
// still starts in an empty directory no other running task has.
type taskDirs struct {
	parent string
	now    func() time.Time // time.Now; tests set a logical clock
	mu     sync.Mutex
	free   []*taskDir
}

// taskDir is one working directory and what the pool last saw of it.
type taskDir struct {
	path  string
	taken time.Time // when a task got it
	// known: ino and ctime are of the last time the dir was seen empty
	// and 0700. Adding, removing or renaming an entry, or a chmod, sets a
	// directory's ctime, which no program can set back.
	known bool
	ino   uint64
	ctime syscall.Timespec
}

// settle is how much older than the task a dir's ctime must be for an
// unchanged ctime to prove the dir unchanged: file systems stamp times from
// a coarse clock (one tick, a few ms), so a change in the same tick as the
// last one could leave the ctime as it was.
const settle = time.Second

// maxFreeDirs bounds the empty directories kept for later tasks.
const maxFreeDirs = 64

func (p *taskDirs) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// get returns an empty working directory under the pool's parent.
func (p *taskDirs) get() (*taskDir, error) {
	now := p.clock()
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		d := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		d.taken = now
		return d, nil
	}
	p.mu.Unlock()
	path, err := os.MkdirTemp(p.parent, "task-*")
	if err != nil {
		return nil, err
	}
	return &taskDir{path: path, taken: now}, nil
}

// put takes back a directory that a task no longer uses (its processes are
// gone): kept when it is empty and unchanged, else removed.
func (p *taskDirs) put(d *taskDir) {
	if d.unchanged() || d.empty() {
		p.mu.Lock()
		if len(p.free) < maxFreeDirs {
			p.free = append(p.free, d)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	os.RemoveAll(d.path)
}

// unchanged reports, with one system call, that the dir is the one last
// seen empty, untouched since: same inode, same ctime, and that ctime
// settled before the task got the dir.
func (d *taskDir) unchanged() bool {
	if !d.known || !time.Unix(d.ctime.Unix()).Before(d.taken.Add(-settle)) {
		return false
	}
	var st syscall.Stat_t
	if syscall.Lstat(d.path, &st) != nil {
		return false
	}
	return st.Mode&syscall.S_IFMT == syscall.S_IFDIR && st.Mode&0o7777 == 0o700 &&
		st.Ino == d.ino && st.Ctim == d.ctime
}

// empty reports whether the dir is a directory (not a link to one), mode
// 0700, with no entries, and notes its inode and ctime for unchanged. It
// makes four system calls (open, fstat, one getdents, close), where os.Open
// and Readdirnames would make twice as many.
func (d *taskDir) empty() bool {
	d.known = false
	fd, err := syscall.Open(d.path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false // not there, not a directory, or a link
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || st.Mode&0o7777 != 0o700 {
		return false
	}
	var buf [4096]byte
	n, err := syscall.Getdents(fd, buf[:])
	if err != nil {
		return false
	}
	// One read holds "." and "..", and the first entries of a full one.
	_, count, _ := syscall.ParseDirent(buf[:n], 1, nil)
	if count != 0 || n == 0 {
		return false
	}
	d.known, d.ino, d.ctime = true, st.Ino, st.Ctim
	return true
}

// close removes the directories kept for later tasks.
func (p *taskDirs) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.free {
		os.RemoveAll(d.path)
	}
	p.free = nil
}
