package rthub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// This file holds the cluster-wide control plane: [Hub.ControlUser] and
// [Hub.Revoke] send a control message to every node through the broker's
// optional [ControlBroker], each node acts on its own connections and
// answers, and the caller adds the answers up into a [ControlResult].

// ControlResult says what a cluster-wide control call did.
type ControlResult struct {
	Connections int // connections affected, on every node that answered
	Nodes       int // nodes that answered, this one included
	Missing     int // nodes known to be live that did not answer before the deadline; -1: unknown (the broker failed)
}

// Complete reports whether every node known to be live answered.
func (r ControlResult) Complete() bool { return r.Missing == 0 }

// ErrIncomplete is wrapped by the error of a control call ([Hub.ControlUser],
// [Hub.Revoke], [Hub.DisconnectUser], [Hub.JoinUser], [Hub.LeaveUser]) when
// some node did not answer before ctx's deadline (or BrokerTimeout), or the
// broker could not send the call: the nodes that answered did act. The
// error is an *[IncompleteError] carrying the partial result.
var ErrIncomplete = errors.New("rthub: control call incomplete: some node did not answer in time")

// IncompleteError is the error of a control call some node did not answer;
// [errors.Is](err, [ErrIncomplete]) is true for it.
type IncompleteError struct {
	Result ControlResult // what the nodes that answered did
	Err    error         // the first error a node answered with, or the broker's; nil if none
}

// Error implements error.
func (e *IncompleteError) Error() string {
	s := fmt.Sprintf("rthub: control call incomplete: %d node(s) answered, %d missing", e.Result.Nodes, e.Result.Missing)
	if e.Result.Missing < 0 {
		s = fmt.Sprintf("rthub: control call incomplete: %d node(s) answered, others unknown", e.Result.Nodes)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns [ErrIncomplete] and Err.
func (e *IncompleteError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrIncomplete}
	}
	return []error{ErrIncomplete, e.Err}
}

// UserActionKind is what [Hub.ControlUser] does to a user's connections.
type UserActionKind uint8

// Kinds of [UserAction]. (The policy's [ActionJoin] is another thing: what a
// connection asks to do.)
const (
	// UserDisconnect closes every connection of the user with 4101
	// (disconnected: the client does not reconnect), with the action's
	// Reason as the close reason ("disconnected by server" if empty).
	UserDisconnect UserActionKind = iota + 1
	// UserJoin puts every connection of the user into the action's Room,
	// bypassing the policy, as [Hub.JoinConn] does.
	UserJoin
	// UserLeave takes every connection of the user out of Room, with a
	// "left" message with reason "server".
	UserLeave
	// UserRecheck re-evaluates the rooms of every connection of the user
	// against the policy, with the roles [Options].Roles gives now: rooms
	// the connection may no longer join are left with a "left" message
	// with reason "recheck", auto-join rooms the new roles add are joined.
	// Rooms joined through the server-side API stay.
	UserRecheck
)

// String returns "disconnect", "join", "leave", "recheck", or
// "UserActionKind(N)".
func (k UserActionKind) String() string {
	switch k {
	case UserDisconnect:
		return "disconnect"
	case UserJoin:
		return "join"
	case UserLeave:
		return "leave"
	case UserRecheck:
		return "recheck"
	}
	return fmt.Sprintf("UserActionKind(%d)", uint8(k))
}

// UserAction is what [Hub.ControlUser] does. Room is for UserJoin and
// UserLeave; Reason is UserDisconnect's close reason (at most 123 bytes are
// sent) and is logged for every kind.
type UserAction struct {
	Kind   UserActionKind
	Room   string
	Reason string
}

// ControlUser does a to every connection of the user with this subject on
// every node of the cluster, and returns how many connections it affected:
// closed (UserDisconnect), put into the room (UserJoin, counting those
// already in it), taken out of it (UserLeave, not counting those that were
// not in it), re-checked (UserRecheck).
//
// Across nodes it needs a broker that implements [ControlBroker] (the
// memory broker and the Redis broker do); with another, it acts on this
// node only. It waits for the answer of every node known to be live until
// ctx ends or Options.BrokerTimeout (default 5 s) passes, whichever comes
// first (a node that crashed stays known to be live for the broker's
// heartbeat TTL: redisbroker's NodeTTL, 3 s by default). When some node did
// not answer in time the error wraps [ErrIncomplete] (an *[IncompleteError]
// with the partial result); the nodes that answered did act.
//
// Errors: [ErrBadRequest] for an unknown kind or an empty subject,
// [ErrBadRoom]; [ErrNotFound] when the user has no connection on any node
// and every node answered; the first error a node met ([ErrTooManyRooms]
// for a join; [ErrInternal] for a failed Options.Roles, matched by
// errors.Is also when it comes from another node); ctx's error, having done
// nothing, when ctx had ended before the call.
func (h *Hub) ControlUser(ctx context.Context, subject string, a UserAction) (ControlResult, error) {
	if err := ctx.Err(); err != nil {
		return ControlResult{}, err
	}
	switch a.Kind {
	case UserDisconnect, UserRecheck:
	case UserJoin, UserLeave:
		if err := ValidRoom(a.Room); err != nil {
			return ControlResult{}, err
		}
	default:
		return ControlResult{}, fmt.Errorf("%w: unknown user action %s", ErrBadRequest, a.Kind)
	}
	if subject == "" || len(subject) > maxAuthBytes {
		return ControlResult{}, fmt.Errorf("%w: bad subject", ErrBadRequest)
	}
	m := controlMsg{Op: controlUser, Subject: subject, Kind: a.Kind.String(), Room: a.Room, Reason: truncate(a.Reason, 1024)}
	h.log.LogAttrs(ctx, slog.LevelInfo, "rthub: control", slog.String("action", m.Kind), slog.String("subject", subject),
		slog.String("room", a.Room), slog.String("reason", a.Reason))
	res, t, err := h.control(ctx, m)
	if err != nil {
		return res, err
	}
	if t.found == 0 && res.Complete() {
		return res, fmt.Errorf("%w: user %q", ErrNotFound, subject)
	}
	return res, nil
}

// Revoke revokes tokens on every node of the cluster (see [Revocation]):
// it stores the revocation in the broker (for [RevocationOptions].TTL), so
// that nodes starting later, or reconnecting to the broker, know it, then
// sends it to every node, which keeps it in its replica and closes the
// connections holding a revoked token with 4102 ([CloseTokenRevoked]). It
// returns how many connections were closed. From the moment Revoke is
// called, this node refuses the revoked tokens at the handshake and at
// refresh; other nodes do from when they receive it (before they answer).
//
// A token is revoked by Subject when its iat is before IssuedBefore (zero:
// the time of the call); iat has a resolution of a second, so a token
// issued in the same second as the revocation is revoked too: issue the
// user's new token a second later, or set IssuedBefore. A token without iat
// counts as issued before any instant.
//
// Delivery and waiting are as for [Hub.ControlUser]; with a broker that is
// not a [ControlBroker] the revocation is kept and enforced by this node
// only. Errors: [ErrBadRequest] for a revocation without exactly one of
// TokenID and Subject; [ErrTooManyRevocations]; the broker's error when it
// could not store the revocation (nothing was revoked but on this node);
// an error wrapping [ErrIncomplete]; ctx's error when it had ended before
// the call.
func (h *Hub) Revoke(ctx context.Context, r Revocation) (ControlResult, error) {
	if err := ctx.Err(); err != nil {
		return ControlResult{}, err
	}
	now := time.Now()
	if err := r.check(now); err != nil {
		return ControlResult{}, err
	}
	rec := revocationRec{TokenID: r.TokenID, Subject: r.Subject, Reason: truncate(r.Reason, maxRevokeReason),
		Expires: now.Add(h.opts.Revocation.TTL).UnixNano()}
	if r.Subject != "" {
		rec.Before = r.IssuedBefore.UnixNano()
	}
	if !h.revs.room(rec, now) {
		return ControlResult{}, fmt.Errorf("%w: %d kept", ErrTooManyRevocations, h.opts.Revocation.MaxEntries)
	}
	h.log.LogAttrs(ctx, slog.LevelInfo, "rthub: revoke", slog.String("subject", r.Subject), slog.String("jti", r.TokenID),
		slog.Time("issued_before", r.IssuedBefore), slog.String("reason", r.Reason))
	// Enforced here at once: a handshake on this node is refused from now.
	h.revs.add(rec, now)
	h.stats.revocations.Add(1)
	if h.ctl != nil {
		data, _ := json.Marshal(rec) // cannot fail: strings and numbers
		pctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
		err := h.ctl.PutRevocation(pctx, data, h.opts.Revocation.TTL)
		cancel()
		if err != nil {
			h.stats.brokerErrors.Add(1)
			return ControlResult{}, fmt.Errorf("rthub: storing the revocation: %w", err)
		}
	}
	res, _, err := h.control(ctx, controlMsg{Op: controlRevoke, Rev: &rec})
	return res, err
}

// Control operations (controlMsg.Op).
const (
	controlUser   = "user"
	controlRevoke = "revoke"
)

// controlMsg is what a control call sends every node, as JSON.
type controlMsg struct {
	Op      string         `json:"op"`
	Subject string         `json:"sub,omitempty"`
	Kind    string         `json:"kind,omitempty"`
	Room    string         `json:"room,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	Rev     *revocationRec `json:"rev,omitempty"`
}

// controlAnswer is a node's answer, as JSON.
type controlAnswer struct {
	N     int    `json:"n"`               // connections affected
	Found int    `json:"found,omitempty"` // the user's connections on the node
	Code  string `json:"code,omitempty"`  // error code ([ErrorCode]) if the node failed
	Msg   string `json:"msg,omitempty"`
	err   error  // this node's own error, not sent
}

// controlTally adds the answers up beyond the ControlResult.
type controlTally struct {
	found int
}

// control sends m to every node and adds up their answers. The error is the
// first node error, wrapped in an *IncompleteError when some node did not
// answer.
func (h *Hub) control(ctx context.Context, m controlMsg) (ControlResult, controlTally, error) {
	h.stats.controlCalls.Add(1)
	ctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout) // the answers are waited for at most this long
	defer cancel()
	var (
		res     ControlResult
		t       controlTally
		first   error
		answers []controlAnswer
	)
	var brokerErr error
	if h.ctl == nil {
		answers = append(answers, h.applyControl(ctx, m))
	} else {
		data, err := json.Marshal(m)
		if err != nil {
			return res, t, fmt.Errorf("rthub: encoding a control message: %w", err)
		}
		replies, missing, err := h.ctl.Control(ctx, data)
		if err != nil {
			// The cluster is out of reach: act here at least.
			h.stats.brokerErrors.Add(1)
			brokerErr = err
			answers = append(answers, h.applyControl(ctx, m))
			res.Missing = -1
		} else {
			res.Missing = len(missing)
			for _, r := range replies {
				var a controlAnswer
				if err := json.Unmarshal(r.Data, &a); err != nil {
					a = controlAnswer{Code: "internal", Msg: "undecodable answer from node " + truncate(r.Node, 64)}
				}
				answers = append(answers, a)
			}
		}
	}
	for _, a := range answers {
		res.Nodes++
		res.Connections += a.N
		t.found += a.Found
		if first == nil {
			first = a.error()
		}
	}
	if brokerErr != nil && first == nil {
		first = brokerErr
	}
	if !res.Complete() {
		h.stats.controlIncomplete.Add(1)
		return res, t, &IncompleteError{Result: res, Err: first}
	}
	return res, t, first
}

// error returns the node's error: its own for this node's answer, a
// *ReplyError (matching the sentinel of its code) for another's.
func (a controlAnswer) error() error {
	switch {
	case a.err != nil:
		return a.err
	case a.Code != "":
		return &ReplyError{Code: a.Code, Message: a.Msg}
	}
	return nil
}

// applyControl carries out a control message on this node's connections.
func (h *Hub) applyControl(ctx context.Context, m controlMsg) controlAnswer {
	var a controlAnswer
	switch m.Op {
	case controlUser:
		a.Found, a.N, a.err = h.applyUser(ctx, m)
	case controlRevoke:
		if m.Rev == nil {
			a.err = fmt.Errorf("%w: revocation missing", ErrBadRequest)
			break
		}
		a.N = h.applyRevocation(*m.Rev)
	default:
		a.err = fmt.Errorf("%w: unknown control operation %q", ErrBadRequest, truncate(m.Op, 32))
	}
	if a.err != nil {
		a.Code, a.Msg = ErrorCode(a.err), "node "+h.nodeID+": "+truncate(a.err.Error(), 200)
	}
	return a
}

// applyUser does a user action to this node's connections of the user. It
// returns how many connections the user has here and how many it affected.
func (h *Hub) applyUser(ctx context.Context, m controlMsg) (found, n int, err error) {
	conns := h.userConns(m.Subject)
	if len(conns) == 0 {
		return 0, 0, nil
	}
	switch m.Kind {
	case UserDisconnect.String():
		reason := m.Reason
		if reason == "" {
			reason = "disconnected by server"
		}
		for _, c := range conns {
			if c.closeWith(CloseDisconnected, reason) {
				n++
			}
		}
	case UserJoin.String():
		if err := ValidRoom(m.Room); err != nil {
			return len(conns), 0, err
		}
		for _, c := range conns {
			if err := ctx.Err(); err != nil {
				return len(conns), n, err
			}
			if jerr := h.serverJoin(ctx, c, m.Room); jerr != nil {
				if err == nil {
					err = jerr
				}
				continue
			}
			n++
		}
	case UserLeave.String():
		if err := ValidRoom(m.Room); err != nil {
			return len(conns), 0, err
		}
		for _, c := range conns {
			if err := ctx.Err(); err != nil {
				return len(conns), n, err
			}
			if h.leave(ctx, c, m.Room) {
				c.sendJSON(roomMsg{Type: "left", Room: m.Room, Reason: "server"})
				n++
			}
		}
	case UserRecheck.String():
		n, err = h.recheck(ctx, conns)
	default:
		return len(conns), 0, fmt.Errorf("%w: unknown user action %q", ErrBadRequest, truncate(m.Kind, 32))
	}
	return len(conns), n, err
}

// recheck re-evaluates the rooms of conns (one user's) with the roles
// Options.Roles gives now.
func (h *Hub) recheck(ctx context.Context, conns []*conn) (int, error) {
	var roles []string
	if h.opts.Roles != nil {
		var err error
		if roles, err = h.callRoles(ctx, conns[0].ident.Load()); err != nil {
			return 0, fmt.Errorf("%w: Options.Roles: %v", ErrInternal, err)
		}
	}
	n := 0
	for _, c := range conns {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		id := c.ident.Load()
		if h.opts.Roles != nil {
			nid := *id
			nid.Roles = slices.Clone(roles)
			id = &nid
			c.ident.Store(id)
		}
		h.reevaluate(ctx, c, id, "recheck")
		n++
	}
	return n, nil
}

// callRoles calls Options.Roles, bounded by BrokerTimeout, turning a panic
// into an error.
func (h *Hub) callRoles(ctx context.Context, id *Identity) (roles []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panicked: %v", r)
		}
	}()
	return h.opts.Roles(ctx, id)
}

// reevaluate checks c's rooms (those not joined through the server-side API)
// against the policy for id: rooms id may not join are left with a "left"
// message with reason, auto-join rooms of id are joined.
func (h *Hub) reevaluate(ctx context.Context, c *conn, id *Identity, reason string) {
	c.mu.Lock()
	var check []string
	for _, rr := range c.rooms {
		if !rr.server {
			check = append(check, rr.name)
		}
	}
	c.mu.Unlock()
	for _, rm := range check {
		if h.policy.authorize(ctx, id, ActionJoin, rm, "") != nil {
			if h.leave(ctx, c, rm) {
				c.sendJSON(roomMsg{Type: "left", Room: rm, Reason: reason})
			}
		}
	}
	for _, rm := range h.policy.autoJoin(id) {
		if c.inRoom(rm) || h.policy.authorize(ctx, id, ActionJoin, rm, "") != nil {
			continue
		}
		if h.join(ctx, c, rm, false) == nil {
			c.sendJSON(roomMsg{Type: "joined", Room: rm})
		}
	}
}

// applyRevocation keeps rec in this node's replica and closes the local
// connections whose token it revokes. It returns how many it closed.
func (h *Hub) applyRevocation(rec revocationRec) int {
	now := time.Now()
	if !h.revs.add(rec, now) {
		// Another node accepted it: this one is configured with a smaller
		// MaxEntries. Its connections are still closed; its handshakes
		// cannot refuse the token.
		h.stats.revocationsDropped.Add(1)
		h.log.Error("rthub: revocation replica full: a revoked token would be accepted here; use the same Revocation.MaxEntries on every node",
			slog.Int("max", h.opts.Revocation.MaxEntries))
	}
	var conns []*conn
	if rec.TokenID == "" {
		conns = h.userConns(rec.Subject)
	} else {
		conns = h.snapshotConns(nil)
	}
	n := 0
	for _, c := range conns {
		if rec.matches(c.ident.Load()) && c.closeWith(CloseTokenRevoked, rec.closeReason()) {
			n++
		}
	}
	h.stats.revokedConns.Add(uint64(n))
	return n
}

// checkRevoked refuses a revoked identity (handshake and refresh).
func (h *Hub) checkRevoked(id *Identity, now time.Time) error {
	if h.revs.revoked(id, now) {
		return fmt.Errorf("%w: token was revoked", ErrTokenRevoked)
	}
	return nil
}
