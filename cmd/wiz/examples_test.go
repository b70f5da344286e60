package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExamplesOutsideTheRepository does what a new plugin author does with
// the guides: copy the example pack and the example executor backend out of
// the repository, point their go.mod at the SDK with a replace, build them
// with a fresh HOME (its own module and build caches, from the Go module
// proxy), install both with `wiz plugin install` and run a pipeline that
// uses them together.
func TestExamplesOutsideTheRepository(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the examples with empty Go caches and runs the real binaries")
	}
	t.Parallel()
	work := t.TempDir()
	home := filepath.Join(work, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "GOTOOLCHAIN=local", "CGO_ENABLED=0", "GOFLAGS=-modcacherw"}
	for _, k := range []string{"GOPROXY", "GONOSUMDB", "GOSUMDB", "GOPRIVATE", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(dir string, env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), dir, err, out)
		}
		return string(out)
	}
	bins := map[string]string{"acme-pack": "wiz-processors-acme", "subproc-backend": "wiz-executor-subproc"}
	for example, bin := range bins {
		src := filepath.Join(repoRoot, "examples", example)
		dst := filepath.Join(work, example)
		if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		// The guides' replace for a local checkout.
		mod, err := os.ReadFile(filepath.Join(dst, "go.mod"))
		if err != nil {
			t.Fatal(err)
		}
		fixed := strings.Replace(string(mod), "replace github.com/wiz-run/wiz => ../..", "replace github.com/wiz-run/wiz => "+repoRoot, 1)
		if fixed == string(mod) {
			t.Fatalf("%s/go.mod has no `replace github.com/wiz-run/wiz => ../..`", example)
		}
		if err := os.WriteFile(filepath.Join(dst, "go.mod"), []byte(fixed), 0o644); err != nil {
			t.Fatal(err)
		}
		run(dst, env, "go", "build", "-o", filepath.Join(work, "dist", bin), ".")
	}
	wizEnv := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "WIZ_HOME=" + filepath.Join(home, ".wiz")}
	for _, bin := range bins {
		run(work, wizEnv, filepath.Join(binDir, "wiz"), "plugin", "install", filepath.Join(work, "dist", bin))
	}
	if err := os.WriteFile(filepath.Join(work, "p.yaml"), []byte(`name: together
executor: subproc
processors:
  hello: {uses: acme/greet, with: {who: world}}
  up: {uses: acme/upper, inputs: {in: hello}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(work, wizEnv, filepath.Join(binDir, "wiz"), "run", "p.yaml")
	if !strings.Contains(out, "Succeeded") {
		t.Fatalf("wiz run: %s", out)
	}
	if got := run(work, wizEnv, filepath.Join(binDir, "wiz"), "runs", "output", "last", "up"); got != "HELLO, WORLD\n" {
		t.Errorf("output up = %q, want HELLO, WORLD", got)
	}
	show := run(work, wizEnv, filepath.Join(binDir, "wiz"), "runs", "show", "last")
	for _, want := range []string{"plugin    acme ", "plugin    subproc 0.1.0", "executor  subproc"} {
		if !strings.Contains(show, want) {
			t.Errorf("runs show lacks %q:\n%s", want, show)
		}
	}
}

// TestGuidesListTheExamples keeps the step-by-step listings of the two
// guides equal to the examples that make test builds and runs.
func TestGuidesListTheExamples(t *testing.T) {
	for guide, example := range map[string]string{
		"docs/writing-a-processor-pack.md": "examples/acme-pack/main.go",
		"docs/writing-an-executor.md":      "examples/subproc-backend/main.go",
	} {
		doc, err := os.ReadFile(filepath.Join(repoRoot, guide))
		if err != nil {
			t.Fatal(err)
		}
		src, err := os.ReadFile(filepath.Join(repoRoot, example))
		if err != nil {
			t.Fatal(err)
		}
		// The listing is indented three spaces under its step.
		var listing strings.Builder
		for _, l := range strings.SplitAfter(string(src), "\n") {
			if strings.TrimSpace(l) != "" {
				listing.WriteString("   ")
			}
			listing.WriteString(l)
		}
		if !strings.Contains(string(doc), "   ```go\n"+listing.String()+"   ```") {
			t.Errorf("%s does not list %s as it is; copy the file into its step 2", guide, example)
		}
	}
}
