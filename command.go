package rthub

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// handleMessage executes one client command and replies. It runs on the
// connection's read loop, so one client's commands are handled in order.
// Nothing a client sends can make it panic or close other connections; errors
// become replies (docs/protocol.md §2.3), and the connection stays open.
func (h *Hub) handleMessage(c *conn, msg []byte) {
	cmd, err := decodeCommand(msg)
	// Every message costs, malformed ones too: garbage is no cheaper to send.
	if ok, abusive := h.allowCommand(c, &cmd, time.Now()); !ok {
		if abusive {
			if c.closeWith(ClosePolicyViolation, "rate limit abuse") {
				h.refused(c.ctx, c.refusal("abuse", "rate_limited"))
			}
			return
		}
		c.reply(cmd.ID, nil, fmt.Errorf("%w: slow down", ErrRateLimited))
		return
	}
	if err != nil {
		c.reply(cmd.ID, nil, err)
		return
	}
	switch cmd.Op {
	case cmdJoin:
		res, err := h.clientJoin(c, cmd.Room, cmd.Since, cmd.State)
		c.reply(cmd.ID, joinData{Room: cmd.Room, streamInfo: res.info(), State: res.state}, err)
	case cmdLeave:
		if err := ValidRoom(cmd.Room); err != nil {
			c.reply(cmd.ID, nil, err)
			return
		}
		h.leave(c.ctx, c, cmd.Room)
		c.reply(cmd.ID, roomData{Room: cmd.Room}, nil)
	case cmdEmit:
		c.reply(cmd.ID, nil, h.clientEmit(c, cmd))
	case cmdRefresh:
		h.refresh(c, cmd)
	case cmdPing:
		c.reply(cmd.ID, nil, nil)
	case cmdPresence:
		p, err := h.clientPresence(c.ctx, c, cmd.Room)
		c.reply(cmd.ID, p, err)
	case cmdViewing:
		c.reply(cmd.ID, nil, h.setViewing(c.ctx, c, cmd.Target))
	case cmdCall:
		h.clientCall(c, cmd)
	case cmdCancel:
		h.clientCancel(c, cmd)
	}
}

type roomData struct {
	Room string `json:"room"`
}

type joinData struct {
	Room string `json:"room"`
	streamInfo
	// State is the room's state snapshot, a JSON array of events, when the
	// join asked for it and got it (docs/protocol.md §2.2).
	State json.RawMessage `json:"state,omitempty"`
}

type refreshData struct {
	Expires int64 `json:"expires"`
}

// reply answers command id (no reply for id 0).
func (c *conn) reply(id uint64, data any, err error) {
	if id == 0 {
		return
	}
	m := replyMsg{Type: "reply", ID: id}
	if err != nil {
		m.Error = replyErrorFor(err)
		c.hub.stats.replyErrors[replyErrorIndex(m.Error.Code)].Add(1)
	} else {
		m.OK = true
		m.Data = data
	}
	c.sendJSON(m)
}

func (h *Hub) clientJoin(c *conn, room string, since *StreamPosition, state bool) (joinResult, error) {
	if err := ValidRoom(room); err != nil {
		return joinResult{}, err
	}
	id := c.ident.Load()
	if err := h.policy.authorize(c.ctx, id, ActionJoin, room, ""); err != nil {
		r := c.refusal("join", ErrorCode(err))
		r.Room = room
		h.refused(c.ctx, r)
		return joinResult{}, err
	}
	res, err := h.joinAt(c.ctx, c, room, false, since, state)
	if errors.Is(err, ErrTooManyRooms) {
		r := c.refusal("join", ErrorCode(err))
		r.Room = room
		h.refused(c.ctx, r)
	}
	return res, err
}

func (h *Hub) clientEmit(c *conn, cmd command) error {
	if err := ValidRoom(cmd.Room); err != nil {
		return err
	}
	hd, ok := h.handlers[cmd.Event]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownEvent, truncate(cmd.Event, 64))
	}
	refuse := func(err error) error {
		r := c.refusal("emit", ErrorCode(err))
		r.Room, r.Event = cmd.Room, cmd.Event
		h.refused(c.ctx, r)
		return err
	}
	if !c.inRoom(cmd.Room) {
		return refuse(fmt.Errorf("%w: not a member of room %q", ErrForbidden, truncate(cmd.Room, 128)))
	}
	id := c.ident.Load()
	if err := h.policy.authorize(c.ctx, id, ActionEmit, cmd.Room, cmd.Event); err != nil {
		return refuse(err)
	}
	if v := h.validate[cmd.Event]; v != nil {
		data := cmd.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		if err := v.Validate(data); err != nil {
			return schemaError(cmd.Event, err)
		}
	}
	_, herr := h.once(c.ctx, c, &cmd, emitLease, func() (json.RawMessage, error, bool) {
		var herr error
		func() {
			defer func() {
				if p := recover(); p != nil {
					h.log.Error("rthub: handler panicked", slog.String("event", cmd.Event), slog.Any("panic", p))
					herr = ErrInternal
				}
			}()
			herr = hd.handle(c.ctx, h, c.info(), cmd.Room, cmd.Data)
		}()
		// An error returned once the connection ended may mean the handler
		// gave up: not remembered, a retry runs it again.
		return nil, herr, herr == nil || c.ctx.Err() == nil
	})
	if herr != nil && ErrorCode(herr) == "internal" && !errors.Is(herr, ErrInternal) {
		h.log.Warn("rthub: handler failed", slog.String("event", cmd.Event), slog.Any("err", herr))
	}
	return herr
}

// refresh replaces the connection's identity with a new token's, for the same
// subject, and re-evaluates its rooms at once: rooms the new identity may not
// join are left (a "left" message each), new auto-join rooms are joined.
func (h *Hub) refresh(c *conn, cmd command) {
	old := c.ident.Load()
	id, err := h.auth.verify(cmd.Token, time.Now())
	if err != nil {
		h.refused(c.ctx, c.refusal("refresh", ErrorCode(err)))
		c.reply(cmd.ID, nil, err)
		return
	}
	if err := h.checkRevoked(id, time.Now()); err != nil {
		h.stats.revokedRefused.Add(1)
		h.refused(c.ctx, c.refusal("refresh", ErrorCode(err)))
		c.reply(cmd.ID, nil, err)
		c.closeWith(CloseTokenRevoked, "token revoked")
		return
	}
	if id.Subject != old.Subject {
		h.refused(c.ctx, c.refusal("refresh", "token_claims"))
		c.reply(cmd.ID, nil, fmt.Errorf("%w: token is for another subject", ErrTokenClaims))
		c.closeWith(CloseUnauthorized, "token subject changed")
		return
	}
	c.ident.Store(id)
	h.scheduleExpiry(c, id)
	h.reevaluate(c.ctx, c, id, "forbidden")
	c.reply(cmd.ID, refreshData{Expires: unixOrZero(id.ExpiresAt)}, nil)
}
