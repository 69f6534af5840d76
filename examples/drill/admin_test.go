package drill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/admin"
	"github.com/org/rthub/client"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/redisbroker"
)

// adminNode is a hub on Redis with the admin API at /admin/ beside it.
type adminNode struct {
	hub  *rthub.Hub
	addr string
}

// adminSecret signs the tokens of TestAdminTwoNodes.
var adminSecret = []byte(strings.Repeat("a", 32))

// demotedUsers are the users whose current role is staff whatever their
// token says (Options.Roles, for re-check).
var demotedUsers sync.Map

func startAdminNode(t *testing.T, redisURL, prefix, id string) *adminNode {
	t.Helper()
	br, err := redisbroker.New(redisbroker.Options{Shards: []redisbroker.Shard{{URL: redisURL}}, Prefix: prefix, NodeID: prefix + id})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": adminSecret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {AutoJoin: []string{"staff"}},
			"admin": {AutoJoin: []string{"staff", "admin"}},
		}},
		Roles: func(_ context.Context, id *rthub.Identity) ([]string, error) {
			if _, ok := demotedUsers.Load(id.Subject); ok {
				return []string{"staff"}, nil
			}
			return id.Roles, nil
		},
		Broker: br,
	})
	if err != nil {
		_ = br.Close(context.Background())
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/admin/", http.StripPrefix("/admin", admin.NewHandler(hub, admin.Options{BrokerStats: func() any { return br.Stats() }})))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
	})
	return &adminNode{hub: hub, addr: srv.Listener.Addr().String()}
}

func adminToken(t *testing.T, sub string, roles ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "roles": roles, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(adminSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (n *adminNode) dial(t *testing.T, tok string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+n.addr+"/ws", client.Options{Token: tok})
	if err != nil {
		t.Fatalf("dial %s: %v", n.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (n *adminNode) call(t *testing.T, tok, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, "http://"+n.addr+"/admin"+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(res.Body).Decode(&m)
	return res.StatusCode, m
}

func closedWith(t *testing.T, who string, c *client.Client, want rthub.CloseCode) {
	t.Helper()
	select {
	case <-c.Done():
		if got := rthub.CloseStatus(c.Err()); got != want {
			t.Errorf("%s: stopped with %v (code %d), want %d", who, c.Err(), got, want)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("%s: still connected", who)
	}
}

// TestAdminTwoNodes runs two hubs on the shared Redis (RTHUB_REDIS_URL)
// with the admin API on each: a disconnect, a revocation and a re-check
// asked of one node act on both, and their results count the connections
// and nodes; the rooms endpoint counts each node's own members.
func TestAdminTwoNodes(t *testing.T) {
	redisURL := testenv.URL(t, testenv.Redis)
	prefix := uniquePrefix(t, redisURL)
	a := startAdminNode(t, redisURL, prefix, "a")
	b := startAdminNode(t, redisURL, prefix, "b")
	root := adminToken(t, "root", "admin")

	alice := []*client.Client{a.dial(t, adminToken(t, "alice", "staff")), a.dial(t, adminToken(t, "alice", "staff")), b.dial(t, adminToken(t, "alice", "staff"))}
	carolTok := adminToken(t, "carol", "admin")
	carol := []*client.Client{a.dial(t, carolTok), b.dial(t, carolTok)}
	dave := []*client.Client{a.dial(t, adminToken(t, "dave", "admin")), b.dial(t, adminToken(t, "dave", "admin"))}
	bob := b.dial(t, adminToken(t, "bob", "staff"))

	t.Run("roomsPerNode", func(t *testing.T) {
		for _, tt := range []struct {
			n             *adminNode
			staff, admins float64
		}{{a, 4, 2}, {b, 4, 2}} {
			status, m := tt.n.call(t, root, "GET", "/rooms", nil)
			got := map[string]float64{}
			for _, r := range m["rooms"].([]any) {
				got[r.(map[string]any)["name"].(string)] = r.(map[string]any)["members"].(float64)
			}
			if status != 200 || got["staff"] != tt.staff || got["admin"] != tt.admins {
				t.Errorf("GET /rooms on %s: %d %v, want staff %v, admin %v", tt.n.addr, status, got, tt.staff, tt.admins)
			}
		}
	})

	t.Run("disconnectFromA", func(t *testing.T) {
		status, m := a.call(t, root, "POST", "/disconnect", map[string]any{"user": "alice", "reason": "bye"})
		if status != 200 || m["connections"] != 3.0 || m["nodes"] != 2.0 || m["missing"] != 0.0 || m["complete"] != true {
			t.Fatalf("disconnect: %d %v", status, m)
		}
		for i, c := range alice {
			closedWith(t, fmt.Sprintf("alice's client %d", i), c, rthub.CloseDisconnected)
		}
	})

	t.Run("revokeFromB", func(t *testing.T) {
		// Carol's admin token works on A's admin API until it is revoked.
		if status, _ := a.call(t, carolTok, "GET", "/stats", nil); status != 200 {
			t.Fatalf("carol on A before: %d", status)
		}
		status, m := b.call(t, root, "POST", "/revoke", map[string]any{"user": "carol", "reason": "left the company"})
		if status != 200 || m["connections"] != 2.0 || m["nodes"] != 2.0 || m["complete"] != true {
			t.Fatalf("revoke: %d %v", status, m)
		}
		for i, c := range carol {
			closedWith(t, fmt.Sprintf("carol's client %d", i), c, rthub.CloseTokenRevoked)
		}
		if status, m := a.call(t, carolTok, "GET", "/stats", nil); status != 401 {
			t.Errorf("carol's revoked token on A's admin API: %d %v, want 401", status, m)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if c, err := client.Dial(ctx, "ws://"+a.addr+"/ws", client.Options{Token: carolTok}); err == nil {
			c.Close()
			t.Error("carol's revoked token connected to A")
		}
	})

	t.Run("recheckFromB", func(t *testing.T) {
		demotedUsers.Store("dave", true)
		defer demotedUsers.Delete("dave")
		status, m := b.call(t, root, "POST", "/recheck", map[string]any{"user": "dave"})
		if status != 200 || m["connections"] != 2.0 || m["nodes"] != 2.0 || m["complete"] != true {
			t.Fatalf("recheck: %d %v", status, m)
		}
		deadline := time.Now().Add(10 * time.Second)
		for a.hub.RoomMembers("admin") != 0 || b.hub.RoomMembers("admin") != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("dave still in admin: %d on A, %d on B", a.hub.RoomMembers("admin"), b.hub.RoomMembers("admin"))
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The hubs left the room; each client hears of it a moment later.
		for i, c := range dave {
			for slices.Contains(c.Rooms(), "admin") {
				if time.Now().After(deadline) {
					t.Fatalf("dave's client %d still lists admin: %v", i, c.Rooms())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := bob.Ping(ctx); err != nil {
		t.Errorf("bob lost his connection: %v", err)
	}
}
