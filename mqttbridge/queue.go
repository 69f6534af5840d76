package mqttbridge

import "sync"

// entry is a queued message with what the route resolved from its topic.
type entry struct {
	msg   *Message
	key   string
	rooms []string
	size  int
}

// queue is a route's bounded FIFO of messages: at most maxMsgs entries and
// about maxBytes bytes (one message larger than maxBytes is still taken into
// an empty queue). With conflation it holds at most one entry per key. It is
// safe for concurrent use by one producer (the MQTT client's delivery
// goroutine) and one consumer (the route's worker).
type queue struct {
	mu        sync.Mutex
	buf       []*entry // ring of len maxMsgs
	head, n   int
	bytes     int
	highWater int
	byKey     map[string]*entry // nil unless conflating

	maxMsgs, maxBytes int
	overflow          Overflow

	notify chan struct{} // cap 1; signalled when an entry is added
	space  chan struct{} // cap 1; signalled when an entry is removed
}

func newQueue(maxMsgs, maxBytes int, overflow Overflow, conflate bool) *queue {
	q := &queue{
		buf:      make([]*entry, maxMsgs),
		maxMsgs:  maxMsgs,
		maxBytes: maxBytes,
		overflow: overflow,
		notify:   make(chan struct{}, 1),
		space:    make(chan struct{}, 1),
	}
	if conflate {
		q.byKey = make(map[string]*entry)
	}
	return q
}

// pushResult says what push did.
type pushResult struct {
	queued  bool // e is in the queue (new or merged)
	merged  bool // e replaced a queued message with its key
	dropped int  // messages discarded: older ones, or e itself if !queued
}

// push adds e as the overflow policy says. With [Block] it waits for room
// until stop is closed; e is then dropped.
func (q *queue) push(e *entry, stop <-chan struct{}) pushResult {
	var res pushResult
	for {
		q.mu.Lock()
		old := q.byKey[e.key] // nil map: nil
		if q.fits(old, e) {
			q.put(old, e)
			q.mu.Unlock()
			res.queued, res.merged = true, old != nil
			q.signal(q.notify)
			return res
		}
		switch q.overflow {
		case DropNewest:
			q.mu.Unlock()
			res.dropped++
			return res
		case DropOldest:
			for !q.fits(old, e) && q.n > 0 {
				if f := q.popLocked(); f == old {
					old = nil
				}
				res.dropped++
			}
			q.put(old, e)
			q.mu.Unlock()
			res.queued, res.merged = true, old != nil
			q.signal(q.notify)
			return res
		default: // Block
			q.mu.Unlock()
			select {
			case <-q.space:
			case <-stop:
				res.dropped++
				return res
			}
		}
	}
}

func (q *queue) sizeOf(e *entry) int {
	if e == nil {
		return 0
	}
	return e.size
}

// fits reports whether e fits, replacing old (if not nil). Call with q.mu held.
func (q *queue) fits(old, e *entry) bool {
	n := q.n
	if old == nil {
		n++
	}
	return n <= q.maxMsgs && (q.bytes-q.sizeOf(old)+e.size <= q.maxBytes || q.n == 0)
}

// put stores e, in old's place if old is not nil. Call with q.mu held.
func (q *queue) put(old, e *entry) {
	if old != nil {
		q.bytes += e.size - old.size
		old.msg, old.rooms, old.size = e.msg, e.rooms, e.size
		return
	}
	q.buf[(q.head+q.n)%len(q.buf)] = e
	q.n++
	q.bytes += e.size
	q.highWater = max(q.highWater, q.n)
	if q.byKey != nil {
		q.byKey[e.key] = e
	}
}

// popLocked removes the oldest entry. Call with q.mu held and q.n > 0.
func (q *queue) popLocked() *entry {
	e := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.bytes -= e.size
	if q.byKey != nil && q.byKey[e.key] == e {
		delete(q.byKey, e.key)
	}
	return e
}

// pop removes and returns the oldest entry, or nil if the queue is empty.
func (q *queue) pop() *entry {
	q.mu.Lock()
	if q.n == 0 {
		q.mu.Unlock()
		return nil
	}
	e := q.popLocked()
	q.mu.Unlock()
	q.signal(q.space)
	return e
}

// popN removes and returns up to n of the oldest entries.
func (q *queue) popN(dst []*entry, n int) []*entry {
	q.mu.Lock()
	for ; n > 0 && q.n > 0; n-- {
		dst = append(dst, q.popLocked())
	}
	q.mu.Unlock()
	q.signal(q.space)
	return dst
}

// clear empties the queue and returns how many entries it held.
func (q *queue) clear() int {
	q.mu.Lock()
	n := q.n
	for q.n > 0 {
		q.popLocked()
	}
	q.mu.Unlock()
	q.signal(q.space)
	return n
}

// len returns the number of queued entries and their bytes.
func (q *queue) len() (n, bytes, highWater int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.bytes, q.highWater
}

func (q *queue) signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
