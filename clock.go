package rthub

import (
	"container/heap"
	"sync"
	"time"
)

// deadlines runs callbacks at given times with one goroutine and one timer for
// the whole hub, instead of a runtime timer per connection: token-expiry
// warnings and closes, which every connection with an exp claim needs.
//
// Bound: each connection owns one entry (conn.expiry), which it moves when its
// token is refreshed and removes at teardown, so the heap holds at most one
// entry per open connection and nothing of a closed connection stays
// reachable from it.
type deadlines struct {
	mu    sync.Mutex
	items deadlineHeap
	wake  chan struct{}
}

// deadline is one scheduled callback. Its owner embeds it and schedules,
// moves and cancels it; fn is set once, before the first schedule.
type deadline struct {
	at  time.Time
	idx int // position in the heap; -1 when not scheduled
	fn  func()
}

type deadlineHeap []*deadline

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *deadlineHeap) Push(x any) {
	e := x.(*deadline)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

func newDeadlines() *deadlines {
	return &deadlines{wake: make(chan struct{}, 1)}
}

// schedule runs e.fn at t: it adds e, or moves it if it is scheduled. e.fn
// runs on the deadlines goroutine and must not block.
func (d *deadlines) schedule(e *deadline, t time.Time) {
	d.mu.Lock()
	e.at = t
	if e.idx >= 0 && e.idx < len(d.items) && d.items[e.idx] == e {
		heap.Fix(&d.items, e.idx)
	} else {
		heap.Push(&d.items, e)
	}
	first := d.items[0] == e
	d.mu.Unlock()
	if first {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// cancel removes e if it is scheduled.
func (d *deadlines) cancel(e *deadline) {
	d.mu.Lock()
	if e.idx >= 0 && e.idx < len(d.items) && d.items[e.idx] == e {
		heap.Remove(&d.items, e.idx)
	}
	d.mu.Unlock()
}

// run fires due deadlines until stop is closed. The hub owns it. A callback
// may schedule its own entry again.
func (d *deadlines) run(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []func()
	for {
		d.mu.Lock()
		now := time.Now()
		for len(d.items) > 0 && !d.items[0].at.After(now) {
			due = append(due, heap.Pop(&d.items).(*deadline).fn)
		}
		next := time.Hour
		if len(d.items) > 0 {
			next = d.items[0].at.Sub(now)
		}
		d.mu.Unlock()
		for i, fn := range due {
			fn()
			due[i] = nil
		}
		due = due[:0]
		t.Reset(next)
		select {
		case <-stop:
			return
		case <-d.wake:
		case <-t.C:
		}
	}
}

// scheduleExpiry arranges the expiring warning and the close at exp for the
// identity the connection holds now (after a refresh too), or cancels them
// when it has no exp. The connection has one entry in the hub's clock, moved
// here and removed at teardown (see deadlines).
func (h *Hub) scheduleExpiry(c *conn, id *Identity) {
	if id.ExpiresAt.IsZero() {
		h.clock.cancel(&c.expiry)
		return
	}
	at := id.ExpiresAt.Add(h.auth.leeway) // valid here until then (AuthOptions.Leeway)
	if c.warnedExp.Load() != at.Unix() {
		at = at.Add(-h.auth.expiryWarning()) // at once if that is past
	}
	h.clock.schedule(&c.expiry, at)
}

// expiryDue runs on the clock when the connection's entry is due: it warns
// that the token is expiring (once per token) and moves the entry to exp, or
// closes the connection at exp.
func (c *conn) expiryDue() {
	h := c.hub
	id := c.ident.Load()
	if id.ExpiresAt.IsZero() {
		return
	}
	exp := id.ExpiresAt.Add(h.auth.leeway)
	now := time.Now()
	if !now.Before(exp) {
		if c.closeWith(CloseTokenExpired, "token expired") {
			h.stats.tokenExpired.Add(1)
		}
		return
	}
	if c.warnedExp.Swap(exp.Unix()) != exp.Unix() {
		c.sendJSON(expiringMsg{Type: "expiring", Expires: id.ExpiresAt.Unix()})
	}
	// Under c.mu: teardown marks the connection closed under it before it
	// cancels the entry, so the entry is never scheduled again after that.
	c.mu.Lock()
	if !c.closed {
		h.clock.schedule(&c.expiry, exp)
	}
	c.mu.Unlock()
}
