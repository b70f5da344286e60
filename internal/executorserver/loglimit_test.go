package executorserver

import (
	"strings"
	"testing"

	"github.com/wiz-run/wiz/proto/wizrpc"
)

func TestLogLimitKeepsHeadAndTailAndCountsTheMiddle(t *testing.T) {
	var got strings.Builder
	var warnings int
	l := newLogLimit(20, func(ev *wizrpc.ExecuteEvent) {
		if ev.GetWarning() != nil {
			warnings++
		}
		got.Write(ev.GetLog().GetData())
	})
	for _, s := range []string{"aaaaa\n", "bbbbb\n", "ccccc\n", "ddddd\n", "eeeee\n", "fffff\n"} {
		l.emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: "stderr", Data: []byte(s)}}})
	}
	l.emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Warning{Warning: &wizrpc.Warning{Message: "w"}}})
	if got.String() != "aaaaa\nbbbb" {
		t.Fatalf("before the end: %q, want the head (10 bytes) only", got.String())
	}
	l.finish()
	want := "aaaaa\nbbbb" + "\nwiz: … 16 bytes of logs dropped (max_log_size keeps the first and the last 10 bytes) …\n" +
		"eee\nfffff\n" + "\nwiz: 16 bytes of this processor's logs were dropped in the middle (max_log_size)\n"
	if got.String() != want {
		t.Fatalf("got  %q\nwant %q", got.String(), want)
	}
	if warnings != 1 {
		t.Errorf("warnings passed: %d, want 1", warnings)
	}
}

func TestLogLimitUnderBudgetSendsEverything(t *testing.T) {
	var got strings.Builder
	l := newLogLimit(100, func(ev *wizrpc.ExecuteEvent) { got.Write(ev.GetLog().GetData()) })
	for _, s := range []string{"one\n", "two\n"} {
		l.emit(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: "stdout", Data: []byte(s)}}})
	}
	l.finish()
	if got.String() != "one\ntwo\n" {
		t.Fatalf("got %q", got.String())
	}
}
