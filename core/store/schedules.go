package store

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/wiz-run/wiz/proto/wizpb"
)

// Schedule records: z/<pipeline>/<schedule> holds a ScheduleState;
// f/<pipeline>/<source>/<event> the runs of an event: a schedule's tick
// (TickKey), a file trigger's file.
const (
	pSchedule = "z/"
	pFire     = "f/"
)

// TickKey is the event key of a schedule's tick: its Unix nanoseconds, 20
// digits, so that keys sort by time.
func TickKey(tick time.Time) string { return fmt.Sprintf("%020d", tick.UnixNano()) }

func fireKey(pipeline, source, event string) string {
	return pFire + pipeline + "/" + source + "/" + event
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

// PutScheduleStateLazy stores a schedule's state without waiting for the
// disk: for what is decided again the same way after a crash.
func (s *Store) PutScheduleStateLazy(st *wizpb.ScheduleState) error {
	b := s.Batch()
	if err := b.PutScheduleState(st); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("store schedule %s/%s: %w", st.Pipeline, st.Name, err)
	}
	return nil
}

// PutScheduleState stages a schedule's state.
func (b *Batch) PutScheduleState(st *wizpb.ScheduleState) error {
	return b.put(pSchedule+st.Pipeline+"/"+st.Name, st)
}

// Fire returns the runs of one event of PIPELINE/SOURCE, or an error
// matching ErrNotFound.
func (s *Store) Fire(pipeline, source, event string) (*wizpb.Fire, error) {
	f := &wizpb.Fire{}
	if err := s.get(fireKey(pipeline, source, event), f); err != nil {
		return nil, fmt.Errorf("event %s of %s/%s: %w", event, pipeline, source, err)
	}
	return f, nil
}

// PutFire stages the runs of one event.
func (b *Batch) PutFire(pipeline, source, event string, f *wizpb.Fire) error {
	return b.put(fireKey(pipeline, source, event), f)
}

// pWebhook keys webhook triggers' secrets, by hash: w/<pipeline>/<trigger>.
const pWebhook = "w/"

// WebhookSecret returns the secret (hashed) of a webhook trigger, or an
// error matching ErrNotFound.
func (s *Store) WebhookSecret(pipeline, trigger string) (*wizpb.Token, error) {
	t := &wizpb.Token{}
	if err := s.get(pWebhook+pipeline+"/"+trigger, t); err != nil {
		return nil, fmt.Errorf("webhook %s/%s: %w", pipeline, trigger, err)
	}
	return t, nil
}

// PutWebhookSecret stores the secret (hashed) of a webhook trigger, synced.
func (s *Store) PutWebhookSecret(pipeline, trigger string, t *wizpb.Token) error {
	b := s.Batch()
	if err := b.put(pWebhook+pipeline+"/"+trigger, t); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("store webhook %s/%s: %w", pipeline, trigger, err)
	}
	return s.db.Sync()
}
