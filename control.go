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

// serverUser checks the arguments of a server-side call on a user's
// connections (ctx first, then the room name) and finds them.
func (h *Hub) serverUser(ctx context.Context, subject, room string) ([]*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := ValidRoom(room); err != nil {
		return nil, err
	}
	conns := h.userConns(subject)
	if len(conns) == 0 {
		return nil, fmt.Errorf("%w: user %q", ErrNotFound, subject)
	}
	return conns, nil
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

// JoinUser puts every connection of the user with this subject into room, as
// [Hub.JoinConn] does. ctx is checked before each connection; when it ends
// part way, the connections done so far stay joined and ctx's error is
// returned. Errors: [ErrNotFound] if the user has no connection on this hub,
// [ErrBadRoom], the first [ErrTooManyRooms], or ctx's error.
func (h *Hub) JoinUser(ctx context.Context, subject, room string) error {
	conns, err := h.serverUser(ctx, subject, room)
	if err != nil {
		return err
	}
	var first error
	for _, c := range conns {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := h.serverJoin(ctx, c, room); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// LeaveUser takes every connection of the user out of room, with ctx as in
// [Hub.JoinUser]. Errors: [ErrNotFound], [ErrBadRoom], or ctx's error.
func (h *Hub) LeaveUser(ctx context.Context, subject, room string) error {
	conns, err := h.serverUser(ctx, subject, room)
	if err != nil {
		return err
	}
	for _, c := range conns {
		if err := ctx.Err(); err != nil {
			return err
		}
		h.serverLeave(ctx, c, room)
	}
	return nil
}

// DisconnectUser closes every connection of the user with close code 4101
// (disconnected: the client does not reconnect). It returns how many
// connections it closed; [ErrNotFound] if none; ctx's error, having closed
// none, when ctx had ended before the call.
func (h *Hub) DisconnectUser(ctx context.Context, subject, reason string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	conns := h.userConns(subject)
	if len(conns) == 0 {
		return 0, fmt.Errorf("%w: user %q", ErrNotFound, subject)
	}
	if reason == "" {
		reason = "disconnected by server"
	}
	for _, c := range conns {
		c.closeWith(CloseDisconnected, reason)
	}
	return len(conns), nil
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
