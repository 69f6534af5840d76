package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
)

// loginToken signs user in over /api/login and returns their token.
func loginToken(t *testing.T, addr, user, password string) string {
	t.Helper()
	res, err := http.Post("http://"+addr+"/api/login", "application/json", strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, user, password)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil || res.StatusCode != http.StatusOK || tok.Token == "" {
		t.Fatalf("login %s: %d %v", user, res.StatusCode, err)
	}
	return tok.Token
}

// TestBrowser_Console runs e2e/console.mjs in headless Chromium against the
// real program: staff get no console (403); an admin's console shows the
// staff room's members and presence and a redacted live tail of its
// events, disconnects bob (his dashboard: close 4101) and revokes alice
// (her Go client and her dashboard: close 4102; her old token refused
// after); and no token ever reaches the console page (see the script).
func TestBrowser_Console(t *testing.T) {
	t.Parallel()
	node, dir := browserTools(t)
	env := baseEnv()
	env["SIM_DEVICES"] = "2"
	env["SIM_INTERVAL"] = "500ms"
	srv := startProcess(t, env)

	var (
		alice    *client.Client
		aliceTok string
	)
	defer func() {
		if alice != nil {
			alice.Close()
		}
	}()
	runBrowserScript(t, node, dir, "console.mjs", "http://"+srv.addr, 90*time.Second, func() string { return srv.err.String() }, func(line string) string {
		switch line {
		case "@@goclient":
			aliceTok = loginToken(t, srv.addr, "alice", "alice-pw")
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, "ws://"+srv.addr+"/ws", client.Options{Token: aliceTok, Rooms: []string{"staff"},
				Header: http.Header{"Origin": {"http://" + srv.addr}}})
			if err != nil {
				t.Fatalf("alice's Go client: %v", err)
			}
			alice = c
			return "@@goclient " + aliceTok
		case "@@publish":
			tok := loginToken(t, srv.addr, "admin", "admin-pw")
			body, _ := json.Marshal(map[string]any{"room": "staff", "event": "ops:notice", "data": map[string]any{
				"text": "console tail check", "password": "hunter2", "token": aliceTok,
			}})
			req, _ := http.NewRequest(http.MethodPost, "http://"+srv.addr+"/api/admin/publish", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tok)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted {
				t.Fatalf("POST /api/admin/publish: %d", res.StatusCode)
			}
			return "@@published " + tok
		case "@@goclient-closed":
			select {
			case <-alice.Done():
			case <-time.After(15 * time.Second):
				return "@@closed none"
			}
			code := rthub.CloseStatus(alice.Err())
			// Her old token is refused now: at the handshake, and by the
			// REST API (so it cannot be refreshed into a new one).
			verdict := "refused"
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if c, err := client.Dial(ctx, "ws://"+srv.addr+"/ws", client.Options{Token: aliceTok}); err == nil {
				c.Close()
				verdict = "accepted"
			} else if !errors.Is(err, rthub.ErrTokenRevoked) {
				t.Logf("alice's old token at the handshake: %v", err)
				verdict = "accepted"
			}
			req, _ := http.NewRequest(http.MethodPost, "http://"+srv.addr+"/api/token", nil)
			req.Header.Set("Authorization", "Bearer "+aliceTok)
			if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
				t.Logf("alice's old token at /api/token: %v %v", res.StatusCode, err)
				verdict = "accepted"
			} else {
				res.Body.Close()
			}
			return fmt.Sprintf("@@closed %d %s", code, verdict)
		}
		return ""
	})
}

func TestConsoleSessions(t *testing.T) {
	s := newConsoleSessions(time.Minute)
	t0 := time.Now()
	req := func(id string) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "/console/api/stats", nil)
		if id != "" {
			r.AddCookie(&http.Cookie{Name: consoleCookie, Value: id})
		}
		return r
	}
	first := s.create(User{Username: "admin"}, t0)
	for _, tt := range []struct {
		name string
		id   string
		at   time.Time
		ok   bool
	}{
		{"valid", first, t0.Add(time.Second), true},
		{"no cookie", "", t0, false},
		{"unknown", strings.Repeat("A", 43), t0, false},
		{"wrong length", first[:40], t0, false},
		{"expired", first, t0.Add(2 * time.Minute), false},
		{"expired stays gone", first, t0, false},
	} {
		if got, ok := s.get(req(tt.id), tt.at); ok != tt.ok || (ok && got.user != "admin") {
			t.Errorf("%s: %+v, %v; want ok %v", tt.name, got, ok, tt.ok)
		}
	}
	// The bound: the oldest session goes first.
	ids := make([]string, 0, maxConsoleSessions+1)
	for i := range maxConsoleSessions + 1 {
		ids = append(ids, s.create(User{Username: fmt.Sprint("u", i)}, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	if len(s.m) != maxConsoleSessions {
		t.Fatalf("%d sessions kept, want %d", len(s.m), maxConsoleSessions)
	}
	if _, ok := s.get(req(ids[0]), t0); ok {
		t.Error("the oldest session survived the bound")
	}
	if got, ok := s.get(req(ids[maxConsoleSessions]), t0); !ok || got.user != fmt.Sprint("u", maxConsoleSessions) {
		t.Error("the newest session is missing")
	}
	s.end(req(ids[1]))
	if _, ok := s.get(req(ids[1]), t0); ok {
		t.Error("an ended session is still valid")
	}
}

// TestConsole_requests: the console's sign-in and API refuse what a
// cross-site page could send, and answer without a token.
func TestConsole_requests(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	post := func(path, ctype, origin, cookie, body string) (int, http.Header, string) {
		req, _ := http.NewRequest(http.MethodPost, s.url(path), strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: consoleCookie, Value: cookie})
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b := new(bytes.Buffer)
		_, _ = b.ReadFrom(res.Body)
		return res.StatusCode, res.Header, b.String()
	}
	self := "http://" + s.addr
	admin := `{"username":"admin","password":"admin-pw"}`
	status, hdr, body := post("/console/login", "application/json", self, "", admin)
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: hdr}).Cookies() {
		if c.Name == consoleCookie {
			cookie = c
		}
	}
	if status != 200 || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/console/" {
		t.Fatalf("admin sign-in: %d %+v %s", status, cookie, body)
	}
	if strings.Contains(body, "eyJ") {
		t.Fatalf("the sign-in answer holds a token: %s", body)
	}
	tests := []struct {
		name, path, ctype, origin, cookie, body string
		status                                  int
	}{
		{"staff sign-in", "/console/login", "application/json", self, "", `{"username":"alice","password":"alice-pw"}`, 403},
		{"wrong password", "/console/login", "application/json", self, "", `{"username":"admin","password":"x"}`, 401},
		{"form sign-in", "/console/login", "application/x-www-form-urlencoded", self, "", `username=admin&password=admin-pw`, 415},
		{"unknown field", "/console/login", "application/json", self, "", `{"username":"admin","password":"admin-pw","x":1}`, 400},
		{"cross-site sign-in", "/console/login", "application/json", "http://evil.example", "", admin, 403},
		{"cross-site action", "/console/api/disconnect", "application/json", "http://evil.example", cookie.Value, `{"user":"alice"}`, 403},
		{"form action", "/console/api/disconnect", "text/plain", self, cookie.Value, `{"user":"alice"}`, 415},
		{"no session", "/console/api/disconnect", "application/json", self, "", `{"user":"alice"}`, 401},
		{"action", "/console/api/recheck", "application/json", self, cookie.Value, `{"user":"nobody"}`, 404},
	}
	for _, tt := range tests {
		if status, _, body := post(tt.path, tt.ctype, tt.origin, tt.cookie, tt.body); status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, status, body, tt.status)
		}
	}
	// The admin's token is no console credential; the console's cookie is
	// no credential of the token API.
	if code := s.do(t, "GET", "/console/api/stats", s.token(t, "admin"), nil, nil); code != 401 {
		t.Errorf("a token on the console API: %d, want 401", code)
	}
	var stats struct {
		Hub    map[string]any `json:"hub"`
		Broker map[string]any `json:"broker"`
	}
	if code := s.do(t, "GET", "/api/admin/stats", s.token(t, "admin"), nil, &stats); code != 200 || stats.Hub == nil || stats.Broker == nil {
		t.Errorf("an admin token on /api/admin/stats: %d, hub %v, broker %v; want 200 with both", code, stats.Hub != nil, stats.Broker)
	}
	if code := s.do(t, "GET", "/api/admin/stats", s.token(t, "alice"), nil, nil); code != 403 {
		t.Errorf("a staff token on /api/admin/: %d, want 403", code)
	}
	if status, _, _ := post("/console/logout", "", self, cookie.Value, ""); status != 204 {
		t.Errorf("sign-out: %d", status)
	}
	if status, _, _ := post("/console/api/recheck", "application/json", self, cookie.Value, `{"user":"nobody"}`); status != 401 {
		t.Errorf("after sign-out: %d, want 401", status)
	}
}
