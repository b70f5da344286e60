package manager

import (
	"sync/atomic"
	"time"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// Observer is told what the Manager does, for metrics (internal/metrics
// turns it into Prometheus series). Its methods are called from runs'
// goroutines and must be quick and safe for concurrent use.
type Observer interface {
	RunStarted(pipeline string)
	RunEnded(pipeline string, state wizpb.RunState)
	// TaskEnded: one attempt of a processor ended; outcome is "succeeded",
	// "failed" or "cancelled".
	TaskEnded(pipeline, typ, outcome string, d time.Duration)
	// TickFired: a schedule's tick started its run, lag after the tick.
	TickFired(pipeline, schedule string, lag time.Duration)
	// TickSkipped: a tick started no run; why is "paused", "overlap",
	// "missed" or "error".
	TickSkipped(pipeline, schedule, why string)
	// WebhookRequest: a webhook request was answered with code.
	WebhookRequest(code int)
}

type nopObserver struct{}

func (nopObserver) RunStarted(string)                               {}
func (nopObserver) RunEnded(string, wizpb.RunState)                 {}
func (nopObserver) TaskEnded(string, string, string, time.Duration) {}
func (nopObserver) TickFired(string, string, time.Duration)         {}
func (nopObserver) TickSkipped(string, string, string)              {}
func (nopObserver) WebhookRequest(int)                              {}

// taskCounts are the Manager's tasks sent to executors: queued (sent, not
// yet started) and running.
type taskCounts struct {
	queued, running atomic.Int64
}

// Stats is a snapshot of the Manager's load.
type Stats struct {
	TasksQueued, TasksRunning int64
	// SlotsInUse of Capacity: this machine's task slots that runs use.
	SlotsInUse, Capacity int
	LiveRuns             int
}

// Stats returns the Manager's load now.
func (m *Manager) Stats() Stats {
	s := Stats{TasksQueued: m.tasks.queued.Load(), TasksRunning: m.tasks.running.Load(), Capacity: m.share.capacity}
	m.share.mu.Lock()
	for _, sr := range m.share.runs {
		s.SlotsInUse += sr.running
	}
	m.share.mu.Unlock()
	m.liveMu.Lock()
	s.LiveRuns = len(m.live)
	m.liveMu.Unlock()
	return s
}

// skipClass is the metrics label of a skipped tick's reason.
func skipClass(reason string) string {
	switch {
	case reason == "paused":
		return "paused"
	case len(reason) >= 7 && reason[:7] == "overlap":
		return "overlap"
	case len(reason) >= 6 && reason[:6] == "missed":
		return "missed"
	}
	return "error"
}

// Observer returns the Manager's observer (for the webhooks' HTTP server).
func (m *Manager) Observer() Observer { return m.obs }
