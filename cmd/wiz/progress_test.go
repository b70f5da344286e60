package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wiz-run/wiz/core/manager"
	"github.com/wiz-run/wiz/proto/wizpb"
)

// The block fits any terminal, however small, and however many processors
// and warnings there are: never more lines than rows-1, none wider than
// the terminal.
func TestProgressLinesFit(t *testing.T) {
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	p := &progress{w: io.Discard, tty: true, procs: map[string]*wizpb.ProcessorRun{}, now: func() time.Time { return start.Add(time.Second) }}
	p.update(manager.Update{Run: &wizpb.Run{Id: strings.Repeat("R", 27), PipelineName: "p", PipelineVersion: 1, ProcessorCount: 50, Started: timestamppb.New(start)}})
	p.update(manager.Update{Warning: "pipeline p: a long warning " + strings.Repeat("x", 200)})
	p.update(manager.Update{Warning: "another"})
	for i := range 50 {
		st := wizpb.ProcessorState_PROCESSOR_STATE_RUNNING
		if i%3 == 0 {
			st = wizpb.ProcessorState_PROCESSOR_STATE_FAILED
		}
		p.update(manager.Update{Processor: &wizpb.ProcessorRun{Name: "proc-" + strings.Repeat("n", i%30), State: st, Started: timestamppb.New(start)}})
	}
	for _, size := range [][2]int{{20, 4}, {40, 5}, {80, 24}, {200, 60}} {
		lines := p.lines(size[0], size[1])
		if len(lines) > size[1]-1 {
			t.Errorf("%dx%d: %d lines", size[0], size[1], len(lines))
		}
		for _, l := range lines {
			if n := len([]rune(l)); n > size[0]-1 {
				t.Errorf("%dx%d: line of %d runes: %q", size[0], size[1], n, l)
			}
		}
	}
}
