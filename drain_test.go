package rthub_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
)

var drainSecret = []byte("rthub-drain-test-secret-0123456789")

func drainHub(t *testing.T, ln net.Listener) (*rthub.Hub, *http.Server) {
	t.Helper()
	h, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": drainSecret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"device:*"}, AutoJoin: []string{"staff"}},
		}},
		DrainWindow: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return h, srv
}

// TestHub_GracefulDrain: 200 Go clients on a hub; Shutdown; a new hub on the
// same address. Every client is back within 30 s with its rooms, and the
// closes were spread over the drain window.
func TestHub_GracefulDrain(t *testing.T) {
	const n = 200
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	h1, srv1 := drainHub(t, ln)
	defer h1.Close()
	defer srv1.Close()

	var (
		mu        sync.Mutex
		closedAt  []time.Time
		connected atomic.Int64
	)
	clients := make([]*client.Client, n)
	got := make([]atomic.Int64, n)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for i := range n {
		sub := fmt.Sprintf("user%d", i)
		c, err := client.Dial(ctx, "ws://"+addr+"/", client.Options{
			TokenFunc: func(context.Context) (string, error) {
				return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
					"sub": sub, "roles": []string{"staff"}, "exp": time.Now().Add(time.Hour).Unix(),
				}).SignedString(drainSecret)
			},
			Rooms: []string{fmt.Sprintf("device:%d", i%10)},
			OnState: func(s client.State, err error) {
				switch s {
				case client.Reconnecting:
					if rthub.CloseStatus(err) == rthub.CloseGoingAway {
						mu.Lock()
						closedAt = append(closedAt, time.Now())
						mu.Unlock()
					}
				case client.Connected:
					connected.Add(1)
				}
			},
		})
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		c.On("ping:all", func(ev client.Event) { got[i].Add(1) })
		clients[i] = c
	}
	if c := connected.Load(); c != n {
		t.Fatalf("%d connected, want %d", c, n)
	}

	start := time.Now()
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	if err := h1.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	drainTook := time.Since(start)
	srv1.Close()

	// The same address, a new hub (a restarted node).
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h2, srv2 := drainHub(t, ln2)
	defer h2.Close()
	defer srv2.Close()

	for connected.Load() < 2*n {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("after 30 s only %d of %d clients are back", connected.Load()-n, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	backIn := time.Since(start)

	// Rooms restored: an event to each device room reaches every client.
	for d := range 10 {
		if err := h2.Publish(ctx, fmt.Sprintf("device:%d", d), "ping:all", nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		for got[i].Load() != 1 {
			if time.Since(start) > 45*time.Second {
				t.Fatalf("client %d did not get the event in its room after reconnecting", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(closedAt) != n {
		t.Fatalf("%d clients saw 1001, want %d", len(closedAt), n)
	}
	first, last := closedAt[0], closedAt[0]
	for _, at := range closedAt {
		if at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	if spread := last.Sub(first); spread < time.Second {
		t.Errorf("closes spread over %v, want most of the 2 s drain window", spread)
	}
	t.Logf("drain took %v; all %d clients back with rooms %v after Shutdown began", drainTook, n, backIn)
}
