package manager_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// goneCatalog is catalog without its pack: a plugin removed since.
type goneCatalog struct{ catalog }

func (goneCatalog) Pack(typ, _ string) (manager.PackRef, bool, error) {
	return manager.PackRef{}, false, errors.New("pack t is not installed")
}

// A run that a restarted service cannot continue (here: its pack is gone)
// is settled Failed with what stopped it and how to go on; a short
// command's Manager continues nothing.
func TestContinueRunsCannot(t *testing.T) {
	t.Parallel()
	var cfg manager.Config
	m, _ := newManagerWith(t, 2, func(c *manager.Config) { c.Service = true; cfg = *c })
	id := stuckRun(t, m)

	// A Manager that is not a service's, or not asked to, continues nothing.
	for _, c := range []struct{ service, cont bool }{{false, true}, {true, false}} {
		cfg2 := cfg
		cfg2.Service, cfg2.Continue = c.service, c.cont
		ids, wait, err := manager.New(cfg2).ContinueRuns(context.Background())
		wait()
		if err != nil || len(ids) != 0 {
			t.Errorf("Service %v, Continue %v: ContinueRuns = %v, %v; want none", c.service, c.cont, ids, err)
		}
	}

	cfg.Continue, cfg.Catalog = true, goneCatalog{}
	m2 := manager.New(cfg)
	if settled, err := m2.Recover(); err != nil || len(settled) != 0 {
		t.Fatalf("Recover of a continuing service = %v, %v; want the run left to ContinueRuns", settled, err)
	}
	ids, wait, err := m2.ContinueRuns(context.Background())
	wait()
	if err != nil || len(ids) != 0 {
		t.Fatalf("ContinueRuns = %v, %v; want no run continued", ids, err)
	}
	d, err := m2.RunDetail(id)
	if err != nil {
		t.Fatal(err)
	}
	want := manager.ReasonManagerExited + ": a restarted daemon could not continue it: "
	if d.Run.State != wizpb.RunState_RUN_STATE_FAILED || !strings.HasPrefix(d.Run.Reason, want) ||
		!strings.Contains(d.Run.Reason, "pack t is not installed") || !strings.HasSuffix(d.Run.Reason, "; fix that, then `wiz runs resume "+id+"`") {
		t.Errorf("run = %v %q, want Failed, %q… naming the missing pack and how to resume", d.Run.State, d.Run.Reason, want)
	}
	if d.Processors[0].State != wizpb.ProcessorState_PROCESSOR_STATE_FAILED || d.Processors[0].Error != d.Run.Reason {
		t.Errorf("processor = %v %q, want Failed with the run's reason", d.Processors[0].State, d.Processors[0].Error)
	}
}

// SuspendAll leaves a run Running with a reason that says why, and a next
// service start that does not continue (--on-restart fail) settles it as
// stopped, not killed.
func TestSuspendAll(t *testing.T) {
	t.Parallel()
	var cfg manager.Config
	m, _ := newManagerWith(t, 2, func(c *manager.Config) { c.Service, c.Continue = true, true; cfg = *c })
	id := stuckRun(t, m)
	if !m.Continues() {
		t.Fatal("a service Manager made with Continue does not say it continues")
	}
	if got := m.SuspendAll(); len(got) != 1 || got[0] != id {
		t.Fatalf("SuspendAll = %v, want [%s]", got, id)
	}
	d, err := m.RunDetail(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Run.State != wizpb.RunState_RUN_STATE_RUNNING || d.Run.Reason != manager.ErrSuspended.Error() || d.Processors[0].State != wizpb.ProcessorState_PROCESSOR_STATE_RUNNING {
		t.Fatalf("suspended run = %v %q, processor %v; want Running, %q, processor Running", d.Run.State, d.Run.Reason, d.Processors[0].State, manager.ErrSuspended)
	}
	cfg.Continue = false
	settled, err := manager.New(cfg).Recover()
	if err != nil || len(settled) != 1 {
		t.Fatalf("Recover = %v, %v; want the run settled", settled, err)
	}
	d, _ = m.RunDetail(id)
	want := manager.ReasonManagerExited + ": the daemon running it stopped before it ended; `wiz runs resume " + id + "` continues it, reusing what succeeded"
	if d.Run.State != wizpb.RunState_RUN_STATE_FAILED || d.Run.Reason != want {
		t.Errorf("run = %v %q, want Failed, %q", d.Run.State, d.Run.Reason, want)
	}
}
