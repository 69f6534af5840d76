package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
)

var testSecret = []byte("rthub-admin-test-secret-0123456789")

// env is a hub with the admin handler mounted at /admin/ beside it (/ws).
type env struct {
	hub   *rthub.Hub
	mb    *rthub.MemoryBroker
	srv   *httptest.Server
	admin *Handler
	logs  *syncBuffer
	refus *RefusalLog
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// demoted lists the users whose current role is staff whatever their token
// says (for re-check).
var demoted sync.Map

func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	e := &env{logs: &syncBuffer{}, refus: NewRefusalLog(8)}
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.mb = mb
	hub, err := rthub.New(rthub.Options{
		Broker: mb,
		Roles: func(_ context.Context, id *rthub.Identity) ([]string, error) {
			if _, ok := demoted.Load(id.Subject); ok {
				return []string{"staff"}, nil
			}
			return id.Roles, nil
		},
		Auth: rthub.AuthOptions{Keys: map[string]any{"": testSecret}},
		Policy: rthub.Policy{
			Roles: map[string]rthub.RoleRules{
				"staff": {Join: []string{"device:*"}, AutoJoin: []string{"staff", "user:{sub}"}},
				"admin": {Join: []string{"device:*", "admin"}, AutoJoin: []string{"staff", "admin", "user:{sub}"}},
			},
			Presence: []string{"staff"},
		},
		OnRefused: e.refus.Record,
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), Refusals: e.refus}
	if mod != nil {
		mod(&opts)
	}
	e.hub, e.admin = hub, NewHandler(hub, opts)
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/admin/", http.StripPrefix("/admin", e.admin))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		hub.Close()
		e.srv.Close()
	})
	return e
}

func token(t testing.TB, sub string, roles ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "roles": roles, "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// connect dials a Go client as sub with roles.
func (e *env) connect(t *testing.T, sub string, roles ...string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/ws", client.Options{Token: token(t, sub, roles...)})
	if err != nil {
		t.Fatalf("dial %s: %v", sub, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// call makes a request to the admin API; body, if not nil, is sent as JSON.
func (e *env) call(t *testing.T, tok, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+"/admin"+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); req.Method != http.MethodHead && ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %s", req.Method, req.URL.Path, ct, b)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("%s %s: Cache-Control %q", req.Method, req.URL.Path, resp.Header.Get("Cache-Control"))
	}
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %d, body not JSON: %s", req.Method, req.URL.Path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, m
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// validBody is a body each POST route accepts as well formed.
var validBody = map[string]any{
	"/publish":    map[string]any{"room": "staff", "event": "notice", "data": map[string]any{"text": "hi"}},
	"/disconnect": map[string]any{"user": "nobody"},
	"/revoke":     map[string]any{"user": "nobody"},
	"/recheck":    map[string]any{"user": "nobody"},
	"/join":       map[string]any{"user": "nobody", "room": "device:1"},
	"/leave":      map[string]any{"user": "nobody", "room": "device:1"},
}

// TestRoutes_refused iterates over the route table: every endpoint refuses a
// request without a token (401), with a bad token (401) and with a valid
// token that lacks the admin role (403), and does nothing for them. A new
// endpoint cannot be forgotten: it is in the table or not served.
func TestRoutes_refused(t *testing.T) {
	e := newEnv(t, nil)
	staff := token(t, "sam", "staff")
	admin := token(t, "ann", "admin")
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "eve", "roles": []string{"admin"}}).
		SignedString([]byte("another-secret-0123456789abcdefghij"))
	for _, rt := range routeTable {
		body := validBody[rt.path]
		if rt.method == http.MethodPost && body == nil {
			t.Fatalf("route %s %s: no validBody entry", rt.method, rt.path)
		}
		for _, tt := range []struct {
			name, tok string
			status    int
			code      string
		}{
			{"no token", "", http.StatusUnauthorized, "unauthorized"},
			{"forged token", forged, http.StatusUnauthorized, "unauthorized"},
			{"staff token", staff, http.StatusForbidden, "forbidden"},
		} {
			status, m := e.call(t, tt.tok, rt.method, rt.path, body)
			if status != tt.status || errCode(m) != tt.code {
				t.Errorf("%s %s with %s: %d %v, want %d %s", rt.method, rt.path, tt.name, status, m, tt.status, tt.code)
			}
		}
		if status, m := e.call(t, admin, rt.method, rt.path, body); status == http.StatusUnauthorized || status == http.StatusForbidden ||
			status == http.StatusNotFound && errCode(m) == "not_found" && m["error"].(map[string]any)["message"] == "no such endpoint" {
			t.Errorf("%s %s with an admin token: %d %v", rt.method, rt.path, status, m)
		}
	}
	if acts, total := e.admin.Actions(100); total != uint64(len(validBody)) {
		t.Errorf("actions recorded: %d %+v, want only the %d admin ones", total, acts, len(validBody))
	}
	if strings.Count(e.logs.String(), `"msg":"rthub admin: refused"`) != 3*len(routeTable) {
		t.Errorf("refused log lines: %d, want %d", strings.Count(e.logs.String(), `"msg":"rthub admin: refused"`), 3*len(routeTable))
	}
	// The same table with the application's own check.
	for _, fail := range []error{ErrForbidden, ErrUnauthenticated, errors.New("session store down")} {
		e := newEnv(t, func(o *Options) {
			o.Authorize = func(*http.Request) (string, error) { return "someone", fail }
		})
		want := http.StatusUnauthorized
		if errors.Is(fail, ErrForbidden) {
			want = http.StatusForbidden
		}
		for _, rt := range routeTable {
			if status, _ := e.call(t, admin, rt.method, rt.path, validBody[rt.path]); status != want {
				t.Errorf("Authorize %v: %s %s: %d, want %d", fail, rt.method, rt.path, status, want)
			}
		}
	}
}

func TestHandler_requests(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBody = 1024 })
	admin := token(t, "ann", "admin")
	raw := func(method, path, ctype, body string) (int, string) {
		req, _ := http.NewRequest(method, e.srv.URL+"/admin"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		status, m := do(t, req)
		return status, errCode(m)
	}
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code                            string
	}{
		{"unknown path", "GET", "/nope", "", "", 404, "not_found"},
		{"root", "GET", "/", "", "", 404, "not_found"},
		{"GET a POST route", "GET", "/publish", "", "", 405, "method_not_allowed"},
		{"POST a GET route", "POST", "/rooms", "application/json", "{}", 405, "method_not_allowed"},
		{"DELETE", "DELETE", "/disconnect", "", "", 405, "method_not_allowed"},
		{"no content type", "POST", "/disconnect", "", `{"user":"x"}`, 415, "unsupported_media_type"},
		{"form", "POST", "/disconnect", "application/x-www-form-urlencoded", `user=x`, 415, "unsupported_media_type"},
		{"text/plain", "POST", "/publish", "text/plain", `{"room":"staff","event":"x"}`, 415, "unsupported_media_type"},
		{"json with charset", "POST", "/disconnect", "application/json; charset=utf-8", `{"user":"nobody"}`, 404, "not_found"},
		{"unknown field", "POST", "/disconnect", "application/json", `{"user":"x","force":true}`, 400, "bad_request"},
		{"two objects", "POST", "/disconnect", "application/json", `{"user":"x"}{"user":"y"}`, 400, "bad_request"},
		{"array", "POST", "/disconnect", "application/json", `[{"user":"x"}]`, 400, "bad_request"},
		{"empty", "POST", "/disconnect", "application/json", ``, 400, "bad_request"},
		{"truncated", "POST", "/disconnect", "application/json", `{"user":"x"`, 400, "bad_request"},
		{"wrong type", "POST", "/disconnect", "application/json", `{"user":42}`, 400, "bad_request"},
		{"no user", "POST", "/disconnect", "application/json", `{}`, 400, "bad_request"},
		{"control char", "POST", "/disconnect", "application/json", `{"user":"a\u0000b"}`, 400, "bad_request"},
		{"long reason", "POST", "/disconnect", "application/json", `{"user":"x","reason":"` + strings.Repeat("r", 124) + `"}`, 400, "bad_request"},
		{"too large", "POST", "/publish", "application/json", `{"room":"staff","event":"x","data":"` + strings.Repeat("d", 1100) + `"}`, 413, "too_large"},
		{"bad room", "POST", "/publish", "application/json", `{"room":"a::b","event":"x"}`, 400, "bad_request"},
		{"bad event", "POST", "/publish", "application/json", `{"room":"staff","event":"x y"}`, 400, "bad_request"},
		{"bad data", "POST", "/publish", "application/json", `{"room":"staff","event":"x","data":}`, 400, "bad_request"},
		{"join bad room", "POST", "/join", "application/json", `{"user":"x","room":"a::b"}`, 400, "bad_request"},
		{"leave no room", "POST", "/leave", "application/json", `{"user":"x"}`, 400, "bad_request"},
		{"revoke both", "POST", "/revoke", "application/json", `{"user":"x","token_id":"j"}`, 400, "bad_request"},
		{"revoke nothing", "POST", "/revoke", "application/json", `{"reason":"x"}`, 400, "bad_request"},
		{"revoke future", "POST", "/revoke", "application/json", `{"user":"x","issued_before":"2999-01-01T00:00:00Z"}`, 400, "bad_request"},
		{"presence no room", "GET", "/presence", "", "", 400, "bad_request"},
		{"presence off", "GET", "/presence?room=device:1", "", "", 404, "presence_off"},
		{"history bad since", "GET", "/history?room=staff&since=abc", "", "", 400, "bad_request"},
		{"history bad limit", "GET", "/history?room=staff&limit=0", "", "", 400, "bad_request"},
		{"history limit too big", "GET", "/history?room=staff&limit=1001", "", "", 400, "bad_request"},
		{"rooms bad limit", "GET", "/rooms?limit=x", "", "", 400, "bad_request"},
		{"disconnect absent user", "POST", "/disconnect", "application/json", `{"user":"nobody"}`, 404, "not_found"},
		{"HEAD stats", "HEAD", "/stats", "", "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := raw(tt.method, tt.path, tt.ctype, tt.body)
			if status != tt.status || code != tt.code {
				t.Errorf("%d %q, want %d %q", status, code, tt.status, tt.code)
			}
		})
	}
	e.hub.Close()
	if status, code := raw("POST", "/publish", "application/json", `{"room":"staff","event":"x"}`); status != 503 || code != "shutting_down" {
		t.Errorf("publish on a closed hub: %d %s", status, code)
	}
}

func TestHandler_roomsPresenceStats(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.BrokerStats = func() any { return map[string]int{"answer": 42} } })
	admin := token(t, "ann", "admin")
	e.connect(t, "alice", "staff")
	e.connect(t, "alice", "staff")
	e.connect(t, "bob", "admin")

	status, m := e.call(t, admin, "GET", "/rooms", nil)
	if status != 200 {
		t.Fatalf("rooms: %d %v", status, m)
	}
	got := map[string]float64{}
	for _, r := range m["rooms"].([]any) {
		ri := r.(map[string]any)
		got[ri["name"].(string)] = ri["members"].(float64)
	}
	if fmt.Sprint(got) != "map[admin:1 staff:3 user:alice:2 user:bob:1]" || m["total"] != 4.0 || m["truncated"] != false {
		t.Fatalf("rooms = %v (%v)", got, m)
	}
	if status, m := e.call(t, admin, "GET", "/rooms?limit=2", nil); status != 200 || len(m["rooms"].([]any)) != 2 || m["truncated"] != true || m["total"] != 4.0 {
		t.Fatalf("rooms?limit=2: %d %v", status, m)
	}

	status, m = e.call(t, admin, "GET", "/presence?room=staff", nil)
	if status != 200 || m["count"] != 2.0 || len(m["users"].([]any)) != 2 {
		t.Fatalf("presence: %d %v", status, m)
	}

	status, m = e.call(t, admin, "GET", "/stats", nil)
	hub, _ := m["hub"].(map[string]any)
	if status != 200 || hub["Connections"] != 3.0 || hub["Users"] != 2.0 || m["broker"].(map[string]any)["answer"] != 42.0 {
		t.Fatalf("stats: %d %v", status, m)
	}
}

func TestHandler_publishAndHistory(t *testing.T) {
	e := newEnv(t, nil)
	admin := token(t, "ann", "admin")
	c := e.connect(t, "alice", "staff")
	got := make(chan client.Event, 4)
	c.On("notice", func(ev client.Event) { got <- ev })

	body := map[string]any{"room": "staff", "event": "notice", "data": map[string]any{
		"text": "maintenance at 10", "password": "hunter2", "nested": []any{map[string]any{"access_token": "abc.def.ghi", "n": 1.5}},
	}}
	if status, m := e.call(t, admin, "POST", "/publish", body); status != 202 || m["room"] != "staff" {
		t.Fatalf("publish: %d %v", status, m)
	}
	select {
	case ev := <-got: // clients get the payload as published: redaction is for the admin API only
		if !strings.Contains(string(ev.Data), "hunter2") || ev.Room != "staff" {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the client got no event")
	}

	status, m := e.call(t, admin, "GET", "/history?room=staff", nil)
	if status != 200 || len(m["publications"].([]any)) != 1 || m["reset"] != false {
		t.Fatalf("history: %d %v", status, m)
	}
	pub := m["publications"].([]any)[0].(map[string]any)
	b, _ := json.Marshal(pub["data"])
	if pub["event"] != "notice" || pub["offset"] != 1.0 ||
		string(b) != `{"nested":[{"access_token":"[redacted]","n":1.5}],"password":"[redacted]","text":"maintenance at 10"}` {
		t.Fatalf("history entry %v (data %s)", pub, b)
	}
	since := m["since"].(string)
	if !strings.HasPrefix(since, "1@") {
		t.Fatalf("since = %q", since)
	}
	// Tail: nothing new, then one.
	if status, m := e.call(t, admin, "GET", "/history?room=staff&since="+since, nil); status != 200 || len(m["publications"].([]any)) != 0 || m["since"] != since {
		t.Fatalf("tail, nothing new: %d %v", status, m)
	}
	e.call(t, admin, "POST", "/publish", map[string]any{"room": "staff", "event": "notice", "data": "two"})
	if status, m := e.call(t, admin, "GET", "/history?room=staff&since="+since, nil); status != 200 || len(m["publications"].([]any)) != 1 || !strings.HasPrefix(m["since"].(string), "2@") {
		t.Fatalf("tail, one new: %d %v", status, m)
	}
	// A position of another epoch: the newest, flagged reset.
	if status, m := e.call(t, admin, "GET", "/history?room=staff&since=1@other", nil); status != 200 || m["reset"] != true || len(m["publications"].([]any)) != 2 {
		t.Fatalf("tail from a lost position: %d %v", status, m)
	}

	acts, _ := e.admin.Actions(10)
	if len(acts) != 2 || acts[0].Action != "publish" || acts[0].Actor != "ann" || acts[0].Status != 202 || acts[0].Room != "staff" {
		t.Fatalf("actions %+v", acts)
	}
	if logs := e.logs.String(); !strings.Contains(logs, `"msg":"rthub admin: action","action":"publish","actor":"ann","status":202,"room":"staff","event":"notice"`) {
		t.Fatalf("no action log line in\n%s", logs)
	}
}

func TestHandler_disconnect(t *testing.T) {
	e := newEnv(t, nil)
	admin := token(t, "ann", "admin")
	a1, a2 := e.connect(t, "alice", "staff"), e.connect(t, "alice", "staff")
	bob := e.connect(t, "bob", "staff")
	status, m := e.call(t, admin, "POST", "/disconnect", map[string]any{"user": "alice", "reason": "policy"})
	if status != 200 || m["connections"] != 2.0 || m["complete"] != true || m["user"] != "alice" {
		t.Fatalf("disconnect: %d %v", status, m)
	}
	for _, c := range []*client.Client{a1, a2} {
		select {
		case <-c.Done():
			if code := rthub.CloseStatus(c.Err()); code != rthub.CloseDisconnected {
				t.Errorf("alice's client stopped with %v (code %d), want %d", c.Err(), code, rthub.CloseDisconnected)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("alice's client is still connected")
		}
	}
	if ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second); bob.Ping(ctx) != nil {
		cancel()
		t.Fatal("bob lost his connection")
	} else {
		cancel()
	}
	if !strings.Contains(e.logs.String(), `"action":"disconnect","actor":"ann","status":200,"user":"alice","reason":"policy","connections":2`) {
		t.Fatalf("no disconnect log line in\n%s", e.logs.String())
	}
}

func TestHandler_refusals(t *testing.T) {
	e := newEnv(t, nil)
	admin := token(t, "ann", "admin")
	c := e.connect(t, "sam", "staff")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Join(ctx, "admin"); !errors.Is(err, rthub.ErrForbidden) {
		t.Fatalf("join admin: %v", err)
	}
	status, m := e.call(t, admin, "GET", "/refusals", nil)
	if status != 200 || m["total"] != 1.0 {
		t.Fatalf("refusals: %d %v", status, m)
	}
	r := m["refusals"].([]any)[0].(map[string]any)
	if r["Op"] != "join" || r["Room"] != "admin" || r["Subject"] != "sam" || r["Code"] != "forbidden" {
		t.Fatalf("refusal %v", r)
	}
	e2 := newEnv(t, func(o *Options) { o.Refusals = nil })
	if status, m := e2.call(t, admin, "GET", "/refusals", nil); status != 404 || errCode(m) != "not_enabled" {
		t.Fatalf("refusals without a log: %d %v", status, m)
	}
}

func TestRing(t *testing.T) {
	for _, tt := range []struct {
		size, add, n int
		want         string
	}{
		{size: 3, add: 0, n: 5, want: "[]"},
		{size: 3, add: 2, n: 5, want: "[2 1]"},
		{size: 3, add: 3, n: 5, want: "[3 2 1]"},
		{size: 3, add: 7, n: 5, want: "[7 6 5]"},
		{size: 3, add: 7, n: 2, want: "[7 6]"},
		{size: 0, add: 7, n: 2, want: "[]"},
		{size: 3, add: 7, n: -1, want: "[]"},
	} {
		r := newRing[int](tt.size)
		for i := 1; i <= tt.add; i++ {
			r.add(i)
		}
		got, total := r.recent(tt.n)
		if fmt.Sprint(got) != tt.want || total != uint64(tt.add) {
			t.Errorf("size %d, %d added, recent(%d) = %v, %d; want %s, %d", tt.size, tt.add, tt.n, got, total, tt.want, tt.add)
		}
	}
}

// waitClosed waits for c to stop and checks its close code.
func waitClosed(t *testing.T, who string, c *client.Client, want rthub.CloseCode) {
	t.Helper()
	select {
	case <-c.Done():
		if code := rthub.CloseStatus(c.Err()); code != want {
			t.Errorf("%s's client stopped with %v (code %d), want %d", who, c.Err(), code, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s's client is still connected", who)
	}
}

func TestHandler_revoke(t *testing.T) {
	e := newEnv(t, nil)
	admin := token(t, "ann", "admin")
	a := e.connect(t, "alice", "staff")
	bob := e.connect(t, "bob", "staff")
	status, m := e.call(t, admin, "POST", "/revoke", map[string]any{"user": "alice", "reason": "stolen laptop"})
	if status != 200 || m["action"] != "revoke" || m["connections"] != 1.0 || m["nodes"] != 1.0 || m["complete"] != true {
		t.Fatalf("revoke: %d %v", status, m)
	}
	waitClosed(t, "alice", a, rthub.CloseTokenRevoked)
	// Her old token is refused from now: at the handshake, and by the admin API.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	old := token(t, "alice", "admin")
	time.Sleep(1100 * time.Millisecond) // iat has a resolution of a second: the new token is issued after the revocation
	if _, err := client.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/ws", client.Options{Token: old}); err == nil {
		t.Fatal("a revoked token connected")
	}
	if status, _ := e.call(t, old, "GET", "/stats", nil); status != 401 {
		t.Fatalf("the admin API took a revoked token: %d", status)
	}
	e.connect(t, "alice", "staff") // a token issued after the revocation
	if err := bob.Ping(ctx); err != nil {
		t.Fatalf("bob: %v", err)
	}
	// By token ID; a user with no connection is no error.
	if status, m := e.call(t, admin, "POST", "/revoke", map[string]any{"token_id": "jti-1"}); status != 200 || m["connections"] != 0.0 || m["token_id"] != "jti-1" {
		t.Fatalf("revoke by jti: %d %v", status, m)
	}
	acts, _ := e.admin.Actions(10)
	if len(acts) != 2 || acts[1].User != "alice" || acts[1].Result == nil || acts[1].Result.Connections != 1 || acts[1].Reason != "stolen laptop" {
		t.Fatalf("actions %+v", acts)
	}
}

func TestHandler_recheck(t *testing.T) {
	e := newEnv(t, nil)
	admin := token(t, "ann", "admin")
	carl := e.connect(t, "carl", "admin")
	if got := e.hub.RoomMembers("admin"); got != 1 {
		t.Fatalf("admin room has %d members", got)
	}
	demoted.Store("carl", true)
	t.Cleanup(func() { demoted.Delete("carl") })
	status, m := e.call(t, admin, "POST", "/recheck", map[string]any{"user": "carl"})
	if status != 200 || m["action"] != "recheck" || m["connections"] != 1.0 || m["complete"] != true {
		t.Fatalf("recheck: %d %v", status, m)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.hub.RoomMembers("admin") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("carl is still in admin: %v", carl.Rooms())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if status, m := e.call(t, admin, "POST", "/recheck", map[string]any{"user": "nobody"}); status != 404 || errCode(m) != "not_found" {
		t.Fatalf("recheck of nobody: %d %v", status, m)
	}
}

// silentNode is a control-plane node that never answers until released.
type silentNode struct{ release chan struct{} }

func (s silentNode) HandleControl(ctx context.Context, _ []byte) []byte {
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return []byte(`{"n":0}`)
}

func (silentNode) HandleControlResync() {}

type nopHandler struct{}

func (nopHandler) HandlePublication(rthub.Publication) {}
func (nopHandler) HandleResync([]string)               {}

// A node that does not answer within Options.Timeout: the action is done
// where it could be, answered 200 with complete false, and logged as a
// warning with code incomplete.
func TestHandler_incomplete(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Timeout = 300 * time.Millisecond })
	silent := e.mb.Peer()
	if err := silent.Start(t.Context(), nopHandler{}); err != nil {
		t.Fatal(err)
	}
	s := silentNode{release: make(chan struct{})}
	if err := silent.StartControl(t.Context(), "silent", s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(s.release)
		_ = silent.Close(context.Background())
	})
	a := e.connect(t, "alice", "staff")
	status, m := e.call(t, token(t, "ann", "admin"), "POST", "/disconnect", map[string]any{"user": "alice"})
	if status != 200 || m["complete"] != false || m["missing"] != 1.0 || m["nodes"] != 1.0 || m["connections"] != 1.0 {
		t.Fatalf("disconnect with a silent node: %d %v", status, m)
	}
	waitClosed(t, "alice", a, rthub.CloseDisconnected)
	acts, _ := e.admin.Actions(1)
	if len(acts) != 1 || acts[0].Code != "incomplete" || acts[0].Result.Complete {
		t.Fatalf("action %+v", acts)
	}
	if !strings.Contains(e.logs.String(), `"level":"WARN","msg":"rthub admin: action","action":"disconnect"`) {
		t.Fatalf("no warning in\n%s", e.logs.String())
	}
}

func TestHandler_joinLeave(t *testing.T) {
	e := newEnv(t, nil)
	admin := token(t, "ann", "admin")
	a1, a2 := e.connect(t, "alice", "staff"), e.connect(t, "alice", "staff")
	// Staff may not join admin themselves; the server-side join bypasses the policy.
	status, m := e.call(t, admin, "POST", "/join", map[string]any{"user": "alice", "room": "admin"})
	if status != 200 || m["connections"] != 2.0 || m["room"] != "admin" || m["complete"] != true {
		t.Fatalf("join: %d %v", status, m)
	}
	waitRooms := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			in1, in2 := slices.Contains(a1.Rooms(), "admin"), slices.Contains(a2.Rooms(), "admin")
			if in1 == want && in2 == want && (e.hub.RoomMembers("admin") == 2) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("in admin: %v %v, %d members; want %v", in1, in2, e.hub.RoomMembers("admin"), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitRooms(true)
	status, m = e.call(t, admin, "POST", "/leave", map[string]any{"user": "alice", "room": "admin"})
	if status != 200 || m["connections"] != 2.0 {
		t.Fatalf("leave: %d %v", status, m)
	}
	waitRooms(false)
}
