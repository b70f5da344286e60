package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/segmentio/ksuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// t0 is a fixed time; ids made from it sort by their offset.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// id returns a KSUID whose time is t0 plus sec seconds.
func id(t testing.TB, sec int) string {
	t.Helper()
	k, err := ksuid.NewRandomWithTime(t0.Add(time.Duration(sec) * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return k.String()
}

func open(t testing.TB, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// newStore opens a store in a fresh directory, closed at the end of the test.
func newStore(t testing.TB) *store.Store {
	t.Helper()
	s := open(t, t.TempDir())
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func commit(t testing.TB, b *store.Batch) {
	t.Helper()
	if err := b.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if b.Len() != 0 {
		t.Fatalf("Len after Commit = %d, want 0", b.Len())
	}
}

// equal fails the test unless got and want hold equal messages, in order.
func equal[M proto.Message](t testing.TB, what string, got, want []M) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d, want %d:\ngot  %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s[%d]:\ngot  %v\nwant %v", what, i, got[i], want[i])
		}
	}
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestPipelineVersions(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	pid := id(t, 0)
	var versions []*wizpb.PipelineVersion
	for i := 1; i <= 3; i++ {
		v := &wizpb.PipelineVersion{
			Id: id(t, i), PipelineId: pid, PipelineName: "etl", Number: int32(i),
			Source: []byte(fmt.Sprintf("version %d", i)), File: "etl.yaml", Digest: fmt.Sprintf("sha256:%d", i),
			Created: timestamppb.New(t0.Add(time.Duration(i) * time.Second)),
		}
		p := &wizpb.Pipeline{Id: pid, Name: "etl", LatestVersionId: v.Id, VersionCount: int32(i), Created: timestamppb.New(t0)}
		if err := s.PutPipelineVersion(p, v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	other := &wizpb.Pipeline{Id: id(t, 10), Name: "another", LatestVersionId: id(t, 11), VersionCount: 1}
	otherV := &wizpb.PipelineVersion{Id: other.LatestVersionId, PipelineId: other.Id, PipelineName: other.Name, Number: 1}
	if err := s.PutPipelineVersion(other, otherV); err != nil {
		t.Fatal(err)
	}

	p := must[*wizpb.Pipeline](t)(s.Pipeline("etl"))
	if p.LatestVersionId != versions[2].Id || p.VersionCount != 3 {
		t.Errorf("Pipeline(etl) = %v, want the newest version %s and a count of 3", p, versions[2].Id)
	}
	equal(t, "PipelineVersions", must[[]*wizpb.PipelineVersion](t)(s.PipelineVersions(pid)), versions)
	equal(t, "PipelineVersions(another)", must[[]*wizpb.PipelineVersion](t)(s.PipelineVersions(other.Id)), []*wizpb.PipelineVersion{otherV})
	got := must[*wizpb.PipelineVersion](t)(s.PipelineVersion(pid, versions[1].Id))
	equal(t, "PipelineVersion", []*wizpb.PipelineVersion{got}, versions[1:2])

	ps := must[[]*wizpb.Pipeline](t)(s.Pipelines())
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if want := []string{"another", "etl"}; !slices.Equal(names, want) {
		t.Errorf("Pipelines() names %v, want %v (by name)", names, want)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	missing := id(t, 0)
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"run", func() error { _, err := s.Run(missing); return err }, "run " + missing + ": not found"},
		{"pipeline", func() error { _, err := s.Pipeline("nope"); return err }, "pipeline nope: not found"},
		{"pipeline version", func() error { _, err := s.PipelineVersion(missing, missing); return err }, "pipeline version " + missing + ": not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.call()
			if !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
			if err.Error() != tt.want {
				t.Errorf("err = %q, want %q", err, tt.want)
			}
		})
	}
	// Lists of nothing are empty, not errors.
	if rs, err := s.Runs(0); err != nil || len(rs) != 0 {
		t.Errorf("Runs(0) on an empty store = %v, %v", rs, err)
	}
	if ps, err := s.Processors(missing); err != nil || len(ps) != 0 {
		t.Errorf("Processors of a missing run = %v, %v", ps, err)
	}
}

func TestRunsNewestFirst(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	b := s.Batch()
	var runs []*wizpb.Run // oldest first
	// Staged out of time order: the order comes from the ids.
	for _, sec := range []int{30, 10, 50, 20, 40} {
		r := &wizpb.Run{Id: id(t, sec), PipelineName: "etl", State: wizpb.RunState_RUN_STATE_SUCCEEDED, Warnings: int32(sec)}
		if err := b.PutRun(r); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	commit(t, b)
	slices.SortFunc(runs, func(a, b *wizpb.Run) int { return -compareStrings(a.Id, b.Id) })
	tests := []struct {
		limit int
		want  []*wizpb.Run
	}{
		{0, runs},
		{-1, runs},
		{1, runs[:1]},
		{3, runs[:3]},
		{5, runs},
		{100, runs},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			t.Parallel()
			equal(t, fmt.Sprintf("Runs(%d)", tt.limit), must[[]*wizpb.Run](t)(s.Runs(tt.limit)), tt.want)
		})
	}
	// Runs does not stray into the keys after "r/" (here, processor records).
	pb := s.Batch()
	if err := pb.PutProcessor(&wizpb.ProcessorRun{RunId: runs[0].Id, Name: "zzz"}); err != nil {
		t.Fatal(err)
	}
	commit(t, pb)
	if got := must[[]*wizpb.Run](t)(s.Runs(0)); len(got) != len(runs) {
		t.Errorf("Runs(0) after a processor record: %d runs, want %d", len(got), len(runs))
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestProcessors(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run1, run2 := id(t, 1), id(t, 2)
	b := s.Batch()
	want := map[string]*wizpb.ProcessorRun{
		"fetch": {RunId: run1, Name: "fetch", Type: "std/http", State: wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED, ExitCode: 0,
			Outputs: map[string]*wizpb.Data{"out": {Inline: []byte("hi"), ContentType: "text/plain"}}},
		"parse": {RunId: run1, Name: "parse", Type: "std/jq", State: wizpb.ProcessorState_PROCESSOR_STATE_FAILED, ExitCode: 3,
			Error: "bad input", Warnings: []string{"w1", "w2"}, Attempts: 2},
	}
	for _, p := range want {
		if err := b.PutProcessor(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.PutProcessor(&wizpb.ProcessorRun{RunId: run2, Name: "fetch", Type: "other"}); err != nil {
		t.Fatal(err)
	}
	commit(t, b)
	got := must[map[string]*wizpb.ProcessorRun](t)(s.Processors(run1))
	if len(got) != len(want) {
		t.Fatalf("Processors(run1) has %d records, want %d: %v", len(got), len(want), got)
	}
	for name, w := range want {
		if !proto.Equal(got[name], w) {
			t.Errorf("Processors(run1)[%s] = %v, want %v", name, got[name], w)
		}
	}
	if got := must[map[string]*wizpb.ProcessorRun](t)(s.Processors(run2)); len(got) != 1 || got["fetch"].Type != "other" {
		t.Errorf("Processors(run2) = %v, want its one record", got)
	}
}

func TestEventsInOrder(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run, other := id(t, 0), id(t, 1)
	var want []*wizpb.Event
	b := s.Batch()
	for i, sec := range []int{5, 1, 4, 2, 3} {
		e := &wizpb.Event{Id: id(t, sec), RunId: run, Processor: "p", Kind: "state", Message: fmt.Sprintf("event at %d", sec),
			Time: timestamppb.New(time.Unix(int64(1700000000+sec), 0))}
		if err := b.PutEvent(e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
		if i == 2 { // across two batches
			commit(t, b)
		}
	}
	if err := b.PutEvent(&wizpb.Event{Id: id(t, 0), RunId: other, Kind: "warning"}); err != nil {
		t.Fatal(err)
	}
	commit(t, b)
	// Listed in time order.
	slices.SortFunc(want, func(a, b *wizpb.Event) int { return a.Time.AsTime().Compare(b.Time.AsTime()) })
	equal(t, "Events", must[[]*wizpb.Event](t)(s.Events(run)), want)
}

// TestEventsSameSecond checks that events written in the order they happened
// are listed in that order even when they happen within one second, as the
// Manager's events do: it keys them by ksuid.New(), whose time has a
// resolution of one second and whose rest is random.
func TestEventsSameSecond(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run := id(t, 0)
	b := s.Batch()
	var want []*wizpb.Event
	for i := range 20 {
		e := &wizpb.Event{Id: ksuid.New().String(), RunId: run, Message: fmt.Sprint(i)}
		if err := b.PutEvent(e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	commit(t, b)
	equal(t, "Events", must[[]*wizpb.Event](t)(s.Events(run)), want)
}

func TestLogs(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run, other := id(t, 0), id(t, 1)
	chunk := func(proc, data string) *wizpb.LogChunk {
		return &wizpb.LogChunk{Processor: proc, Stream: "stdout", Data: []byte(data)}
	}
	b := s.Batch()
	// seq orders chunks numerically, not as text: 2 before 10.
	for _, c := range []struct {
		seq  uint64
		c    *wizpb.LogChunk
		runs string
	}{
		{10, chunk("b", "b10"), run},
		{1, chunk("b", "b1"), run},
		{2, chunk("a", "a2"), run},
		{3, chunk("b", "b3"), run},
		{0, chunk("a", "a0"), run},
		{1 << 40, chunk("a", "abig"), run},
		{5, chunk("a", "other run"), other},
		{5, chunk("ab", "ab5"), run},
	} {
		if err := b.PutLog(c.runs, c.seq, c.c); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, b)
	tests := []struct {
		processor string
		want      []string
	}{
		{"a", []string{"a0", "a2", "abig"}},
		{"b", []string{"b1", "b3", "b10"}},
		{"ab", []string{"ab5"}},
		// Every processor's chunks, in the order they came (by seq).
		{"", []string{"a0", "b1", "a2", "b3", "ab5", "b10", "abig"}},
		{"missing", nil},
	}
	for _, tt := range tests {
		t.Run("processor="+tt.processor, func(t *testing.T) {
			t.Parallel()
			var got []string
			err := s.Logs(run, tt.processor, func(c *wizpb.LogChunk) error {
				got = append(got, string(c.Data))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Logs(%q) = %q, want %q", tt.processor, got, tt.want)
			}
		})
	}
	t.Run("callback error stops and is returned", func(t *testing.T) {
		t.Parallel()
		stop := errors.New("stop")
		calls := 0
		err := s.Logs(run, "", func(*wizpb.LogChunk) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("Logs = %v after %d calls, want %v after 1", err, calls, stop)
		}
	})
}

// TestBatchCoalesces: writes to one key in a batch become one write; the last wins.
func TestBatchCoalesces(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run := id(t, 0)
	b := s.Batch()
	for _, st := range []wizpb.RunState{wizpb.RunState_RUN_STATE_RUNNING, wizpb.RunState_RUN_STATE_FAILED, wizpb.RunState_RUN_STATE_SUCCEEDED} {
		if err := b.PutRun(&wizpb.Run{Id: run, State: st}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.PutProcessor(&wizpb.ProcessorRun{RunId: run, Name: "p", Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutProcessor(&wizpb.ProcessorRun{RunId: run, Name: "p", Attempts: 2}); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 2 {
		t.Errorf("Len = %d after 5 writes to 2 keys, want 2", b.Len())
	}
	if _, err := s.Run(run); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Run before Commit: err = %v, want ErrNotFound", err)
	}
	commit(t, b)
	if r := must[*wizpb.Run](t)(s.Run(run)); r.State != wizpb.RunState_RUN_STATE_SUCCEEDED {
		t.Errorf("Run state %v, want the last write, SUCCEEDED", r.State)
	}
	if p := must[map[string]*wizpb.ProcessorRun](t)(s.Processors(run)); p["p"].GetAttempts() != 2 {
		t.Errorf("processor attempts %d, want the last write, 2", p["p"].GetAttempts())
	}
	// An empty batch commits nothing and no error; a committed batch can be reused.
	commit(t, b)
	if err := b.PutRun(&wizpb.Run{Id: run, State: wizpb.RunState_RUN_STATE_FAILED}); err != nil {
		t.Fatal(err)
	}
	commit(t, b)
	if r := must[*wizpb.Run](t)(s.Run(run)); r.State != wizpb.RunState_RUN_STATE_FAILED {
		t.Errorf("Run state after reuse %v, want FAILED", r.State)
	}
}

// TestEmptyValue: a record that encodes to no bytes is still written.
func TestEmptyValue(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run := id(t, 0)
	b := s.Batch()
	if err := b.PutLog(run, 0, &wizpb.LogChunk{}); err != nil {
		t.Fatal(err)
	}
	commit(t, b)
	n := 0
	if err := s.Logs(run, "", func(*wizpb.LogChunk) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d chunks after writing one empty chunk, want 1", n)
	}
}

func TestActiveRuns(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	r1, r2, r3 := id(t, 1), id(t, 2), id(t, 3)
	b := s.Batch()
	b.PutActive(r1)
	b.PutActive(r2)
	b.PutActive(r3)
	b.DeleteActive(r3) // in the same batch: the delete wins
	commit(t, b)
	if got := must[[]string](t)(s.ActiveRuns()); !slices.Equal(got, []string{r1, r2}) {
		t.Errorf("ActiveRuns = %v, want %v", got, []string{r1, r2})
	}
	b.DeleteActive(r1)
	b.DeleteActive(id(t, 9)) // never marked: not an error
	commit(t, b)
	if got := must[[]string](t)(s.ActiveRuns()); !slices.Equal(got, []string{r2}) {
		t.Errorf("ActiveRuns = %v, want %v", got, []string{r2})
	}
}

// TestBigBatch commits a batch too big for one badger transaction. Values
// under the store's 1 KiB value threshold live in the LSM tree and count in
// full towards badger's transaction limit (about 1,300 of these with the
// store's 8 MiB memtables), so 4,000 of them need several transactions.
func TestBigBatch(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	run := id(t, 0)
	b := s.Batch()
	const n = 4000
	data := bytes.Repeat([]byte("x"), 900)
	for i := range n {
		if err := b.PutLog(run, uint64(i), &wizpb.LogChunk{Processor: "p", Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, b)
	got := 0
	if err := s.Logs(run, "p", func(c *wizpb.LogChunk) error {
		if !bytes.Equal(c.Data, data) {
			return fmt.Errorf("chunk %d has %d bytes, want %d", got, len(c.Data), len(data))
		}
		got++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Errorf("%d chunks, want %d", got, n)
	}
}

// TestReopen: everything committed is there after Close and Open.
func TestReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	p := &wizpb.Pipeline{Id: id(t, 0), Name: "etl", LatestVersionId: id(t, 1), VersionCount: 1}
	v := &wizpb.PipelineVersion{Id: p.LatestVersionId, PipelineId: p.Id, Number: 1, Source: []byte("processors: {}")}
	run := &wizpb.Run{Id: id(t, 2), PipelineId: p.Id, State: wizpb.RunState_RUN_STATE_SUCCEEDED, Started: timestamppb.New(t0)}
	proc := &wizpb.ProcessorRun{RunId: run.Id, Name: "a", State: wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED}
	ev := &wizpb.Event{Id: id(t, 3), RunId: run.Id, Kind: "state", Message: "Succeeded"}
	chunk := &wizpb.LogChunk{Processor: "a", Stream: "stderr", Data: []byte("hello\n")}
	if err := s.PutPipelineVersion(p, v); err != nil {
		t.Fatal(err)
	}
	b := s.Batch()
	for _, err := range []error{b.PutRun(run), b.PutProcessor(proc), b.PutEvent(ev), b.PutLog(run.Id, 7, chunk)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	b.PutActive(run.Id)
	commit(t, b)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	equal(t, "Pipelines", must[[]*wizpb.Pipeline](t)(s.Pipelines()), []*wizpb.Pipeline{p})
	equal(t, "PipelineVersions", must[[]*wizpb.PipelineVersion](t)(s.PipelineVersions(p.Id)), []*wizpb.PipelineVersion{v})
	equal(t, "Runs", must[[]*wizpb.Run](t)(s.Runs(0)), []*wizpb.Run{run})
	if got := must[map[string]*wizpb.ProcessorRun](t)(s.Processors(run.Id)); len(got) != 1 || !proto.Equal(got["a"], proc) {
		t.Errorf("Processors = %v, want %v", got, proc)
	}
	equal(t, "Events", must[[]*wizpb.Event](t)(s.Events(run.Id)), []*wizpb.Event{ev})
	var chunks []*wizpb.LogChunk
	if err := s.Logs(run.Id, "", func(c *wizpb.LogChunk) error { chunks = append(chunks, c); return nil }); err != nil {
		t.Fatal(err)
	}
	equal(t, "Logs", chunks, []*wizpb.LogChunk{chunk})
	if got := must[[]string](t)(s.ActiveRuns()); !slices.Equal(got, []string{run.Id}) {
		t.Errorf("ActiveRuns = %v, want %v", got, []string{run.Id})
	}
}

// TestOpenTwice: a second Open of a store in use fails with ErrLocked, and
// the store opens again once the first is closed.
func TestOpenTwice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	s2, err := store.Open(dir, hclog.NewNullLogger())
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded, want ErrLocked")
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDurations(t *testing.T) {
	s := newStore(t)
	if _, ok, err := s.Durations("r1"); ok || err != nil {
		t.Fatalf("Durations of a run without them = ok %v, %v", ok, err)
	}
	want := []uint64{0, 1, 127, 128, 1 << 40}
	b := s.Batch()
	b.PutDurations("r1", want)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Durations("r1")
	if err != nil || !ok || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Durations = %v %v %v, want %v", got, ok, err, want)
	}
}

// A run's values (here its durations, 2 KB for 1,000 processors) stay in the
// LSM tree: badger opens a value-log file per open and deletes it at the
// next one only when it stayed empty, so a value in it per command made one
// more file per command, each mapped at open and synced at close.
func TestValueLogFilesDoNotPileUp(t *testing.T) {
	dir := t.TempDir()
	for i := range 10 {
		st, err := store.Open(dir, hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		b := st.Batch()
		b.PutDurations(id(t, i), make([]uint64, 1000)) // ~1 KB of varints
		us := make([]uint64, 1000)
		for j := range us {
			us[j] = 1 << 14 // 3 bytes each: 3 KB
		}
		b.PutDurations(id(t, 100+i), us)
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) > 2 {
		t.Errorf("%d value-log files after 10 opens, want at most 2: %v", len(files), files)
	}
}
