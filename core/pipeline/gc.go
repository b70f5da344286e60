package pipeline

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// A pipeline file's YAML node tree is large and short-lived (about 5 KB of
// nodes per processor): at Go's usual collection targets the garbage of a
// 10,000-processor file set the whole Manager's peak RSS (91–96 MiB for
// `wiz pipeline apply` alone at GOGC=50; 74–79 MiB with this, for ~5 % more
// parse time). While a large file is parsed the collector runs at
// parseGCPercent, if that is lower than the process's setting.
const (
	parseGCPercent = 20
	// Smaller files are not worth it: their trees are a few MB (`wiz run`
	// of one collects at 200 % anyway), and the collection at the end of
	// their parse cost ~3 ms of a 1,000-processor run's start.
	parseGCMinSize = 256 << 10
)

var parseGC struct {
	sync.Mutex
	n       int  // parses in progress
	old     int  // the process's setting, restored by the last one to end
	lowered bool // whether the parses changed it (not when it was lower, or off)
}

// collectHarder lowers the GC target while a parse of size bytes runs; the
// returned function restores it. Concurrent parses share one lowering.
func collectHarder(size int) (restore func()) {
	if size < parseGCMinSize {
		return func() {}
	}
	parseGC.Lock()
	defer parseGC.Unlock()
	if parseGC.n == 0 && !parseGC.lowered { // (lowered: a restore is pending; keep its old)
		parseGC.old = debug.SetGCPercent(parseGCPercent)
		parseGC.lowered = parseGC.old > parseGCPercent
		if !parseGC.lowered { // already as low, or off (-1): leave it
			debug.SetGCPercent(parseGC.old)
		}
	}
	parseGC.n++
	return func() {
		parseGC.Lock()
		parseGC.n--
		last := parseGC.n == 0 && parseGC.lowered
		parseGC.Unlock()
		if !last {
			return
		}
		// The node tree is garbage now: collect it before the looser target
		// lets what follows grow the heap past it. A parse that starts
		// meanwhile lowers the target again itself.
		runtime.GC()
		parseGC.Lock()
		if parseGC.n == 0 && parseGC.lowered {
			debug.SetGCPercent(parseGC.old)
			parseGC.lowered = false
		}
		parseGC.Unlock()
	}
}
