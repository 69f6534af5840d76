package rthub

import (
	"context"
	"fmt"
	"slices"
)

// This file holds the server-side control of connections: joining and
// leaving rooms on their behalf, and disconnecting them.

// JoinConn puts the connection with this ID into room, bypassing the policy,
// and tells the client with a "joined" message. A token refresh does not
// re-evaluate rooms joined this way. ctx is checked first and bounds the
// broker calls of the join (subscribing a new room), each also bounded by
// BrokerTimeout. Errors: [ErrNotFound], [ErrBadRoom], [ErrTooManyRooms], or
// ctx's error (nothing was done when ctx had ended before the call).
func (h *Hub) JoinConn(ctx context.Context, connID, room string) error {
	c, err := h.serverConn(ctx, connID, room)
	if err != nil {
		return err
	}
	return h.serverJoin(ctx, c, room)
}

// LeaveConn takes the connection with this ID out of room and tells the client
// with a "left" message. ctx is checked first and bounds the broker calls
// (a cluster presence update, unsubscribing an emptied room). Errors:
// [ErrNotFound], [ErrBadRoom], or ctx's error.
func (h *Hub) LeaveConn(ctx context.Context, connID, room string) error {
	c, err := h.serverConn(ctx, connID, room)
	if err != nil {
		return err
	}
	h.serverLeave(ctx, c, room)
	return nil
}

// serverConn checks the arguments of a server-side call on one connection
// (ctx first, then the room name) and finds the connection.
func (h *Hub) serverConn(ctx context.Context, connID, room string) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := ValidRoom(room); err != nil {
		return nil, err
	}
	c := h.connByID(connID)
	if c == nil {
		return nil, fmt.Errorf("%w: connection %q", ErrNotFound, connID)
	}
	return c, nil
}

// serverJoin joins c to room for the server-side API and tells the client.
func (h *Hub) serverJoin(ctx context.Context, c *conn, room string) error {
	if err := h.join(ctx, c, room, true); err != nil {
		return err
	}
	c.sendJSON(roomMsg{Type: "joined", Room: room})
	return nil
}

// serverLeave takes c out of room for the server-side API and tells the client.
func (h *Hub) serverLeave(ctx context.Context, c *conn, room string) {
	if h.leave(ctx, c, room) {
		c.sendJSON(roomMsg{Type: "left", Room: room, Reason: "server"})
	}
}

// JoinUser puts every connection of the user with this subject into room,
// on every node, as [Hub.JoinConn] does: it is [Hub.ControlUser] with
// [UserJoin]. Errors: [ErrNotFound] if the user has no connection on any
// node (and every node answered), [ErrBadRoom], the first
// [ErrTooManyRooms], an error wrapping [ErrIncomplete] when some node did
// not answer before ctx ended, or ctx's error (nothing was done when ctx had
// ended before the call).
func (h *Hub) JoinUser(ctx context.Context, subject, room string) error {
	_, err := h.ControlUser(ctx, subject, UserAction{Kind: UserJoin, Room: room})
	return err
}

// LeaveUser takes every connection of the user out of room, on every node,
// with a "left" message: it is [Hub.ControlUser] with [UserLeave]. Errors
// as for [Hub.JoinUser], but for ErrTooManyRooms.
func (h *Hub) LeaveUser(ctx context.Context, subject, room string) error {
	_, err := h.ControlUser(ctx, subject, UserAction{Kind: UserLeave, Room: room})
	return err
}

// DisconnectUser closes every connection of the user, on every node, with
// close code 4101 (disconnected: the client does not reconnect) and reason
// (at most 123 bytes are sent; "disconnected by server" if empty): it is
// [Hub.ControlUser] with [UserDisconnect]. It returns how many connections
// it closed on all the nodes that answered; [ErrNotFound] if none and every
// node answered; an error wrapping [ErrIncomplete] when some node did not
// answer before ctx ended; ctx's error, having closed none, when ctx had
// ended before the call.
func (h *Hub) DisconnectUser(ctx context.Context, subject, reason string) (int, error) {
	res, err := h.ControlUser(ctx, subject, UserAction{Kind: UserDisconnect, Reason: reason})
	return res.Connections, err
}

func (h *Hub) connByID(id string) *conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.conns[id]
}

func (h *Hub) userConns(subject string) []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Clone(h.users[subject])
}
