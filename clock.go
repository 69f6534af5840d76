package rthub

import (
	"container/heap"
	"sync"
	"time"
)

// deadlines runs callbacks at given times with one goroutine and one timer for
// the whole hub, instead of a runtime timer per connection: token-expiry
// warnings and closes, which every connection with an exp claim needs.
type deadlines struct {
	mu    sync.Mutex
	items deadlineHeap
	wake  chan struct{}
}

type deadline struct {
	at time.Time
	fn func()
}

type deadlineHeap []deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadline)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = deadline{}
	*h = old[:len(old)-1]
	return x
}

func newDeadlines() *deadlines {
	return &deadlines{wake: make(chan struct{}, 1)}
}

// add schedules fn at t. fn runs on the deadlines goroutine and must not block;
// callers make it idempotent or check it is still current (entries are never
// removed, only ignored).
func (d *deadlines) add(t time.Time, fn func()) {
	d.mu.Lock()
	heap.Push(&d.items, deadline{at: t, fn: fn})
	first := d.items[0].at.Equal(t)
	d.mu.Unlock()
	if first {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// run fires due deadlines until stop is closed. The hub owns it.
func (d *deadlines) run(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		d.mu.Lock()
		now := time.Now()
		var due []func()
		for len(d.items) > 0 && !d.items[0].at.After(now) {
			due = append(due, heap.Pop(&d.items).(deadline).fn)
		}
		next := time.Hour
		if len(d.items) > 0 {
			next = d.items[0].at.Sub(now)
		}
		d.mu.Unlock()
		for _, fn := range due {
			fn()
		}
		t.Reset(next)
		select {
		case <-stop:
			return
		case <-d.wake:
		case <-t.C:
		}
	}
}
