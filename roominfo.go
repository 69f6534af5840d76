package rthub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// This file holds the read-only view of a hub's rooms for operators (admin
// consoles, bench servers, metrics): per-room member counts and the cheap
// facts about each room, and a room's recent history.

// RoomInfo describes one room of this hub at one moment: a snapshot, not
// kept up to date. See [Hub.RoomInfos].
type RoomInfo struct {
	// Name is the room's name.
	Name string `json:"name"`
	// Members is the number of this hub's connections in the room (a user
	// with two tabs counts twice).
	Members int `json:"members"`
	// Joining is the number of connections still catching up from history
	// before they become members (resuming joins); usually 0.
	Joining int `json:"joining"`
	// Presence reports whether [Policy].Presence enables presence in the
	// room; People is then the number of distinct users among this hub's
	// members (0 when Presence is false). With a cluster presence store,
	// the cluster-wide count is [Hub.Presence]'s Count (a store call).
	Presence bool `json:"presence"`
	People   int  `json:"people"`
	// Live is false while this hub subscribes the room at the broker (its
	// first join); Syncing is true while it reads a gap from history.
	Live    bool `json:"live"`
	Syncing bool `json:"syncing"`
	// Position is the stream position of the last publication delivered
	// to the room's members on this hub.
	Position StreamPosition `json:"position"`
	// Overflow is the room's overflow mode ([Policy].Overflow): "close",
	// "drop-oldest" or "conflate".
	Overflow string `json:"overflow"`
}

// RoomInfos returns the rooms of this hub that have at least one member or
// joining connection, sorted by name, with their member counts; nil when
// there are none. Counts are of this hub's connections only: on a cluster,
// each node knows its own (add them up across nodes, or use [Hub.Presence]
// for presence rooms with a cluster presence store).
//
// Cost: a snapshot taken under the hub's locks — the hub's read lock while
// the rooms are listed, then each room's lock in turn while it is read —
// with no I/O and no broker call. It is O(rooms + people in presence rooms)
// time and allocates one RoomInfo per room; delivery to a room waits at most
// for that room's read. Call it on demand (a console, a scrape), not per
// event. Safe for concurrent use.
func (h *Hub) RoomInfos() []RoomInfo {
	var out []RoomInfo
	for _, rm := range h.roomSnapshot() {
		if ri, ok := rm.info(); ok {
			out = append(out, ri)
		}
	}
	slices.SortFunc(out, func(a, b RoomInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// RoomInfo returns the [RoomInfo] of room on this hub, and false when the
// room has no member or joining connection here (or its name is invalid).
// Its cost is one map lookup under the hub's read lock and one read of the
// room under its lock, with no I/O.
func (h *Hub) RoomInfo(room string) (RoomInfo, bool) {
	rm := h.room(room)
	if rm == nil {
		return RoomInfo{}, false
	}
	return rm.info()
}

// RoomMembers returns the number of this hub's connections in room: 0 when
// it has none (or the name is invalid). It costs one map lookup under the
// hub's read lock and one under the room's lock, with no I/O and no
// allocation, so it may be called often. It counts this node only; see
// [Hub.RoomInfos] for the cluster.
func (h *Hub) RoomMembers(room string) int {
	rm := h.room(room)
	if rm == nil {
		return 0
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return len(rm.members)
}

// roomSnapshot lists the hub's rooms (subscribing or live) under its read
// lock.
func (h *Hub) roomSnapshot() []*room {
	h.mu.RLock()
	defer h.mu.RUnlock()
	rooms := make([]*room, 0, len(h.rooms))
	for _, rm := range h.rooms {
		rooms = append(rooms, rm)
	}
	return rooms
}

// info reads rm under its lock; false when it is empty or closed.
func (rm *room) info() (RoomInfo, bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.state == roomClosed || rm.empty() {
		return RoomInfo{}, false
	}
	return RoomInfo{
		Name:     rm.name,
		Members:  len(rm.members),
		Joining:  len(rm.joining),
		Presence: rm.pres != nil,
		People:   len(rm.pres),
		Live:     rm.state == roomLive,
		Syncing:  rm.syncing,
		Position: rm.pos,
		Overflow: rm.overflow.String(),
	}, true
}

// MaxHistoryRead is the most publications [Hub.RoomHistory] returns in one
// call.
const MaxHistoryRead = 1000

// RoomHistory reads room's publications from the hub's broker, for
// operators: the ones after since, oldest first, at most limit (1 to
// [MaxHistoryRead]), and the room's current position. A zero since asks for
// the newest limit publications the broker still keeps (of the current
// epoch). It is the broker's [Broker.History], so it sees every node's
// publications, whether or not the room has members here; each publication's
// Data is the event as clients receive it (JSON with "event", "room",
// "data"), shared with the broker: do not modify it.
//
// ctx is checked first and bounds the broker calls (at most two; up to 12 when
// not all of the newest limit publications are kept any more: a binary
// search then finds the ones that are), each also bounded by Options.BrokerTimeout. Errors: [ErrHubClosed];
// [ErrBadRoom]; [ErrBadRequest] for a limit out of range; an error wrapping
// [ErrUnrecoverable] when since is no longer kept (the position returned is
// the current one); the broker's error, or ctx's.
func (h *Hub) RoomHistory(ctx context.Context, room string, since StreamPosition, limit int) ([]Publication, StreamPosition, error) {
	if h.closing.Load() {
		return nil, StreamPosition{}, ErrHubClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, StreamPosition{}, err
	}
	if err := ValidRoom(room); err != nil {
		return nil, StreamPosition{}, err
	}
	if limit < 1 || limit > MaxHistoryRead {
		return nil, StreamPosition{}, fmt.Errorf("%w: limit %d, want 1 to %d", ErrBadRequest, limit, MaxHistoryRead)
	}
	read := func(since StreamPosition, limit int) ([]Publication, StreamPosition, error) {
		bctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
		defer cancel()
		return h.broker.History(bctx, room, since, limit)
	}
	if !since.IsZero() {
		return read(since, limit)
	}
	_, cur, err := read(StreamPosition{}, 0)
	if err != nil || cur.Offset == 0 {
		return nil, cur, err
	}
	// The newest limit publications. When the oldest of them is no longer
	// kept, a binary search finds how many are (the broker does not say),
	// starting again from the end of a new epoch if the stream changed
	// meanwhile: at most maxHistoryTries calls.
	var best []Publication
	bestPos := cur
	lo, hi := uint64(0), min(uint64(limit), cur.Offset)+1 // lo: known kept; hi: known lost
	n := hi - 1
	for try := 1; ; try++ {
		pubs, pos, err := read(StreamPosition{Offset: cur.Offset - n, Epoch: cur.Epoch}, limit)
		switch {
		case err == nil:
			best, bestPos, lo = pubs, pos, n
		case !errors.Is(err, ErrUnrecoverable):
			return nil, pos, err
		case pos.Epoch != cur.Epoch:
			if cur, best, bestPos = pos, nil, pos; cur.Offset == 0 {
				return nil, cur, nil
			}
			lo, hi = 0, min(uint64(limit), cur.Offset)+1
			n = hi - 1
			if try == maxHistoryTries {
				return nil, cur, nil
			}
			continue
		default:
			hi = n
		}
		if hi-lo <= 1 || try == maxHistoryTries {
			return best, bestPos, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, pos, err
		}
		n = (lo + hi) / 2
	}
}

// maxHistoryTries bounds the broker calls of one [Hub.RoomHistory] that
// looks for the newest publications.
const maxHistoryTries = 12
