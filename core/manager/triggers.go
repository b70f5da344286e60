package manager

// This file is the file triggers' service loop: in wiz daemon it watches
// each trigger's directory (fsnotify, and a scan on every wake), and once a
// matching file has stopped changing for the trigger's settle time, starts
// one run with the file as the trigger's input. Each file (path, size,
// modification time) is recorded in the transaction that creates its run,
// so a restart does not handle it again.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wiz-run/wiz/core/pipeline"
)

// triggerScanEvery bounds how long a trigger waits between scans of its
// directory when no event comes (a file that stopped growing sends none).
const triggerScanEvery = time.Second

// fileState is what a trigger loop knows of a file it saw.
type fileState struct {
	size    int64
	mtime   time.Time
	seen    time.Time // when it was first seen, as it is now
	handled bool      // its run was started (or it could not be, as it is)
}

// triggerStatus is a file trigger's health, for `wiz schedules list`.
type triggerStatus struct {
	mu   sync.Mutex
	errs map[string]string // PIPELINE/NAME → why it cannot watch its directory
}

func (t *triggerStatus) set(key, err string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.errs == nil {
		t.errs = map[string]string{}
	}
	if err == "" {
		delete(t.errs, key)
	} else {
		t.errs[key] = err
	}
}

func (t *triggerStatus) get(key string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.errs[key]
}

// ServeTriggers runs the file triggers of every pipeline until ctx is done.
// It returns a function that waits for the loop and the runs it started.
// Only a service process calls it.
func (m *Manager) ServeTriggers(ctx context.Context) (wait func(), err error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("file triggers: %w", err)
	}
	l := &trigLoop{m: m, w: w, files: map[string]map[string]*fileState{}, watched: map[string]bool{}}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer w.Close()
		l.serve(ctx)
	}()
	return l.wg.Wait, nil
}

type trigLoop struct {
	m       *Manager
	w       *fsnotify.Watcher
	files   map[string]map[string]*fileState // PIPELINE/NAME → path → state
	watched map[string]bool                  // directories added to w
	wg      sync.WaitGroup
}

func (l *trigLoop) serve(ctx context.Context) {
	for {
		wake := l.pass(ctx)
		var after <-chan time.Time
		if wake > 0 {
			after = l.m.clock.After(wake)
		}
		select {
		case <-ctx.Done():
			return
		case <-after:
		case <-l.m.trigPoke: // a pipeline was applied
		case _, ok := <-l.w.Events:
			if !ok {
				return
			}
		case err, ok := <-l.w.Errors:
			if !ok {
				return
			}
			l.m.log.Warn("file triggers: watch", "error", err)
		}
	}
}

// pass scans every file trigger's directory and starts the runs of the
// files that settled; it returns how long to wait at most before the next.
func (l *trigLoop) pass(ctx context.Context) time.Duration {
	pls, err := l.m.store.Pipelines()
	if err != nil {
		l.m.log.Error("file triggers: list pipelines", "error", err)
		return time.Minute
	}
	var wake time.Duration
	for _, pl := range pls {
		p, err := l.m.latestParsed(pl)
		if err != nil {
			continue
		}
		for _, tr := range p.Triggers {
			if ctx.Err() != nil {
				return 0
			}
			if tr.Files != nil {
				wake = triggerScanEvery
				l.scan(ctx, pl.Name, tr)
			}
		}
	}
	return wake
}

// scan looks at one trigger's directory.
func (l *trigLoop) scan(ctx context.Context, pipelineName string, tr *pipeline.Trigger) {
	ft := tr.Files
	key := pipelineName + "/" + tr.Name
	if !l.watched[ft.Path] {
		if err := l.w.Add(ft.Path); err == nil {
			l.watched[ft.Path] = true
		}
		// Else the scan below says why; it is tried again on the next pass.
	}
	es, err := os.ReadDir(ft.Path)
	if err != nil {
		why := err
		if u := errors.Unwrap(err); u != nil {
			why = u // the OS's reason, without the path again
		}
		l.m.triggers.set(key, fmt.Sprintf("cannot read %s: %v", ft.Path, why))
		return
	}
	l.m.triggers.set(key, "")
	now := l.m.clock.Now()
	known := l.files[key]
	if known == nil {
		known = map[string]*fileState{}
		l.files[key] = known
	}
	present := map[string]bool{}
	var ready []string
	for _, e := range es {
		if ok, _ := filepath.Match(ft.Pattern, e.Name()); !ok {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		path := filepath.Join(ft.Path, e.Name())
		present[path] = true
		fs := known[path]
		if fs == nil || fs.size != info.Size() || !fs.mtime.Equal(info.ModTime()) {
			fs = &fileState{size: info.Size(), mtime: info.ModTime(), seen: now}
			known[path] = fs
		}
		if !fs.handled && now.Sub(fs.seen) >= ft.Settle && now.Sub(info.ModTime()) >= ft.Settle {
			ready = append(ready, path)
		}
	}
	for path := range known {
		if !present[path] {
			delete(known, path)
		}
	}
	sort.Strings(ready)
	for _, path := range ready {
		fs := known[path]
		fs.handled = true
		l.start(ctx, pipelineName, tr, path, fs)
	}
}

// fileEvent keys a file as a trigger saw it: its path, size and time.
func fileEvent(path string, fs *fileState) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", path, fs.size, fs.mtime.UnixNano()))
	return hex.EncodeToString(sum[:16])
}

// start starts the run of one file and returns once it is recorded (or
// could not be: then it is logged, and the file is taken again only when it
// changes).
func (l *trigLoop) start(ctx context.Context, pipelineName string, tr *pipeline.Trigger, path string, fs *fileState) {
	req := RunRequest{Pipeline: pipelineName, Inputs: map[string]InputValue{tr.Files.Input: {Path: path}},
		Trigger: "file/" + tr.Name, ScheduledTime: fs.seen,
		fire: &fireReq{pipeline: pipelineName, schedule: "file/" + tr.Name, event: fileEvent(path, fs)}}
	id, err := l.m.startFired(ctx, &l.wg, req, nil)
	switch {
	case err == nil:
		l.m.log.Info("file triggers: started", "trigger", pipelineName+"/"+tr.Name, "file", path, "run", id)
	case !errors.Is(err, errFired): // else: handled before a restart
		l.m.log.Warn("file triggers: the file started no run", "trigger", pipelineName+"/"+tr.Name, "file", path, "error", err)
	}
}
