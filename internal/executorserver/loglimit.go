package executorserver

import (
	"fmt"
	"sync"

	"github.com/wiz-run/wiz/proto/wizrpc"
)

// logLimit bounds a task's logs to a budget: the first half is sent as it
// comes (the head); after it, the newest half is kept (the tail) and sent
// when the task ends, after a line counting what went between; a last line
// repeats the count. Memory stays within the budget whatever the program
// writes. Events other than logs pass through.
type logLimit struct {
	half int64 // 0: no bound
	out  func(*wizrpc.ExecuteEvent)

	mu      sync.Mutex // stdout and stderr are copied by two goroutines
	head    int64      // bytes sent so far
	tail    []*wizrpc.Log
	tailLen int64
	dropped int64
}

// tailChunk is the largest piece of the tail kept (and sent) as one event.
const tailChunk = 64 << 10

func newLogLimit(budget int64, out func(*wizrpc.ExecuteEvent)) *logLimit {
	return &logLimit{half: budget / 2, out: out}
}

// emit sends or keeps one event.
func (l *logLimit) emit(ev *wizrpc.ExecuteEvent) {
	lg := ev.GetLog()
	if lg == nil || l.half <= 0 {
		l.out(ev)
		return
	}
	l.mu.Lock()
	if l.tail == nil && l.head+int64(len(lg.Data)) <= l.half {
		l.head += int64(len(lg.Data))
		l.mu.Unlock()
		l.out(ev)
		return
	}
	defer l.mu.Unlock()
	if l.tail == nil && l.head < l.half {
		// What fits of this event ends the head.
		n := l.half - l.head
		l.head = l.half
		l.out(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: lg.Stream, Data: lg.Data[:n]}}})
		lg = &wizrpc.Log{Stream: lg.Stream, Data: lg.Data[n:]}
	}
	if l.tail == nil {
		l.tail = []*wizrpc.Log{}
	}
	// Kept in chunks of up to tailChunk bytes per stream: a line per
	// event would cost more than the line.
	if n := len(l.tail); n > 0 && l.tail[n-1].Stream == lg.Stream && len(l.tail[n-1].Data)+len(lg.Data) <= tailChunk {
		last := l.tail[n-1]
		last.Data = append(last.Data, lg.Data...) // within its tailChunk capacity
	} else {
		// A copy of its own: the event's buffer may be larger than its data.
		l.tail = append(l.tail, &wizrpc.Log{Stream: lg.Stream, Data: append(make([]byte, 0, max(len(lg.Data), tailChunk)), lg.Data...)})
	}
	l.tailLen += int64(len(lg.Data))
	for l.tailLen > l.half {
		first := l.tail[0]
		over := l.tailLen - l.half
		if over >= int64(len(first.Data)) {
			l.tail = l.tail[1:]
			l.tailLen -= int64(len(first.Data))
			l.dropped += int64(len(first.Data))
			continue
		}
		l.tail[0] = &wizrpc.Log{Stream: first.Stream, Data: first.Data[over:]}
		l.tailLen -= over
		l.dropped += over
	}
}

// finish sends the tail, after a line counting what was dropped, and that
// count again as the last line.
func (l *logLimit) finish() {
	l.mu.Lock()
	tail, dropped := l.tail, l.dropped
	l.tail, l.tailLen, l.dropped = nil, 0, 0
	l.mu.Unlock()
	line := func(msg string) {
		l.out(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: &wizrpc.Log{Stream: "stderr", Data: []byte(msg)}}})
	}
	if dropped > 0 {
		line(fmt.Sprintf("\nwiz: … %s of logs dropped (max_log_size keeps the first and the last %s) …\n", byteCount(dropped), byteCount(l.half)))
	}
	for _, lg := range tail {
		l.out(&wizrpc.ExecuteEvent{Event: &wizrpc.ExecuteEvent_Log{Log: lg}})
	}
	if dropped > 0 {
		line(fmt.Sprintf("\nwiz: %s of this processor's logs were dropped in the middle (max_log_size)\n", byteCount(dropped)))
	}
}

// byteCount writes n bytes as people read them: 283.4 MB, 8.0 MiB.
func byteCount(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
