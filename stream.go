package rthub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// This file connects the hub to its Broker: publications come back from the
// broker with their stream position and are delivered to the room's members
// in offset order, duplicates dropped and gaps filled from history. History
// is read by sync workers with no lock held (see room); the broker's delivery
// goroutine only ever takes a room's mutex for memory work.

// brokerHandler is the hub's BrokerHandler (a separate type, so that the
// handler methods are not part of Hub's API).
type brokerHandler struct{ h *Hub }

// HandlePublication delivers pub to the room's local members, or holds it
// while the room subscribes or syncs. It never waits for I/O.
func (b brokerHandler) HandlePublication(pub Publication) {
	h := b.h
	rm := h.room(pub.Room)
	if rm == nil {
		return
	}
	rm.mu.Lock()
	fl, sync := rm.advanceLocked(&pub)
	rm.mu.Unlock()
	if fl != nil {
		h.dispatch(fl)
	}
	if sync {
		h.queueSync(rm)
	}
}

// HandleResync has the rooms read what they may have missed while the
// broker's delivery was broken, from history, on the sync workers.
func (b brokerHandler) HandleResync(rooms []string) {
	for _, name := range rooms {
		b.h.requestSync(name)
	}
}

// requestSync makes room name sync from history (no-op if it is gone).
func (h *Hub) requestSync(name string) {
	rm := h.room(name)
	if rm == nil {
		return
	}
	rm.mu.Lock()
	start := rm.state == roomLive && !rm.syncing
	if start {
		rm.syncing = true
	}
	rm.mu.Unlock()
	if start {
		h.queueSync(rm)
	}
	// A room still subscribing reads its position after this; one already
	// syncing reads history after this too.
}

// advanceLocked moves rm's stream forward to pub, with rm.mu held: a
// publication already delivered is dropped, the next one is delivered, and
// after a gap (or an epoch change) the room starts syncing and pub waits in
// pending; sync reports that the caller must queue the room for a sync
// worker once rm.mu is released.
func (rm *room) advanceLocked(pub *Publication) (fl *flushList, sync bool) {
	switch {
	case rm.state == roomClosed:
		return nil, false
	case rm.state == roomSubscribing || rm.syncing:
		rm.hold(pub)
		return nil, false
	}
	if pub.Epoch == rm.pos.Epoch {
		switch {
		case pub.Offset <= rm.pos.Offset:
			return nil, false // a duplicate (the subscription seam, a redelivery)
		case pub.Offset == rm.pos.Offset+1:
			return rm.deliverPubLocked(pub), false
		}
	}
	rm.syncing = true
	rm.hold(pub)
	return nil, true
}

// drainLocked delivers the held publications that continue rm's stream, with
// rm.mu held. When one shows a gap, or some were dropped, the room keeps (or
// starts) syncing: sync reports that it must be queued for a sync worker.
func (rm *room) drainLocked() (fls []*flushList, sync bool) {
	i := 0
	for ; i < len(rm.pending); i++ {
		p := &rm.pending[i]
		if p.Epoch == rm.pos.Epoch && p.Offset <= rm.pos.Offset {
			continue
		}
		if p.Epoch != rm.pos.Epoch || p.Offset != rm.pos.Offset+1 {
			break
		}
		if fl := rm.deliverPubLocked(p); fl != nil {
			fls = append(fls, fl)
		}
	}
	rest := copy(rm.pending, rm.pending[i:])
	clear(rm.pending[rest:])
	rm.pending = rm.pending[:rest]
	if len(rm.pending) > 0 || rm.lost {
		rm.syncing = true
		return fls, !rm.queued
	}
	rm.syncing = false
	rm.pending = nil
	return fls, false
}

// queueSync hands rm to a sync worker, once: a room is in the queue at most
// once, so the queue holds at most one entry per room.
func (h *Hub) queueSync(rm *room) {
	rm.mu.Lock()
	if rm.queued {
		rm.mu.Unlock()
		return
	}
	rm.queued = true
	rm.mu.Unlock()
	h.syncMu.Lock()
	h.syncQ = append(h.syncQ, rm)
	h.syncMu.Unlock()
	select {
	case h.syncKick <- struct{}{}:
	default:
	}
}

// syncWorkers is the number of goroutines reading history for rooms that
// sync: a room whose history read is slow holds up one of them, never the
// delivery of other rooms.
const syncWorkers = 4

// syncWorker reads history for queued rooms until the hub stops.
func (h *Hub) syncWorker() {
	for {
		h.syncMu.Lock()
		var rm *room
		if len(h.syncQ) > 0 {
			rm = h.syncQ[0]
			h.syncQ[0] = nil
			h.syncQ = h.syncQ[1:]
			if len(h.syncQ) == 0 {
				h.syncQ = nil
			}
		}
		more := len(h.syncQ) > 0
		h.syncMu.Unlock()
		if more { // pass the wake-up on to another worker
			select {
			case h.syncKick <- struct{}{}:
			default:
			}
		}
		if rm != nil {
			h.syncRoom(rm)
			continue
		}
		select {
		case <-h.stop:
			return
		case <-h.syncKick:
		}
	}
}

// syncRoom reads rm's history from its position, with no lock held, and
// delivers it and then the held publications in offset order. When history
// cannot fill the gap (the stream was lost, or trimmed past it) the members
// get a "reset" message and the stream jumps ahead; they reload. A resync
// whose read failed is retried with backoff (see resyncer).
func (h *Hub) syncRoom(rm *room) {
	for attempt := 1; ; attempt++ {
		rm.mu.Lock()
		rm.queued = false
		if rm.state != roomLive || !rm.syncing {
			if rm.state == roomClosed {
				rm.pending = nil
			}
			rm.mu.Unlock()
			return
		}
		from := rm.pos
		rm.lost = false
		rm.mu.Unlock()

		ctx, cancel := context.WithTimeout(h.ctx, h.opts.BrokerTimeout)
		pubs, cur, err := h.broker.History(ctx, rm.name, from, -1)
		cancel()

		rm.mu.Lock()
		if rm.state != roomLive {
			rm.pending = nil
			rm.mu.Unlock()
			return
		}
		fls, retry := rm.applyHistoryLocked(pubs, cur, err)
		var again bool
		fails := 0
		if retry {
			rm.syncing = false
			rm.syncFails++
			fails = rm.syncFails
		} else {
			rm.syncFails = 0
			var more []*flushList
			more, again = rm.drainLocked()
			fls = append(fls, more...)
			if again && attempt >= 3 {
				// History keeps falling short of what was held: jump to
				// the held publications and have the members reload (or,
				// if only dropped ones are missing, let the next live
				// publication show the gap again).
				if fl, ok := rm.resetLocked("history does not reach the held publications"); ok {
					fls = append(fls, fl)
					more, _ = rm.drainLocked()
					fls = append(fls, more...)
				}
				rm.syncing, rm.pending, rm.lost = false, nil, false
				again = false
			}
		}
		rm.mu.Unlock()
		h.dispatchAll(fls)
		if retry {
			select {
			case h.resyncCh <- resyncRetry{room: rm.name, fails: fails}:
			default:
				h.log.LogAttrs(h.ctx, slog.LevelError, "rthub: resync retry queue full; room waits for its next event",
					slog.String("room", rm.name))
			}
			return
		}
		if !again {
			return
		}
	}
}

// applyHistoryLocked delivers what a history read returned, with rm.mu held.
// retry reports a failed read with nothing held, to be retried later.
func (rm *room) applyHistoryLocked(pubs []Publication, cur StreamPosition, err error) (fls []*flushList, retry bool) {
	h := rm.h
	switch {
	case err == nil:
		for i := range pubs {
			if pubs[i].Epoch == rm.pos.Epoch && pubs[i].Offset == rm.pos.Offset+1 {
				if fl := rm.deliverPubLocked(&pubs[i]); fl != nil {
					fls = append(fls, fl)
				}
			}
		}
		if len(pubs) > 0 {
			h.stats.gapsRecovered.Add(1)
		}
	case errors.Is(err, ErrUnrecoverable):
		if fl, ok := rm.resetLocked("not recoverable"); ok {
			fls = append(fls, fl)
		} else {
			rm.pos = cur // nothing held: jump to the broker's position
			h.stats.unrecovered.Add(1)
			rm.logReset("not recoverable")
			rm.skip = nil
			fls = append(fls, rm.deliverPayloadLocked(appendReset(nil, rm.name, rm.pos), "", nil, nil))
		}
	default:
		h.stats.brokerErrors.Add(1)
		h.log.LogAttrs(h.ctx, slog.LevelError, "rthub: reading room history", slog.String("room", rm.name), slog.Any("err", err))
		// Cannot tell what was missed: members must reload; with nothing
		// held (a resync), the read is retried later.
		fl, ok := rm.resetLocked("history read failed")
		if !ok {
			return fls, true
		}
		fls = append(fls, fl)
	}
	return fls, false
}

// resetLocked moves rm's position to just before its first held publication
// that is not a duplicate and tells the members to reload (a "reset"
// message); ok is false, and nothing is done, when nothing is held beyond
// the position. rm.mu is held.
func (rm *room) resetLocked(why string) (fl *flushList, ok bool) {
	h := rm.h
	i := 0
	for i < len(rm.pending) && rm.pending[i].Epoch == rm.pos.Epoch && rm.pending[i].Offset <= rm.pos.Offset {
		i++
	}
	if i == len(rm.pending) {
		return nil, false
	}
	p := rm.pending[i]
	h.stats.unrecovered.Add(1)
	rm.pos = StreamPosition{Offset: p.Offset - 1, Epoch: p.Epoch}
	rm.logReset(why)
	rm.skip = nil
	return rm.deliverPayloadLocked(appendReset(nil, rm.name, rm.pos), "", nil, nil), true
}

func (rm *room) logReset(why string) {
	h := rm.h
	h.log.LogAttrs(h.ctx, slog.LevelWarn, "rthub: room stream not recoverable, members told to reload",
		slog.String("room", rm.name), slog.String("why", why), slog.String("to", rm.pos.String()))
}

// resyncRetry asks the resyncer to sync a room again: its read failed fails
// times in a row.
type resyncRetry struct {
	room  string
	fails int
}

// resyncer retries the history reads of resyncs that failed (the broker may
// still be reconnecting), with backoff from 100 ms to 5 s per room, until
// they succeed or the hub stops: a quiet room must not keep its missed events
// until its next publication. It holds at most one entry per room, each until
// its retry is due.
func (h *Hub) resyncer() {
	pending := make(map[string]time.Time)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	rearm := func() {
		var next time.Time
		for _, at := range pending {
			if next.IsZero() || at.Before(next) {
				next = at
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
		case r := <-h.resyncCh:
			delay := min(100*time.Millisecond<<min(r.fails-1, 6), 5*time.Second)
			pending[r.room] = time.Now().Add(delay)
			rearm()
		case now := <-t.C:
			for room, at := range pending {
				if !at.After(now) {
					delete(pending, room)
					h.requestSync(room) // a failure sends it back
				}
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

// deliverPubLocked delivers the next publication of rm's stream and moves the
// position to it.
func (rm *room) deliverPubLocked(pub *Publication) *flushList {
	h := rm.h
	rm.pos = pub.Position()
	if rm.empty() {
		return nil
	}
	except, body := pub.Except, pub.Data
	var ev *eventCounter
	if name := eventNameOf(body); name != nil {
		ev = h.stats.events.ofBytes(name)
	}
	fl := rm.deliverPayloadLocked(appendPosition(make([]byte, 0, len(body)+48), body, pub.Position()), except, ev, pub)
	if rm.skip != nil {
		for c, s := range rm.skip {
			if s <= pub.Offset {
				delete(rm.skip, c)
			}
		}
		if len(rm.skip) == 0 {
			rm.skip = nil
		}
	}
	return fl
}

// subscribe subscribes this node to room and returns the room's position: the
// seam after which every publication comes live.
func (h *Hub) subscribe(ctx context.Context, room string) (StreamPosition, error) {
	if err := h.broker.Subscribe(ctx, room); err != nil {
		h.stats.brokerErrors.Add(1)
		return StreamPosition{}, fmt.Errorf("%w: subscribing: %w", ErrInternal, err)
	}
	_, pos, err := h.broker.History(ctx, room, StreamPosition{}, 0)
	if err != nil {
		h.stats.brokerErrors.Add(1)
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.opts.BrokerTimeout)
		h.unsubscribe(uctx, room)
		cancel()
		return StreamPosition{}, fmt.Errorf("%w: reading the room's position: %w", ErrInternal, err)
	}
	return pos, nil
}

func (h *Hub) unsubscribe(ctx context.Context, room string) {
	if err := h.broker.Unsubscribe(ctx, room); err != nil && !errors.Is(err, ErrBrokerClosed) && h.ctx.Err() == nil {
		h.stats.brokerErrors.Add(1)
		h.log.Warn("rthub: unsubscribing a room", slog.String("room", room), slog.Any("err", err))
	}
}
