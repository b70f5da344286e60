package pluginhost

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// A plugin binary's sha256 is checked when it is launched (go-plugin's
// SecureConfig). Hashing a 13 MB backend costs ~8 ms of CPU, on the path of
// every `wiz run`, so a Config.VerifiedFile remembers the binaries that
// passed, by file identity: device, inode, size, and modification and change
// times. A binary unchanged since it passed is not hashed again. Writing to
// it or replacing it changes its change time or its inode, so it is hashed
// again and refused when it no longer matches. A check is remembered only
// when the binary's change time was at least verifiedSettle older than the
// check, so that a change within the file system's timestamp granularity
// after the check cannot leave the identity as it was.
var verifiedSettle = 2 * time.Second // a variable for tests

type fileID struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
	Ctime int64  `json:"ctime_ns"`
}

type verifiedEntry struct {
	fileID
	SHA256 string `json:"sha256"`
}

// identify returns the identity of the file at path.
func identify(path string) (fileID, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, false
	}
	return fileID{Dev: uint64(st.Dev), Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, true
}

var verifiedMu sync.Mutex // one read-modify-write of a cache file at a time, in this process

// verifiedBefore reports whether the binary at path, as it is now, passed a
// check against sha before; id is its identity now (ok false: unknown).
func verifiedBefore(file, path, sha string) (id fileID, ok, known bool) {
	id, ok = identify(path)
	if !ok || file == "" {
		return id, ok, false
	}
	verifiedMu.Lock()
	defer verifiedMu.Unlock()
	e, found := readVerified(file)[path]
	return id, ok, found && e.SHA256 == sha && e.fileID == id
}

// recordVerified remembers that the binary at path, with identity id taken
// before it was launched, passed its check against sha. Errors are ignored:
// the binary is hashed again next time.
func recordVerified(file, path, sha string, id fileID) {
	if file == "" || time.Since(time.Unix(0, id.Ctime)) < verifiedSettle {
		return
	}
	if now, ok := identify(path); !ok || now != id { // changed while it was launched
		return
	}
	verifiedMu.Lock()
	defer verifiedMu.Unlock()
	all := readVerified(file)
	all[path] = verifiedEntry{fileID: id, SHA256: sha}
	b, err := json.Marshal(all)
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(file), ".verified-*")
	if err != nil {
		return
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr != nil || cerr != nil || os.Rename(f.Name(), file) != nil {
		os.Remove(f.Name())
	}
}

func readVerified(file string) map[string]verifiedEntry {
	all := map[string]verifiedEntry{}
	if b, err := os.ReadFile(file); err == nil {
		_ = json.Unmarshal(b, &all)
	}
	return all
}
