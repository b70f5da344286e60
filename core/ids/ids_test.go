package ids_test

import (
	"testing"

	"github.com/segmentio/ksuid"

	"github.com/wiz-run/wiz/core/ids"
)

func TestOrdered(t *testing.T) {
	t.Parallel()
	prev := ids.New()
	for range 100000 {
		id := ids.New()
		if ksuid.Compare(id, prev) <= 0 {
			t.Fatalf("%s made after %s sorts before it", id, prev)
		}
		if len(id.String()) != 27 {
			t.Fatalf("%s is not 27 characters", id)
		}
		if _, err := ksuid.Parse(id.String()); err != nil {
			t.Fatal(err)
		}
		prev = id
	}
}
