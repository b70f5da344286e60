// Package sdk_test checks that the SDK stands alone: plugin authors build
// against sdk/ and proto/ only, so sdk/ never imports wiz's core/, plugins/ or
// internal/ packages.
package sdk_test

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func TestSDKDependencies(t *testing.T) {
	t.Parallel()
	forbidden := []string{
		"github.com/wiz-run/wiz/core",
		"github.com/wiz-run/wiz/plugins",
		"github.com/wiz-run/wiz/internal",
	}
	for _, v := range violations(t, "github.com/wiz-run/wiz/sdk/...", forbidden) {
		t.Error(v)
	}
}

// violations lists each import by which pattern's dependencies cross into
// a forbidden package: a package that is not forbidden importing one that is.
func violations(t *testing.T, pattern string, forbidden []string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to check dependencies: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, pattern).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -deps %s: %v\n%s", pattern, err, ee.Stderr)
		}
		t.Fatalf("go list -deps %s: %v", pattern, err)
	}
	bad := func(pkg string) bool {
		for _, f := range forbidden {
			if pkg == strings.TrimSuffix(f, "/") || strings.HasPrefix(pkg, strings.TrimSuffix(f, "/")+"/") {
				return true
			}
		}
		return false
	}
	var msgs []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 || bad(f[0]) {
			continue
		}
		for _, imp := range f[1:] {
			if bad(imp) {
				msgs = append(msgs, fmt.Sprintf("%s imports %s", f[0], imp))
			}
		}
	}
	return msgs
}
