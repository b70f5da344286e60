package schedule_test

import (
	"testing"
	"time"

	"github.com/wiz-run/wiz/core/schedule"
)

// FuzzParse: no cron expression or time zone makes Parse panic, and the
// ticks of one that parses are in order, after their start, and found in
// bounded time.
func FuzzParse(f *testing.F) {
	for _, s := range [][2]string{
		{"0 3 * * *", ""}, {"*/5 * * * *", "Europe/Berlin"}, {"@daily", "America/New_York"}, {"@every 90s", ""},
		{"0 0 30 2 *", ""}, {"30 2 * * *", "Europe/Berlin"}, {"0 0 0 * * *", "UTC"}, {"@every 0s", ""}, {"61 * * * *", ""},
	} {
		f.Add(s[0], s[1])
	}
	from := time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, expr, tz string) {
		s, err := schedule.Parse(expr, tz)
		if err != nil {
			return
		}
		ticks, err := s.Ticks(from, from.Add(72*time.Hour), 50)
		if err != nil {
			return
		}
		last := from.Add(-time.Nanosecond)
		for _, tk := range ticks {
			if !tk.After(last) {
				t.Fatalf("%q in %q: tick %v not after %v", expr, tz, tk, last)
			}
			last = tk
		}
	})
}
