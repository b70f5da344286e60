package store_test

// Benchmarks of a task's state writes, for the per-hop overhead breakdown
// that `make bench` prints (bench/hops.go). cpu-ns/op is the CPU of the whole
// process per task, badger's background goroutines included.

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/store"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// BenchmarkTaskWrites is one task's state writes when tasks are slower than
// a commit, as with /bin/true tasks: the Manager commits the Running record,
// then the Succeeded record (with metrics), each in a commit of its own.
func BenchmarkTaskWrites(b *testing.B) {
	st := benchStore(b)
	runID := id(b, 1)
	cpu := startCPU()
	i := 0
	for b.Loop() {
		i++
		rec := taskRecord(runID, i)
		bt := st.Batch()
		if err := bt.PutProcessor(rec); err != nil {
			b.Fatal(err)
		}
		if err := bt.Commit(); err != nil {
			b.Fatal(err)
		}
		finish(rec)
		if err := bt.PutProcessor(rec); err != nil {
			b.Fatal(err)
		}
		if err := bt.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkTaskWritesBatched is the same writes when tasks finish faster
// than commits: 1024 tasks' records per commit (the Manager's flushEvery),
// each task's Running and Succeeded records coalesced into one key.
func BenchmarkTaskWritesBatched(b *testing.B) {
	st := benchStore(b)
	runID := id(b, 1)
	bt := st.Batch()
	cpu := startCPU()
	i := 0
	for b.Loop() {
		i++
		rec := taskRecord(runID, i)
		if err := bt.PutProcessor(rec); err != nil {
			b.Fatal(err)
		}
		finish(rec)
		if err := bt.PutProcessor(rec); err != nil {
			b.Fatal(err)
		}
		if bt.Len() >= 1024 {
			if err := bt.Commit(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := bt.Commit(); err != nil {
		b.Fatal(err)
	}
	cpu.report(b)
}

func benchStore(b *testing.B) *store.Store {
	st, err := store.Open(b.TempDir(), hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// taskRecord is a processor's record as the Manager writes it when the task
// starts.
func taskRecord(runID string, i int) *wizpb.ProcessorRun {
	return &wizpb.ProcessorRun{RunId: runID, Name: fmt.Sprintf("n%d", i), Type: "std/exec",
		State: wizpb.ProcessorState_PROCESSOR_STATE_RUNNING, Started: timestamppb.Now(), Attempts: 1}
}

// finish makes rec the record of a task that succeeded.
func finish(rec *wizpb.ProcessorRun) {
	rec.State = wizpb.ProcessorState_PROCESSOR_STATE_SUCCEEDED
	rec.Ended = timestamppb.Now()
	rec.Metrics = &wizpb.Metrics{WallNs: 450_000, UserCpuNs: 200_000, SysCpuNs: 250_000, MaxRssBytes: 18 << 20}
}

type cpuMeter struct{ self syscall.Rusage }

func startCPU() cpuMeter {
	var m cpuMeter
	syscall.Getrusage(syscall.RUSAGE_SELF, &m.self)
	return m
}

// report adds cpu-ns/op: this process's CPU since startCPU, per iteration.
func (m cpuMeter) report(b *testing.B) {
	var now syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &now)
	ns := now.Utime.Nano() + now.Stime.Nano() - m.self.Utime.Nano() - m.self.Stime.Nano()
	b.ReportMetric(float64(ns)/float64(b.N), "cpu-ns/op")
}
