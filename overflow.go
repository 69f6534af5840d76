package rthub

import (
	"fmt"
	"slices"
	"strconv"
)

// This file holds the overflow policy: what a connection's send queue does
// when it is full and the next frame is an event of a room that may lose
// events (Policy.Overflow), and the gap notices that tell the client so.

// OverflowMode says what happens to a room's events on a connection whose
// send queue is full (see [Options].SendQueueMessages and SendQueueBytes,
// and [Policy].Overflow).
type OverflowMode uint8

const (
	// OverflowClose, the default, keeps every event of the room in order:
	// when one cannot be queued the connection is closed as a slow
	// consumer (4000) and the client resumes from history (docs/protocol.md
	// §5).
	OverflowClose OverflowMode = iota
	// OverflowDropOldest drops the oldest queued events of such rooms to
	// make space, and tells the client with a "gap" message.
	OverflowDropOldest
	// OverflowConflate keeps only the newest queued event per (room, key)
	// (the key a publisher gives with [WithKey]): the events a newer one of
	// the same key supersedes are dropped first, then, if that is not
	// enough, the oldest events without a key, then the oldest keyed ones.
	// The client is told with a "gap" message.
	OverflowConflate
)

// String returns "close", "drop-oldest", "conflate", or "OverflowMode(N)".
func (m OverflowMode) String() string {
	switch m {
	case OverflowClose:
		return "close"
	case OverflowDropOldest:
		return "drop-oldest"
	case OverflowConflate:
		return "conflate"
	}
	return fmt.Sprintf("OverflowMode(%d)", uint8(m))
}

// OverflowRule gives the rooms that match one of Rooms the overflow mode
// Mode (see [Policy].Overflow).
type OverflowRule struct {
	// Rooms lists room patterns (syntax in [ValidPattern], without {sub}).
	Rooms []string
	// Mode is what a full send queue does to the events of these rooms.
	Mode OverflowMode
}

// overflowRule is the compiled form of an OverflowRule.
type overflowRule struct {
	rooms []pattern
	mode  OverflowMode
}

// compileOverflow compiles Policy.Overflow, reporting every problem.
func compileOverflow(rules []OverflowRule, report func(error)) []overflowRule {
	var out []overflowRule
	for i, r := range rules {
		if r.Mode > OverflowConflate {
			report(fmt.Errorf("rthub: policy: Overflow[%d]: unknown mode %d", i, r.Mode))
		}
		if len(r.Rooms) == 0 {
			report(fmt.Errorf("rthub: policy: Overflow[%d]: no rooms", i))
		}
		cr := overflowRule{mode: r.Mode}
		for j, s := range r.Rooms {
			pt, err := compilePattern(s)
			if err == nil && pt.hasSub {
				err = fmt.Errorf("%w: %s: {sub} is not allowed in overflow rooms", ErrBadRoom, quoteTrunc(s))
			}
			if err != nil {
				report(fmt.Errorf("rthub: policy: Overflow[%d].Rooms[%d]: %w", i, j, err))
				continue
			}
			cr.rooms = append(cr.rooms, pt)
		}
		out = append(out, cr)
	}
	return out
}

// overflowOf returns the overflow mode of the valid room: the first rule
// that matches it decides.
func (p *policy) overflowOf(room string) OverflowMode {
	for i := range p.overflow {
		if anyMatch(p.overflow[i].rooms, room, "") {
			return p.overflow[i].mode
		}
	}
	return OverflowClose
}

// frameMeta describes one queued frame of a connection whose queue holds
// events of lossy rooms (batch.meta). The zero value is a frame that is never
// dropped: a reply, a control message, an event of an OverflowClose room.
type frameMeta struct {
	room string       // the lossy room the frame belongs to
	key  string       // its publication's key ("" for none)
	mode OverflowMode // OverflowClose: never dropped
	gap  uint64       // a gap notice of room announcing this many events (0: not a notice)
	shed uint8        // set while shedding: shedDropped or shedConflated
}

const (
	shedDropped   uint8 = 1
	shedConflated uint8 = 2
)

// droppable reports whether the frame is an event the overflow policy may
// drop.
func (m *frameMeta) droppable() bool { return m.mode != OverflowClose && m.gap == 0 }

// gapNote is a loss of a room's events not yet announced in the queue: the
// notice goes before the next event of the room queued.
type gapNote struct {
	room string
	n    uint64
}

// appendGap is the message telling a connection that the overflow policy
// left out n events of room: {"type":"gap","room":"r","dropped":n}. The
// number is padded with spaces to 20 characters (JSON whitespace), so a
// notice keeps its size when later losses are added to it and a queue at
// its byte bound stays within it.
func appendGap(dst []byte, room string, n uint64) []byte {
	dst = append(dst, `{"type":"gap","room":`...)
	dst = appendJSONString(dst, room)
	dst = append(dst, `,"dropped":`...)
	l := len(dst)
	dst = strconv.AppendUint(dst, n, 10)
	for len(dst)-l < 20 {
		dst = append(dst, ' ')
	}
	return append(dst, '}')
}

// gapFrame is the text frame of a gap notice.
func gapFrame(room string, n uint64) []byte {
	var buf [192]byte
	return textFrame(appendGap(buf[:0], room, n))
}

// queueLoad is what counts against a connection's queue bounds: the queued
// frames, the frames the writer took and has not finished writing, and the
// pending control frames. c.mu is held.
func (c *conn) queueLoad() (msgs, bytes int) {
	msgs, bytes = c.flightN, c.flightB+c.queued
	if c.queue != nil {
		msgs += len(c.queue.bufs)
	}
	if c.pingDue {
		msgs++
		bytes += len(pingFrame)
	}
	if pong := c.pongLocked(); pong != nil {
		msgs++
		bytes += len(pong)
	}
	return msgs, bytes
}

// fitsLocked reports whether msgs more frames of bytes more bytes stay within
// the queue bounds. An idle connection takes any one frame. c.mu is held.
func (c *conn) fitsLocked(msgs, bytes int) bool {
	n, b := c.queueLoad()
	if n == 0 && msgs <= 1 {
		return true
	}
	return n+msgs <= c.hub.opts.SendQueueMessages && b+bytes <= c.hub.opts.SendQueueBytes
}

// appendLocked appends frame with its metadata to the queue. c.mu is held.
func (c *conn) appendLocked(frame []byte, m frameMeta) {
	q := c.queue
	if q == nil {
		q = batchPool.Get().(*batch)
		c.queue = q
	}
	if q.meta == nil && m.mode != OverflowClose {
		// The first lossy frame: from now on every frame has its metadata.
		q.meta = make([]frameMeta, len(q.bufs), max(cap(q.bufs), 16))
	}
	q.bufs = append(q.bufs, frame)
	if q.meta != nil {
		q.meta = append(q.meta, m)
		if m.mode == OverflowConflate && m.key != "" {
			c.conflatable = true
		}
	}
	c.queued += len(frame)
}

// enqueueLossy queues one event frame of a room whose overflow mode is not
// OverflowClose (m describes it). When the queue is full it sheds queued
// events of lossy rooms (see shedLocked) to make space, and when nothing
// can be shed the frame itself is left out; either way the room's next
// event is preceded by a gap notice. It never closes the connection. shed
// reports that the frame was left out by the policy (not for a closing
// connection).
func (c *conn) enqueueLossy(frame []byte, m frameMeta) (queued, start, shed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false, false, false
	}
	for {
		gi := c.gapNoteIndex(m.room)
		var gf []byte
		if gi >= 0 {
			gf = gapFrame(m.room, c.gaps[gi].n)
		}
		need := 1
		if gf != nil {
			need++
		}
		if c.fitsLocked(need, len(frame)+len(gf)) {
			if gf != nil {
				c.appendLocked(gf, frameMeta{room: m.room, mode: m.mode, gap: c.gaps[gi].n})
				c.gaps = slices.Delete(c.gaps, gi, gi+1)
				c.hub.stats.gapNotices.Add(1)
			}
			c.appendLocked(frame, m)
			return true, c.kickLocked(), false
		}
		// An event without a key never sheds the newest value of a key.
		if !c.shedLocked(m.mode == OverflowDropOldest || m.key == "") {
			break
		}
	}
	c.noteGapLocked(m.room, 1)
	c.hub.stats.overflowDropped.Add(1)
	return false, false, true
}

// gapNoteIndex returns the index in c.gaps of room's unannounced loss, or -1.
func (c *conn) gapNoteIndex(room string) int {
	for i := range c.gaps {
		if c.gaps[i].room == room {
			return i
		}
	}
	return -1
}

// noteGapLocked records n lost events of room to announce before its next
// queued event: added to the room's gap notice if one is queued (a notice
// is queued before the first event of the room after a loss, so it still
// comes before the next one), else to its unannounced loss. c.gaps holds at
// most one entry per room; when it reaches MaxRoomsPerConn the rooms the
// connection left are pruned, so it stays within that bound (plus one).
func (c *conn) noteGapLocked(room string, n uint64) {
	if q := c.queue; q != nil && q.meta != nil {
		for i := range q.meta {
			if q.meta[i].gap > 0 && q.meta[i].room == room {
				c.setGapLocked(i, q.meta[i].gap+n)
				return
			}
		}
	}
	if i := c.gapNoteIndex(room); i >= 0 {
		c.gaps[i].n += n
		return
	}
	if len(c.gaps) >= c.hub.opts.MaxRoomsPerConn {
		c.gaps = slices.DeleteFunc(c.gaps, func(g gapNote) bool {
			return !slices.ContainsFunc(c.rooms, func(rr roomRef) bool { return rr.name == g.room })
		})
	}
	c.gaps = append(c.gaps, gapNote{room: room, n: n})
}

// setGapLocked replaces the queued gap notice at i by one announcing n
// events (a new frame: queued frames are never modified).
func (c *conn) setGapLocked(i int, n uint64) {
	q := c.queue
	f := gapFrame(q.meta[i].room, n)
	c.queued += len(f) - len(q.bufs[i])
	q.bufs[i] = f
	q.meta[i].gap = n
}

// shedLocked frees queue space by one step and reports whether it freed
// any: first conflation (every queued event of a conflate room that a newer
// queued event of the same room and key supersedes is dropped), else the
// oldest queued event of a drop-oldest room or without a key, else, unless
// keepKeyed, the oldest keyed event of a conflate room. Gap notices, replies,
// control messages and events of ordered rooms are never shed. The cost is
// linear in the queue's length, paid only when the queue is full. A step
// that places a gap notice may free no slot (the notice takes the one the
// dropped event had); the callers loop. c.mu is held.
func (c *conn) shedLocked(keepKeyed bool) bool {
	q := c.queue
	if q == nil || q.meta == nil {
		return false
	}
	if c.conflatable {
		c.conflatable = false
		if markSuperseded(q.meta) > 0 {
			c.rebuildLocked()
			return true
		}
	}
	i := slices.IndexFunc(q.meta, func(m frameMeta) bool {
		return m.droppable() && (m.mode == OverflowDropOldest || m.key == "")
	})
	if i < 0 && !keepKeyed {
		i = slices.IndexFunc(q.meta, func(m frameMeta) bool { return m.droppable() })
	}
	if i < 0 {
		return false
	}
	q.meta[i].shed = shedDropped
	c.rebuildLocked()
	return true
}

// markSuperseded marks, in one pass from the newest, every keyed event of a
// conflate room that a newer one of the same room and key follows, and
// returns how many it marked.
func markSuperseded(meta []frameMeta) int {
	type rk struct{ room, key string }
	var seen map[rk]struct{}
	n := 0
	for i := len(meta) - 1; i >= 0; i-- {
		m := &meta[i]
		if m.mode != OverflowConflate || m.key == "" || m.gap > 0 {
			continue
		}
		k := rk{m.room, m.key}
		if _, ok := seen[k]; ok {
			m.shed = shedConflated
			n++
			continue
		}
		if seen == nil {
			seen = make(map[rk]struct{})
		}
		seen[k] = struct{}{}
	}
	return n
}

// rebuildLocked removes the frames marked shed from the queue, keeping the
// order of the rest, and places the gap notices: each room that lost events
// gets one notice, right before its first event that follows the loss (a
// notice already queued for it is merged in). A loss with no later event of
// its room queued waits in c.gaps for the room's next event. c.mu is held.
func (c *conn) rebuildLocked() {
	q := c.queue
	type acc struct {
		room string
		n    uint64 // lost, not yet placed
		at   int    // index of its notice in the rebuilt queue, -1: none yet
	}
	var accs []acc
	find := func(room string) *acc {
		for i := range accs {
			if accs[i].room == room {
				return &accs[i]
			}
		}
		accs = append(accs, acc{room: room, at: -1})
		return &accs[len(accs)-1]
	}
	st := &c.hub.stats
	w := 0
	for r := range q.bufs {
		f, m := q.bufs[r], q.meta[r]
		switch {
		case m.gap > 0: // re-placed with the room's next event, merged
			find(m.room).n += m.gap
			c.queued -= len(f)
			continue
		case m.shed != 0:
			find(m.room).n++
			c.queued -= len(f)
			if m.shed == shedConflated {
				st.overflowConflated.Add(1)
			} else {
				st.overflowDropped.Add(1)
			}
			continue
		case m.droppable():
			if a := find(m.room); a.n > 0 {
				if a.at >= 0 {
					c.setGapLocked(a.at, q.meta[a.at].gap+a.n)
				} else {
					// A notice replaces at least the frame shed before
					// it, so w < r here and the slot is free.
					gf := gapFrame(a.room, a.n)
					q.bufs[w], q.meta[w] = gf, frameMeta{room: a.room, mode: m.mode, gap: a.n}
					c.queued += len(gf)
					st.gapNotices.Add(1)
					a.at = w
					w++
				}
				a.n = 0
			}
		}
		q.bufs[w], q.meta[w] = f, m
		w++
	}
	clear(q.bufs[w:])
	clear(q.meta[w:])
	q.bufs, q.meta = q.bufs[:w], q.meta[:w]
	for _, a := range accs {
		if a.at >= 0 {
			// An unannounced loss of the room (its events queued since
			// would have taken it) joins the notice placed before them.
			if gi := c.gapNoteIndex(a.room); gi >= 0 {
				a.n += c.gaps[gi].n
				c.gaps = slices.Delete(c.gaps, gi, gi+1)
			}
		}
		switch {
		case a.n == 0:
		case a.at >= 0:
			c.setGapLocked(a.at, q.meta[a.at].gap+a.n)
		default:
			c.noteGapLocked(a.room, a.n)
		}
	}
	if len(q.bufs) == 0 {
		releaseBatch(q)
		c.queue = nil
	}
}

// requeueLocked puts frames the writer took but could not write back at the
// head of the queue, where the overflow policy can still shed them; they
// stop counting as in flight. c.mu is held.
func (c *conn) requeueLocked(bufs [][]byte, meta []frameMeta) {
	if len(bufs) == 0 {
		return
	}
	q := c.queue
	if q == nil {
		q = batchPool.Get().(*batch)
		c.queue = q
	}
	if q.meta == nil {
		q.meta = make([]frameMeta, len(q.bufs), max(cap(q.bufs), 16))
	}
	n := 0
	for _, f := range bufs {
		n += len(f)
	}
	q.bufs = slices.Insert(q.bufs, 0, bufs...)
	q.meta = slices.Insert(q.meta, 0, meta...)
	c.queued += n
	notices := false
	for _, m := range meta {
		if m.mode == OverflowConflate && m.key != "" {
			c.conflatable = true
		}
		notices = notices || m.gap > 0
	}
	if notices {
		c.mergeGapsLocked()
	}
}

// mergeGapsLocked keeps one gap notice per room after requeueLocked brought
// back a notice the writer had taken: a later notice of the same room, or
// its unannounced loss, is added to the first one. c.mu is held.
func (c *conn) mergeGapsLocked() {
	q := c.queue
	first := map[string]int{}
	w := 0
	for r := range q.bufs {
		if m := q.meta[r]; m.gap > 0 {
			if i, ok := first[m.room]; ok {
				c.setGapLocked(i, q.meta[i].gap+m.gap)
				c.queued -= len(q.bufs[r])
				continue
			}
			first[m.room] = w
		}
		q.bufs[w], q.meta[w] = q.bufs[r], q.meta[r]
		w++
	}
	clear(q.bufs[w:])
	clear(q.meta[w:])
	q.bufs, q.meta = q.bufs[:w], q.meta[:w]
	c.gaps = slices.DeleteFunc(c.gaps, func(g gapNote) bool {
		i, ok := first[g.room]
		if ok {
			c.setGapLocked(i, q.meta[i].gap+g.n)
		}
		return ok
	})
}
