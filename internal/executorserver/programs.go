package executorserver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// programInput is the program digest of a native program that is a file of
// the task's own fresh working directory: it can only be one of the task's
// inputs, whose digests the cache key already holds.
const programInput = "input"

// programs keeps the sha256 of native programs by path, each with the file's
// identity when it was read (device, inode, size, mtime, ctime): a program is
// read once, and after that each task costs one stat.
type programs struct {
	mu   sync.Mutex
	sums map[string]programSum
}

type programSum struct {
	dev, ino uint64
	size     int64
	mtime    syscall.Timespec
	ctime    syscall.Timespec
	sha256   string
}

// digest returns the hex sha256 of the program a native plan runs: argv[0]
// as resolved on this host (path, from the plan's PATH lookup), relative to
// the plan's dir when it names one.
func (p *programs) digest(path, dir string) (string, error) {
	if !filepath.IsAbs(path) {
		if dir == "" {
			return programInput, nil
		}
		path = filepath.Join(dir, path)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", fmt.Errorf("program %s: %w", path, err)
	}
	p.mu.Lock()
	s, ok := p.sums[path]
	p.mu.Unlock()
	if ok && s.dev == st.Dev && s.ino == st.Ino && s.size == st.Size && s.mtime == st.Mtim && s.ctime == st.Ctim {
		return s.sha256, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("program %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("program %s: read: %w", path, err)
	}
	var after syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &after); err != nil {
		return "", fmt.Errorf("program %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if after.Ino == st.Ino && after.Size == st.Size && after.Mtim == st.Mtim && after.Ctim == st.Ctim {
		// Unchanged while read: the digest is of this identity.
		p.mu.Lock()
		if p.sums == nil {
			p.sums = map[string]programSum{}
		}
		p.sums[path] = programSum{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim, sha256: sum}
		p.mu.Unlock()
	}
	return sum, nil
}
