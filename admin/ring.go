package admin

import "sync"

// ring keeps the newest size values added; when full, each new value
// replaces the oldest. A size of 0 keeps none (and still counts). Safe for
// concurrent use.
type ring[T any] struct {
	size  int
	mu    sync.Mutex
	buf   []T
	next  int    // where the next value goes once buf is full
	total uint64 // values added since the ring was made
}

func newRing[T any](size int) *ring[T] { return &ring[T]{size: max(size, 0)} }

func (r *ring[T]) add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	switch {
	case r.size == 0:
	case len(r.buf) < r.size:
		r.buf = append(r.buf, v)
	default:
		r.buf[r.next] = v
		r.next = (r.next + 1) % r.size
	}
}

// recent returns the newest n values, newest first, and the total added.
func (r *ring[T]) recent(n int) ([]T, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n = max(min(n, len(r.buf)), 0)
	out := make([]T, 0, n)
	for i := range n {
		// the newest is just before next once full, the last one before
		out = append(out, r.buf[(r.next-1-i+2*len(r.buf))%len(r.buf)])
	}
	return out, r.total
}
