package rthub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// room is one room with local members: who is in it, where its stream is,
// and who is present. Its mutex guards all of that and is never held across
// I/O — not a broker or presence-store call, not a socket write, not a user
// callback — so that a slow broker call for one room never holds up the
// delivery of another (the broker delivers many rooms from one goroutine).
// Where a room must stay consistent across a broker call, it changes state
// instead of holding the lock:
//
//   - subscribing: the first join creates the room and subscribes this node
//     to it with no lock held; other joins wait for ready; publications that
//     arrive meanwhile are held in pending.
//   - live: each publication is delivered to the members in offset order.
//     When a gap shows (or the broker asks for a resync) the room is syncing:
//     a sync worker reads the history with no lock held while live
//     publications wait in pending, then delivers both in offset order
//     (what centrifuge's recovery does per client, done once per room).
//     A resuming connection catches up the same way on its own (joiner):
//     it reads its missed publications unlocked while what the room delivers
//     meanwhile is buffered for it, and becomes a member after the replay.
//   - closed: the last member left, or subscribing failed. The room is out of
//     the hub; gone is closed once the node is unsubscribed, and only then may
//     a room of the same name subscribe again (so an unsubscribe can never
//     overtake the next subscribe).
type room struct {
	h     *Hub
	name  string
	ready chan struct{} // closed when subscribing ends, either way
	gone  chan struct{} // closed when the room is closed and unsubscribed

	mu        sync.Mutex
	state     roomState
	err       error              // why subscribing failed; set before ready is closed
	members   []*conn            // in join order; each roomRef remembers its index
	joining   []*joiner          // resuming connections catching up from history
	pres      map[string]*person // by subject; nil unless Policy.Presence covers the room
	overflow  OverflowMode       // Policy.Overflow's mode for the room
	presSeq   uint64             // the last online/offline seq (single node; see nextPresenceSeq)
	pos       StreamPosition     // the last publication delivered: the seam for joins
	lastEvent int64              // unix nanoseconds of the last event queued (adaptive WriteDelay)
	syncing   bool               // a sync worker owns the stream; live publications go to pending
	queued    bool               // in the hub's sync queue
	pending   []Publication      // held while subscribing or syncing; at most maxPending
	lost      bool               // pending overflowed: the sync reads history once more
	syncFails int                // history reads of a resync that failed in a row
	// skip holds members that joined with a state snapshot ahead of pos:
	// events up to their offset are in the snapshot, so they are not sent
	// to them. An entry goes once pos reaches it; at most one per member.
	skip map[*conn]uint64
}

type roomState uint8

const (
	roomSubscribing roomState = iota
	roomLive
	roomClosed
)

// maxPending bounds the publications a room holds while it subscribes or
// syncs. Past it they are dropped and the sync reads them from history
// instead (or, if history no longer has them, the members are told to reload).
const maxPending = 1024

// joiner is a connection that resumes in a room: it reads what it missed from
// history, unlocked, while the frames the room delivers meanwhile are kept
// here, within the connection's queue bounds.
type joiner struct {
	c        *conn
	frames   [][]byte
	offs     []uint64 // each frame's offset, 0 for a message that is not an event
	bytes    int
	overflow bool // more arrived than the queue bounds: closed as a slow consumer
	left     bool // the connection left (or closed) before it caught up
}

func newRoom(h *Hub, name string, presence bool) *room {
	rm := &room{h: h, name: name, ready: make(chan struct{}), gone: make(chan struct{}), overflow: h.policy.overflowOf(name)}
	if presence {
		rm.pres = make(map[string]*person)
	}
	return rm
}

// hold keeps pub for later (subscribing or syncing).
func (rm *room) hold(pub *Publication) {
	if len(rm.pending) >= maxPending {
		rm.lost = true
		return
	}
	rm.pending = append(rm.pending, *pub)
}

// empty reports whether the room has no member and nobody catching up.
func (rm *room) empty() bool { return len(rm.members) == 0 && len(rm.joining) == 0 }

// room returns the room called name (subscribing or live), or nil.
func (h *Hub) room(name string) *room {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.rooms[name]
}

// liveRoom returns the live room called name, creating it and subscribing
// this node to it if needed. It waits, bounded by ctx, for a subscription in
// progress and for the unsubscription of a room of that name just closed.
func (h *Hub) liveRoom(ctx context.Context, name string) (*room, error) {
	for {
		h.mu.Lock()
		rm := h.rooms[name]
		if rm == nil {
			if old := h.leaving[name]; old != nil {
				h.mu.Unlock()
				if err := waitChan(ctx, old.gone); err != nil {
					return nil, err
				}
				continue
			}
			rm = newRoom(h, name, h.policy.presenceOn(name))
			h.rooms[name] = rm
			h.mu.Unlock()
			h.subscribeRoom(rm)
		} else {
			h.mu.Unlock()
		}
		if err := waitChan(ctx, rm.ready); err != nil {
			return nil, err
		}
		if rm.err != nil {
			return nil, rm.err
		}
		return rm, nil
	}
}

// waitChan waits for ch to be closed or ctx to end.
func waitChan(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	default:
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// subscribeRoom subscribes this node to the new room rm and reads its
// position, with no lock held, then makes it live (or closed on failure).
// The subscription belongs to the room, not to the join that created it, so
// it is bounded by the hub's context and BrokerTimeout.
func (h *Hub) subscribeRoom(rm *room) {
	ctx, cancel := context.WithTimeout(h.ctx, h.opts.BrokerTimeout)
	pos, err := h.subscribe(ctx, rm.name)
	cancel()
	rm.mu.Lock()
	var fls []*flushList
	var sync bool
	if err != nil {
		rm.state, rm.err, rm.pending = roomClosed, err, nil
	} else {
		rm.pos, rm.state = pos, roomLive
		fls, sync = rm.drainLocked()
	}
	rm.mu.Unlock()
	close(rm.ready)
	h.dispatchAll(fls)
	if err != nil {
		h.mu.Lock()
		if h.rooms[rm.name] == rm {
			delete(h.rooms, rm.name)
		}
		h.mu.Unlock()
		close(rm.gone)
		return
	}
	if sync {
		h.queueSync(rm)
	}
}

// closeRoom takes the closed room rm out of the hub and unsubscribes this
// node from it; a join of the same name meanwhile waits for rm.gone.
func (h *Hub) closeRoom(ctx context.Context, rm *room) {
	h.mu.Lock()
	if h.rooms[rm.name] == rm {
		delete(h.rooms, rm.name)
		h.leaving[rm.name] = rm
	}
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.opts.BrokerTimeout)
	h.unsubscribe(ctx, rm.name)
	cancel()
	h.mu.Lock()
	if h.leaving[rm.name] == rm {
		delete(h.leaving, rm.name)
	}
	h.mu.Unlock()
	close(rm.gone)
}

// joinResult is where a join left a connection in the room's stream.
type joinResult struct {
	pos       StreamPosition // the room's position at the join: the client has everything up to it
	resumed   bool           // a since position was given
	recovered bool           // ... and every publication after it was (or is being) delivered
	already   bool           // c was in the room before
	state     []byte         // the snapshot, a JSON array of events; nil when none was given
}

// join puts c in room name. server marks a server-side join.
func (h *Hub) join(ctx context.Context, c *conn, name string, server bool) error {
	_, err := h.joinAt(ctx, c, name, server, nil, false)
	return err
}

// joinAt puts c in room name. With since, the publications after since that
// the room delivered before the join are replayed to c first (from the
// broker's history, read with no lock held), so c misses nothing; recovered
// is false when they are no longer all kept. With wantState, a join that
// does not resume with every publication recovered gets the room's state
// snapshot instead (see joinState), and then exactly the events after it.
//
// Locks: h.mu, then a room's mu, then a conn's mu, each only for memory
// operations. A room's members are a slice in join order; each roomRef
// remembers its index, written only with both the room's and the conn's
// mutex held. Presence events and replays are queued with the room's mu
// held, so they stay in order with the room's events.
func (h *Hub) joinAt(ctx context.Context, c *conn, name string, server bool, since *StreamPosition, wantState bool) (joinResult, error) {
	res := joinResult{resumed: since != nil}
	// Cheap checks first, so a doomed join never creates (and subscribes) a room.
	if err := h.canJoin(c, name); err != nil {
		return res, err
	}
	var rm *room
	for {
		var err error
		if rm, err = h.liveRoom(ctx, name); err != nil {
			return res, err
		}
		rm.mu.Lock()
		if rm.state != roomClosed {
			break
		}
		rm.mu.Unlock() // closed since: wait for it to go, then make a new one
		if err := waitChan(ctx, rm.gone); err != nil {
			return res, err
		}
	}
	res.pos = rm.pos

	c.mu.Lock()
	ref := slices.IndexFunc(c.rooms, func(rr roomRef) bool { return rr.name == name })
	var err error
	switch {
	case c.closed:
		err = ErrNotFound
	case ref >= 0:
		res.already = true
		if server {
			c.rooms[ref].server = true
		}
	case len(c.rooms) >= h.opts.MaxRoomsPerConn:
		err = fmt.Errorf("%w: limit is %d", ErrTooManyRooms, h.opts.MaxRoomsPerConn)
	}
	if err != nil || res.already {
		c.mu.Unlock()
		if res.already && since != nil {
			// Already in: it receives the room live; nothing to replay.
			res.recovered = since.Epoch == rm.pos.Epoch && since.Offset >= rm.pos.Offset
		}
		empty := err != nil && rm.empty() && rm.state == roomLive
		if empty {
			rm.state = roomClosed
		}
		rm.mu.Unlock()
		if empty {
			h.closeRoom(ctx, rm)
		}
		if err == nil && wantState && !res.recovered {
			// Already in: it receives the room live; the snapshot comes with
			// its position, and the client drops the events up to it.
			if st, pos, ok, serr := h.readState(ctx, name); serr != nil {
				return res, serr
			} else if ok {
				res.state, res.pos, res.recovered = st, pos, false
			}
		}
		return res, err
	}

	replay := since != nil && since.Epoch == rm.pos.Epoch && since.Offset < rm.pos.Offset
	trivial := since != nil && since.Epoch == rm.pos.Epoch && since.Offset >= rm.pos.Offset
	snapshot := wantState && h.stater != nil && !trivial
	if since != nil {
		h.stats.resumes.Add(1)
		// Another stream, or a position this node has not reached (the client
		// came from a node further ahead): the client drops what it has seen.
		res.recovered = replay || since.Epoch == rm.pos.Epoch
		if !res.recovered {
			h.stats.unrecovered.Add(1)
		}
	}
	if !replay && !snapshot {
		c.rooms = append(c.rooms, roomRef{name: name, server: server, idx: len(rm.members)})
		rm.members = append(rm.members, c)
		c.mu.Unlock()
		h.joined(ctx, rm, c, nil)
		return res, nil
	}

	// Catch up from history with no lock held; what the room delivers
	// meanwhile waits in j.
	j := &joiner{c: c}
	rm.joining = append(rm.joining, j)
	c.rooms = append(c.rooms, roomRef{name: name, server: server, idx: -1})
	c.mu.Unlock()
	target := rm.pos
	rm.mu.Unlock()

	var frames [][]byte
	ok := false
	if replay {
		frames, ok = h.readReplay(ctx, name, c.id, *since, target)
		res.recovered = ok
	}
	var st []byte
	var spos StreamPosition
	var stateErr error
	haveState := false
	if snapshot && !ok {
		st, spos, haveState, stateErr = h.readState(ctx, name)
	}

	rm.mu.Lock()
	rm.joining = slices.DeleteFunc(rm.joining, func(x *joiner) bool { return x == j })
	if j.left || stateErr != nil {
		if stateErr != nil {
			c.mu.Lock()
			c.rooms = slices.DeleteFunc(c.rooms, func(rr roomRef) bool { return rr.name == name && rr.idx < 0 })
			c.mu.Unlock()
		}
		empty := rm.empty() && rm.state == roomLive
		if empty {
			rm.state = roomClosed
		}
		rm.mu.Unlock()
		if empty {
			h.closeRoom(ctx, rm)
		}
		if stateErr != nil {
			return res, stateErr
		}
		return res, ErrNotFound
	}
	resync := false
	if haveState {
		res.state, res.pos, res.recovered = st, spos, false
		if spos.Epoch == target.Epoch && spos.Offset >= target.Offset {
			// The snapshot covers everything up to spos: of what the room
			// delivered since target, only the events after it go out, and
			// those it has yet to deliver up to spos are skipped.
			j.keepAfter(spos.Offset)
			if rm.pos.Epoch == spos.Epoch && rm.pos.Offset < spos.Offset {
				if rm.skip == nil {
					rm.skip = make(map[*conn]uint64)
				}
				rm.skip[c] = spos.Offset
			}
		} else {
			// The broker's stream is not the room's (its epoch changed):
			// the room syncs, and its members, this one too, get a reset.
			resync = true
		}
	}
	c.mu.Lock()
	for i := range c.rooms {
		if c.rooms[i].name == name {
			c.rooms[i].idx = len(rm.members)
		}
	}
	c.mu.Unlock()
	rm.members = append(rm.members, c)
	if j.overflow {
		c.closeWith(CloseSlowConsumer, "slow consumer")
		h.stats.slowConsumers.Add(1)
	}
	fl := flushLists.Get().(*flushList)
	for _, f := range slices.Concat(frames, j.frames) {
		if _, start := c.enqueue(f); start {
			fl.conns = append(fl.conns, c)
		}
	}
	h.joined(ctx, rm, c, fl)
	if resync {
		h.requestSync(name)
	}
	return res, nil
}

// keepAfter drops the frames of events at or before offset off.
func (j *joiner) keepAfter(off uint64) {
	n := 0
	for i, f := range j.frames {
		if o := j.offs[i]; o == 0 || o > off {
			j.frames[n], j.offs[n] = f, o
			n++
		} else {
			j.bytes -= len(f)
		}
	}
	clear(j.frames[n:])
	j.frames, j.offs = j.frames[:n], j.offs[:n]
}

// readState reads room name's state snapshot from the broker, with no lock
// held, as a JSON array of the events (each with its position). ok is false
// when there is none: the broker keeps no state, or not for this room.
func (h *Hub) readState(ctx context.Context, name string) (st []byte, pos StreamPosition, ok bool, err error) {
	if h.stater == nil {
		return nil, StreamPosition{}, false, nil
	}
	bctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
	pubs, pos, err := h.stater.State(bctx, name)
	cancel()
	switch {
	case errors.Is(err, ErrNoState):
		return nil, StreamPosition{}, false, nil
	case err != nil:
		h.stats.brokerErrors.Add(1)
		h.log.LogAttrs(ctx, slog.LevelError, "rthub: reading room state", slog.String("room", name), slog.Any("err", err))
		return nil, StreamPosition{}, false, fmt.Errorf("%w: reading the room's state", ErrInternal)
	}
	n := 2
	for i := range pubs {
		n += len(pubs[i].Data) + 48
	}
	st = append(make([]byte, 0, n), '[')
	for i := range pubs {
		if i > 0 {
			st = append(st, ',')
		}
		st = appendPosition(st, pubs[i].Data, pubs[i].Position())
	}
	return append(st, ']'), pos, true, nil
}

// canJoin checks what can be checked of a join before its room is looked up.
func (h *Hub) canJoin(c *conn, name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return ErrNotFound
	case !slices.ContainsFunc(c.rooms, func(rr roomRef) bool { return rr.name == name }) && len(c.rooms) >= h.opts.MaxRoomsPerConn:
		return fmt.Errorf("%w: limit is %d", ErrTooManyRooms, h.opts.MaxRoomsPerConn)
	}
	return nil
}

// joined finishes a join: c has just been added to rm's members, with rm.mu
// held, which joined releases. It records c's presence, then dispatches fl
// (the replay, may be nil) and the presence events, and makes the cluster
// presence call, all with no lock held.
func (h *Hub) joined(ctx context.Context, rm *room, c *conn, fl *flushList) {
	var pfl *flushList
	var op presenceOp
	if rm.pres != nil {
		pfl, op = rm.presenceJoined(c)
	}
	rm.mu.Unlock()
	if fl != nil {
		h.dispatch(fl)
	}
	if pfl != nil {
		h.dispatch(pfl)
	}
	h.clusterPresence(ctx, op)
}

// readReplay reads from history the publications of room after since, up to
// target, as frames for the connection with ID connID (leaving out what was
// published WithExcept it). ok is false when they are no longer all kept.
// No lock is held: it is a broker call.
func (h *Hub) readReplay(ctx context.Context, name, connID string, since, target StreamPosition) (frames [][]byte, ok bool) {
	at := since
	for at.Offset < target.Offset {
		bctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
		pubs, _, err := h.broker.History(bctx, name, at, int(target.Offset-at.Offset))
		cancel()
		if err != nil || len(pubs) == 0 || pubs[0].Offset != at.Offset+1 {
			if err != nil && !errors.Is(err, ErrUnrecoverable) {
				h.stats.brokerErrors.Add(1)
				h.log.LogAttrs(ctx, slog.LevelError, "rthub: reading history for a resume", slog.String("room", name), slog.Any("err", err))
			}
			h.stats.unrecovered.Add(1)
			return nil, false
		}
		for i := range pubs {
			p := &pubs[i]
			if p.Offset != at.Offset+1 || p.Epoch != at.Epoch || p.Offset > target.Offset {
				break
			}
			if except, body := p.Except, p.Data; except != connID {
				frames = append(frames, appendFrameFor(body, p.Position()))
			}
			at = p.Position()
		}
		// pubs[0] continued the stream, so at moved: the loop ends.
	}
	return frames, true
}

// leave takes c out of room name; it reports whether c was in it. ctx bounds
// the cluster presence call and the unsubscription when c was the last
// member.
func (h *Hub) leave(ctx context.Context, c *conn, name string) bool {
	rm := h.room(name)
	if rm == nil {
		return false
	}
	rm.mu.Lock()
	c.mu.Lock()
	ref := slices.IndexFunc(c.rooms, func(rr roomRef) bool { return rr.name == name })
	var idx int
	if ref >= 0 {
		idx = c.rooms[ref].idx
		c.rooms = slices.Delete(c.rooms, ref, ref+1)
		c.gaps = slices.DeleteFunc(c.gaps, func(g gapNote) bool { return g.room == name })
	}
	viewing := c.viewing
	c.mu.Unlock()
	if ref < 0 {
		rm.mu.Unlock()
		return false
	}
	var fl *flushList
	var op presenceOp
	if idx < 0 { // still catching up: joinAt sees it left
		for _, j := range rm.joining {
			if j.c == c {
				j.left = true
			}
		}
	} else {
		rm.removeMemberLocked(idx)
		if rm.pres != nil {
			fl, op = rm.presenceLeft(c, viewing)
		}
	}
	empty := rm.empty() && rm.state == roomLive
	if empty {
		rm.state = roomClosed
	}
	rm.mu.Unlock()
	if fl != nil {
		h.dispatch(fl)
	}
	h.clusterPresence(ctx, op)
	if empty {
		h.closeRoom(ctx, rm)
	}
	return true
}

// removeMemberLocked takes the member at idx out of rm.members (the last
// member moves into its place, and its roomRef is told). rm.mu is held.
func (rm *room) removeMemberLocked(idx int) {
	if rm.skip != nil {
		delete(rm.skip, rm.members[idx])
	}
	last := len(rm.members) - 1
	if moved := rm.members[last]; idx != last {
		rm.members[idx] = moved
		moved.mu.Lock()
		for i := range moved.rooms {
			if moved.rooms[i].name == rm.name {
				moved.rooms[i].idx = idx
				break
			}
		}
		moved.mu.Unlock()
	}
	rm.members[last] = nil
	rm.members = rm.members[:last]
}

// inRoom reports whether c is a member of room name.
func (c *conn) inRoom(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.rooms, func(rr roomRef) bool { return rr.name == name })
}

// deliverLocked encodes one event once and queues it to rm's members (but
// the one with ID except), with rm.mu held. It returns the connections whose
// writers must be started (pass it to dispatch once rm.mu is released), or
// nil when there are none.
func (rm *room) deliverLocked(event string, data []byte, except string) *flushList {
	h := rm.h
	if rm.empty() {
		return nil
	}
	payload := appendEvent(make([]byte, 0, 64+len(event)+len(rm.name)+len(data)), event, rm.name, data)
	return rm.deliverPayloadLocked(payload, except, h.stats.events.of(event), nil)
}

// deliverPayloadLocked queues one encoded server message to rm's members
// but except (a connection ID, or ""), with rm.mu held; see deliverLocked.
// ev counts the deliveries and drops of the message's event (nil: not an
// event). Connections still catching up (joiners) keep the frame for later.
// pub is the publication the message carries, nil for other messages
// (presence events, resets): in a room whose overflow mode is not
// OverflowClose a publication is queued under that mode, with its key.
func (rm *room) deliverPayloadLocked(payload []byte, except string, ev *eventCounter, pub *Publication) *flushList {
	h := rm.h
	if rm.empty() {
		return nil
	}
	var off uint64 // the event's offset, 0 for a message that is not one
	if pub != nil {
		off = pub.Offset
	}
	p := preparedMessage{payload: payload, comp: h.comp, threshold: h.opts.Compression.Threshold}
	var n uint64
	fl := flushLists.Get().(*flushList)
	fl.born = time.Now().UnixNano()
	if d := h.opts.WriteDelay; d > 0 {
		fl.hold = rm.lastEvent != 0 && fl.born-rm.lastEvent < int64(d)
		rm.lastEvent = fl.born
	}
	var wire, dropped uint64
	var meta frameMeta
	if pub != nil && rm.overflow != OverflowClose {
		meta = frameMeta{room: rm.name, key: pub.Key, mode: rm.overflow}
	}
	for _, c := range rm.members {
		if except != "" && c.id == except {
			continue
		}
		if off != 0 && rm.skip != nil {
			if s, ok := rm.skip[c]; ok && off <= s {
				continue // in the snapshot it joined with
			}
		}
		f := p.frame(c.deflate)
		var queued, start, shed bool
		if meta.mode == OverflowClose {
			queued, start = c.enqueue(f)
		} else {
			queued, start, shed = c.enqueueLossy(f, meta)
		}
		if queued {
			n++
			wire += uint64(len(f))
		} else if !shed {
			dropped++
		}
		if start {
			fl.conns = append(fl.conns, c)
		}
	}
	for _, j := range rm.joining {
		if except != "" && j.c.id == except || j.overflow {
			continue
		}
		f := p.frame(j.c.deflate)
		if len(j.frames) >= h.opts.SendQueueMessages || j.bytes+len(f) > h.opts.SendQueueBytes {
			j.overflow, j.frames, j.offs, j.bytes = true, nil, nil, 0
			dropped++
			continue
		}
		j.frames = append(j.frames, f)
		j.offs = append(j.offs, off)
		j.bytes += len(f)
		n++
		wire += uint64(len(f))
	}
	h.stats.delivered.Add(n)
	if dropped > 0 {
		h.stats.droppedFrames.Add(dropped)
	}
	if ev != nil {
		ev.delivered.Add(n)
		if dropped > 0 {
			ev.dropped.Add(dropped)
		}
	}
	h.stats.eventBytes.Add(n * uint64(len(payload)))
	h.stats.eventWire.Add(wire)
	return fl
}
