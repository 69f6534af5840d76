package drill_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/internal/statejoin"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/redisbroker"
)

// TestJoinStateTwoNodes is issue #14's join-with-state test on Redis:
// clients join through two nodes (two hubs, each with its own broker on one
// Redis) while keyed events are published through the first; every client
// ends with the publisher's state, without a gap or a duplicate after its
// snapshot. The default size runs in a few seconds; RTHUB_STATE_LOAD
// overrides it (see package internal/statejoin). It lives in this module,
// which uses the workspace's root module, because redisbroker's tests see
// the root module at its released version, which lacks internal/statejoin.
func TestJoinStateTwoNodes(t *testing.T) {
	url := testenv.URL(t, testenv.Redis)
	prefix := uniquePrefix(t, url)
	cfg, err := statejoin.FromEnv(statejoin.Config{Clients: 50, Rate: 2000, Keys: 100, Duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("rthub-statejoin-secret-0123456789")
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "load", "roles": []string{"viewer"}}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	state := rthub.StatePolicy{Rules: []rthub.StateRule{{Pattern: "device:**"}}}
	var hubs []*rthub.Hub
	for range 2 {
		b, err := redisbroker.New(redisbroker.Options{Prefix: prefix, State: state, Shards: []redisbroker.Shard{{URL: url}}})
		if err != nil {
			t.Fatal(err)
		}
		h, err := rthub.New(rthub.Options{
			Auth:   rthub.AuthOptions{Keys: map[string]any{"": secret}},
			Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"viewer": {Join: []string{"device:**"}}}},
			Broker: b,
			Limits: rthub.Limits{HandshakesPerUser: 1e9, MaxConnsPerUser: 1 << 20},
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(func() {
			h.Close()
			srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := b.Close(ctx); err != nil {
				t.Errorf("broker close: %v", err)
			}
		})
		hubs = append(hubs, h)
		cfg.URLs = append(cfg.URLs, "ws"+strings.TrimPrefix(srv.URL, "http"))
	}
	cfg.Token, cfg.Room = tok, "device:load"
	cfg.Publish = func(ctx context.Context, r statejoin.Reading) error {
		return statejoin.Sensor.Publish(ctx, hubs[0], cfg.Room, r, rthub.WithKey(r.K))
	}
	res, err := statejoin.Run(t.Context(), cfg)
	t.Logf("two nodes on Redis: %v", res)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("not every client ended with the publisher's state, without gaps and duplicates: %v", res)
	}
}
