package admin

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/org/rthub"
)

// This file holds the endpoints that act (POST): publish, disconnect,
// revoke, re-check, join, leave; and the log of actions.

// Action is one admin action, as GET /actions lists it and the log line
// records it.
type Action struct {
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"` // publish, disconnect, revoke, recheck, join, leave
	Room    string    `json:"room,omitempty"`
	Event   string    `json:"event,omitempty"`
	User    string    `json:"user,omitempty"`
	TokenID string    `json:"token_id,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	// Status is the HTTP status answered; Code the error code, if any.
	Status int    `json:"status"`
	Code   string `json:"code,omitempty"`
	// Result of a user action (see [Result]); zero for a publish.
	Result *Result `json:"result,omitempty"`
}

// Result is what a disconnect, revoke, re-check, join or leave did ([rthub.ControlResult]):
// how many connections it affected and how many nodes answered. Complete is
// false when some node did not answer within the request's deadline (Missing
// of them; -1 when the broker failed and the count is unknown): the action
// is done on the nodes that answered; repeat it.
type Result struct {
	Connections int  `json:"connections"`
	Nodes       int  `json:"nodes"`
	Missing     int  `json:"missing"`
	Complete    bool `json:"complete"`
}

// actionResponse is the body of a successful user action.
type actionResponse struct {
	Action  string `json:"action"`
	User    string `json:"user,omitempty"`
	Room    string `json:"room,omitempty"`
	TokenID string `json:"token_id,omitempty"`
	Result
}

func (h *Handler) publish(w http.ResponseWriter, r *http.Request, actor string) {
	var req publishRequest
	act := Action{Action: "publish"}
	err := decodeBody(w, r, h.opts.MaxBody, &req)
	if err == nil {
		act.Room, act.Event = req.Room, req.Event
		err = req.check()
	}
	if err == nil {
		var opts []rthub.PublishOption
		if req.Key != "" {
			opts = append(opts, rthub.WithKey(req.Key))
		}
		err = h.hub.Publish(r.Context(), req.Room, req.Event, req.Data, opts...)
	}
	if err != nil {
		h.actionFailed(w, r, actor, act, err)
		return
	}
	h.done(r, actor, act, http.StatusAccepted)
	writeJSON(w, http.StatusAccepted, map[string]string{"action": "publish", "room": req.Room, "event": req.Event})
}

func (h *Handler) disconnect(w http.ResponseWriter, r *http.Request, actor string) {
	h.userAction(w, r, actor, rthub.UserDisconnect, "disconnected by an administrator")
}

func (h *Handler) recheck(w http.ResponseWriter, r *http.Request, actor string) {
	h.userAction(w, r, actor, rthub.UserRecheck, "")
}

// userAction serves POST /disconnect and /recheck: [rthub.Hub.ControlUser]
// on every node.
func (h *Handler) userAction(w http.ResponseWriter, r *http.Request, actor string, kind rthub.UserActionKind, defReason string) {
	var req userRequest
	act := Action{Action: kind.String()}
	if err := h.decodeUser(w, r, &req, &act); err != nil {
		h.actionFailed(w, r, actor, act, err)
		return
	}
	reason := req.Reason
	if reason == "" {
		reason = defReason
	}
	res, err := h.hub.ControlUser(r.Context(), req.User, rthub.UserAction{Kind: kind, Reason: reason})
	h.userResult(w, r, actor, act, res, err)
}

func (h *Handler) join(w http.ResponseWriter, r *http.Request, actor string) {
	h.roomAction(w, r, actor, rthub.UserJoin)
}

func (h *Handler) leave(w http.ResponseWriter, r *http.Request, actor string) {
	h.roomAction(w, r, actor, rthub.UserLeave)
}

// roomAction serves POST /join and /leave: [rthub.Hub.ControlUser] on every
// node, bypassing the policy (a join) as the server-side API does.
func (h *Handler) roomAction(w http.ResponseWriter, r *http.Request, actor string, kind rthub.UserActionKind) {
	var req roomUserRequest
	act := Action{Action: kind.String()}
	err := decodeBody(w, r, h.opts.MaxBody, &req)
	if err == nil {
		act.User, act.Room, act.Reason = req.User, req.Room, req.Reason
		err = req.check()
	}
	if err != nil {
		h.actionFailed(w, r, actor, act, err)
		return
	}
	res, err := h.hub.ControlUser(r.Context(), req.User, rthub.UserAction{Kind: kind, Room: req.Room, Reason: req.Reason})
	h.userResult(w, r, actor, act, res, err)
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, actor string) {
	var req revokeRequest
	act := Action{Action: "revoke"}
	err := decodeBody(w, r, h.opts.MaxBody, &req)
	if err == nil {
		act.User, act.TokenID, act.Reason = req.User, req.TokenID, req.Reason
		err = req.check()
	}
	if err != nil {
		h.actionFailed(w, r, actor, act, err)
		return
	}
	rev := rthub.Revocation{TokenID: req.TokenID, Subject: req.User, Reason: req.Reason}
	if rev.Reason == "" {
		rev.Reason = "revoked by an administrator"
	}
	if req.IssuedBefore != nil {
		rev.IssuedBefore = *req.IssuedBefore
	}
	res, err := h.hub.Revoke(r.Context(), rev)
	h.userResult(w, r, actor, act, res, err)
}

// decodeUser decodes and checks the body of a user action.
func (h *Handler) decodeUser(w http.ResponseWriter, r *http.Request, req *userRequest, act *Action) error {
	err := decodeBody(w, r, h.opts.MaxBody, req)
	if err == nil {
		act.User, act.Reason = req.User, req.Reason
		err = req.check()
	}
	return err
}

// userResult answers a user action: 200 with the result, also when some
// node did not answer in time (complete false: the nodes that answered
// acted); an error otherwise. A revocation affecting no connection is a
// success; a disconnect or re-check of a user connected nowhere is 404.
func (h *Handler) userResult(w http.ResponseWriter, r *http.Request, actor string, act Action, cr rthub.ControlResult, err error) {
	var ie *rthub.IncompleteError
	if errors.As(err, &ie) {
		cr, err = ie.Result, nil
		act.Code = "incomplete"
		if ie.Err != nil {
			act.Code = rthub.ErrorCode(ie.Err)
		}
	}
	if err != nil {
		h.actionFailed(w, r, actor, act, err)
		return
	}
	res := Result{Connections: cr.Connections, Nodes: cr.Nodes, Missing: cr.Missing, Complete: cr.Complete()}
	act.Result = &res
	h.done(r, actor, act, http.StatusOK)
	writeJSON(w, http.StatusOK, actionResponse{Action: act.Action, User: act.User, Room: act.Room, TokenID: act.TokenID, Result: res})
}

// actionFailed answers and records a failed action.
func (h *Handler) actionFailed(w http.ResponseWriter, r *http.Request, actor string, act Action, err error) {
	status, code := statusOf(err)
	act.Code = code
	h.done(r, actor, act, status)
	h.fail(w, r, actor, act.Action, err)
}

// done logs act (Info when it succeeded, Warn otherwise) and keeps it.
func (h *Handler) done(r *http.Request, actor string, act Action, status int) {
	act.Time, act.Actor, act.Status = time.Now().UTC(), actor, status
	attrs := []slog.Attr{slog.String("action", act.Action), slog.String("actor", actor), slog.Int("status", status)}
	for _, f := range [...]struct{ k, v string }{{"room", act.Room}, {"event", act.Event}, {"user", act.User},
		{"token_id", act.TokenID}, {"reason", act.Reason}, {"code", act.Code}} {
		if f.v != "" {
			attrs = append(attrs, slog.String(f.k, truncate(f.v, 256)))
		}
	}
	if res := act.Result; res != nil {
		attrs = append(attrs, slog.Int("connections", res.Connections), slog.Int("nodes", res.Nodes),
			slog.Int("missing", res.Missing), slog.Bool("complete", res.Complete))
	}
	level := slog.LevelInfo
	if status >= 400 || (act.Result != nil && !act.Result.Complete) {
		level = slog.LevelWarn
	}
	h.log.LogAttrs(r.Context(), level, "rthub admin: action", attrs...)
	h.actions.add(act)
}

// Actions returns the newest n actions the handler keeps, newest first,
// and how many it has recorded in all.
func (h *Handler) Actions(n int) ([]Action, uint64) { return h.actions.recent(n) }
