package promrthub_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/promrthub"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Probe is the request of the test RPC: Block makes its handler wait for a
// release.
type Probe struct {
	Block bool `json:"block"`
}

// probeRPC answers with the number of handler runs so far.
var probeRPC = rthub.NewRPC[Probe, int64]("device:probe", rthub.RPCTimeout(10*time.Second))

// metricsServer serves a registry holding a collector made with opts, and
// returns its URL.
func metricsServer(t *testing.T, opts promrthub.Options) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(promrthub.New(opts))
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}))
	t.Cleanup(ms.Close)
	return ms.URL
}

// TestCollector_callsAndRetries makes RPC calls with idempotency keys over
// real WebSocket clients: a first run, a retry after it (replayed) and a
// retry from another connection of the same user during it (joined), and
// checks rthub_rpc_calls_total and rthub_idempotent_retries_total against
// the calls made.
func TestCollector_callsAndRetries(t *testing.T) {
	t.Parallel()
	var runs atomic.Int64
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	hub, err := rthub.New(rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {AutoJoin: []string{"staff"}, Call: []string{"device:*"}}}},
		RPCs: []rthub.RPCHandler{probeRPC.Handle(func(ctx context.Context, req rthub.Request[Probe]) (int64, error) {
			n := runs.Add(1)
			if req.Data.Block {
				started <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			return n, nil
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(hub)
	t.Cleanup(func() { hub.Close(); hs.Close() })
	metricsURL := metricsServer(t, promrthub.Options{Hub: hub, MemoryLimit: -1})
	wsURL := "ws" + strings.TrimPrefix(hs.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Two connections of one user: idempotency keys are the user's.
	var cs [2]*client.Client
	for i := range cs {
		c, err := client.Dial(ctx, wsURL, client.Options{Token: token(t, "ops", "staff")})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
	}
	before := scrape(t, metricsURL)
	for _, name := range []string{"rthub_rpc_calls_total", "rthub_relayed_posts_total"} {
		if v, ok := value(before, name); !ok || v != 0 {
			t.Errorf("%s = %v (present %v) before any call, want 0", name, v, ok)
		}
	}
	for _, outcome := range []string{"replayed", "joined"} {
		if v, ok := value(before, "rthub_idempotent_retries_total", "outcome", outcome); !ok || v != 0 {
			t.Errorf("rthub_idempotent_retries_total{outcome=%q} = %v (present %v) before any call, want 0", outcome, v, ok)
		}
	}

	// A call without a retry, then the same key twice more: replayed.
	calls, replayed := 0, 0
	for i := range 3 {
		n, err := client.Call(ctx, cs[0], probeRPC, Probe{}, client.WithKey("first"))
		if err != nil || n != 1 {
			t.Fatalf("call %d with key first = %d, %v; want the first run's 1", i, n, err)
		}
		calls++
	}
	replayed += 2

	// A retry during the first run waits for it (joined). Whether the retry
	// reaches the hub before the run ends is up to the scheduler, so the
	// run is held until the retry has started and a little longer; a retry
	// that came too late is answered as replayed, counted, and tried again
	// with a new key.
	joined := 0
	for attempt := 1; joined == 0; attempt++ {
		if attempt > 5 {
			t.Fatalf("no retry joined a run in 5 attempts")
		}
		key := fmt.Sprintf("join-%d", attempt)
		results := make(chan int64, 2)
		errs := make(chan error, 2)
		call := func(c *client.Client) {
			n, err := client.Call(ctx, c, probeRPC, Probe{Block: true}, client.WithKey(key))
			results <- n
			errs <- err
		}
		s0 := hub.Stats()
		go call(cs[0])
		select {
		case <-started:
		case <-ctx.Done():
			t.Fatal("the blocking call did not start")
		}
		go call(cs[1])
		waitFor(t, "the retry to start", func() bool { return hub.Stats().Calls == s0.Calls+2 })
		time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
		release <- struct{}{}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("call with key %s: %v", key, err)
			}
		}
		if a, b := <-results, <-results; a != b {
			t.Fatalf("the call and its retry answered %d and %d, want the same run's", a, b)
		}
		calls += 2
		s1 := hub.Stats()
		joined += int(s1.Joined - s0.Joined)
		replayed += int(s1.Replayed - s0.Replayed)
		if s1.Joined-s0.Joined+s1.Replayed-s0.Replayed != 1 {
			t.Fatalf("attempt %d: joined +%d, replayed +%d; want one retry", attempt, s1.Joined-s0.Joined, s1.Replayed-s0.Replayed)
		}
		t.Logf("attempt %d: joined +%d, replayed +%d", attempt, s1.Joined-s0.Joined, s1.Replayed-s0.Replayed)
	}
	if got := runs.Load(); got != int64(calls-replayed-joined) {
		t.Errorf("handler ran %d times for %d calls, %d replayed and %d joined", got, calls, replayed, joined)
	}

	after := scrape(t, metricsURL)
	for _, want := range []struct {
		name   string
		labels []string
		n      int
	}{
		{"rthub_rpc_calls_total", nil, calls},
		{"rthub_idempotent_retries_total", []string{"outcome", "replayed"}, replayed},
		{"rthub_idempotent_retries_total", []string{"outcome", "joined"}, joined},
		{"rthub_relayed_posts_total", nil, 0},
	} {
		if v, ok := value(after, want.name, want.labels...); !ok || v != float64(want.n) {
			t.Errorf("%s%v = %v (present %v), want %d", want.name, want.labels, v, ok, want.n)
		}
	}
}

// TestCollector_relayedPosts runs two hubs (two nodes of one memory broker)
// behind a balancer that sends the HTTP stream's GET to node A and its
// POSTs to node B, which relays them to A: node B's
// rthub_relayed_posts_total counts them, node A's stays 0.
func TestCollector_relayedPosts(t *testing.T) {
	t.Parallel()
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var hubs [2]*rthub.Hub
	var metricsURLs [2]string
	for i, b := range []rthub.Broker{mb, mb.Peer()} {
		h, err := rthub.New(rthub.Options{
			Auth:       rthub.AuthOptions{Keys: map[string]any{"": secret}},
			Policy:     rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"device:*"}}}},
			Broker:     b,
			HTTPStream: rthub.HTTPStreamOptions{Enabled: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		hubs[i] = h
		metricsURLs[i] = metricsServer(t, promrthub.Options{Hub: h, MemoryLimit: -1})
	}
	lb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			hubs[1].ServeHTTP(w, r)
			return
		}
		hubs[0].ServeHTTP(w, r)
	}))
	t.Cleanup(lb.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(lb.URL, "http"), client.Options{Token: token(t, "eve", "staff"), Transport: client.TransportHTTPStream})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const posts = 3
	for i := range posts { // one POST per command
		if err := c.Join(ctx, fmt.Sprintf("device:%d", i)); err != nil {
			t.Fatalf("join %d through node B: %v", i, err)
		}
	}
	for i, want := range []int{0, posts} {
		if v, ok := value(scrape(t, metricsURLs[i]), "rthub_relayed_posts_total"); !ok || v != float64(want) {
			t.Errorf("node %c: rthub_relayed_posts_total = %v (present %v), want %d", 'A'+i, v, ok, want)
		}
	}
}
