// Package metrics serves a Manager's Prometheus metrics
// (prometheus/client_golang): it is the Manager's Observer for runs, tasks
// and schedule ticks, and reads its load and the store's size at each
// scrape. docs/metrics.md lists every series.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// Metrics holds the series. Make it with New, give it to the Manager as its
// Observer, then call Watch with the Manager and store.
type Metrics struct {
	reg *prometheus.Registry

	runsStarted  *prometheus.CounterVec
	runsEnded    *prometheus.CounterVec
	taskDuration *prometheus.HistogramVec
	tickLag      *prometheus.HistogramVec
	ticksSkipped *prometheus.CounterVec
	webhooks     *prometheus.CounterVec
}

var _ manager.Observer = (*Metrics)(nil)

// New makes the series, with Go's runtime and the process's own.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.runsStarted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wiz_runs_started_total", Help: "Runs started, by pipeline.",
	}, []string{"pipeline"})
	m.runsEnded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wiz_runs_total", Help: "Runs ended, by pipeline and final state (succeeded, failed).",
	}, []string{"pipeline", "state"})
	m.taskDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "wiz_processor_duration_seconds", Help: "Duration of each processor attempt, by pipeline, processor type and outcome (succeeded, failed, cancelled).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 12), // 1 ms to ~70 min
	}, []string{"pipeline", "type", "outcome"})
	m.tickLag = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "wiz_schedule_lag_seconds", Help: "Time from a schedule's tick to its run being recorded, by pipeline and schedule.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"pipeline", "schedule"})
	m.ticksSkipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wiz_schedule_ticks_skipped_total", Help: "Schedule ticks that started no run, by pipeline, schedule and reason (paused, overlap, missed, error).",
	}, []string{"pipeline", "schedule", "reason"})
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wiz_webhook_requests_total", Help: "Webhook requests, by HTTP status code.",
	}, []string{"code"})
	m.reg.MustRegister(m.runsStarted, m.runsEnded, m.taskDuration, m.tickLag, m.ticksSkipped, m.webhooks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// RunStarted implements manager.Observer.
func (m *Metrics) RunStarted(pipeline string) { m.runsStarted.WithLabelValues(pipeline).Inc() }

// RunEnded implements manager.Observer.
func (m *Metrics) RunEnded(pipeline string, state wizpb.RunState) {
	m.runsEnded.WithLabelValues(pipeline, strings.ToLower(strings.TrimPrefix(state.String(), "RUN_STATE_"))).Inc()
}

// TaskEnded implements manager.Observer.
func (m *Metrics) TaskEnded(pipeline, typ, outcome string, d time.Duration) {
	m.taskDuration.WithLabelValues(pipeline, typ, outcome).Observe(d.Seconds())
}

// TickFired implements manager.Observer.
func (m *Metrics) TickFired(pipeline, schedule string, lag time.Duration) {
	m.tickLag.WithLabelValues(pipeline, schedule).Observe(lag.Seconds())
}

// TickSkipped implements manager.Observer.
func (m *Metrics) TickSkipped(pipeline, schedule, why string) {
	m.ticksSkipped.WithLabelValues(pipeline, schedule, why).Inc()
}

// WebhookRequest implements manager.Observer.
func (m *Metrics) WebhookRequest(code int) { m.webhooks.WithLabelValues(strconv.Itoa(code)).Inc() }

// Watch adds the series read at each scrape: the Manager's tasks and slots,
// its live runs, and the store's size.
func (m *Metrics) Watch(mgr *manager.Manager, st *store.Store) {
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("wiz_tasks_queued", "Tasks sent to executors that have not started.", func() float64 { return float64(mgr.Stats().TasksQueued) })
	gauge("wiz_tasks_running", "Tasks running.", func() float64 { return float64(mgr.Stats().TasksRunning) })
	gauge("wiz_capacity_slots_in_use", "This machine's task slots in use by runs.", func() float64 { return float64(mgr.Stats().SlotsInUse) })
	gauge("wiz_capacity_slots", "This machine's task slots (--capacity).", func() float64 { return float64(mgr.Stats().Capacity) })
	gauge("wiz_runs_running", "Runs in progress.", func() float64 { return float64(mgr.Stats().LiveRuns) })
	gauge("wiz_store_size_bytes", "Bytes the store takes on disk (LSM tree and value log).", func() float64 { return float64(st.Size()) })
}

// Listen opens the metrics listener on addr: an address in use is an error
// at once, before the daemon serves anything.
func Listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	return lis, nil
}

// Serve serves /metrics on lis until ctx is done.
func (m *Metrics) Serve(ctx context.Context, lis net.Listener, log hclog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: log.StandardLogger(nil)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }() // ends with Shutdown below
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: stop: %w", err)
	}
	<-errc
	return nil
}
