package executorserver

import (
	"slices"
	"syscall"
	"testing"
)

func TestPlanEnv(t *testing.T) {
	got, err := planEnv([]string{"A=1", "WIZ_RUN_ID=outer", "B=2", "A=3", "NOEQUALS"})
	if err != nil {
		t.Fatal(err)
	}
	// The later A wins (as with os/exec); WIZ_RUN_ID is the task's to set.
	if want := []string{"A=3", "B=2", "NOEQUALS"}; !slices.Equal(got, want) {
		t.Errorf("planEnv = %q, want %q", got, want)
	}
	if _, err := planEnv([]string{"OK=1", "BAD=a\x00b"}); err == nil || err.Error() != `environment variable "BAD" contains a NUL byte` {
		t.Errorf("planEnv with a NUL: error %v, want one naming BAD", err)
	}
}

func TestStatusText(t *testing.T) {
	for _, c := range []struct {
		ws   syscall.WaitStatus
		want string
	}{
		{0, "exit status 0"},
		{3 << 8, "exit status 3"},
		{syscall.WaitStatus(syscall.SIGKILL), "signal: killed"},
		{syscall.WaitStatus(syscall.SIGSEGV) | 0x80, "signal: segmentation fault (core dumped)"},
	} {
		if got := statusText(c.ws); got != c.want {
			t.Errorf("statusText(%#x) = %q, want %q", int(c.ws), got, c.want)
		}
	}
}
