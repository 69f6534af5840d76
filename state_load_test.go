package rthub_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/internal/statejoin"
	"golang.org/x/time/rate"
)

var loadSecret = []byte("rthub-test-secret-0123456789abcdef")

// loadHub starts a hub on broker b behind an httptest server.
func loadHub(t *testing.T, b rthub.Broker) (*rthub.Hub, string) {
	t.Helper()
	h, err := rthub.New(rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": loadSecret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"viewer": {Join: []string{"device:**"}}}},
		Broker: b,
		Limits: rthub.Limits{HandshakesPerUser: rate.Inf, MaxConnsPerUser: 1 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { h.Close(); srv.Close() })
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestJoinStateLoad is issue #14's test at a size this machine runs in a
// few seconds (50 clients, 2,000 keyed events/s over 100 keys, 3 s), on one
// node and on two nodes of one in-memory cluster (redisbroker runs it on
// Redis). RTHUB_STATE_LOAD="clients=1000,rate=10000,keys=100,duration=10s"
// runs the stated size; see docs/state.md for what this machine sustains.
func TestJoinStateLoad(t *testing.T) {
	cfg, err := statejoin.FromEnv(statejoin.Config{Clients: 50, Rate: 2000, Keys: 100, Duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "load", "roles": []string{"viewer"}}).SignedString(loadSecret)
	if err != nil {
		t.Fatal(err)
	}
	for _, nodes := range []int{1, 2} {
		t.Run(map[int]string{1: "oneNode", 2: "twoNodes"}[nodes], func(t *testing.T) {
			mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{
				State: rthub.StatePolicy{Rules: []rthub.StateRule{{Pattern: "device:**"}}},
			})
			if err != nil {
				t.Fatal(err)
			}
			pub, url := loadHub(t, mb)
			c := cfg
			c.URLs, c.Token, c.Room = []string{url}, tok, "device:load"
			if nodes == 2 {
				_, url2 := loadHub(t, mb.Peer())
				c.URLs = append(c.URLs, url2)
			}
			c.Publish = func(ctx context.Context, r statejoin.Reading) error {
				return statejoin.Sensor.Publish(ctx, pub, c.Room, r, rthub.WithKey(r.K))
			}
			res, err := statejoin.Run(t.Context(), c)
			t.Logf("%d node(s): %v", nodes, res)
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() {
				t.Fatalf("not every client ended with the publisher's state, without gaps and duplicates: %v", res)
			}
		})
	}
}
