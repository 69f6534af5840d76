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
