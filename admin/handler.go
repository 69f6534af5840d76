// Package admin serves an embeddable HTTP API for operating an rthub hub:
// list rooms with their member counts, read a room's presence and recent
// history, publish to a room, disconnect, revoke and re-check users, read the
// hub's and the broker's stats, the refusal audit and the log of admin
// actions. Every endpoint speaks JSON; docs/admin.md documents each one.
//
// Mount the handler under a prefix with [http.StripPrefix]:
//
//	mux.Handle("/admin/", http.StripPrefix("/admin", admin.NewHandler(hub, admin.Options{Role: "admin"})))
//
// Every request is authenticated first: by default with the hub's own JWT
// verification ([rthub.Hub.VerifyRequest]: an Authorization: Bearer header,
// never a cookie or a query parameter) and a role ([Options.Role]); or by the
// application's own check ([Options.Authorize]), for example its session.
// Every action (a POST) is logged with who did it.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/org/rthub"
)

// Errors an [Options.Authorize] function returns to refuse a request: the
// handler answers 401 for one wrapping ErrUnauthenticated (and for any error
// that wraps neither) and 403 for one wrapping ErrForbidden.
var (
	// ErrUnauthenticated means the request does not say who makes it, or
	// its credentials are not valid: 401.
	ErrUnauthenticated = errors.New("admin: unauthenticated")
	// ErrForbidden means the requester is known but may not use the admin
	// API: 403.
	ErrForbidden = errors.New("admin: forbidden")
)

// Defaults and bounds of [Options].
const (
	// DefaultRole is the role a token needs when Options.Role is "".
	DefaultRole = "admin"
	// DefaultMaxBody is the default (and MaxBodyLimit the largest) size of a
	// request body, in bytes.
	DefaultMaxBody = 64 << 10
	MaxBodyLimit   = 1 << 20
	// DefaultActionLog is the default number of actions the handler keeps
	// for GET /actions (the newest; older ones are dropped).
	DefaultActionLog = 256
	// MaxActionLog bounds Options.ActionLog.
	MaxActionLog = 100_000
	// DefaultTimeout bounds each request's hub and broker calls by default.
	DefaultTimeout = 5 * time.Second
	// MaxRooms is the most rooms GET /rooms lists (the rest are counted).
	MaxRooms = 1000
	// DefaultHistory is how many publications GET /history returns without
	// a limit parameter; at most [rthub.MaxHistoryRead].
	DefaultHistory = 50
)

// Options configures [NewHandler]. The zero value authenticates with the
// hub's JWT and the "admin" role.
type Options struct {
	// Role is the role ([rthub.Identity.Roles]) a request's token must
	// carry when Authorize is nil: the token is verified by
	// [rthub.Hub.VerifyRequest] (the hub's keys and claim checks), and its
	// subject is who is logged. Default [DefaultRole]. A valid token without
	// the role gets 403.
	Role string

	// Authorize, if set, replaces the token check: the application's own
	// authentication (a session, mTLS, a proxy's header). It returns who
	// makes the request, for the logs (1 to 256 bytes), or an error wrapping
	// [ErrForbidden] (403) or [ErrUnauthenticated] (401; any other error is
	// also 401). It is called once per request, before anything else, on the
	// request's goroutine. An application that authenticates with cookies
	// must also protect against CSRF (see docs/admin.md): the handler's own
	// part is that every POST must be Content-Type: application/json, which
	// a cross-site form cannot send without a CORS preflight.
	Authorize func(r *http.Request) (actor string, err error)

	// Logger receives a line per action (Info), per refused request (Warn)
	// and per failed call (Warn), each with the actor. Default
	// slog.Default().
	Logger *slog.Logger

	// Refusals, if set, is the hub's refusal audit, served by GET
	// /refusals: pass its Record method as the hub's Options.OnRefused.
	// Without it, GET /refusals answers 404 not_enabled.
	Refusals *RefusalLog

	// BrokerStats, if set, is called by GET /stats for the broker's stats
	// (for example a redisbroker.Broker's Stats method); its result is
	// encoded with encoding/json. It must not block for long.
	BrokerStats func() any

	// MaxBody bounds a request body, in bytes: a larger one gets 413.
	// Default [DefaultMaxBody]; at most [MaxBodyLimit].
	MaxBody int64

	// ActionLog is how many actions GET /actions keeps (the newest).
	// Default [DefaultActionLog]; negative keeps none; at most
	// [MaxActionLog]. The log is in memory, per handler: the slog lines are
	// the durable record.
	ActionLog int

	// Timeout bounds the hub and broker calls of each request (a
	// cluster-wide action waits at most this long for the other nodes).
	// Default [DefaultTimeout].
	Timeout time.Duration

	// Redact decides which fields of event payloads GET /history hides:
	// it is called with each object member's name, at any depth, and
	// true replaces the value with "[redacted]". Default [DefaultRedact].
	Redact func(key string) bool
}

// Handler is the admin API; [NewHandler] makes one. It is safe for
// concurrent use.
type Handler struct {
	hub     *rthub.Hub
	opts    Options
	log     *slog.Logger
	actions *ring[Action]
	routes  map[string]*route // by path
}

// NewHandler returns the admin API of hub, configured by opts. It panics if
// hub is nil, like [http.Handle] with a nil handler: a programming error.
func NewHandler(hub *rthub.Hub, opts Options) *Handler {
	if hub == nil {
		panic("admin: NewHandler with a nil hub")
	}
	if opts.Role == "" {
		opts.Role = DefaultRole
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	opts.MaxBody = min(opts.MaxBody, MaxBodyLimit)
	switch {
	case opts.ActionLog == 0:
		opts.ActionLog = DefaultActionLog
	case opts.ActionLog < 0:
		opts.ActionLog = 0
	}
	opts.ActionLog = min(opts.ActionLog, MaxActionLog)
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Redact == nil {
		opts.Redact = DefaultRedact
	}
	h := &Handler{hub: hub, opts: opts, log: opts.Logger, actions: newRing[Action](opts.ActionLog)}
	h.routes = make(map[string]*route, len(routeTable))
	for i := range routeTable {
		h.routes[routeTable[i].path] = &routeTable[i]
	}
	return h
}

// route is one endpoint: a method and path (relative to where the handler
// is mounted) and what serves it. POST routes are actions: logged and
// recorded in the action log.
type route struct {
	method, path string
	serve        func(h *Handler, w http.ResponseWriter, r *http.Request, actor string)
}

// routeTable lists every endpoint. A test iterates over it to check that
// each one refuses an unauthenticated request and a non-admin token.
var routeTable = []route{
	{http.MethodGet, "/stats", (*Handler).stats},
	{http.MethodGet, "/rooms", (*Handler).rooms},
	{http.MethodGet, "/presence", (*Handler).presence},
	{http.MethodGet, "/history", (*Handler).history},
	{http.MethodGet, "/refusals", (*Handler).refusals},
	{http.MethodGet, "/actions", (*Handler).actionList},
	{http.MethodPost, "/publish", (*Handler).publish},
	{http.MethodPost, "/disconnect", (*Handler).disconnect},
	{http.MethodPost, "/revoke", (*Handler).revoke},
	{http.MethodPost, "/recheck", (*Handler).recheck},
	{http.MethodPost, "/join", (*Handler).join},
	{http.MethodPost, "/leave", (*Handler).leave},
}

// ServeHTTP authenticates the request, then routes it: 401 or 403 first,
// then 404 for an unknown path, 405 for a known path with another method,
// 415 for a POST that is not JSON.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	actor, err := h.authenticate(r)
	if err != nil {
		status, code := http.StatusUnauthorized, "unauthorized"
		if errors.Is(err, ErrForbidden) {
			status, code = http.StatusForbidden, "forbidden"
		} else {
			hd.Set("WWW-Authenticate", "Bearer")
		}
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "rthub admin: refused",
			slog.Int("status", status), slog.String("actor", actor),
			slog.String("method", r.Method), slog.String("path", truncate(r.URL.Path, 128)),
			slog.String("remote", r.RemoteAddr))
		writeError(w, status, code, "")
		return
	}
	rt := h.routes[r.URL.Path]
	if rt == nil {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
		return
	}
	if r.Method != rt.method && !(rt.method == http.MethodGet && r.Method == http.MethodHead) {
		hd.Set("Allow", rt.method)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", rt.method+" only")
		return
	}
	if rt.method == http.MethodPost {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type: application/json required")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	rt.serve(h, w, r.WithContext(ctx), actor)
}

// authenticate says who makes r, or why not. The actor is returned with an
// ErrForbidden error too (the subject of a token without the role).
func (h *Handler) authenticate(r *http.Request) (string, error) {
	if h.opts.Authorize != nil {
		actor, err := h.opts.Authorize(r)
		if err != nil {
			if !errors.Is(err, ErrForbidden) {
				err = ErrUnauthenticated
			}
			return truncate(actor, 256), err
		}
		if actor == "" {
			return "", ErrUnauthenticated
		}
		return truncate(actor, 256), nil
	}
	id, err := h.hub.VerifyRequest(r)
	if err != nil {
		return "", ErrUnauthenticated
	}
	if !id.HasRole(h.opts.Role) {
		return truncate(id.Subject, 256), ErrForbidden
	}
	return truncate(id.Subject, 256), nil
}

// errorBody is every error response: {"error":{"code","message"}}.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message,omitempty"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"cannot encode the response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
