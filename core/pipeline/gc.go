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
	parseGCMinSize = 64 << 10 // smaller files are not worth it
)

var parseGC struct {
	sync.Mutex
	n   int // parses in progress
	old int // the process's setting, restored by the last one to end
}

// collectHarder lowers the GC target while a parse of size bytes runs; the
// returned function restores it. Concurrent parses share one lowering.
func collectHarder(size int) (restore func()) {
	if size < parseGCMinSize {
		return func() {}
	}
	parseGC.Lock()
	defer parseGC.Unlock()
	if parseGC.n == 0 {
		parseGC.old = debug.SetGCPercent(parseGCPercent)
		if parseGC.old >= 0 && parseGC.old < parseGCPercent { // already lower (or off: -1)
			debug.SetGCPercent(parseGC.old)
		}
	}
	parseGC.n++
	return func() {
		parseGC.Lock()
		defer parseGC.Unlock()
		if parseGC.n--; parseGC.n == 0 {
			// The node tree is garbage now: collect it before the looser
			// target lets what follows grow the heap past it.
			runtime.GC()
			debug.SetGCPercent(parseGC.old)
		}
	}
}
