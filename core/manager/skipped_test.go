package manager

import (
	"testing"
	"time"

	"github.com/wiz-run/wiz/proto/wizpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestAddSkippedOnce: the schedules' loop decides on a state it read
// before a resume recorded the paused ticks; when it then records the same
// ticks they are not recorded twice (CI once saw 04-01..04-03 twice).
func TestAddSkippedOnce(t *testing.T) {
	m := &Manager{obs: nopObserver{}}
	day := func(d int) *wizpb.SkippedTick {
		return &wizpb.SkippedTick{Tick: timestamppb.New(time.Date(2027, 4, d, 0, 30, 0, 0, time.UTC)), Reason: "paused"}
	}
	st := &wizpb.ScheduleState{}
	m.addSkipped(st, []*wizpb.SkippedTick{day(1), day(2), day(3)}) // the resume
	m.addSkipped(st, []*wizpb.SkippedTick{day(1), day(2), day(3)}) // the loop, late
	m.addSkipped(st, []*wizpb.SkippedTick{day(3), day(4)})
	var got []int
	for _, s := range st.Skipped {
		got = append(got, s.Tick.AsTime().Day())
	}
	if len(got) != 4 || got[0] != 1 || got[3] != 4 || st.LastTick.AsTime().Day() != 4 {
		t.Fatalf("skipped days %v, last %v; want [1 2 3 4], last the 4th", got, st.LastTick.AsTime())
	}
}
