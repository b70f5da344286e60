package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/internal/daemon"
	"github.com/wiz-run/wiz/internal/managerapi"
	"github.com/wiz-run/wiz/internal/metrics"
	"github.com/wiz-run/wiz/sdk/blob"
)

// DaemonCmd is `wiz daemon`.
type DaemonCmd struct {
	Listen         string        `default:"127.0.0.1:7433" help:"Address to serve the Manager API on (TLS)."`
	Data           string        `placeholder:"DIR" help:"Data dir: store, blobs, TLS identity (default: the wiz home)."`
	TLSCert        string        `name:"tls-cert" type:"existingfile" help:"TLS certificate (default: a self-signed one made in the data dir)."`
	TLSKey         string        `name:"tls-key" type:"existingfile" help:"TLS key."`
	AdminTokenFile string        `name:"admin-token-file" type:"existingfile" help:"File holding the first admin token's secret, for unattended setups (or WIZ_ADMIN_TOKEN)."`
	Grace          time.Duration `default:"30s" help:"On SIGTERM, how long running runs may go on before they are left Running for the next start (--on-restart continue) or cancelled (fail)."`
	OnRestart      string        `name:"on-restart" enum:"continue,fail" default:"continue" help:"What to do with the runs a daemon on this data dir left Running (killed, crashed, or stopped past --grace): continue them, keeping what Succeeded (continue), or end them Failed (fail)."`
	RetentionRuns  int           `name:"retention-runs" placeholder:"N" help:"Keep at most N runs of each pipeline without retention: of its own (default: all)."`
	RetentionAge   string        `name:"retention-age" placeholder:"AGE" help:"Delete runs of pipelines without retention: of their own that ended more than AGE ago, e.g. 30d (default: never)."`
	PublicURL      string        `name:"public-url" placeholder:"URL" help:"Base of webhook URLs (https://HOST:PORT as clients reach the daemon; default: https:// and the listen address)."`
	MetricsListen  string        `name:"metrics-listen" placeholder:"ADDR" help:"Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no token; e.g. 127.0.0.1:9464)."`
	LockWait       time.Duration `name:"lock-wait" default:"30s" help:"How long to wait for the store while another wiz process holds it (a wiz run, or the daemon this one replaces) before giving up."`
}

// Run implements the command.
func (c *DaemonCmd) Run(env *Env) (err error) {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return usageError{fmt.Errorf("give both --tls-cert and --tls-key, or neither")}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return usageError{fmt.Errorf("--public-url %q: want https://HOST:PORT, as clients reach the daemon", c.PublicURL)}
		}
	}
	retention := pipeline.Retention{Runs: c.RetentionRuns}
	if c.RetentionRuns < 0 {
		return usageError{fmt.Errorf("--retention-runs must be at least 1 (0: keep all)")}
	}
	if c.RetentionAge != "" {
		age, err := pipeline.ParseAge(c.RetentionAge)
		if err != nil || age <= 0 {
			return usageError{fmt.Errorf("--retention-age %q: want a duration like 12h or 30d", c.RetentionAge)}
		}
		retention.Age = age
	}
	dir := c.Data
	if dir == "" {
		h, err := env.Home()
		if err != nil {
			return err
		}
		dir = h
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	log := env.Logger()
	st, err := openWaiting(filepath.Join(dir, "store"), c.LockWait, log)
	if err != nil {
		return err
	}
	defer func() {
		// A disk that refused writes is said once: by the store's close
		// when the daemon had not noticed.
		if cerr := st.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	blobs, err := blob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		return err
	}
	env.CLI.Home = dir // plugins and caches live in the data dir
	reg, err := env.Registry()
	if err != nil {
		return err
	}
	var obs manager.Observer
	var mx *metrics.Metrics
	if c.MetricsListen != "" {
		mx = metrics.New()
		obs = mx
	}
	m := manager.New(manager.Config{Service: true, Continue: c.OnRestart == "continue", Store: st, Blobs: blobs, Catalog: reg, Backends: reg, Logger: log.Named("manager"), Observer: obs,
		CacheDir: filepath.Join(dir, "cache", "plans"), TaskDir: filepath.Join(dir, "tasks"), Capacity: env.CLI.Capacity,
		Secrets: env.keyring(dir)})
	if _, err := m.Recover(); err != nil { // logs each run it settles
		return fmt.Errorf("settle unfinished runs: %w", err)
	}
	admin := os.Getenv("WIZ_ADMIN_TOKEN")
	if c.AdminTokenFile != "" {
		b, err := os.ReadFile(c.AdminTokenFile)
		if err != nil {
			return err
		}
		admin = string(trimSpace(b))
	}
	// Commands run on the data dir as a wiz home reach the daemon through its
	// socket (mode 0600: only this user, who could read the store anyway).
	sockSrv := managerapi.NewServer(m)
	if gs, err := managerapi.ServeUnix(filepath.Join(dir, "wiz.sock"), sockSrv); err == nil {
		defer func() { gs.Stop(); os.Remove(filepath.Join(dir, "wiz.sock")) }()
	} else {
		log.Warn("local commands cannot reach the daemon through its socket", "error", err)
	}
	// The first SIGTERM or Ctrl-C stops the daemon gracefully; a second one
	// gets the default action and ends it at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sockSrv.Drain()
		stop()
	}()
	if mx != nil {
		mx.Watch(m, st)
		lis, err := metrics.Listen(c.MetricsListen)
		if err != nil {
			return err
		}
		fmt.Printf("wiz daemon: metrics on http://%s/metrics\n", lis.Addr())
		mctx, stopMetrics := context.WithCancel(ctx)
		merr := make(chan error, 1)
		go func() { merr <- mx.Serve(mctx, lis, log.Named("metrics")) }() // ends with mctx
		defer func() {
			stopMetrics()
			if err := <-merr; err != nil {
				log.Error("metrics", "error", err)
			}
		}()
	}
	// Schedules and file triggers fire and retention applies in the daemon alone (retention
	// after each run and every 10 min). Both stop with the first signal, or
	// when the daemon fails; the schedules' runs are waited for (or
	// cancelled) with the others.
	svcCtx, stopServices := context.WithCancel(ctx)
	waitRetention := m.ServeRetention(svcCtx, retention)
	waitSchedules := m.ServeSchedules(svcCtx)
	waitTriggers, err := m.ServeTriggers(svcCtx)
	if err != nil {
		stopServices()
		waitSchedules()
		waitRetention()
		return err
	}
	defer func() {
		stopServices()
		waitSchedules()
		waitTriggers()
		m.StopBackfills()
		waitRetention()
	}()
	// The runs an earlier daemon left Running are continued once this one
	// serves; they stop as clients' runs do (the grace period), or here.
	contCtx, stopCont := context.WithCancel(context.Background())
	waitCont := func() {}
	ready := func(addr string) {
		ids, wait, err := m.ContinueRuns(contCtx) // live before the daemon says it listens
		waitCont = wait
		if err != nil {
			log.Error("continue the runs an earlier daemon left running; they stay Running for the next start", "error", err)
		}
		if len(ids) > 0 {
			fmt.Printf("wiz daemon: continuing %d run(s) an earlier daemon left Running: %s\n", len(ids), strings.Join(ids, " "))
		}
		fmt.Printf("wiz daemon: listening on %s\n", addr)
	}
	err = daemon.Run(ctx, daemon.Config{
		Listen: c.Listen, DataDir: dir, CertFile: c.TLSCert, KeyFile: c.TLSKey, AdminToken: admin,
		Grace: c.Grace, Manager: m, Store: st, Logger: log.Named("daemon"), Out: os.Stdout,
		HTTP: daemon.Hooks(m, log.Named("webhooks"), m.Observer().WebhookRequest), PublicURL: c.PublicURL, Also: sockSrv,
		Ready: ready,
	})
	stopCont()
	waitCont()
	m.WaitExecutors() // before the backends stop (Env.Close)
	return err
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// openWaiting opens the store in dir, waiting up to wait while another wiz
// process holds it: a daemon restarting (an upgrade, a supervisor's restart)
// finds the one it replaces still exiting, or a wiz run that has not ended.
func openWaiting(dir string, wait time.Duration, log hclog.Logger) (*store.Store, error) {
	deadline := time.Now().Add(wait)
	said := false
	for {
		st, err := store.Open(dir, log.Named("store"))
		if !errors.Is(err, store.ErrLocked) {
			return st, err
		}
		if !time.Now().Before(deadline) {
			return nil, fmt.Errorf("%w: another wiz process held it for the %s of --lock-wait; stop it (a wiz run, or another daemon on this data dir) or give a longer --lock-wait", err, wait)
		}
		if !said {
			log.Info("another wiz process holds the store: waiting for it", "dir", dir, "lock_wait", wait)
			said = true
		}
		time.Sleep(min(200*time.Millisecond, time.Until(deadline)))
	}
}
