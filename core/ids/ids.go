// Package ids makes the KSUIDs wiz gives pipelines, pipeline versions, runs,
// tokens and events. A KSUID's timestamp has a resolution of one second and the
// rest is random, so two IDs made in the same second sort at random. wiz's IDs
// put the time in nanoseconds at the start of the random part, so that they
// sort in the order they were made — across processes too, as far as the
// clock goes — and stay valid 27-character KSUIDs.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	"github.com/segmentio/ksuid"
)

var (
	mu   sync.Mutex
	last ksuid.KSUID
)

// New returns a new KSUID, greater than any this process made before.
func New() ksuid.KSUID {
	now := time.Now()
	var payload [16]byte
	binary.BigEndian.PutUint64(payload[:8], uint64(now.UnixNano()))
	_, _ = rand.Read(payload[8:])
	id, err := ksuid.FromParts(now, payload[:])
	if err != nil { // only for times outside KSUID's range (before 2014)
		id = ksuid.New()
	}
	mu.Lock()
	defer mu.Unlock()
	if ksuid.Compare(id, last) <= 0 {
		id = last.Next()
	}
	last = id
	return id
}

// NewString returns New().String().
func NewString() string { return New().String() }
