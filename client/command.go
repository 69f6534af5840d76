package client

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"

	"github.com/org/rthub"
)

// Event is an event the server delivered: published to Room, or relayed from
// another client's emit.
type Event struct {
	// Name is the event's name, e.g. "sensor:data".
	Name string
	// Room is the room it was published to.
	Room string
	// Data is the payload, valid JSON. The handler owns it and may keep it.
	Data json.RawMessage
	// CID is the correlation ID its publisher gave it (rthub.WithCorrelationID),
	// if any: log it to follow one event end to end.
	CID string
	// Position is the event's position in the room's stream (zero for an
	// event without one, such as presence): within an epoch, offsets grow
	// by one per event, so an app can check that it missed nothing.
	Position rthub.StreamPosition
}

// On registers fn for events named event. Handlers run on the client's read
// goroutine, one at a time, in the order the events arrived (per room, the
// order they were published), and several handlers of one event in the order
// they were registered. A handler must not block: it holds up every later
// message, including the replies that Join, Emit and the other commands wait
// for, so it must not call them itself (start a goroutine if it must).
//
// Events that arrive before a handler for them is registered are dropped
// (and count as seen: they are not replayed after a reconnection). Events
// published while the client is reconnecting are replayed when it is back
// (see Options.OnReset). On is safe for concurrent use and may be called at
// any time.
func (c *Client) On(event string, fn func(Event)) {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	// Copy on write: dispatch iterates a slice it read under the lock.
	c.handlers[event] = append(slices.Clip(c.handlers[event]), fn)
}

// Handle registers fn for the typed event ev, as [Client.On] does, decoding
// each payload into a T. A payload that does not decode is logged and
// skipped.
func Handle[T any](c *Client, ev rthub.Event[T], fn func(room string, v T)) {
	c.On(ev.Name(), func(e Event) {
		v, err := ev.Decode(e.Data)
		if err != nil {
			c.log.Warn("rthub/client: event payload does not decode", slog.String("event", e.Name),
				slog.String("room", e.Room), slog.Any("err", err))
			return
		}
		fn(e.Room, v)
	})
}

// Join joins room and waits for the server's answer. On success the room is
// one of the client's own: it is rejoined after every reconnection until
// [Client.Leave]. A refusal is a *[rthub.ReplyError]: errors.Is(err,
// rthub.ErrForbidden), [rthub.ErrBadRoom], [rthub.ErrTooManyRooms]; the
// connection stays up.
//
// Like every command, Join waits for the connection while the client is
// reconnecting, bounded by ctx; returns ctx's error if ctx ends first (the
// command may still take effect), [ErrDisconnected] if the connection was lost
// before the reply, and [ErrClosed] once the client has stopped.
func (c *Client) Join(ctx context.Context, room string) error {
	err := c.call(ctx, command{Op: "join", Room: room, Since: c.since(room)}, func(m *message) {
		if m.err() == nil { // on the reader goroutine, in order with the server's left/joined
			c.mu.Lock()
			c.rooms[room] = true
			delete(c.stateRooms, room)
			c.mu.Unlock()
			c.joinReplied(room, m.Data)
		}
	})
	return wrap(err, "join %q", room)
}

// Leave leaves room and waits for the server's answer. The room stops being
// rejoined at once, even if ctx ends before the connection comes back.
func (c *Client) Leave(ctx context.Context, room string) error {
	forget := func() {
		c.mu.Lock()
		delete(c.rooms, room)
		delete(c.pos, room)
		delete(c.stateRooms, room)
		c.mu.Unlock()
	}
	forget()
	err := c.call(ctx, command{Op: "leave", Room: room}, func(m *message) {
		if m.err() == nil {
			forget()
		}
	})
	return wrap(err, "leave %q", room)
}

// Emit sends event to room, with data encoded by encoding/json (a
// json.RawMessage is sent as is), and waits for the server's answer. The
// server decides what an emit does, typically relaying it to the room's other
// members. Errors from the server are *[rthub.ReplyError]: errors.Is(err,
// rthub.ErrUnknownEvent), [rthub.ErrForbidden] (not a member, or the role may
// not emit it), [rthub.ErrBadPayload]. Data that does not encode is
// [rthub.ErrBadPayload] too. An emit is not idempotent: after
// [ErrDisconnected] it may or may not have happened.
func (c *Client) Emit(ctx context.Context, event, room string, data any) error {
	raw, ok := data.(json.RawMessage)
	switch {
	case ok && !json.Valid(raw):
		return fmt.Errorf("rthub/client: emit %s to %q: %w: data is not valid JSON", event, room, rthub.ErrBadPayload)
	case !ok:
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("rthub/client: emit %s to %q: %w: %v", event, room, rthub.ErrBadPayload, err)
		}
		raw = b
	}
	return wrap(c.call(ctx, command{Op: "emit", Event: event, Room: room, Data: raw}, nil), "emit %s to %q", event, room)
}

// EmitEvent is [Client.Emit] for a typed event: only a T can be sent as ev.
func EmitEvent[T any](ctx context.Context, c *Client, ev rthub.Event[T], room string, v T) error {
	return c.Emit(ctx, ev.Name(), room, v)
}

// Refresh gets a new token from Options.TokenFunc and sends it to the server,
// which moves the connection's expiry and re-evaluates its rooms (rooms the
// new roles may not join are left). The client does this by itself when the
// server warns that the token expires; Refresh is for roles that changed.
// Without TokenFunc it returns [ErrNoTokenFunc]; a refused token is a
// *[rthub.ReplyError] (errors.Is(err, rthub.ErrTokenExpired), ...).
func (c *Client) Refresh(ctx context.Context) error {
	if c.opts.TokenFunc == nil {
		return ErrNoTokenFunc
	}
	cn, err := c.waitConn(ctx)
	if err != nil {
		return wrap(err, "refresh")
	}
	return c.refresh(ctx, cn)
}

func (c *Client) refresh(ctx context.Context, cn *conn) error {
	tok, err := c.opts.TokenFunc(ctx)
	if err != nil {
		return fmt.Errorf("rthub/client: refresh: TokenFunc: %w", err)
	}
	return wrap(c.callOn(ctx, cn, command{Op: "refresh", Token: tok}, nil), "refresh")
}

// Ping sends an application-level ping and waits for the answer: a check
// that the server is alive and processing this client's commands.
func (c *Client) Ping(ctx context.Context) error {
	return wrap(c.call(ctx, command{Op: "ping"}, nil), "ping")
}

// Presence returns who is in room (a room with presence on; see
// [rthub.Presence]): one entry per person with their connections. Errors:
// [rthub.ErrForbidden] if the client may not join room, [rthub.ErrBadRequest]
// if the room has no presence.
func (c *Client) Presence(ctx context.Context, room string) (rthub.Presence, error) {
	var p rthub.Presence
	var derr error
	err := c.call(ctx, command{Op: "presence", Room: room}, func(m *message) {
		if m.err() == nil {
			derr = json.Unmarshal(m.Data, &p)
		}
	})
	if err == nil && derr != nil {
		err = fmt.Errorf("protocol: presence reply: %w", derr)
	}
	return p, wrap(err, "presence %q", room)
}

// Viewing declares what this client is looking at (e.g. "device:42"; "" for
// nothing). Its presence rooms get a user:viewing event. The client declares
// it again after a reconnection.
func (c *Client) Viewing(ctx context.Context, target string) error {
	c.mu.Lock()
	c.view = target
	c.mu.Unlock()
	return wrap(c.call(ctx, command{Op: "viewing", Target: &target}, nil), "viewing %q", target)
}

// call sends cmd on the connection, waiting for one while reconnecting, and
// waits for its reply. onReply, if not nil, runs on the reader goroutine when
// the reply arrives, even after ctx ended, so that the client's state follows
// the server's.
func (c *Client) call(ctx context.Context, cmd command, onReply func(*message)) error {
	cn, err := c.waitConn(ctx)
	if err != nil {
		return err
	}
	return c.callOn(ctx, cn, cmd, onReply)
}

func (c *Client) callOn(ctx context.Context, cn *conn, cmd command, onReply func(*message)) error {
	cmd.ID = c.nextID.Add(1)
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	replies := make(chan *message, 1)
	if !cn.register(cmd.ID, func(m *message) {
		if onReply != nil {
			onReply(m)
		}
		replies <- m
	}) {
		return c.lost(cn)
	}
	if err := cn.send(ctx, b); err != nil {
		cn.unregister(cmd.ID)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.lost(cn)
	}
	select {
	case m := <-replies:
		return m.err()
	case <-ctx.Done():
		return ctx.Err()
	case <-cn.done:
		select {
		case m := <-replies: // the reply came just before the end
			return m.err()
		default:
			return c.lost(cn)
		}
	}
}

// lost is the error of a command whose connection ended.
func (c *Client) lost(cn *conn) error {
	if c.ctx.Err() != nil {
		return c.closedErr()
	}
	<-cn.done
	return fmt.Errorf("%w: %w", ErrDisconnected, cn.err)
}

// wrap prefixes err with the operation, keeping it testable with errors.Is
// and errors.As.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("rthub/client: %s: %w", fmt.Sprintf(format, args...), err)
}
