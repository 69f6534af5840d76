package main

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/admin"
)

//go:embed web
var webFS embed.FS

// api serves the REST endpoints and the dashboard beside the hub.
type api struct {
	cfg       Config
	hub       *rthub.Hub
	pub       rthub.Publisher // the hub, traced when tracing is on
	ws        http.Handler    // the hub, traced when tracing is on
	metrics   http.Handler    // GET /metrics
	tracing   *tracing        // nil: off
	store     Store
	alerts    *AlertEngine
	health    *healthReporter
	analytics *analyticsService
	audit     *auditor
	sim       *Simulator // nil without simulated devices
	ready     func() error
	log       *slog.Logger
	refusals  *admin.RefusalLog // the hub's refusals, for the admin API
	brokerSt  func() any        // the broker's stats, for the admin API; nil: none
}

// routes returns the server's handler.
func (a *api) routes() http.Handler {
	mux := http.NewServeMux()
	web := webSub()
	static := http.FileServerFS(web)
	mux.Handle("GET /ws", a.ws)
	mux.Handle("GET /metrics", a.metrics)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, web, "index.html")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", noCache(static)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.HandleFunc("POST /api/login", a.login)
	mux.HandleFunc("POST /api/token", a.authed(a.refresh))
	mux.HandleFunc("GET /api/me", a.authed(a.me))
	mux.HandleFunc("GET /api/devices", a.authed(a.devices))
	mux.HandleFunc("GET /api/devices/{id}/readings", a.authed(a.readings))
	mux.HandleFunc("GET /api/alerts", a.authed(a.alertList))
	mux.HandleFunc("GET /api/analytics", a.authed(a.analyticsGet))
	mux.HandleFunc("GET /api/health", a.authed(a.healthGet))
	mux.HandleFunc("GET /api/audit", a.admin(a.auditList))
	mux.HandleFunc("POST /api/devices/{id}/dropout", a.admin(a.dropout))
	mux.HandleFunc("POST /api/publish", a.admin(a.publish))
	mux.HandleFunc("POST /api/users/{username}/disconnect", a.admin(a.disconnectUser))
	// The admin API (package admin, docs/admin.md): with an admin's token
	// under /api/admin/, and on the console's session under /console/api/.
	adminOpts := admin.Options{Logger: a.log.With("component", "admin"), Refusals: a.refusals, BrokerStats: a.brokerSt}
	jwtOpts := adminOpts
	jwtOpts.Role = "admin"
	mux.Handle("/api/admin/", http.StripPrefix("/api/admin", admin.NewHandler(a.hub, jwtOpts)))
	a.consoleRoutes(mux, adminOpts)
	return securityHeaders(mux)
}

// webSub is the embedded web/ directory.
func webSub() fs.FS {
	web, _ := fs.Sub(webFS, "web")
	return web
}

// decodeStrict decodes one JSON object of at most max bytes from r's body
// into v, refusing unknown fields and anything after the object.
func decodeStrict(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// securityHeaders: the page loads only its own scripts and connects only to
// its own origin.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// clientAddr is the request's peer address (no proxy headers are trusted).
func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// maxLoginBody bounds a login request.
const maxLoginBody = 4 << 10

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type tokenResponse struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	User    userInfo  `json:"user"`
}

type userInfo struct {
	Username string   `json:"username"`
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
}

// login checks a user name and password and returns a token. Every attempt
// is in the audit log.
func (a *api) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBody)).Decode(&req); err != nil || req.Username == "" || len(req.Username) > 64 {
		httpError(w, http.StatusBadRequest, "bad_request", `want {"username","password"}`)
		return
	}
	u, err := login(r.Context(), a.store, req.Username, req.Password)
	if errors.Is(err, errBadLogin) {
		a.audit.add(AuditEntry{Kind: auditLoginFailed, Username: req.Username, Detail: "wrong user name or password", RemoteAddr: clientAddr(r)})
		httpError(w, http.StatusUnauthorized, "bad_login", err.Error())
		return
	}
	if err != nil {
		a.log.Error("login", "err", err)
		httpError(w, http.StatusInternalServerError, "internal", "try again later")
		return
	}
	a.audit.add(AuditEntry{Kind: auditLogin, Username: u.Username, Detail: "roles " + strings.Join(u.Roles, ","), RemoteAddr: clientAddr(r)})
	a.issue(w, u)
}

func (a *api) issue(w http.ResponseWriter, u User) {
	tok, exp, err := issueToken(a.cfg.Secret, u, a.cfg.TokenTTL, time.Now())
	if err != nil {
		httpError(w, http.StatusInternalServerError, "internal", "try again later")
		return
	}
	writeJSON(w, http.StatusOK, tokenResponse{Token: tok, Expires: exp.UTC(), User: userInfo{u.Username, u.Name, u.Roles}})
}

// refresh trades a valid token for a new one, with the user's current roles
// (so a role removed in the store takes effect at the next refresh).
func (a *api) refresh(w http.ResponseWriter, r *http.Request, c *tokenClaims) {
	u, err := a.store.User(r.Context(), c.Subject)
	if errors.Is(err, ErrNotFound) {
		httpError(w, http.StatusUnauthorized, "unauthorized", "user no longer exists")
		return
	}
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "unavailable", "store unavailable")
		return
	}
	a.issue(w, u)
}

func (a *api) me(w http.ResponseWriter, r *http.Request, c *tokenClaims) {
	writeJSON(w, http.StatusOK, userInfo{c.Subject, c.Name, c.Roles})
}

// authed wraps a handler that needs a valid token (Authorization: Bearer).
func (a *api) authed(fn func(http.ResponseWriter, *http.Request, *tokenClaims)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			httpError(w, http.StatusUnauthorized, "token_missing", "Authorization: Bearer <token> required")
			return
		}
		c, err := verifyToken(a.cfg.Secret, tok)
		if err == nil && a.revokedToken(r) {
			err = rthub.ErrTokenRevoked
		}
		if err != nil {
			a.audit.add(AuditEntry{Kind: auditUnauthorized, Detail: r.Method + " " + r.URL.Path + ": invalid token", RemoteAddr: clientAddr(r)})
			httpError(w, http.StatusUnauthorized, "token_invalid", "invalid or expired token")
			return
		}
		fn(w, r, c)
	}
}

// admin wraps a handler for the admin role only.
func (a *api) admin(fn func(http.ResponseWriter, *http.Request, *tokenClaims)) http.HandlerFunc {
	return a.authed(func(w http.ResponseWriter, r *http.Request, c *tokenClaims) {
		if !c.hasRole("admin") {
			a.audit.add(AuditEntry{Kind: auditAdminDenied, Username: c.Subject, Detail: r.Method + " " + r.URL.Path, RemoteAddr: clientAddr(r)})
			httpError(w, http.StatusForbidden, "forbidden", "role admin required")
			return
		}
		fn(w, r, c)
	})
}

func (a *api) devices(w http.ResponseWriter, r *http.Request, _ *tokenClaims) {
	ds, err := a.store.Devices(r.Context())
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": ds})
}

func (a *api) storeError(w http.ResponseWriter, err error) {
	a.log.Warn("api: store", "err", err)
	httpError(w, http.StatusServiceUnavailable, "unavailable", "store unavailable")
}

// readings: ?from=&to= (RFC 3339, default the last 10 minutes) and ?limit=
// (default and maximum 5000; the newest when there are more).
func (a *api) readings(w http.ResponseWriter, r *http.Request, _ *tokenClaims) {
	q := r.URL.Query()
	to := time.Now().Add(time.Second)
	from := to.Add(-10 * time.Minute)
	var err error
	if v := q.Get("from"); v != "" {
		if from, err = time.Parse(time.RFC3339Nano, v); err != nil {
			httpError(w, http.StatusBadRequest, "bad_request", "from: want RFC 3339")
			return
		}
	}
	if v := q.Get("to"); v != "" {
		if to, err = time.Parse(time.RFC3339Nano, v); err != nil {
			httpError(w, http.StatusBadRequest, "bad_request", "to: want RFC 3339")
			return
		}
	}
	limit := 5000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			httpError(w, http.StatusBadRequest, "bad_request", "limit: 1 to 5000")
			return
		}
		limit = n
	}
	rs, err := a.store.Readings(r.Context(), r.PathValue("id"), from, to, limit)
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"device": r.PathValue("id"), "from": from.UTC(), "to": to.UTC(), "readings": rs})
}

// alertList: ?state=open (default) or all; ?limit (default 100).
func (a *api) alertList(w http.ResponseWriter, r *http.Request, _ *tokenClaims) {
	openOnly := r.URL.Query().Get("state") != "all"
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= 1000 {
			limit = n
		}
	}
	as, err := a.store.Alerts(r.Context(), openOnly, limit)
	if err != nil {
		a.storeError(w, err)
		return
	}
	rules := a.alerts.Rules()
	names := make([]string, len(rules))
	for i, ru := range rules {
		names[i] = ru.String()
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": as, "rules": names})
}

func (a *api) analyticsGet(w http.ResponseWriter, r *http.Request, _ *tokenClaims) {
	v, err := a.analytics.get(r.Context())
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) healthGet(w http.ResponseWriter, r *http.Request, _ *tokenClaims) {
	writeJSON(w, http.StatusOK, a.health.current(r.Context()))
}

func (a *api) auditList(w http.ResponseWriter, r *http.Request, _ *tokenClaims) {
	es, err := a.store.Audit(r.Context(), 200)
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": es})
}

// dropout cuts a simulated device's MQTT connection (?seconds=, default 10):
// the broker then publishes its Last Will.
func (a *api) dropout(w http.ResponseWriter, r *http.Request, c *tokenClaims) {
	if a.sim == nil {
		httpError(w, http.StatusNotFound, "not_found", "no simulated devices")
		return
	}
	secs := 10
	if v := r.URL.Query().Get("seconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 600 {
			httpError(w, http.StatusBadRequest, "bad_request", "seconds: 1 to 600")
			return
		}
		secs = n
	}
	if !a.sim.Dropout(r.PathValue("id"), time.Duration(secs)*time.Second) {
		httpError(w, http.StatusNotFound, "not_found", "no such simulated device")
		return
	}
	a.log.Info("simulated dropout requested", "device", r.PathValue("id"), "by", c.Subject)
	w.WriteHeader(http.StatusNoContent)
}

// disconnectUser closes every WebSocket connection of a user with close code
// 4101 (disconnected: do not reconnect), so their pages go back to the
// sign-in at once. It revokes nothing: a token already issued stays valid
// until it expires (TOKEN_TTL). 200 {"closed": n}; 404 if the user has no
// connection on this node.
func (a *api) disconnectUser(w http.ResponseWriter, r *http.Request, c *tokenClaims) {
	user := r.PathValue("username")
	n, err := a.hub.DisconnectUser(r.Context(), user, "disconnected by "+c.Subject)
	if errors.Is(err, rthub.ErrNotFound) {
		httpError(w, http.StatusNotFound, "not_found", "the user has no connection here")
		return
	}
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	a.audit.add(AuditEntry{Kind: auditDisconnect, Username: c.Subject,
		Detail: fmt.Sprintf("disconnected %s (%d connections, close 4101)", user, n), RemoteAddr: clientAddr(r)})
	writeJSON(w, http.StatusOK, map[string]int{"closed": n})
}

// readyz answers 200 when the store answers and the MQTT bridge is
// subscribed; 503 otherwise (a load balancer then sends no one here).
func (a *api) readyz(w http.ResponseWriter, r *http.Request) {
	if err := a.ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// readyCheck builds the /readyz check.
func readyCheck(store Store, mqttReady func() bool, closing func() bool) func() error {
	return func() error {
		if closing() {
			return errors.New("shutting down")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := store.Ping(ctx); err != nil {
			return errors.New("store: " + err.Error())
		}
		if !mqttReady() {
			return errors.New("mqtt: not subscribed")
		}
		return nil
	}
}

// rss returns this process's resident set size in bytes (VmRSS from
// /proc/self/status), or 0 if it cannot be read (not Linux).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseUint(f[0], 10, 64)
		return n << 10
	}
	return 0
}

// publishRequest is the body of POST /api/publish.
type publishRequest struct {
	Room  string          `json:"room"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// maxPublishBody bounds a POST /api/publish body (the hub's default
// message size).
const maxPublishBody = 64 << 10

// publish publishes an event from an admin (POST /api/publish, body
// {"room","event","data"}), e.g. an announcement to the staff room. The
// X-Correlation-ID request header, if valid (printable ASCII, at most 128
// bytes), is the event's correlation ID, else a new one; it is returned in
// the same header and the body, and logged with the publish, so the event
// can be followed to the clients (their events' cid). With tracing on, a
// W3C traceparent header makes the span a child of the caller's.
func (a *api) publish(w http.ResponseWriter, r *http.Request, c *tokenClaims) {
	var req publishRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPublishBody)).Decode(&req); err != nil || req.Room == "" || req.Event == "" {
		httpError(w, http.StatusBadRequest, "bad_request", `want {"room","event","data"}`)
		return
	}
	if len(req.Data) == 0 {
		req.Data = json.RawMessage("null")
	}
	if rthub.ValidRoom(req.Event) != nil { // the hub's rule for event names; its error has no sentinel
		httpError(w, http.StatusBadRequest, "bad_request", "event: a name such as announcement or ops:notice")
		return
	}
	cid := r.Header.Get("X-Correlation-ID")
	if !printableASCII(cid, 128) {
		cid = newCorrelationID()
	}
	ctx, end := a.tracing.requestSpan(r, "POST /api/publish")
	ctx = withCorrelationID(ctx, cid)
	w.Header().Set("X-Correlation-ID", cid)
	err := a.pub.Publish(ctx, req.Room, req.Event, req.Data, rthub.WithCorrelationID(cid))
	status := http.StatusAccepted
	switch {
	case err == nil:
		a.log.InfoContext(ctx, "api: published", "user", c.Subject, "room", req.Room, "event", req.Event)
		writeJSON(w, status, map[string]string{"cid": cid})
	case errors.Is(err, rthub.ErrHubClosed):
		status = http.StatusServiceUnavailable
		httpError(w, status, "shutting_down", "server shutting down")
	case errors.Is(err, rthub.ErrBadRoom), errors.Is(err, rthub.ErrBadPayload):
		status = http.StatusBadRequest
		httpError(w, status, "bad_request", err.Error())
	default:
		status = http.StatusServiceUnavailable
		a.log.WarnContext(ctx, "api: publish", "user", c.Subject, "room", req.Room, "event", req.Event, "err", err)
		httpError(w, status, "unavailable", "publish failed")
	}
	end(status)
}

// printableASCII reports whether s is 1 to max bytes of printable ASCII.
func printableASCII(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
