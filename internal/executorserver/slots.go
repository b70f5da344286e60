package executorserver

import (
	"context"
	"sync"
)

// slotPool bounds how many tasks run at once. Its limit can change while
// tasks run (the Manager shares a machine among runs); waiters are served
// first come, first served.
type slotPool struct {
	mu    sync.Mutex
	limit int
	used  int
	wait  []chan struct{}
}

func newSlotPool(n int) *slotPool { return &slotPool{limit: n} }

// acquire waits for a slot; it returns false when ctx ends first.
func (p *slotPool) acquire(ctx context.Context) bool {
	p.mu.Lock()
	if p.used < p.limit && len(p.wait) == 0 {
		p.used++
		p.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	p.wait = append(p.wait, ch)
	p.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		p.mu.Lock()
		for i, w := range p.wait {
			if w == ch {
				p.wait = append(p.wait[:i], p.wait[i+1:]...)
				p.mu.Unlock()
				return false
			}
		}
		p.mu.Unlock()
		p.release() // granted while giving up: hand it on
		return false
	}
}

func (p *slotPool) release() {
	p.mu.Lock()
	p.used--
	p.grant()
	p.mu.Unlock()
}

// resize sets the limit; at least one task may always run.
func (p *slotPool) resize(n int) {
	if n < 1 {
		n = 1
	}
	p.mu.Lock()
	p.limit = n
	p.grant()
	p.mu.Unlock()
}

// waiting is how many tasks wait for a slot.
func (p *slotPool) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.wait)
}

func (p *slotPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit
}

// grant wakes waiters while slots are free; p.mu is held.
func (p *slotPool) grant() {
	for p.used < p.limit && len(p.wait) > 0 {
		ch := p.wait[0]
		p.wait = p.wait[1:]
		p.used++
		close(ch)
	}
}
