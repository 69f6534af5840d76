package redisbroker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/redisbroker"
)

var controlSecret = []byte("rthub-control-test-secret-0123456789")

// controlRoles is the application's role store of the control tests.
type controlRoles struct {
	mu    sync.Mutex
	roles map[string][]string
}

func (r *controlRoles) get(_ context.Context, id *rthub.Identity) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if roles, ok := r.roles[id.Subject]; ok {
		return roles, nil
	}
	return id.Roles, nil
}

func (r *controlRoles) set(sub string, roles ...string) {
	r.mu.Lock()
	r.roles[sub] = roles
	r.mu.Unlock()
}

// controlNode starts a hub on a Redis broker with staff and admin rooms.
func controlNode(t *testing.T, url, prefix string, roles *controlRoles) (*rthub.Hub, *redisbroker.Broker, string) {
	t.Helper()
	b, err := redisbroker.New(redisbroker.Options{Shards: []redisbroker.Shard{{URL: url}}, Prefix: prefix,
		ProbeInterval: 100 * time.Millisecond, NodeTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": controlSecret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"staff"}, AutoJoin: []string{"staff"}},
			"admin": {Join: []string{"staff", "admin"}, AutoJoin: []string{"staff", "admin"}},
		}},
		Broker: b,
		Roles:  roles.get,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, b, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func controlToken(t *testing.T, sub string, iat time.Time, roles ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "roles": roles,
		"iat": iat.Unix(), "exp": time.Now().Add(time.Hour).Unix()}).SignedString(controlSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func controlClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{Token: token})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectRevoked checks that a handshake with token is refused as revoked.
func expectRevoked(t *testing.T, url, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{Token: token})
	if err == nil {
		c.Close()
		t.Fatalf("Dial with a revoked token succeeded")
	}
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != 401 || he.Code != "token_revoked" {
		t.Fatalf("Dial with a revoked token: %v, want 401 token_revoked", err)
	}
}

// TestClusterControl: three hubs on one Redis. A revocation made on one
// closes the user's connections on all three with 4102 and every node
// refuses the token; a re-check after a demotion takes the user out of
// admin on every node; other users keep their connections.
func TestClusterControl(t *testing.T) {
	url := redisURL(t)
	prefix := uniquePrefix(t, url)
	roles := &controlRoles{roles: map[string][]string{}}
	var hubs []*rthub.Hub
	var urls []string
	for range 3 {
		h, _, u := controlNode(t, url, prefix, roles)
		hubs = append(hubs, h)
		urls = append(urls, u)
	}
	old := time.Now().Add(-time.Minute)
	var mallory, ann, bob []*client.Client
	for _, u := range urls {
		for range 3 {
			mallory = append(mallory, controlClient(t, u, controlToken(t, "mallory", old, "staff")))
		}
		ann = append(ann, controlClient(t, u, controlToken(t, "ann", old, "admin")))
		bob = append(bob, controlClient(t, u, controlToken(t, "bob", old, "staff")))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	res, err := hubs[0].Revoke(ctx, rthub.Revocation{Subject: "mallory", Reason: "stolen laptop"})
	if err != nil || res != (rthub.ControlResult{Connections: 9, Nodes: 3}) {
		t.Fatalf("Revoke = %+v, %v; want 9 connections on 3 nodes", res, err)
	}
	for _, c := range mallory {
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatal("a revoked client is still connected")
		}
		if code := rthub.CloseStatus(c.Err()); code != rthub.CloseTokenRevoked {
			t.Errorf("revoked client ended with %v (code %d), want 4102", c.Err(), code)
		}
	}
	for _, u := range urls {
		expectRevoked(t, u, controlToken(t, "mallory", old, "staff"))
	}
	// A token issued after the revocation works.
	controlClient(t, urls[2], controlToken(t, "mallory", time.Now().Add(2*time.Second), "staff"))

	roles.set("ann", "staff")
	res, err = hubs[1].ControlUser(ctx, "ann", rthub.UserAction{Kind: rthub.UserRecheck, Reason: "demoted"})
	if err != nil || res.Connections != 3 || res.Nodes != 3 {
		t.Fatalf("recheck = %+v, %v", res, err)
	}
	for i, c := range ann {
		eventually(t, 5*time.Second, fmt.Sprintf("ann's client %d leaves admin", i), func() bool {
			return !slices.Contains(c.Rooms(), "admin")
		})
	}
	for _, c := range bob {
		if err := c.Ping(ctx); err != nil {
			t.Errorf("bob's connection: %v", err)
		}
	}
	if n, err := hubs[2].DisconnectUser(ctx, "bob", "bye"); err != nil || n != 3 {
		t.Errorf("DisconnectUser = %d, %v", n, err)
	}
}

// A node whose control connection was lost reloads the revocations when it
// is back: a revocation stored meanwhile is enforced at its handshakes.
func TestClusterControl_ResyncReloadsRevocations(t *testing.T) {
	url := redisURL(t)
	prefix := uniquePrefix(t, url)
	roles := &controlRoles{roles: map[string][]string{}}
	_, brA, _ := controlNode(t, url, prefix, roles)
	hubB, brB, urlB := controlNode(t, url, prefix, roles)
	old := time.Now().Add(-time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// B reloads once its first control subscription is up (after New's
	// load): let that reload (one Redis call) be done before the record goes in.
	eventually(t, 10*time.Second, "B's control subscription is up", func() bool { return brB.Stats().Control.Resyncs > 0 })
	time.Sleep(500 * time.Millisecond)
	before := brB.Stats().Control.Resyncs

	// Stored, but never pushed: B only learns it by reloading. (The record
	// is the hub's format, docs/scaling.md.)
	rec := fmt.Sprintf(`{"sub":"eve","before":%d,"exp":%d}`, time.Now().UnixNano(), time.Now().Add(time.Hour).UnixNano())
	if err := brA.PutRevocation(ctx, []byte(rec), time.Hour); err != nil {
		t.Fatal(err)
	}
	controlClient(t, urlB, controlToken(t, "eve", old, "staff")) // not known to B yet
	if n := killClients(t, admin(t, url), brB.NodeID()); n == 0 {
		t.Fatal("no connection of node B to kill")
	}
	eventually(t, 10*time.Second, "B resyncs its control connection", func() bool {
		return brB.Stats().Control.Resyncs > before && brB.Stats().Control.Live
	})
	eventually(t, 10*time.Second, "B reloads the revocation", func() bool { return hubB.Stats().RevocationsKept == 1 })
	expectRevoked(t, urlB, controlToken(t, "eve", old, "staff"))
}
