package store

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// Schedule records: z/<pipeline>/<schedule> holds a ScheduleState;
// f/<pipeline>/<schedule>/<tick, unix ns, 20 digits> the runs of a tick.
const (
	pSchedule = "z/"
	pFire     = "f/"
)

func fireKey(pipeline, schedule string, tick time.Time) string {
	return fmt.Sprintf("%s%s/%s/%020d", pFire, pipeline, schedule, tick.UnixNano())
}

// ScheduleState returns the state of PIPELINE/NAME, or an error matching
// ErrNotFound.
func (s *Store) ScheduleState(pipeline, name string) (*wizpb.ScheduleState, error) {
	st := &wizpb.ScheduleState{}
	if err := s.get(pSchedule+pipeline+"/"+name, st); err != nil {
		return nil, fmt.Errorf("schedule %s/%s: %w", pipeline, name, err)
	}
	return st, nil
}

// ScheduleStates lists every schedule's state, by pipeline and name.
func (s *Store) ScheduleStates() ([]*wizpb.ScheduleState, error) {
	var out []*wizpb.ScheduleState
	err := s.scan(pSchedule, false, func(_, v []byte) (bool, error) {
		st := &wizpb.ScheduleState{}
		out = append(out, st)
		return true, proto.Unmarshal(v, st)
	})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return out, nil
}

// PutScheduleState stores a schedule's state, synced.
func (s *Store) PutScheduleState(st *wizpb.ScheduleState) error {
	b := s.Batch()
	if err := b.PutScheduleState(st); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("store schedule %s/%s: %w", st.Pipeline, st.Name, err)
	}
	return s.db.Sync()
}

// PutScheduleState stages a schedule's state.
func (b *Batch) PutScheduleState(st *wizpb.ScheduleState) error {
	return b.put(pSchedule+st.Pipeline+"/"+st.Name, st)
}

// Fire returns the runs of one tick of PIPELINE/NAME, or an error matching
// ErrNotFound.
func (s *Store) Fire(pipeline, name string, tick time.Time) (*wizpb.Fire, error) {
	f := &wizpb.Fire{}
	if err := s.get(fireKey(pipeline, name, tick), f); err != nil {
		return nil, fmt.Errorf("tick %s of %s/%s: %w", tick.Format(time.RFC3339Nano), pipeline, name, err)
	}
	return f, nil
}

// PutFire stages the runs of one tick.
func (b *Batch) PutFire(pipeline, name string, tick time.Time, f *wizpb.Fire) error {
	return b.put(fireKey(pipeline, name, tick), f)
}
