// Package manager is wiz's Manager: it owns pipelines, runs and their state,
// schedules a run's DAG and pushes its tasks to executors. It knows plugins
// only through the Catalog and Backends interfaces.
package manager

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/wiz-run/wiz/core/ids"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/pipeline"
	"github.com/wiz-run/wiz/core/secrets"
	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
	"github.com/wiz-run/wiz/sdk/blob"
)

// ErrUsage marks errors in what the user asked for (a missing input, an
// unknown pipeline): the CLI exits 2 for them, as for validation errors.
var ErrUsage = errors.New("usage error")

// usage is a problem with what the user gave (an input's value): it matches
// ErrUsage without saying "usage error" in its text, which names the input.
type usage struct{ msg string }

func (e *usage) Error() string        { return e.msg }
func (e *usage) Is(target error) bool { return target == ErrUsage }

func usagef(format string, args ...any) error { return &usage{fmt.Sprintf(format, args...)} }

// DirWriter is a writer that can take a directory output file by file: Output
// calls StartFile before each file of a directory output, and the bytes that
// follow are that file's. Other writers get the files one after the other.
type DirWriter interface {
	io.Writer
	// StartFile begins the file at the slash path name in the directory.
	StartFile(name string) error
}

// IsDirectory reports whether an output is a directory of files (a
// directory or glob output, or several files) rather than one value.
func IsDirectory(d *wizpb.Data) bool {
	return d.Directory || len(d.Files) > 1 || len(d.Files) == 1 && strings.Contains(d.Files[0].Name, "/")
}

// ErrNotFound marks a run, pipeline, version, processor, instance or output
// that the user named and that does not exist: the CLI exits 1 for it (2 is
// for a malformed command line or file).
var ErrNotFound = errors.New("not found")

// notFound is an ErrNotFound whose text names what was not found.
type notFound struct{ msg string }

func (e *notFound) Error() string        { return e.msg }
func (e *notFound) Is(target error) bool { return target == ErrNotFound }

func notFoundf(format string, args ...any) error { return &notFound{fmt.Sprintf(format, args...)} }

// NotFound is an ErrNotFound with the text msg (a client's, from the
// Manager's message).
func NotFound(msg string) error { return &notFound{msg} }

// ValidationError is a pipeline file that failed validation.
type ValidationError struct {
	Errs error // a pipeline.ErrorList
}

func (e *ValidationError) Error() string { return e.Errs.Error() }
func (e *ValidationError) Unwrap() error { return e.Errs }

// Config configures a Manager.
type Config struct {
	Store    *store.Store
	Blobs    *blob.Store
	Catalog  Catalog
	Backends Backends
	Logger   hclog.Logger
	// CacheDir is where executors on this machine may cache plans.
	CacheDir string
	// TaskDir is where executors on this machine record the process groups
	// of running tasks; the Manager kills what a dead executor left there.
	TaskDir string
	// Capacity is how many tasks run at once on this machine, shared fairly
	// by concurrent runs whose executors run here; 0: the number of CPUs.
	Capacity int
	// Secrets encrypts the store's secrets; nil: the Manager has no secrets
	// key, and setting or using a secret is an error that says so.
	Secrets *secrets.Keyring
	// Clock is the time schedules see (nil: the real clock); tests give a
	// fake one.
	Clock Clock
	// Observer is told of runs, tasks and ticks, for metrics; nil: none.
	Observer Observer
	// Service says that this Manager runs in a service process (wiz
	// daemon), which owns the runs it starts until it restarts; false: a
	// short command (wiz run), whose runs are settled by the next wiz that
	// opens the store. See Recover.
	Service bool
	// Continue (with Service) makes Recover leave the runs an earlier
	// service left Running for ContinueRuns, which carries them on; false:
	// Recover settles them as Failed.
	Continue bool
}

// Manager owns pipelines and runs. Its methods are safe for concurrent use;
// each run is owned by the goroutine that called Run.
type Manager struct {
	store    *store.Store
	blobs    *blob.Store
	catalog  Catalog
	backends Backends
	log      hclog.Logger
	cacheDir string
	taskDir  string
	secrets  *secrets.Keyring

	// schedMu serializes changes to schedules' state (schedules.go);
	// schedPoke wakes the schedules' loop.
	schedMu   sync.Mutex
	schedPoke chan struct{}
	clock     Clock
	obs       Observer
	// retainPoke wakes the retention loop when a run ends; trigPoke the
	// file triggers' loop when a pipeline is applied.
	retainPoke, trigPoke chan struct{}
	triggers             triggerStatus
	// backfills are the backfills in progress; stopBackfills, closed once,
	// stops them starting runs.
	backfills     sync.WaitGroup
	stopBackfills chan struct{}
	stopOnce      sync.Once
	tasks         taskCounts

	// owner and boot are recorded in every run this Manager starts
	// (wizpb.Run.owner, owner_boot).
	owner, boot string
	// continues: Recover leaves a service's runs to ContinueRuns.
	continues bool

	liveMu sync.Mutex
	live   map[string]*liveRun // runs in progress, by ID

	share *share // this machine's task slots, among runs

	parsedMu sync.Mutex
	parsed   map[string]*pipeline.Pipeline // by file name and source digest

	teardowns sync.WaitGroup // ended runs' executors being closed (tearDown)

	// gcMu is held for reading by runs and uploads, which may write blobs no
	// record names yet; gc sweeps blobs only when it can take it.
	gcMu sync.RWMutex
}

// New returns a Manager.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	owner := OwnerCLI
	if cfg.Service {
		owner = OwnerService
	}
	return &Manager{owner: owner, continues: cfg.Service && cfg.Continue, boot: ids.NewString(), store: cfg.Store, blobs: cfg.Blobs, catalog: cfg.Catalog, backends: cfg.Backends, log: cfg.Logger, cacheDir: cfg.CacheDir, taskDir: cfg.TaskDir, secrets: cfg.Secrets,
		live: map[string]*liveRun{}, share: newShare(cfg.Capacity), schedPoke: make(chan struct{}, 1), retainPoke: make(chan struct{}, 1), trigPoke: make(chan struct{}, 1), stopBackfills: make(chan struct{}), clock: cfg.Clock, obs: cfg.Observer, parsed: map[string]*pipeline.Pipeline{}}
}

// Applied is a pipeline version made current by Apply.
type Applied struct {
	Pipeline *wizpb.Pipeline
	Version  *wizpb.PipelineVersion
	Parsed   *pipeline.Pipeline
	Changed  bool // a new version was stored
	// Warning is for the user: the file's name: took over a pipeline whose
	// newest version came from another file.
	Warning string
	// Children are the sub-pipelines its processors run, by processor.
	Children map[string]*Applied
}

// Apply parses and validates a pipeline file and stores it as the pipeline's
// newest version unless it is unchanged. The sub-pipeline files it uses are
// read from this host.
func (m *Manager) Apply(file string, src []byte) (*Applied, error) {
	origin, _ := filepath.Abs(file)
	return m.applyFrom(file, src, os.ReadFile, nil, origin)
}

// ApplySent is Apply of a pipeline a client sent with the sub-pipeline files
// it uses, keyed by pipeline.ChildPath (see pipeline.ChildFiles): no file of
// this host is read.
// origin is the file's absolute path on the client ("" when unknown).
func (m *Manager) ApplySent(file string, src []byte, files map[string][]byte, origin string) (*Applied, error) {
	return m.applyFrom(file, src, sentFiles(files), nil, origin)
}

// sentFiles reads the sub-pipeline files a client sent.
func sentFiles(files map[string][]byte) func(string) ([]byte, error) {
	return func(path string) ([]byte, error) {
		if b, ok := files[path]; ok {
			return b, nil
		}
		return nil, errors.New("the client did not send it (a client sends the files its pipeline uses; use a wiz of this version or newer)")
	}
}

// apply is Apply of a file that pipelines in stack run (a sub-pipeline),
// reading the sub-pipeline files it uses with read.
func (m *Manager) apply(file string, src []byte, read func(string) ([]byte, error), stack []string) (*Applied, error) {
	return m.applyFrom(file, src, read, stack, "")
}

// applyFrom is apply of a file from origin, its absolute path where it was
// read ("" for a sub-pipeline): a new version records it, and warns when
// the file's name: takes over a pipeline whose newest version came from
// another file.
func (m *Manager) applyFrom(file string, src []byte, read func(string) ([]byte, error), stack []string, origin string) (*Applied, error) {
	p, err := m.parse(file, src)
	if err != nil {
		return nil, err
	}
	if err := m.checkSecrets(p); err != nil {
		return nil, err
	}
	kids, pins, err := m.children(file, p, nil, read, stack)
	if err != nil {
		return nil, err
	}
	if err := m.noteSchedules(p); err != nil {
		return nil, fmt.Errorf("record the schedules of %s: %w", p.Name, err)
	}
	digest := pinsDigest(src, pins)
	pl, err := m.store.Pipeline(p.Name)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	now := timestamppb.Now()
	var prev *wizpb.PipelineVersion // the newest version, replaced
	if pl != nil {
		cur, err := m.store.PipelineVersion(pl.Id, pl.LatestVersionId)
		if err != nil {
			return nil, err
		}
		if cur.Digest == digest {
			return &Applied{Pipeline: pl, Version: cur, Parsed: p, Children: kids}, nil
		}
		prev = cur
	} else {
		pl = &wizpb.Pipeline{Id: ids.NewString(), Name: p.Name, Created: now}
	}
	v := &wizpb.PipelineVersion{
		Id: ids.NewString(), PipelineId: pl.Id, PipelineName: pl.Name,
		Number: pl.VersionCount + 1, Source: src, File: file, Digest: digest, Created: now, Children: pins, Origin: origin,
	}
	pl.LatestVersionId = v.Id
	pl.VersionCount = v.Number
	if err := m.store.PutPipelineVersion(pl, v); err != nil {
		return nil, fmt.Errorf("store pipeline %s: %w", pl.Name, err)
	}
	m.pokeSchedules() // the service loop reads the new version's schedules
	a := &Applied{Pipeline: pl, Version: v, Parsed: p, Changed: true, Children: kids}
	if prev != nil && prev.Origin != "" && origin != "" && prev.Origin != origin {
		a.Warning = fmt.Sprintf("pipeline %s: %s is not the file its version %d came from (%s); it is now version %d of the same pipeline. If it is another pipeline, give it a name: of its own",
			pl.Name, origin, prev.Number, prev.Origin, v.Number)
	}
	return a, nil
}

func (m *Manager) parse(file string, src []byte) (*pipeline.Pipeline, error) {
	sum := sha256.Sum256(src)
	key := file + "\x00" + string(sum[:])
	m.parsedMu.Lock()
	p := m.parsed[key]
	m.parsedMu.Unlock()
	if p != nil {
		return p, nil
	}
	p, err := pipeline.Parse(file, src)
	if err != nil {
		return nil, &ValidationError{Errs: err}
	}
	if err := p.Validate(m.catalog); err != nil {
		return nil, &ValidationError{Errs: err}
	}
	m.parsedMu.Lock()
	if len(m.parsed) >= parsedMax {
		for k := range m.parsed { // evict one, any
			delete(m.parsed, k)
			break
		}
	}
	m.parsed[key] = p
	m.parsedMu.Unlock()
	return p, nil
}

// parsedMax is how many parsed pipelines a Manager keeps: a pipeline run
// again (by a daemon's clients, say) is not parsed and validated again. A
// validated Pipeline is read-only, so runs share it.
const parsedMax = 32

// Resolve returns the current version of a stored pipeline (NAME), or
// version N (NAME@N), validated against the installed plugins.
func (m *Manager) Resolve(name string) (*Applied, error) {
	name, n, hasAt := strings.Cut(name, "@")
	version := 0
	if hasAt {
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 {
			return nil, usagef("pipeline %s@%s: write NAME@N, N a version number from 1", name, n)
		}
		version = v
	}
	pl, err := m.store.Pipeline(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFoundf("no pipeline named %q and no such file; apply one with `wiz pipeline apply FILE` or run a file", name)
	}
	if err != nil {
		return nil, err
	}
	if version > 0 {
		return m.stored(name, version, nil)
	}
	return m.pinned(pl.Id+"/"+pl.LatestVersionId, nil)
}

// ReasonManagerExited begins the reason given to runs whose Manager died;
// the rest says how to continue them.
const ReasonManagerExited = "manager exited"

// Owners of runs (wizpb.Run.owner).
const (
	OwnerCLI     = "cli"
	OwnerService = "service"
)

// Recover settles runs left Running by a Manager that died (killed, crashed,
// machine lost): each ends Failed with a reason that begins "manager exited"
// and says how to continue it, and so do its processors that were Running.
// Call it once after opening the store and before starting runs; the
// store's lock guarantees no other Manager holds them. A short command's
// Manager leaves the runs of a service (wiz daemon) alone: they are the next
// service start's, which settles them, or with Config.Continue leaves them
// to ContinueRuns. It returns the IDs of the runs it settled.
func (m *Manager) Recover() ([]string, error) {
	if m.store.ReadOnly() {
		// A full disk: they are settled by the first Manager that can write.
		return nil, nil
	}
	active, err := m.store.ActiveRuns()
	if err != nil {
		return nil, fmt.Errorf("find unfinished runs: %w", err)
	}
	var settled []string
	for _, id := range active {
		r, err := m.store.Run(id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return settled, err
		}
		if r != nil && r.State == wizpb.RunState_RUN_STATE_RUNNING && r.Owner == OwnerService && (m.owner != OwnerService || m.continues) {
			m.log.Debug("left a service's run for the service to settle or continue", "run", id)
			continue
		}
		if r != nil && r.State == wizpb.RunState_RUN_STATE_RUNNING {
			who, top := "the wiz process running it was killed or crashed", cmp.Or(r.Parent, id) // a sub-pipeline resumes with its parent
			switch {
			case r.Owner == OwnerService && r.Reason == ErrSuspended.Error():
				who = "the daemon running it stopped before it ended"
			case r.Owner == OwnerService:
				who = "the daemon running it was killed or crashed"
			}
			reason := ReasonManagerExited + ": " + who + "; `wiz runs resume " + top + "` continues it, reusing what succeeded"
			if err := m.settle(r, reason); err != nil {
				return settled, err
			}
			settled = append(settled, id)
			m.log.Warn("settled a run its manager left running", "run", id)
			continue
		}
		b := m.store.Batch()
		b.DeleteActive(id)
		if err := b.Commit(); err != nil {
			return settled, err
		}
	}
	if len(settled) > 0 {
		if err := m.store.Sync(); err != nil {
			return settled, err
		}
	}
	return settled, nil
}

// settle ends a run left Running, and its processors that were Running, as
// Failed for reason, takes it off the active runs and kills the task
// processes its executors left on this machine.
func (m *Manager) settle(r *wizpb.Run, reason string) error {
	b := m.store.Batch()
	now := timestamppb.Now()
	procs, err := m.store.Processors(r.Id)
	if err != nil {
		return err
	}
	for _, p := range procs {
		if p.State == wizpb.ProcessorState_PROCESSOR_STATE_RUNNING {
			p.State = wizpb.ProcessorState_PROCESSOR_STATE_FAILED
			p.Error = reason
			p.Ended = now
			if err := b.PutProcessor(p); err != nil {
				return err
			}
		}
	}
	r.State = wizpb.RunState_RUN_STATE_FAILED
	r.Reason = reason
	r.Ended = now
	if err := b.PutRun(r); err != nil {
		return err
	}
	if err := b.PutEvent(&wizpb.Event{Id: ids.NewString(), RunId: r.Id, Kind: "state",
		Message: "Failed: " + reason, Time: now}); err != nil {
		return err
	}
	b.DeleteActive(r.Id)
	if err := b.Commit(); err != nil {
		return err
	}
	m.killLeftovers(r.Id)
	for _, use := range r.Executors {
		m.release(r.Id, use, nil) // one that outlived its daemon stops now
	}
	return nil
}

// Pipelines lists stored pipelines.
func (m *Manager) Pipelines() ([]*wizpb.Pipeline, error) { return m.store.Pipelines() }

// PipelineVersions lists a pipeline's versions, oldest first.
func (m *Manager) PipelineVersions(name string) (*wizpb.Pipeline, []*wizpb.PipelineVersion, error) {
	pl, err := m.store.Pipeline(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, notFoundf("no pipeline named %q; `wiz pipeline list` shows the stored ones", name)
	}
	if err != nil {
		return nil, nil, err
	}
	vs, err := m.store.PipelineVersions(pl.Id)
	return pl, vs, err
}

// RunFilter selects the runs Runs lists: top-level runs that match every
// field set, each with its sub-pipeline runs.
type RunFilter struct {
	Limit    int            // at most this many top-level runs; 0: all
	Pipeline string         // of this pipeline
	State    wizpb.RunState // in this state; 0: any
	Since    time.Time      // started at or after this; zero: any
}

func (f RunFilter) match(r *wizpb.Run) bool {
	return (f.Pipeline == "" || r.PipelineName == f.Pipeline) &&
		(f.State == wizpb.RunState_RUN_STATE_UNSPECIFIED || r.State == f.State) &&
		(f.Since.IsZero() || !r.Started.AsTime().Before(f.Since))
}

// Runs lists runs newest first: the top-level runs f selects and every
// sub-pipeline run under them, whatever their number.
func (m *Manager) Runs(f RunFilter) ([]*wizpb.Run, error) {
	fetch := 0
	if f.Limit > 0 {
		fetch = 2 * f.Limit
	}
	for ; ; fetch *= 4 {
		rs, err := m.store.Runs(fetch)
		if err != nil {
			return nil, err
		}
		// A child run is newer than its parent: it comes first. Keep the
		// first Limit top-level runs that match and the children of those.
		top := map[string]bool{}
		n := 0
		for _, r := range rs {
			if r.Parent == "" && f.match(r) && (f.Limit <= 0 || n < f.Limit) {
				top[r.Id] = true
				n++
			}
		}
		older := !f.Since.IsZero() && len(rs) > 0 && rs[len(rs)-1].Started.AsTime().Before(f.Since)
		if fetch > 0 && n < f.Limit && len(rs) == fetch && !older {
			continue // more runs than fetched: fetch more
		}
		byID := make(map[string]*wizpb.Run, len(rs))
		for _, r := range rs {
			byID[r.Id] = r
		}
		out := make([]*wizpb.Run, 0, n)
		for _, r := range rs {
			if top[r.Id] || r.Parent != "" && underAny(r, byID, top) {
				out = append(out, r)
			}
		}
		return out, nil
	}
}

// underAny reports whether r is a sub-pipeline run, at any depth, of a run
// in top.
func underAny(r *wizpb.Run, byID map[string]*wizpb.Run, top map[string]bool) bool {
	for p := r.Parent; p != ""; {
		if top[p] {
			return true
		}
		parent := byID[p]
		if parent == nil {
			return false
		}
		p = parent.Parent
	}
	return false
}

// RunDetail is a run with every processor of its pipeline version, in file
// order; processors that never started are Idle.
type RunDetail struct {
	Run        *wizpb.Run
	Version    *wizpb.PipelineVersion
	Processors []*wizpb.ProcessorRun
	Events     []*wizpb.Event
}

// Run returns a run by ID ("last" is the newest run).
func (m *Manager) RunDetail(id string) (*RunDetail, error) {
	r, err := m.findRun(id)
	if err != nil {
		return nil, err
	}
	v, err := m.store.PipelineVersion(r.PipelineId, r.PipelineVersionId)
	if err != nil {
		return nil, err
	}
	recs, err := m.store.Processors(r.Id)
	if err != nil {
		return nil, err
	}
	d := &RunDetail{Run: r, Version: v}
	// Instances of a for_each processor come right after it, in element order.
	insts := map[string][]*wizpb.ProcessorRun{}
	for _, rec := range recs {
		if rec.InstanceOf != "" {
			insts[rec.InstanceOf] = append(insts[rec.InstanceOf], rec)
		}
	}
	if p, perr := pipeline.Parse(v.File, v.Source); perr == nil {
		for _, n := range p.Processors {
			rec := recs[n.Name]
			if rec == nil {
				rec = &wizpb.ProcessorRun{RunId: r.Id, Name: n.Name, Type: n.Uses, Finally: n.Finally}
			}
			d.Processors = append(d.Processors, rec)
			is := insts[n.Name]
			slices.SortFunc(is, func(a, b *wizpb.ProcessorRun) int { return cmp.Compare(a.Index, b.Index) })
			d.Processors = append(d.Processors, is...)
		}
	}
	if d.Events, err = m.store.Events(r.Id); err != nil {
		return nil, err
	}
	return d, nil
}

func (m *Manager) findRun(id string) (*wizpb.Run, error) {
	if id == "last" {
		// The newest top-level run: a sub-pipeline's run is never last.
		for limit := 8; ; limit *= 8 {
			rs, err := m.store.Runs(limit)
			if err != nil {
				return nil, err
			}
			for _, r := range rs {
				if r.Parent == "" {
					return r, nil
				}
			}
			if len(rs) < limit {
				return nil, notFoundf("there are no runs yet")
			}
		}
	}
	r, err := m.store.Run(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFoundf("no run %q; `wiz runs list` shows the runs", id)
	}
	return r, err
}

// checkProcessor says so when processor is not "" and not a processor of
// the run's pipeline version.
func (m *Manager) checkProcessor(r *wizpb.Run, processor string) error {
	if processor != "" {
		v, err := m.store.PipelineVersion(r.PipelineId, r.PipelineVersionId)
		if err != nil {
			return err
		}
		if p, perr := pipeline.Parse(v.File, v.Source); perr == nil {
			if _, ok := p.Node(processor); !ok {
				var names []string
				for _, n := range p.Processors {
					names = append(names, n.Name)
				}
				return notFoundf("run %s has no processor %q (processors: %s)", r.Id, processor, strings.Join(names, ", "))
			}
		}
	}
	return nil
}

// Output writes one output of one processor of a run to w: its inline bytes
// or its files' contents, verified by digest.
func (m *Manager) Output(id, processor, name string, w io.Writer) error {
	r, err := m.findRun(id)
	if err != nil {
		return err
	}
	procs, err := m.store.Processors(r.Id)
	if err != nil {
		return err
	}
	p := procs[processor]
	if base, _, isInstance := strings.Cut(processor, "["); p == nil && isInstance {
		// An instance that does not exist: say which do.
		var names []*wizpb.ProcessorRun
		for _, rec := range procs {
			if rec.InstanceOf == base {
				names = append(names, rec)
			}
		}
		slices.SortFunc(names, func(a, b *wizpb.ProcessorRun) int { return cmp.Compare(a.Index, b.Index) })
		list := "none"
		if len(names) > 0 {
			var first []string
			for _, n := range names[:min(len(names), 5)] {
				first = append(first, n.Name)
			}
			list = strings.Join(first, ", ")
			if len(names) > 5 {
				list += fmt.Sprintf(" and %d more", len(names)-5)
			}
		}
		return notFoundf("run %s has no instance %s (instances of %s: %s)", r.Id, processor, base, list)
	}
	if p == nil {
		return notFoundf("run %s has no processor %q that ran", r.Id, processor)
	}
	if name == "" {
		// The default: "out", or the processor's only output.
		name = "out"
		if _, ok := p.Outputs[name]; !ok && len(p.Outputs) == 1 {
			for only := range p.Outputs {
				name = only
			}
		}
	}
	d := p.Outputs[name]
	if d == nil {
		return notFoundf("processor %s of run %s has no output %q (outputs: %s)", processor, r.Id, name, keys(p.Outputs))
	}
	if len(d.Files) == 0 {
		_, err := w.Write(d.Inline)
		return err
	}
	dw, _ := w.(DirWriter)
	if !IsDirectory(d) {
		dw = nil
	}
	// Files are read from the blob store and verified by digest.
	for _, f := range d.Files {
		if dw != nil {
			if err := dw.StartFile(f.Name); err != nil {
				return fmt.Errorf("output %s.%s file %s: %w", processor, name, f.Name, err)
			}
		}
		rc, err := m.blobs.Open(f.Digest)
		if err != nil {
			return fmt.Errorf("output %s.%s file %s: %w", processor, name, f.Name, err)
		}
		_, err = io.Copy(w, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("output %s.%s file %s: %w", processor, name, f.Name, err)
		}
	}
	return nil
}

// InputValue is a run input given by the user: text, or a file to read, or
// a file's content sent by a client in another process.
type InputValue struct {
	Text    string
	Path    string         // when set, the input is read from this file
	Content []byte         // when set, the input is this file content, named Path
	Blob    *wizpb.FileRef // when set, the input is this blob (uploaded by a client), named Path
}

// Blobs returns the Manager's blob store.
func (m *Manager) Blobs() *blob.Store { return m.blobs }

// inputs resolves a run's inputs against the pipeline's declarations.
func (m *Manager) inputs(p *pipeline.Pipeline, given map[string]InputValue) (map[string]*wizpb.Data, map[string]string, error) {
	data := map[string]*wizpb.Data{}
	text := map[string]string{}
	for name := range given {
		if _, ok := p.Input(name); !ok {
			return nil, nil, fmt.Errorf("%w: pipeline %s has no input %q (inputs: %s)", ErrUsage, p.Name, name, inputNames(p))
		}
	}
	for _, decl := range p.Inputs {
		v, ok := given[decl.Name]
		if !ok {
			if decl.Default == nil {
				how := fmt.Sprintf("--input %s=VALUE (a %s; or %s=@PATH to read it from a file)", decl.Name, decl.Type, decl.Name)
				if decl.Type == pipeline.InputFile {
					how = fmt.Sprintf("--input %s=@PATH", decl.Name)
				}
				return nil, nil, usagef("%s: missing input %q of pipeline %s (declared here, without a default); pass %s", decl.Pos, decl.Name, p.Name, how)
			}
			v = InputValue{Text: *decl.Default}
		}
		switch {
		case v.Blob != nil:
			if !m.blobs.Has(v.Blob.Digest) {
				return nil, nil, fmt.Errorf("%w: input %s: blob %s was not uploaded to this Manager", ErrUsage, decl.Name, v.Blob.Digest)
			}
			ref := &wizpb.FileRef{Digest: v.Blob.Digest, Size: v.Blob.Size, Name: filepath.Base(v.Path)}
			if decl.Type == pipeline.InputFile {
				data[decl.Name] = &wizpb.Data{ContentType: "application/octet-stream", Files: []*wizpb.FileRef{ref}}
				break
			}
			var b bytes.Buffer
			r, err := m.blobs.Open(ref.Digest)
			if err == nil {
				_, err = io.Copy(&b, r)
				r.Close()
			}
			if err != nil {
				return nil, nil, fmt.Errorf("input %s: %w", decl.Name, err)
			}
			data[decl.Name] = &wizpb.Data{Inline: b.Bytes(), ContentType: "text/plain"}
			text[decl.Name] = b.String()
		case v.Content != nil && decl.Type == pipeline.InputFile:
			digest, size, err := m.blobs.Put(bytes.NewReader(v.Content))
			if err != nil {
				return nil, nil, fmt.Errorf("input %s: store %s: %w", decl.Name, v.Path, err)
			}
			data[decl.Name] = &wizpb.Data{ContentType: "application/octet-stream",
				Files: []*wizpb.FileRef{{Digest: digest, Size: size, Name: filepath.Base(v.Path)}}}
		case v.Content != nil:
			data[decl.Name] = &wizpb.Data{Inline: v.Content, ContentType: "text/plain"}
			text[decl.Name] = string(v.Content)
		case v.Path != "" && decl.Type == pipeline.InputFile:
			f, err := os.Open(v.Path)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: input %s: %v", ErrUsage, decl.Name, err)
			}
			digest, size, err := m.blobs.Put(f)
			f.Close()
			if err != nil {
				return nil, nil, fmt.Errorf("input %s: store %s: %w", decl.Name, v.Path, err)
			}
			data[decl.Name] = &wizpb.Data{ContentType: "application/octet-stream",
				Files: []*wizpb.FileRef{{Digest: digest, Size: size, Name: filepath.Base(v.Path)}}}
		case v.Path != "":
			b, err := os.ReadFile(v.Path)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: input %s: %v", ErrUsage, decl.Name, err)
			}
			data[decl.Name] = &wizpb.Data{Inline: b, ContentType: "text/plain"}
			text[decl.Name] = string(b)
		default:
			data[decl.Name] = &wizpb.Data{Inline: []byte(v.Text), ContentType: "text/plain"}
			text[decl.Name] = v.Text
		}
		if t, ok := text[decl.Name]; ok && decl.Type != pipeline.InputFile {
			if err := decl.Check(t); err != nil {
				return nil, nil, usagef("input %s: %v", decl.Name, err)
			}
		}
	}
	return data, text, nil
}

func inputNames(p *pipeline.Pipeline) string {
	var b bytes.Buffer
	for i, d := range p.Inputs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.Name)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

func since(t *timestamppb.Timestamp) time.Duration {
	if t == nil {
		return 0
	}
	return time.Since(t.AsTime())
}
