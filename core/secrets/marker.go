package secrets

import (
	"errors"
	"fmt"
	"strings"
)

// markerStart begins a marker; a NUL byte cannot be in any environment
// variable's value, so a marker never stands for text a user wrote.
const markerStart = "\x00secret:"

// Marker is what an environment value holds, from the pipeline to the
// executor, where the value of secret name goes: the Manager renders
// "${{ secrets.NAME }}" so, and only the executor, when it starts the
// program, puts the value there.
func Marker(name string) string { return markerStart + name + "\x00" }

// HasMarker reports whether s holds a marker.
func HasMarker(s string) bool { return strings.Contains(s, markerStart) }

// Substitute returns s with each marker replaced by its secret's value in
// values. A marker of a secret values lacks, or a value holding a NUL byte,
// is an error naming the secret.
func Substitute(s string, values map[string][]byte) (string, error) {
	return substitute(s, func(name string) ([]byte, bool) { v, ok := values[name]; return v, ok })
}

func substitute(s string, value func(name string) ([]byte, bool)) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, markerStart)
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		rest := s[i+len(markerStart):]
		j := strings.IndexByte(rest, 0)
		if j < 0 {
			return "", errors.New("a secret marker is not closed")
		}
		name := rest[:j]
		v, ok := value(name)
		if !ok {
			return "", fmt.Errorf("secret %s was not sent with the task", name)
		}
		if strings.IndexByte(string(v), 0) >= 0 {
			return "", fmt.Errorf("secret %s holds a NUL byte, which no environment variable can carry; use it in secret_files instead", name)
		}
		b.Write(v)
		s = rest[j+1:]
	}
}

// StripMarkers returns s without its markers (for checks of the text
// around them).
func StripMarkers(s string) string {
	if !HasMarker(s) {
		return s
	}
	out, err := substitute(s, func(string) ([]byte, bool) { return nil, true })
	if err != nil {
		return s
	}
	return out
}
