package rthub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// PresenceOptions configures presence: who is in a room, as people rather
// than connections. Presence is on only in the rooms [Policy].Presence lists.
//
// A person (a token subject) with five tabs in a room is one entry with five
// connections. The room receives, as ordinary events:
//
//   - OnlineEvent when a person's first connection joins:
//     {"user":"alice","name":"Alice","roles":["staff"]} (plus "info" when
//     Info is set);
//   - OfflineEvent when their last connection leaves: {"user":"alice"};
//   - ViewingEvent when a connection declares what it is viewing (the
//     "viewing" command), changes it, or, while the person stays online,
//     leaves: {"user":"alice","conn":"c1","viewing":"device:42"}, with
//     "viewing":"" when it ends.
//
// Other tabs of a person coming and going send nothing. Name and roles are
// those of the person's first connection in the room.
type PresenceOptions struct {
	// OnlineEvent, OfflineEvent and ViewingEvent name the events. Defaults
	// "user:online", "user:offline", "user:viewing".
	OnlineEvent, OfflineEvent, ViewingEvent string
	// MaxList caps the people a presence list returns (the "presence"
	// command and [Hub.Presence]); Count is always the full number and
	// Truncated says when the list was cut. Default 1000.
	MaxList int
	// Info, if set, returns extra public data about a person, included as
	// "info" in OnlineEvent and in presence lists (e.g. an avatar URL from the
	// token's claims). It is called once per person and room, when their first
	// connection joins; the result must encode to JSON. Never put secrets here:
	// everyone in the room sees it.
	Info func(id *Identity) any
	// MaxEventPeople stops the online, offline and viewing events of a room
	// while more than this many people are in it (on this hub): each event
	// goes to every member, so in a room of n people arrivals cost n² frames.
	// Lists keep working (capped at MaxList, with the full Count); clients of
	// big rooms poll them. Default 1000.
	MaxEventPeople int
	// TTL is how long a presence entry lives in a cluster-wide presence store
	// (a Broker that is a [PresenceStore], like the Redis broker) without being
	// renewed; each hub renews its own every TTL/3. It bounds how long a
	// crashed node's people stay online: at most TTL + TTL/3. Default 30 s.
	TTL time.Duration
}

func (o *PresenceOptions) setDefaults() error {
	def := func(p *string, v string) error {
		if *p == "" {
			*p = v
			return nil
		}
		return validEventName(*p)
	}
	var errs []error
	for _, e := range []struct {
		p *string
		v string
	}{{&o.OnlineEvent, "user:online"}, {&o.OfflineEvent, "user:offline"}, {&o.ViewingEvent, "user:viewing"}} {
		if err := def(e.p, e.v); err != nil {
			errs = append(errs, fmt.Errorf("rthub: PresenceOptions: %w", err))
		}
	}
	if o.MaxList == 0 {
		o.MaxList = 1000
	} else if o.MaxList < 0 {
		errs = append(errs, errors.New("rthub: PresenceOptions.MaxList is negative"))
	}
	if o.MaxEventPeople == 0 {
		o.MaxEventPeople = 1000
	} else if o.MaxEventPeople < 0 {
		errs = append(errs, errors.New("rthub: PresenceOptions.MaxEventPeople is negative"))
	}
	if o.TTL == 0 {
		o.TTL = 30 * time.Second
	} else if o.TTL < 300*time.Millisecond {
		errs = append(errs, errors.New("rthub: PresenceOptions.TTL is under 300 ms"))
	}
	return errors.Join(errs...)
}

// Presence is who is in a room: the reply to the "presence" command and the
// result of [Hub.Presence].
type Presence struct {
	Room string `json:"room"`
	// Count is the number of people in the room (on this hub).
	Count int `json:"count"`
	// Users lists them, sorted by user, at most PresenceOptions.MaxList.
	Users []PresenceUser `json:"users"`
	// Truncated is true when Users holds fewer than Count people.
	Truncated bool `json:"truncated"`
}

// PresenceUser is one person in a room.
type PresenceUser struct {
	User  string          `json:"user"`
	Name  string          `json:"name,omitempty"`
	Roles []string        `json:"roles,omitempty"`
	Info  json.RawMessage `json:"info,omitempty"`
	// Conns are the person's connections in the room, in join order.
	Conns []PresenceConn `json:"conns"`
}

// PresenceConn is one connection (tab, device) of a person in a room.
type PresenceConn struct {
	Conn    string `json:"conn"`
	Viewing string `json:"viewing,omitempty"`
}

// person is one subject's presence in one room.
type person struct {
	name  string
	roles []string
	info  json.RawMessage
	conns []*conn
}

type onlineData struct {
	User  string          `json:"user"`
	Name  string          `json:"name,omitempty"`
	Roles []string        `json:"roles,omitempty"`
	Info  json.RawMessage `json:"info,omitempty"`
	Seq   uint64          `json:"seq,omitempty"`
}

type offlineData struct {
	User string `json:"user"`
	Seq  uint64 `json:"seq,omitempty"`
}

// nextPresenceSeq returns the seq of an online or offline transition in rm
// on a single node: microseconds since 1970, or one more than the last one,
// so it only grows (also across a clock step back). Cluster presence takes
// its seq from the PresenceStore instead. rm.mu is held.
func nextPresenceSeq(rm *room) uint64 {
	s := uint64(time.Now().UnixMicro())
	if s <= rm.presSeq {
		s = rm.presSeq + 1
	}
	rm.presSeq = s
	return s
}

type viewingData struct {
	User    string `json:"user"`
	Conn    string `json:"conn"`
	Viewing string `json:"viewing"`
}

// presenceJoined records c, just added to rm's members, in rm's presence
// and queues OnlineEvent when c is the person's first connection there. It
// runs with rm.mu held and c.mu not held; the returned list (may be nil) is
// for dispatch after rm.mu is released, and op, with cluster presence, for
// clusterPresence (the store decides who is first).
func (rm *room) presenceJoined(c *conn) (*flushList, presenceOp) {
	h := rm.h
	id := c.ident.Load()
	p := rm.pres[id.Subject]
	first := p == nil
	if first {
		p = &person{name: id.Name, roles: slices.Clone(id.Roles)}
		if fn := h.opts.Presence.Info; fn != nil {
			p.info = h.presenceInfo(fn, id)
		}
		rm.pres[id.Subject] = p
	}
	p.conns = append(p.conns, c)
	if h.pstore != nil {
		return nil, presenceOp{kind: presenceAdd, room: rm.name, member: h.memberOf(c, p), events: h.presenceEventsOn(rm)}
	}
	if !first || !h.presenceEventsOn(rm) {
		return nil, presenceOp{}
	}
	data, _ := json.Marshal(onlineData{User: id.Subject, Name: p.name, Roles: p.roles, Info: p.info, Seq: nextPresenceSeq(rm)})
	return rm.deliverLocked(h.opts.Presence.OnlineEvent, data, ""), presenceOp{}
}

// presenceEventsOn reports whether rm is small enough for presence events
// (PresenceOptions.MaxEventPeople). rm.mu is held.
func (h *Hub) presenceEventsOn(rm *room) bool {
	return len(rm.pres) <= h.opts.Presence.MaxEventPeople
}

// presenceInfo calls PresenceOptions.Info, containing its failures.
func (h *Hub) presenceInfo(fn func(*Identity) any, id *Identity) (raw json.RawMessage) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("rthub: PresenceOptions.Info panicked", "panic", p)
			raw = nil
		}
	}()
	v := fn(id)
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		h.log.Warn("rthub: PresenceOptions.Info result does not encode", "err", err)
		return nil
	}
	return b
}

// presenceLeft removes c, just taken out of rm's members, from rm's presence:
// OfflineEvent when it was the person's last connection, else ViewingEvent
// with "" when it was viewing something. Same locking as presenceJoined.
func (rm *room) presenceLeft(c *conn, viewing string) (*flushList, presenceOp) {
	h := rm.h
	sub := c.ident.Load().Subject
	p := rm.pres[sub]
	if p == nil {
		return nil, presenceOp{}
	}
	p.conns = slices.DeleteFunc(p.conns, func(x *conn) bool { return x == c })
	if len(p.conns) == 0 {
		delete(rm.pres, sub)
	}
	if h.pstore != nil {
		return nil, presenceOp{kind: presenceRemove, room: rm.name, member: PresenceMember{User: sub, Conn: c.id, Viewing: viewing},
			events: h.presenceEventsOn(rm)}
	}
	if !h.presenceEventsOn(rm) {
		return nil, presenceOp{}
	}
	if len(p.conns) == 0 {
		data, _ := json.Marshal(offlineData{User: sub, Seq: nextPresenceSeq(rm)})
		return rm.deliverLocked(h.opts.Presence.OfflineEvent, data, ""), presenceOp{}
	}
	if viewing == "" {
		return nil, presenceOp{}
	}
	data, _ := json.Marshal(viewingData{User: sub, Conn: c.id})
	return rm.deliverLocked(h.opts.Presence.ViewingEvent, data, ""), presenceOp{}
}

// setViewing records what c is viewing and tells its presence rooms. It runs
// on c's read loop, which serializes a connection's viewing changes.
func (h *Hub) setViewing(ctx context.Context, c *conn, target string) error {
	if target != "" {
		if err := ValidRoom(target); err != nil {
			return fmt.Errorf("%w: viewing target: %s", ErrBadRequest, strings.TrimPrefix(err.Error(), "rthub: "))
		}
	}
	c.mu.Lock()
	if c.viewing == target {
		c.mu.Unlock()
		return nil
	}
	c.viewing = target
	names := make([]string, 0, len(c.rooms))
	for _, rr := range c.rooms {
		names = append(names, rr.name)
	}
	c.mu.Unlock()
	data, _ := json.Marshal(viewingData{User: c.ident.Load().Subject, Conn: c.id, Viewing: target})
	for _, name := range names {
		rm := h.room(name)
		if rm == nil {
			continue
		}
		rm.mu.Lock()
		var fl *flushList
		var op presenceOp
		if p := rm.pres[c.ident.Load().Subject]; p != nil && slices.Contains(p.conns, c) && h.presenceEventsOn(rm) {
			if h.pstore != nil {
				op = presenceOp{kind: presenceView, room: name, member: h.memberOf(c, p), data: data}
			} else {
				fl = rm.deliverLocked(h.opts.Presence.ViewingEvent, data, "")
			}
		}
		rm.mu.Unlock()
		if fl != nil {
			h.dispatch(fl)
		}
		h.clusterPresence(ctx, op)
	}
	return nil
}

// errPresenceOff answers a presence query for a room without presence.
var errPresenceOff = fmt.Errorf("%w: presence is not enabled in this room", ErrBadRequest)

// Presence returns who is in room on this hub (with cluster presence: in the
// cluster). It is not subject to the policy. ctx is checked first and bounds
// the presence store's call (also bounded by BrokerTimeout). Errors:
// [ErrBadRoom]; [ErrBadRequest] when [Policy].Presence does not enable
// presence in room; [ErrInternal] when the store fails; ctx's error.
func (h *Hub) Presence(ctx context.Context, room string) (Presence, error) {
	if err := ctx.Err(); err != nil {
		return Presence{}, err
	}
	if err := ValidRoom(room); err != nil {
		return Presence{}, err
	}
	if !h.policy.presenceOn(room) {
		return Presence{}, errPresenceOff
	}
	return h.presenceList(ctx, room)
}

// presenceList builds room's presence, from the cluster's store when there
// is one.
func (h *Hub) presenceList(ctx context.Context, room string) (Presence, error) {
	if h.pstore != nil {
		return h.clusterList(ctx, room)
	}
	return h.localPresence(room), nil
}

// localPresence builds room's presence, capped at MaxList people.
func (h *Hub) localPresence(room string) Presence {
	out := Presence{Room: room, Users: []PresenceUser{}}
	rm := h.room(room)
	if rm == nil {
		return out
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	out.Count = len(rm.pres)
	subs := make([]string, 0, len(rm.pres))
	for sub := range rm.pres {
		subs = append(subs, sub)
	}
	slices.Sort(subs)
	if len(subs) > h.opts.Presence.MaxList {
		subs = subs[:h.opts.Presence.MaxList]
		out.Truncated = true
	}
	for _, sub := range subs {
		p := rm.pres[sub]
		u := PresenceUser{User: sub, Name: p.name, Roles: p.roles, Info: p.info, Conns: make([]PresenceConn, len(p.conns))}
		for i, c := range p.conns {
			c.mu.Lock()
			u.Conns[i] = PresenceConn{Conn: c.id, Viewing: c.viewing}
			c.mu.Unlock()
		}
		out.Users = append(out.Users, u)
	}
	return out
}

// clientPresence answers the "presence" command: the room must have presence
// on, and the client must be allowed to join it (members of a room and those
// who may enter it may see who is there).
func (h *Hub) clientPresence(ctx context.Context, c *conn, room string) (Presence, error) {
	if err := ValidRoom(room); err != nil {
		return Presence{}, err
	}
	if !h.policy.presenceOn(room) {
		return Presence{}, errPresenceOff
	}
	if !c.inRoom(room) {
		if err := h.policy.authorize(h.ctx, c.ident.Load(), ActionJoin, room, ""); err != nil {
			r := c.refusal("presence", "forbidden")
			r.Room = room
			h.refused(c.ctx, r)
			return Presence{}, err
		}
	}
	return h.presenceList(ctx, room)
}
