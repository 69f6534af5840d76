package rthub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// PresenceStore is an optional extra of a [Broker] (found by interface
// assertion) that keeps presence for the whole cluster, so that a person's
// online and offline events fire once across all nodes, and presence lists
// show the connections of every node. Without it (the [MemoryBroker]),
// presence is per hub.
//
// Entries live for a TTL that each hub renews for its own connections; a
// crashed node's connections expire, and the next sweep by any node with
// members in the room removes them and publishes the offline events. So a
// crashed node's people go offline within PresenceOptions.TTL plus a third
// of it.
type PresenceStore interface {
	// PresenceAdd records or updates a connection in room for ttl. first
	// reports whether it is its user's only live connection in the room;
	// seq then orders that transition (see [PresenceLeft].Seq).
	PresenceAdd(ctx context.Context, room string, m PresenceMember, ttl time.Duration) (first bool, seq uint64, err error)
	// PresenceRemove removes a connection; last reports whether its user
	// has no live connection left in the room, and seq orders that
	// transition.
	PresenceRemove(ctx context.Context, room, user, conn string) (last bool, seq uint64, err error)
	// PresenceTouch renews the TTL of conns in room.
	PresenceTouch(ctx context.Context, room string, conns []string, ttl time.Duration) error
	// PresenceExpire removes the connections of room whose TTL passed and
	// returns the users that left with them (each reported by one caller
	// only).
	PresenceExpire(ctx context.Context, room string) (offline []PresenceLeft, err error)
	// PresenceList returns room's live connections.
	PresenceList(ctx context.Context, room string) ([]PresenceMember, error)
}

// PresenceLeft is a user a [PresenceStore] sweep found with no live
// connection left in a room.
type PresenceLeft struct {
	User string
	// Seq orders the room's online and offline transitions across nodes:
	// the store assigns it atomically with the transition, strictly
	// increasing per room (the store's clock in microseconds, or one more
	// than the last). Online and offline events carry it as "seq", so a
	// client that gets two events of one person out of order (published by
	// two nodes at once) keeps the later one. 0 when the store does not
	// order transitions.
	Seq uint64
}

// PresenceMember is one connection's presence entry in a [PresenceStore].
type PresenceMember struct {
	User    string          `json:"user"`
	Conn    string          `json:"conn"`
	Name    string          `json:"name,omitempty"`
	Roles   []string        `json:"roles,omitempty"`
	Info    json.RawMessage `json:"info,omitempty"`
	Viewing string          `json:"viewing,omitempty"`
}

// presenceEvent is a presence event to publish through the broker once the
// room's lock is released (cluster presence).
type presenceEvent struct {
	room, event string
	data        []byte
}

func (h *Hub) publishPresence(evs []presenceEvent) {
	for _, ev := range evs {
		// Straight to the broker: also while the hub drains, so that other
		// nodes learn who left.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(h.ctx), h.opts.BrokerTimeout)
		msg := Message{Data: appendEvent(nil, ev.event, ev.room, ev.data)}
		if _, err := h.broker.Publish(ctx, ev.room, msg); err != nil && !errors.Is(err, ErrBrokerClosed) {
			h.stats.brokerErrors.Add(1)
			h.log.LogAttrs(h.ctx, slog.LevelWarn, "rthub: publishing a presence event", slog.String("room", ev.room),
				slog.String("event", ev.event), slog.Any("err", err))
		}
		cancel()
	}
}

func (h *Hub) memberOf(c *conn, p *person) PresenceMember {
	id := c.ident.Load()
	c.mu.Lock()
	viewing := c.viewing
	c.mu.Unlock()
	return PresenceMember{User: id.Subject, Conn: c.id, Name: p.name, Roles: p.roles, Info: p.info, Viewing: viewing}
}

// presenceOpKind is what clusterPresence tells the store.
type presenceOpKind uint8

const (
	presenceNone   presenceOpKind = iota
	presenceAdd                   // a connection joined: online if first in the cluster
	presenceRemove                // a connection left: offline if last, else viewing ended
	presenceView                  // a connection's viewing changed (data is the event)
)

// presenceOp is a cluster presence change, prepared under the room's lock and
// carried out by clusterPresence once it is released.
type presenceOp struct {
	kind   presenceOpKind
	room   string
	member PresenceMember // for presenceRemove only User, Conn and Viewing
	events bool           // the room is small enough for presence events
	data   []byte         // presenceView: the viewing event
}

// clusterPresence tells the PresenceStore about op and publishes the
// resulting presence event, with no lock held; each store call is bounded by
// ctx and BrokerTimeout. A change that fails is logged and counted: the
// store's TTL sweep repairs it.
func (h *Hub) clusterPresence(ctx context.Context, op presenceOp) {
	if op.kind == presenceNone {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
	defer cancel()
	m := op.member
	var evs []presenceEvent
	switch op.kind {
	case presenceAdd:
		first, seq, err := h.pstore.PresenceAdd(ctx, op.room, m, h.opts.Presence.TTL)
		if err != nil {
			h.presenceFailed("presence add", op.room, err)
			return
		}
		if first && op.events {
			data, _ := json.Marshal(onlineData{User: m.User, Name: m.Name, Roles: m.Roles, Info: m.Info, Seq: seq})
			evs = append(evs, presenceEvent{room: op.room, event: h.opts.Presence.OnlineEvent, data: data})
		}
	case presenceRemove:
		last, seq, err := h.pstore.PresenceRemove(ctx, op.room, m.User, m.Conn)
		if err != nil {
			h.presenceFailed("presence remove", op.room, err)
			return // the entry expires on its own
		}
		switch {
		case !op.events:
		case last:
			data, _ := json.Marshal(offlineData{User: m.User, Seq: seq})
			evs = append(evs, presenceEvent{room: op.room, event: h.opts.Presence.OfflineEvent, data: data})
		case m.Viewing != "":
			data, _ := json.Marshal(viewingData{User: m.User, Conn: m.Conn})
			evs = append(evs, presenceEvent{room: op.room, event: h.opts.Presence.ViewingEvent, data: data})
		}
	case presenceView:
		if _, _, err := h.pstore.PresenceAdd(ctx, op.room, m, h.opts.Presence.TTL); err != nil {
			h.presenceFailed("presence add", op.room, err)
		}
		evs = append(evs, presenceEvent{room: op.room, event: h.opts.Presence.ViewingEvent, data: op.data})
	}
	h.publishPresence(evs)
}

func (h *Hub) presenceFailed(what, room string, err error) {
	h.stats.brokerErrors.Add(1)
	h.log.LogAttrs(h.ctx, slog.LevelWarn, "rthub: "+what, slog.String("room", room), slog.Any("err", err))
}

// clusterList builds a presence list from the store.
func (h *Hub) clusterList(ctx context.Context, room string) (Presence, error) {
	bctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
	defer cancel()
	ms, err := h.pstore.PresenceList(bctx, room)
	if err != nil {
		if ctx.Err() != nil {
			return Presence{}, ctx.Err() // the caller's ctx ended
		}
		h.stats.brokerErrors.Add(1)
		return Presence{}, ErrInternal
	}
	byUser := make(map[string]*PresenceUser)
	for _, m := range ms {
		u := byUser[m.User]
		if u == nil {
			u = &PresenceUser{User: m.User, Name: m.Name, Roles: m.Roles, Info: m.Info}
			byUser[m.User] = u
		}
		u.Conns = append(u.Conns, PresenceConn{Conn: m.Conn, Viewing: m.Viewing})
	}
	out := Presence{Room: room, Count: len(byUser), Users: []PresenceUser{}}
	users := make([]string, 0, len(byUser))
	for u := range byUser {
		users = append(users, u)
	}
	slices.Sort(users)
	if len(users) > h.opts.Presence.MaxList {
		users, out.Truncated = users[:h.opts.Presence.MaxList], true
	}
	for _, u := range users {
		pu := byUser[u]
		slices.SortFunc(pu.Conns, func(a, b PresenceConn) int { return strings.Compare(a.Conn, b.Conn) })
		out.Users = append(out.Users, *pu)
	}
	return out, nil
}

// presenceKeeper renews this hub's presence entries and sweeps expired ones
// (a crashed node's), every third of PresenceOptions.TTL, until the hub stops.
func (h *Hub) presenceKeeper() {
	t := time.NewTicker(h.opts.Presence.TTL / 3)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.presenceSweep()
		}
	}
}

func (h *Hub) presenceSweep() {
	type roomConns struct {
		name  string
		conns []string
	}
	type named struct {
		name string
		rm   *room
	}
	var presRooms []named
	h.mu.RLock()
	for name, rm := range h.rooms {
		if rm.pres != nil {
			presRooms = append(presRooms, named{name, rm})
		}
	}
	h.mu.RUnlock()
	var rooms []roomConns
	for _, n := range presRooms { // rm.mu is never taken under h.mu: it may be held across a broker call
		n.rm.mu.Lock()
		rc := roomConns{name: n.name}
		for _, p := range n.rm.pres {
			for _, c := range p.conns {
				rc.conns = append(rc.conns, c.id)
			}
		}
		n.rm.mu.Unlock()
		rooms = append(rooms, rc)
	}
	for _, rc := range rooms {
		ctx, cancel := context.WithTimeout(h.ctx, h.opts.BrokerTimeout)
		if len(rc.conns) > 0 {
			if err := h.pstore.PresenceTouch(ctx, rc.name, rc.conns, h.opts.Presence.TTL); err != nil {
				h.stats.brokerErrors.Add(1)
				h.log.LogAttrs(h.ctx, slog.LevelWarn, "rthub: presence touch", slog.String("room", rc.name), slog.Any("err", err))
			}
		}
		gone, err := h.pstore.PresenceExpire(ctx, rc.name)
		cancel()
		if err != nil {
			h.stats.brokerErrors.Add(1)
			h.log.LogAttrs(h.ctx, slog.LevelWarn, "rthub: presence sweep", slog.String("room", rc.name), slog.Any("err", err))
			continue
		}
		var evs []presenceEvent
		for _, u := range gone {
			data, _ := json.Marshal(offlineData(u))
			evs = append(evs, presenceEvent{room: rc.name, event: h.opts.Presence.OfflineEvent, data: data})
		}
		h.publishPresence(evs)
	}
}
