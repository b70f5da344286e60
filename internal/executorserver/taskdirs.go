package executorserver

import (
	"os"
	"sync"
	"syscall"
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
	mu     sync.Mutex
	free   []string
}

// maxFreeDirs bounds the empty directories kept for later tasks.
const maxFreeDirs = 64

// get returns an empty working directory under the pool's parent.
func (p *taskDirs) get() (string, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		d := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return d, nil
	}
	p.mu.Unlock()
	return os.MkdirTemp(p.parent, "task-*")
}

// put takes back a directory that a task no longer uses (its processes are
// gone): kept when it is empty and unchanged, else removed.
func (p *taskDirs) put(d string) {
	if isEmptyDir(d) {
		p.mu.Lock()
		if len(p.free) < maxFreeDirs {
			p.free = append(p.free, d)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
	os.RemoveAll(d)
}

// isEmptyDir reports whether d is a directory (not a link to one), mode
// 0700, with no entries. It makes four system calls (open, fstat, one
// getdents, close): it runs for every native task, and os.Open and
// Readdirnames would make twice as many.
func isEmptyDir(d string) bool {
	fd, err := syscall.Open(d, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
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
	return count == 0 && n > 0
}

// close removes the directories kept for later tasks.
func (p *taskDirs) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.free {
		os.RemoveAll(d)
	}
	p.free = nil
}
