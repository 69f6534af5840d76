package rthub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// This file connects the hub to its Broker: publications come back from the
// broker with their stream position, are delivered to the room's members in
// offset order (duplicates dropped, gaps filled from history), and a client
// that reconnects with its last position per room gets what it missed
// replayed before the live events (docs/protocol.md §5).

// brokerHandler is the hub's BrokerHandler (a separate type, so that the
// handler methods are not part of Hub's API).
type brokerHandler struct{ h *Hub }

// HandlePublication delivers pub to the room's local members.
func (b brokerHandler) HandlePublication(pub Publication) {
	h := b.h
	rm := h.room(pub.Room)
	if rm == nil {
		return
	}
	rm.mu.Lock()
	fl, _ := h.advanceLocked(rm, pub.Room, &pub)
	rm.mu.Unlock()
	h.dispatchAll(fl)
}

// HandleResync reads what the rooms may have missed while the broker's
// delivery was broken, from history.
func (b brokerHandler) HandleResync(rooms []string) {
	h := b.h
	for _, name := range rooms {
		if !h.resyncRoom(name) { // true for a room no longer here
			select {
			case h.resyncCh <- name:
			default:
				h.log.LogAttrs(h.ctx, slog.LevelError, "rthub: resync retry queue full; room waits for its next event",
					slog.String("room", name))
			}
		}
	}
}

// resyncRoom reads what room missed from history; false when the read failed
// (to be retried).
func (h *Hub) resyncRoom(name string) bool {
	rm := h.room(name)
	if rm == nil {
		return true
	}
	rm.mu.Lock()
	fl, ok := h.advanceLocked(rm, name, nil)
	rm.mu.Unlock()
	h.dispatchAll(fl)
	return ok
}

// resyncer retries the history reads of resyncs that failed (the broker may
// still be reconnecting), with backoff from 100 ms to 5 s per room, until
// they succeed or the hub stops: a quiet room must not keep its missed events
// until its next publication.
func (h *Hub) resyncer() {
	type retry struct {
		at    time.Time
		delay time.Duration
	}
	pending := make(map[string]retry)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	rearm := func() {
		var next time.Time
		for _, r := range pending {
			if next.IsZero() || r.at.Before(next) {
				next = r.at
			}
		}
		if !next.IsZero() {
			t.Reset(max(time.Until(next), 0))
		}
	}
	for {
		select {
		case <-h.stop:
			return
		case room := <-h.resyncCh:
			if _, ok := pending[room]; !ok {
				pending[room] = retry{at: time.Now().Add(100 * time.Millisecond), delay: 100 * time.Millisecond}
			}
			rearm()
		case now := <-t.C:
			for room, r := range pending {
				if r.at.After(now) {
					continue
				}
				if h.resyncRoom(room) {
					delete(pending, room)
					continue
				}
				r.delay = min(2*r.delay, 5*time.Second)
				r.at = time.Now().Add(r.delay)
				pending[room] = r
			}
			rearm()
		}
	}
}

func (h *Hub) dispatchAll(fls []*flushList) {
	for _, fl := range fls {
		if fl != nil {
			h.dispatch(fl)
		}
	}
}

// advanceLocked moves rm's stream forward to pub (or, with a nil pub, to the
// broker's current position), with rm.mu held: publications already delivered
// are dropped; a gap is filled from the broker's history; when history cannot
// fill it (the stream was lost, or trimmed past the gap) the members get a
// "reset" message, the stream jumps ahead, and they reload.
//
// ok is false when history could not be read for a resync (pub nil): the
// caller retries.
func (h *Hub) advanceLocked(rm *room, name string, pub *Publication) (fls []*flushList, ok bool) {
	if rm.dead || !rm.ready {
		return nil, true // being created: its seam is read after the subscription
	}
	if pub != nil && pub.Epoch == rm.pos.Epoch {
		switch {
		case pub.Offset <= rm.pos.Offset:
			return nil, true // a duplicate (the subscription seam, a redelivery)
		case pub.Offset == rm.pos.Offset+1:
			return []*flushList{h.deliverPubLocked(rm, pub)}, true
		}
	}
	// A gap, an epoch change, or a resync: read history from our position.
	limit := -1
	if pub != nil && pub.Epoch == rm.pos.Epoch {
		limit = int(min(pub.Offset-rm.pos.Offset-1, 1<<20))
	}
	ctx, cancel := context.WithTimeout(h.ctx, h.opts.BrokerTimeout)
	pubs, cur, err := h.broker.History(ctx, name, rm.pos, limit)
	cancel()
	switch {
	case err == nil:
		for i := range pubs {
			if pubs[i].Epoch == rm.pos.Epoch && pubs[i].Offset == rm.pos.Offset+1 {
				fls = append(fls, h.deliverPubLocked(rm, &pubs[i]))
			}
		}
		if len(pubs) > 0 {
			h.stats.gapsRecovered.Add(1)
		}
		if pub == nil && cur.Epoch == rm.pos.Epoch && cur.Offset > rm.pos.Offset {
			// Still short (History returned fewer than asked): the rest comes live,
			// or a later resync reads it.
			return fls, true
		}
	case errors.Is(err, ErrUnrecoverable):
		h.stats.unrecovered.Add(1)
		target := cur // jump to the broker's position, or to just before pub
		if pub != nil {
			target = StreamPosition{Offset: pub.Offset - 1, Epoch: pub.Epoch}
		}
		h.log.LogAttrs(h.ctx, slog.LevelWarn, "rthub: room stream not recoverable, members told to reload",
			slog.String("room", name), slog.String("from", rm.pos.String()), slog.String("to", target.String()))
		rm.pos = target
		fls = append(fls, h.deliverPayloadLocked(rm, appendReset(nil, name, target), "", nil))
	default:
		h.stats.brokerErrors.Add(1)
		h.log.LogAttrs(h.ctx, slog.LevelError, "rthub: reading room history", slog.String("room", name), slog.Any("err", err))
		if pub == nil {
			return fls, false
		}
		// Cannot tell what was missed: members must reload.
		h.stats.unrecovered.Add(1)
		rm.pos = StreamPosition{Offset: pub.Offset - 1, Epoch: pub.Epoch}
		fls = append(fls, h.deliverPayloadLocked(rm, appendReset(nil, name, rm.pos), "", nil))
	}
	if pub != nil && pub.Epoch == rm.pos.Epoch && pub.Offset == rm.pos.Offset+1 {
		fls = append(fls, h.deliverPubLocked(rm, pub))
	}
	return fls, true
}

// deliverPubLocked delivers the next publication of rm's stream and moves the
// position to it.
func (h *Hub) deliverPubLocked(rm *room, pub *Publication) *flushList {
	rm.pos = pub.Position()
	if len(rm.members) == 0 {
		return nil
	}
	except, body := pub.Except, pub.Data
	var ev *eventCounter
	if name := eventNameOf(body); name != nil {
		ev = h.stats.events.ofBytes(name)
	}
	return h.deliverPayloadLocked(rm, appendPosition(make([]byte, 0, len(body)+48), body, pub.Position()), except, ev)
}

// replayLocked queues to c (not yet a member of rm) the publications after
// since that rm delivered before now, from the broker's history; live ones
// follow once c is a member. It reports whether everything after since is
// covered. Called with rm.mu held.
func (h *Hub) replayLocked(rm *room, name string, c *conn, since StreamPosition) (bool, *flushList) {
	h.stats.resumes.Add(1)
	if since.Epoch != rm.pos.Epoch || since.Offset > rm.pos.Offset {
		// Another stream, or a position this node has not reached (the client
		// came from a node further ahead): the client drops what it has seen.
		if since.Epoch == rm.pos.Epoch {
			return true, nil
		}
		h.stats.unrecovered.Add(1)
		return false, nil
	}
	if since.Offset == rm.pos.Offset {
		return true, nil
	}
	// Collect everything first: a replay is all or nothing.
	var frames [][]byte
	at := since
	for at.Offset < rm.pos.Offset {
		ctx, cancel := context.WithTimeout(h.ctx, h.opts.BrokerTimeout)
		pubs, _, err := h.broker.History(ctx, name, at, int(rm.pos.Offset-at.Offset))
		cancel()
		if err != nil || len(pubs) == 0 || pubs[0].Offset != at.Offset+1 {
			if err != nil && !errors.Is(err, ErrUnrecoverable) {
				h.stats.brokerErrors.Add(1)
				h.log.LogAttrs(h.ctx, slog.LevelError, "rthub: reading history for a resume", slog.String("room", name), slog.Any("err", err))
			}
			h.stats.unrecovered.Add(1)
			return false, nil
		}
		for i := range pubs {
			p := &pubs[i]
			if p.Offset != at.Offset+1 || p.Epoch != at.Epoch || p.Offset > rm.pos.Offset {
				break
			}
			if except, body := p.Except, p.Data; except != c.id {
				frames = append(frames, appendFrameFor(body, p.Position()))
			}
			at = p.Position()
		}
		// pubs[0] continued the stream, so at moved: the loop ends.
	}
	fl := flushLists.Get().(*flushList)
	for _, f := range frames {
		if _, start := c.enqueue(f); start {
			fl.conns = append(fl.conns, c)
		}
	}
	return true, fl
}

// info is what a welcome or a join reply says about the room's stream.
func (r joinResult) info() streamInfo {
	si := streamInfo{Offset: r.pos.Offset, Epoch: r.pos.Epoch}
	if r.resumed {
		rec := r.recovered
		si.Recovered = &rec
	}
	return si
}

// appendFrameFor builds the text frame of a publication for one connection.
func appendFrameFor(body []byte, pos StreamPosition) []byte {
	return textFrame(appendPosition(make([]byte, 0, len(body)+48), body, pos))
}

// subscribe subscribes this node to room and returns the room's position: the
// seam after which every publication comes live.
func (h *Hub) subscribe(room string) (StreamPosition, error) {
	ctx, cancel := context.WithTimeout(h.ctx, h.opts.BrokerTimeout)
	defer cancel()
	if err := h.broker.Subscribe(ctx, room); err != nil {
		h.stats.brokerErrors.Add(1)
		return StreamPosition{}, fmt.Errorf("%w: subscribing: %w", ErrInternal, err)
	}
	_, pos, err := h.broker.History(ctx, room, StreamPosition{}, 0)
	if err != nil {
		h.stats.brokerErrors.Add(1)
		h.unsubscribe(room)
		return StreamPosition{}, fmt.Errorf("%w: reading the room's position: %w", ErrInternal, err)
	}
	return pos, nil
}

func (h *Hub) unsubscribe(room string) {
	ctx, cancel := context.WithTimeout(h.ctx, h.opts.BrokerTimeout)
	defer cancel()
	if err := h.broker.Unsubscribe(ctx, room); err != nil && !errors.Is(err, ErrBrokerClosed) && h.ctx.Err() == nil {
		h.stats.brokerErrors.Add(1)
		h.log.Warn("rthub: unsubscribing a room", slog.String("room", room), slog.Any("err", err))
	}
}

// appendPosition appends body (a JSON object) with the stream position added
// as its last members "offset" and "epoch".
func appendPosition(dst, body []byte, pos StreamPosition) []byte {
	if len(body) == 0 || body[len(body)-1] != '}' {
		return append(dst, body...)
	}
	dst = append(dst, body[:len(body)-1]...)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	dst = append(dst, `,"epoch":`...)
	dst = appendJSONString(dst, pos.Epoch)
	return append(dst, '}')
}

// appendReset is the message telling a room's members that events were lost:
// {"type":"reset","room":"r","offset":N,"epoch":"e"}.
func appendReset(dst []byte, room string, pos StreamPosition) []byte {
	dst = append(dst, `{"type":"reset","room":`...)
	dst = appendJSONString(dst, room)
	return appendPosition(dst, []byte("}"), pos)
}

// parseSince reads the handshake's since parameter: base64url (unpadded) of a
// JSON object mapping rooms to positions, {"room":{"offset":N,"epoch":"e"}}.
func parseSince(v string, maxRooms int) (map[string]StreamPosition, error) {
	if v == "" {
		return nil, nil
	}
	if len(v) > 16<<10 {
		return nil, fmt.Errorf("%w: since parameter too long", ErrBadRequest)
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%w: since parameter is not base64url", ErrBadRequest)
	}
	var m map[string]StreamPosition
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: since parameter is not a JSON object of positions", ErrBadRequest)
	}
	if len(m) > maxRooms {
		return nil, fmt.Errorf("%w: since names more rooms than a connection may join", ErrBadRequest)
	}
	for room := range m {
		if err := ValidRoom(room); err != nil {
			return nil, fmt.Errorf("%w: since: %v", ErrBadRequest, err)
		}
	}
	return m, nil
}
