package client

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/org/rthub"
)

// Joining with state (docs/protocol.md §2.2, §5): the join asks for the
// room's keyed latest state; the reply carries it as a snapshot with the
// stream position it corresponds to, and the client then applies exactly the
// events after that position. While such a join is pending, the room's
// events are held and dispatched after the snapshot (those at or before its
// position are dropped as already seen). A room joined with state asks for
// it again whenever continuity is lost: a reconnection the server could not
// resume (recovered:false), a reset, or a gap.

// Snapshot is a room's keyed latest state, as a join with state returned it.
type Snapshot struct {
	// Room is the room.
	Room string
	// Kept is false when the server keeps no state for the room (no state
	// rule covers it, or its broker keeps none): Events is then empty and
	// the app loads its state some other way.
	Kept bool
	// Position is the room's stream position the snapshot corresponds to:
	// the events delivered after it are exactly those published after it.
	Position rthub.StreamPosition
	// Events holds the latest event per state key, oldest update first,
	// each as it was published.
	Events []Event
}

// maxHeld bounds the events held per room while a join with state is
// pending; past it they are dropped and the state is asked for again.
const maxHeld = 10000

// held is a room's events held while its join with state is pending.
type held struct {
	events []message
	over   bool
}

// JoinState joins room asking for its keyed latest state, and waits for the
// server's answer. The room is then one of the client's own, as with
// [Client.Join], and one that asks for its state again whenever the client
// may have missed events it cannot replay: after a reconnection the server
// could not resume, a reset, or a gap. Every snapshot, this one included, is
// passed to Options.OnSnapshot on the read goroutine before any later event
// of the room: apply it there, replacing the room's view, and apply the
// events that follow (they are exactly those after the snapshot's position).
// The returned Snapshot is the same one, for inspection.
//
// Errors are those of [Client.Join].
func (c *Client) JoinState(ctx context.Context, room string) (Snapshot, error) {
	var snap Snapshot
	cn, err := c.waitConn(ctx)
	if err != nil {
		return snap, wrap(err, "join %q", room)
	}
	c.hold(room)
	err = c.callOn(ctx, cn, command{Op: "join", Room: room, State: true}, func(m *message) {
		if m.err() != nil {
			c.release(room)
			return
		}
		c.mu.Lock()
		c.rooms[room] = true
		c.stateRooms[room] = true
		c.mu.Unlock()
		snap = c.snapshotReplied(cn, room, m.Data)
	})
	return snap, wrap(err, "join %q", room)
}

// hold starts holding room's events (a join with state is pending); it
// reports false when they already are.
func (c *Client) hold(room string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holds[room] != nil {
		return false
	}
	c.holds[room] = &held{}
	return true
}

// release stops holding room's events and returns what was held.
func (c *Client) release(room string) *held {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.holds[room]
	delete(c.holds, room)
	return h
}

// holdEvent keeps m if its room's events are held.
func (c *Client) holdEvent(m *message) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.holds[m.Room]
	if h == nil {
		return false
	}
	if len(h.events) >= maxHeld {
		h.over, h.events = true, nil
	} else if !h.over {
		h.events = append(h.events, *m)
	}
	return true
}

// joinReply is a join reply's data.
type joinReply struct {
	stream
	State []json.RawMessage `json:"state"`
}

// snapshotReplied handles the reply to a join with state, on the reader
// goroutine: it hands the snapshot to OnSnapshot (or, without one, treats
// the reply as a plain join's), then dispatches the events held meanwhile.
func (c *Client) snapshotReplied(cn *conn, room string, data json.RawMessage) Snapshot {
	snap := Snapshot{Room: room}
	var r joinReply
	if err := json.Unmarshal(data, &r); err != nil || r.Epoch == "" {
		c.log.Warn("rthub/client: undecodable join reply", slog.String("room", room))
	}
	snap.Position = rthub.StreamPosition{Offset: r.Offset, Epoch: r.Epoch}
	if r.State == nil {
		c.joinedAt(room, r.stream)
	} else {
		snap.Kept = true
		for _, raw := range r.State {
			var m message
			if json.Unmarshal(raw, &m) == nil && m.Type == "event" {
				snap.Events = append(snap.Events, Event{Name: m.Event, Room: m.Room, Data: m.Data, CID: m.CID, Position: rthub.StreamPosition{Offset: m.Offset, Epoch: m.Epoch}})
			}
		}
		c.mu.Lock()
		c.pos[room] = snap.Position
		c.mu.Unlock()
		if c.opts.OnSnapshot != nil {
			c.opts.OnSnapshot(snap)
		}
	}
	h := c.release(room)
	if h == nil {
		return snap
	}
	for i := range h.events {
		c.dispatchEvent(&h.events[i])
	}
	if h.over {
		c.requestState(cn, room)
	}
	return snap
}

// lostContinuity is called on the reader goroutine when room may have
// missed events: a room joined with state asks for it again.
func (c *Client) lostContinuity(cn *conn, room string) {
	c.mu.Lock()
	want := c.stateRooms[room]
	c.mu.Unlock()
	if want {
		c.requestState(cn, room)
	}
}

// requestState sends a join with state for room on cn, without waiting (it
// runs on the reader goroutine); the reply is handled by snapshotReplied.
// Nothing is sent when one is pending already.
func (c *Client) requestState(cn *conn, room string) {
	if !c.hold(room) {
		return
	}
	id := c.nextID.Add(1)
	if !cn.register(id, func(m *message) {
		if err := m.err(); err != nil {
			c.release(room)
			c.log.Warn("rthub/client: asking for a room's state again failed", slog.String("room", room), slog.Any("err", err))
			return
		}
		c.snapshotReplied(cn, room, m.Data)
	}) {
		c.release(room)
		return
	}
	b, _ := json.Marshal(command{ID: id, Op: "join", Room: room, State: true})
	cn.wg.Go(func() { // owner: cn; ends when the writer takes it or cn ends
		if cn.send(cn.ctx, b) != nil {
			cn.unregister(id)
			c.release(room)
		}
	})
}

// gap handles a gap message: the server dropped events of the room for
// this connection (its overflow policy). The app is told, and a room joined
// with state asks for it again.
func (c *Client) gap(cn *conn, room string) {
	c.log.Info("rthub/client: events dropped by the server, gap", slog.String("room", room))
	if c.opts.OnGap != nil {
		c.opts.OnGap(room)
	}
	c.lostContinuity(cn, room)
}

// rejoinCommand is the join command of an own room after a reconnection:
// with its position, and with state for a room joined with state (the
// events are held until the reply, handled by snapshotReplied).
func (c *Client) rejoinCommand(id uint64, room string) (command, bool) {
	cmd := command{ID: id, Op: "join", Room: room, Since: c.since(room)}
	c.mu.Lock()
	state := c.stateRooms[room]
	c.mu.Unlock()
	if state {
		cmd.State = true
		c.hold(room)
	}
	return cmd, state
}
