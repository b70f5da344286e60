package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
)

// ChildPath is the path of the sub-pipeline file rel (uses: ./child.yaml) of
// the pipeline file parent: relative to parent's directory.
func ChildPath(parent, rel string) string {
	return filepath.Join(filepath.Dir(parent), rel)
}

// MaxChildFiles bounds how many sub-pipeline files one pipeline brings with
// it, its children's included.
const MaxChildFiles = 1000

// ChildFiles reads the sub-pipeline files that the pipeline file (file, src)
// uses, and the files those use, keyed by ChildPath: what a client sends with
// a pipeline to a Manager that cannot read the client's files. A file that
// cannot be read is an error at the position that names it; a file or the
// pipeline itself that does not parse is sent as it is, unfollowed, for the
// Manager to report.
func ChildFiles(file string, src []byte) (map[string][]byte, error) {
	var files map[string][]byte
	var walk func(file string, src []byte) error
	walk = func(file string, src []byte) error {
		p, err := Parse(file, src)
		if err != nil {
			return nil
		}
		for _, n := range p.Processors {
			if n.Child == nil || n.Child.File == "" {
				continue
			}
			path := ChildPath(file, n.Child.File)
			if _, seen := files[path]; seen {
				continue // read already; a cycle is the Manager's to refuse
			}
			if len(files) >= MaxChildFiles {
				return ErrorList{&Error{Pos: n.Child.Pos, Msg: fmt.Sprintf("uses %s: over %d sub-pipeline files in one pipeline", n.Child.File, MaxChildFiles)}}
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return ErrorList{&Error{Pos: n.Child.Pos, Msg: fmt.Sprintf("uses %s: cannot read the sub-pipeline %s: %v", n.Child.File, path, err), Err: err}}
			}
			if files == nil {
				files = map[string][]byte{}
			}
			files[path] = b
			if err := walk(path, b); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(file, src); err != nil {
		return nil, err
	}
	return files, nil
}
