package pipeline

import "testing"

// FuzzCheckScriptQuoting: the POSIX quoting scan of a script never panics
// or loops, whatever the quotes, escapes, comments and here-docs.
func FuzzCheckScriptQuoting(f *testing.F) {
	for _, s := range []string{
		`echo "${{ a }}"`, `echo '${{ a }}'`, "cat <<'EOF'\n${{ a }}\nEOF\n", "cat <<-EOF\n\t${{ a }}\n\tEOF\n",
		`echo $'${{ a }}'`, "# it's ${{ a }}\necho", `echo "it's" \' ${{ a }}`, "cat <<EOF", "<<", `'`, `"\`, "$${{ x }}'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = checkScriptQuoting(s)
	})
}
