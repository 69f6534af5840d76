package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/admin"
)

// The admin console (web/console.html) is a page for admins that never
// holds a token: it signs in with a user name and password to a server-side
// session, and its requests carry only the session cookie (HttpOnly, so the
// page's scripts cannot read it; SameSite=Strict, Path=/console/). The
// admin API it calls (package admin, under /console/api/) takes the session
// instead of a JWT. Cookies are ambient credentials, so the console refuses
// cross-site requests itself: every POST must be Content-Type
// application/json (the admin handler's rule; a cross-site form cannot send
// it without a CORS preflight, which this server never grants) and, when
// the browser sends an Origin header, from this server's origin.

const (
	consoleCookie = "rthub_console"
	// maxConsoleSessions bounds the sessions kept; at the bound, a new
	// sign-in drops the expired ones, then the oldest.
	maxConsoleSessions = 1024
)

// consoleSession is one signed-in admin.
type consoleSession struct {
	user, name string
	created    time.Time
	expires    time.Time
}

// consoleSessions are the console's sessions, in memory (a restart signs
// admins out): at most maxConsoleSessions, each valid for the token TTL.
type consoleSessions struct {
	ttl time.Duration
	mu  sync.Mutex
	m   map[string]consoleSession // by session ID (32 random bytes, base64url)
}

func newConsoleSessions(ttl time.Duration) *consoleSessions {
	return &consoleSessions{ttl: ttl, m: make(map[string]consoleSession)}
}

// create starts a session for u and returns its ID.
func (s *consoleSessions) create(u User, now time.Time) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	id := base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxConsoleSessions {
		oldest := ""
		for k, v := range s.m {
			if now.After(v.expires) {
				delete(s.m, k)
			} else if oldest == "" || v.created.Before(s.m[oldest].created) {
				oldest = k
			}
		}
		if len(s.m) >= maxConsoleSessions {
			delete(s.m, oldest)
		}
	}
	s.m[id] = consoleSession{user: u.Username, name: u.Name, created: now, expires: now.Add(s.ttl)}
	return id
}

// get returns the live session of r's cookie.
func (s *consoleSessions) get(r *http.Request, now time.Time) (consoleSession, bool) {
	c, err := r.Cookie(consoleCookie)
	if err != nil || len(c.Value) != 43 {
		return consoleSession{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, v := range s.m { // constant time in the ID: compare with each (at most 1024)
		if subtle.ConstantTimeCompare([]byte(id), []byte(c.Value)) == 1 {
			if now.After(v.expires) {
				delete(s.m, id)
				return consoleSession{}, false
			}
			return v, true
		}
	}
	return consoleSession{}, false
}

// end deletes the session of r's cookie, if any.
func (s *consoleSessions) end(r *http.Request) {
	if c, err := r.Cookie(consoleCookie); err == nil {
		s.mu.Lock()
		delete(s.m, c.Value)
		s.mu.Unlock()
	}
}

// consoleRoutes adds the console's routes to mux: the page, its sign-in
// and sign-out, and the admin API under /console/api/ on the session.
func (a *api) consoleRoutes(mux *http.ServeMux, adminOpts admin.Options) {
	sessions := newConsoleSessions(a.cfg.TokenTTL)
	mux.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, webSub(), "console.html")
	})
	mux.HandleFunc("POST /console/login", a.sameOrigin(func(w http.ResponseWriter, r *http.Request) { a.consoleLogin(w, r, sessions) }))
	mux.HandleFunc("POST /console/logout", a.sameOrigin(func(w http.ResponseWriter, r *http.Request) {
		sessions.end(r)
		http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: a.secureCookies(r)})
		w.WriteHeader(http.StatusNoContent)
	}))
	opts := adminOpts
	opts.Authorize = func(r *http.Request) (string, error) {
		s, ok := sessions.get(r, time.Now())
		if !ok {
			return "", admin.ErrUnauthenticated
		}
		// The user's roles now, not at sign-in: a demoted admin loses the
		// console at once.
		u, err := a.store.User(r.Context(), s.user)
		if err != nil || !slices.Contains(u.Roles, "admin") {
			return s.user, admin.ErrForbidden
		}
		return s.user, nil
	}
	mux.Handle("/console/api/", a.sameOrigin(http.StripPrefix("/console/api", admin.NewHandler(a.hub, opts)).ServeHTTP))
}

// consoleLogin signs an admin in: 204 and the session cookie; 401 for a
// wrong user name or password; 403, and no session, for a user who is not
// an admin. The response never holds a token.
func (a *api) consoleLogin(w http.ResponseWriter, r *http.Request, sessions *consoleSessions) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		httpError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type: application/json required")
		return
	}
	var req loginRequest
	if err := decodeStrict(w, r, maxLoginBody, &req); err != nil || req.Username == "" || len(req.Username) > 64 {
		httpError(w, http.StatusBadRequest, "bad_request", `want {"username","password"}`)
		return
	}
	u, err := login(r.Context(), a.store, req.Username, req.Password)
	if errors.Is(err, errBadLogin) {
		a.audit.add(AuditEntry{Kind: auditLoginFailed, Username: req.Username, Detail: "console: wrong user name or password", RemoteAddr: clientAddr(r)})
		httpError(w, http.StatusUnauthorized, "bad_login", err.Error())
		return
	}
	if err != nil {
		a.log.Error("console login", "err", err)
		httpError(w, http.StatusInternalServerError, "internal", "try again later")
		return
	}
	if !slices.Contains(u.Roles, "admin") {
		a.audit.add(AuditEntry{Kind: auditAdminDenied, Username: u.Username, Detail: "console sign-in: role admin required", RemoteAddr: clientAddr(r)})
		httpError(w, http.StatusForbidden, "forbidden", "the console is for admins only")
		return
	}
	id := sessions.create(u, time.Now())
	a.audit.add(AuditEntry{Kind: auditLogin, Username: u.Username, Detail: "console", RemoteAddr: clientAddr(r)})
	a.log.Info("console: signed in", "user", u.Username)
	http.SetCookie(w, &http.Cookie{Name: consoleCookie, Value: id, Path: "/console/", MaxAge: int(a.cfg.TokenTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: a.secureCookies(r)})
	writeJSON(w, http.StatusOK, map[string]string{"user": u.Username, "name": u.Name})
}

// secureCookies reports whether cookies get the Secure attribute: when the
// request came over TLS or the public URL is https.
func (a *api) secureCookies(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(a.cfg.PublicURL, "https://")
}

// sameOrigin refuses (403) a request other than GET or HEAD whose Origin
// header names another origin than the request's host: defence in depth
// against cross-site requests riding on the console's cookie.
func (a *api) sameOrigin(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && r.Method != http.MethodGet && r.Method != http.MethodHead {
			u, err := url.Parse(o)
			if err != nil || u.Host != r.Host {
				a.log.Warn("console: cross-origin request refused", slog.String("origin", truncateStr(o, 128)), slog.String("path", r.URL.Path))
				httpError(w, http.StatusForbidden, "forbidden", "cross-origin request")
				return
			}
		}
		fn(w, r)
	}
}

func truncateStr(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// revokedToken reports whether the hub refuses the request's bearer token
// as revoked ([rthub.Hub.Revoke]): the REST API then refuses it too, so a
// revoked token cannot be refreshed into a new one.
func (a *api) revokedToken(r *http.Request) bool {
	_, err := a.hub.VerifyRequest(r)
	return errors.Is(err, rthub.ErrTokenRevoked)
}

// brokerStats returns the admin API's view of b's stats: the memory
// broker's, or nil when b has none.
func brokerStats(b rthub.Broker) func() any {
	for range 8 { // wrappers of wrappers, boundedly

		if s, ok := b.(interface {
			Stats() rthub.MemoryBrokerStats
		}); ok {
			return func() any { return s.Stats() }
		}
		u, ok := b.(interface{ Unwrap() rthub.Broker })
		if !ok {
			return nil
		}
		b = u.Unwrap()
	}
	return nil
}
