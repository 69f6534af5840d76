package rthub

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds the write side of the hub: flush workers that write the
// frames queued to connections (a broadcast split in chunks over all cores),
// the WriteDelay delayer, and the pinger.

// flushJob is one unit of work for a flush worker: one connection, or a
// chunk of a broadcast's connections.
type flushJob struct {
	one  *conn
	list *flushList
	lo   int
	hi   int
}

// flushList holds the connections one publish queued frames to; its chunks
// go to several workers, and the last one to finish recycles it.
type flushList struct {
	conns []*conn
	left  atomic.Int32
	born  int64 // unix nanoseconds when the broadcast was queued; 0: not measured
	hold  bool  // its room is busy: dispatch after Options.WriteDelay
}

var flushLists = sync.Pool{New: func() any { return new(flushList) }}

// flushChunk is the smallest number of connections worth a job of its own.
const flushChunk = 64

// schedule hands a connection with queued frames to a flush worker. It never
// blocks: when every worker is busy and the hand-off queue is full, the flush
// runs on a goroutine of its own.
func (h *Hub) schedule(c *conn) {
	h.submit(flushJob{one: c})
}

// dispatch flushes the connections of one broadcast, at once or after
// Options.WriteDelay.
func (h *Hub) dispatch(l *flushList) {
	if h.delayKick == nil || len(l.conns) == 0 || !l.hold {
		h.dispatchNow(l)
		return
	}
	h.delayMu.Lock()
	h.delayed = append(h.delayed, l)
	h.delayMu.Unlock()
	select {
	case h.delayKick <- struct{}{}:
	default:
	}
}

// delayer dispatches delayed publishes WriteDelay after the first of them
// arrived. Their connections stay marked as writing meanwhile, so later
// frames join their queues instead of being written separately.
func (h *Hub) delayer() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		// The hub stops only after every connection is gone, so what is
		// still delayed then has nobody to go to.
		select {
		case <-h.stop:
			return
		case <-h.delayKick:
		}
		t.Reset(h.opts.WriteDelay)
		select {
		case <-h.stop:
			t.Stop()
			return
		case <-t.C:
		}
		h.dispatchDelayed()
	}
}

func (h *Hub) dispatchDelayed() {
	h.delayMu.Lock()
	ls := h.delayed
	h.delayed = nil
	h.delayMu.Unlock()
	for _, l := range ls {
		h.dispatchNow(l)
	}
}

// dispatchNow flushes the connections of one broadcast, split into chunks so
// that every worker (and core) takes a share. Writes never block a worker on
// a slow peer (see conn.flush), so a chunk is written in one pass.
func (h *Hub) dispatchNow(l *flushList) {
	n := len(l.conns)
	if n == 0 {
		l.born, l.hold = 0, false
		flushLists.Put(l)
		return
	}
	chunks := min(h.workers, (n+flushChunk-1)/flushChunk)
	l.left.Store(int32(chunks))
	for i := range chunks {
		h.submit(flushJob{list: l, lo: i * n / chunks, hi: (i + 1) * n / chunks})
	}
}

func (h *Hub) submit(j flushJob) {
	select {
	case h.flushCh <- j:
	default:
		h.wg.Go(func() {
			h.runJob(j, newWritev(h.opts.testMaxIov))
		})
	}
}

func (h *Hub) runJob(j flushJob, w *writev) {
	if j.one != nil {
		j.one.flush(w)
		return
	}
	for _, c := range j.list.conns[j.lo:j.hi] {
		c.flush(w)
	}
	if j.list.left.Add(-1) == 0 {
		if j.list.born != 0 {
			h.latency.observe(time.Duration(time.Now().UnixNano() - j.list.born))
			j.list.born = 0
		}
		clear(j.list.conns)
		j.list.conns = j.list.conns[:0]
		j.list.hold = false
		flushLists.Put(j.list)
	}
}

// flushWorker writes queued frames of scheduled connections. Several workers
// spread the writes of a broadcast over all cores.
func (h *Hub) flushWorker() {
	w := newWritev(h.opts.testMaxIov)
	for {
		select {
		case j := <-h.flushCh:
			h.runJob(j, w)
		case <-h.stop:
			// Drain what is left so no connection stays marked as writing.
			for {
				select {
				case j := <-h.flushCh:
					h.runJob(j, w)
				default:
					return
				}
			}
		}
	}
}

// pinger pings every connection each PingInterval and closes the ones that
// have been silent for PongTimeout: one goroutine and one ticker for the hub,
// no timer per connection.
//
// Each connection has its own slot in the interval (a hash of it, so stable
// for its life): the slots are pingSlot apart, and each tick pings only the
// connections of one slot. Pinging every connection at the same instant sent
// 10,000 pings and woke 10,000 readers for the pongs at once, every
// PingInterval, and the broadcasts caught in that burst waited for it (the
// 10,000-subscriber p99 doubled from then on).
func (h *Hub) pinger() {
	slots := max(int(h.opts.PingInterval/pingSlot), 1)
	step := h.opts.PingInterval / time.Duration(slots)
	start := time.Now() // before the ticker: tick k comes k steps after it or later
	t := time.NewTicker(step)
	defer t.Stop()
	seed := maphash.MakeSeed()
	var done int64 // ticks handled so far
	var batch []*conn
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			// A Ticker drops ticks when this goroutine is late: catch up
			// from the clock, so that no slot is skipped (its connections
			// would go two intervals without a ping), but at most one round.
			due := int64(now.Sub(start) / step)
			from := max(done, due-int64(slots))
			done = due
			if from >= due {
				continue
			}
			batch = h.snapshotConns(batch[:0])
			limit := now.Add(-h.opts.PongTimeout).UnixNano()
			for tick := from; tick < due; tick++ {
				slot := uint64(tick % int64(slots))
				if slot == 0 {
					h.limits.prune(now)
				}
				for _, c := range batch {
					if slots > 1 && maphash.Comparable(seed, c)%uint64(slots) != slot {
						continue
					}
					if c.lastIn.Load() < limit {
						if c.closeWith(ClosePingTimeout, "ping timeout") {
							h.stats.pingTimeouts.Add(1)
						}
						continue
					}
					c.sendPing()
				}
			}
			clear(batch)
		}
	}
}

// pingSlot is the spacing of the pinger's slots (see pinger): a 25 s
// PingInterval has 100 of them, each pinging about 1 % of the connections.
const pingSlot = 250 * time.Millisecond

func (h *Hub) snapshotConns(dst []*conn) []*conn {
	h.mu.RLock()
	for _, c := range h.conns {
		dst = append(dst, c)
	}
	h.mu.RUnlock()
	return dst
}
