package redisbroker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/redisbroker"
)

type idemReq struct {
	N int `json:"n"`
}

var (
	idemCall = rthub.NewRPC[idemReq, string]("idem:call")
	idemEmit = rthub.NewEvent[idemReq]("idem:emit")
)

var idemSecret = []byte("rthub-idem-test-secret-0123456789abcd")

// idemCluster is two hubs on one Redis whose handlers count their runs by
// key in one table; hold, while open, makes calls of n < 0 wait.
type idemCluster struct {
	hubs [2]*rthub.Hub
	urls [2]string
	addr [2]string

	mu   sync.Mutex
	runs map[string]int
	hold chan struct{}
}

func (ic *idemCluster) record(key string) {
	ic.mu.Lock()
	ic.runs[key]++
	ic.mu.Unlock()
}

func (ic *idemCluster) runsOf(key string) int {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	return ic.runs[key]
}

func startIdemCluster(t *testing.T) *idemCluster {
	t.Helper()
	url := redisURL(t)
	prefix := uniquePrefix(t, url)
	ic := &idemCluster{runs: map[string]int{}, hold: make(chan struct{})}
	for i := range ic.hubs {
		b, err := redisbroker.New(redisbroker.Options{Shards: []redisbroker.Shard{{URL: url}}, Prefix: prefix, ProbeInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		h, err := rthub.New(rthub.Options{
			Auth: rthub.AuthOptions{Keys: map[string]any{"": idemSecret}},
			Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {
				AutoJoin: []string{"staff"},
				Emit:     []rthub.EmitRule{{Events: []string{"idem:emit"}, Rooms: []string{"staff"}}},
				Call:     []string{"idem:*"},
			}}},
			Handlers: []rthub.Handler{idemEmit.Handle(func(_ context.Context, in rthub.Incoming[idemReq]) error {
				ic.record(fmt.Sprint("emit-", in.Data.N))
				return nil
			})},
			RPCs: []rthub.RPCHandler{idemCall.Handle(func(ctx context.Context, req rthub.Request[idemReq]) (string, error) {
				ic.record(req.Key)
				if req.Data.N < 0 {
					select {
					case <-ic.hold:
					case <-ctx.Done():
						return "", ctx.Err()
					}
				}
				time.Sleep(2 * time.Millisecond)
				return fmt.Sprintf("result %d from node %d", req.Data.N, i), nil
			})},
			Broker: b,
			Limits: rthub.Limits{Commands: -1, HandshakesPerUser: -1},
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(func() {
			h.Close()
			srv.Close()
		})
		ic.hubs[i], ic.addr[i] = h, strings.TrimPrefix(srv.URL, "http://")
		ic.urls[i] = "ws://" + ic.addr[i] + "/ws"
	}
	return ic
}

func idemToken(t *testing.T, sub string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "roles": []string{"staff"},
		"exp": time.Now().Add(time.Hour).Unix()}).SignedString(idemSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dialIdem(t *testing.T, url, sub string, opts client.Options) *client.Client {
	t.Helper()
	opts.Token = idemToken(t, sub)
	if opts.Backoff == (client.Backoff{}) {
		opts.Backoff = client.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	}
	c, err := client.Dial(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestIdempotencyAcrossNodes: with the Redis broker, a key's retry on the
// other node is answered from the first run, and a retry there during the
// first run waits for it: the handler runs once per key in the cluster.
func TestIdempotencyAcrossNodes(t *testing.T) {
	ic := startIdemCluster(t)
	ctx := t.Context()
	a := dialIdem(t, ic.urls[0], "alice", client.Options{})
	b := dialIdem(t, ic.urls[1], "alice", client.Options{})

	first, err := client.Call(ctx, a, idemCall, idemReq{N: 1}, client.WithKey("k1"))
	if err != nil || first != "result 1 from node 0" {
		t.Fatalf("first call = %q, %v", first, err)
	}
	again, err := client.Call(ctx, b, idemCall, idemReq{N: 1}, client.WithKey("k1"))
	if err != nil || again != first {
		t.Errorf("retry on node 1 = %q, %v; want the first result %q", again, err, first)
	}
	if n := ic.runsOf("k1"); n != 1 {
		t.Errorf("k1 ran %d times, want 1", n)
	}
	// Another user's same key is another key.
	if r, err := client.Call(ctx, dialIdem(t, ic.urls[1], "bob", client.Options{}), idemCall, idemReq{N: 1}, client.WithKey("k1")); err != nil || r != "result 1 from node 1" {
		t.Errorf("bob's k1 = %q, %v", r, err)
	}

	// A retry on node 1 during the run on node 0 waits for it.
	done := make(chan string, 2)
	go func() {
		r, _ := client.Call(ctx, a, idemCall, idemReq{N: -1}, client.WithKey("k2"))
		done <- r
	}()
	deadline := time.Now().Add(10 * time.Second)
	for ic.runsOf("k2") == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	go func() {
		r, _ := client.Call(ctx, b, idemCall, idemReq{N: -1}, client.WithKey("k2"))
		done <- r
	}()
	time.Sleep(200 * time.Millisecond) // node 1's call polls the running claim meanwhile
	close(ic.hold)
	r1, r2 := <-done, <-done
	if r1 != "result -1 from node 0" || r2 != r1 {
		t.Errorf("results %q and %q, want both from node 0's run", r1, r2)
	}
	if n := ic.runsOf("k2"); n != 1 {
		t.Errorf("k2 ran %d times, want 1", n)
	}
	if s := ic.hubs[1].Stats(); s.Replayed != 1 || s.Joined != 1 {
		t.Errorf("node 1: Replayed %d, Joined %d; want 1 and 1", s.Replayed, s.Joined)
	}

	// Emits too.
	for _, c := range []*client.Client{a, b} {
		if err := c.EmitOnce(ctx, "idem:emit", "staff", idemReq{N: 7}, client.WithKey("e7")); err != nil {
			t.Fatal(err)
		}
	}
	if n := ic.runsOf("emit-7"); n != 1 {
		t.Errorf("emit e7 ran %d times, want 1", n)
	}
}

// TestIdempotencyFlappingAcrossNodes is the flapping test behind a
// load balancer without affinity: a loopback proxy sends each new
// connection to the other node and cuts every connection every 200 ms.
func TestIdempotencyFlappingAcrossNodes(t *testing.T) {
	ic := startIdemCluster(t)
	close(ic.hold)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		next  int
		wg    sync.WaitGroup
	)
	cut := func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
	wg.Go(func() { // owner: this test; ended by closing ln
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			target := ic.addr[next%2]
			next++
			mu.Unlock()
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns[c], conns[up] = struct{}{}, struct{}{}
			mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
				mu.Lock()
				delete(conns, dst)
				delete(conns, src)
				mu.Unlock()
			}
			wg.Go(func() { pipe(up, c) })
			wg.Go(func() { pipe(c, up) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		cut()
		wg.Wait()
	})

	var reconnects atomic.Int64
	c := dialIdem(t, "ws://"+ln.Addr().String()+"/ws", "alice", client.Options{OnState: func(s client.State, _ error) {
		if s == client.Reconnecting {
			reconnects.Add(1)
		}
	}})
	stop := make(chan struct{})
	var cutter sync.WaitGroup
	cuts := 0
	cutter.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				cut()
				cuts++
			case <-stop:
				return
			}
		}
	})

	const ops, workers = 1000, 20
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	var failed atomic.Int64
	jobs := make(chan int)
	var ww sync.WaitGroup
	start := time.Now()
	for range workers {
		ww.Go(func() {
			for n := range jobs {
				if n%2 == 0 {
					r, err := client.Call(ctx, c, idemCall, idemReq{N: n}, client.WithKey(fmt.Sprint("call-", n)))
					if err != nil || !strings.HasPrefix(r, fmt.Sprintf("result %d from", n)) {
						failed.Add(1)
						t.Errorf("call %d = %q, %v", n, r, err)
					}
					continue
				}
				if err := client.EmitEventOnce(ctx, c, idemEmit, "staff", idemReq{N: n}, client.WithKey(fmt.Sprint("emit-", n))); err != nil {
					failed.Add(1)
					t.Errorf("emit %d: %v", n, err)
				}
			}
		})
	}
	pace := time.NewTicker(3 * time.Millisecond)
	for n := range ops {
		<-pace.C
		jobs <- n
	}
	pace.Stop()
	close(jobs)
	ww.Wait()
	elapsed := time.Since(start)
	close(stop)
	cutter.Wait()

	ic.mu.Lock()
	defer ic.mu.Unlock()
	twice, never, total := 0, 0, 0
	for n := range ops {
		key := fmt.Sprint("emit-", n)
		if n%2 == 0 {
			key = fmt.Sprint("call-", n)
		}
		switch r := ic.runs[key]; {
		case r == 0:
			never++
		case r > 1:
			twice++
		}
		total += ic.runs[key]
	}
	s0, s1 := ic.hubs[0].Stats(), ic.hubs[1].Stats()
	st := c.Outbox()
	t.Logf("flapping across two nodes (Go client, Redis broker): %d calls + %d emits in %v; cuts %d, reconnects %d "+
		"(each to the other node); sends %d, retries %d, expired %d; handler runs %d (keys run twice %d, never %d); "+
		"answered from memory: %d replayed + %d joined",
		ops/2, ops/2, elapsed.Round(time.Millisecond), cuts, reconnects.Load(), st.Sent, st.Retries, st.Expired,
		total, twice, never, s0.Replayed+s1.Replayed, s0.Joined+s1.Joined)
	if twice != 0 || never != 0 || failed.Load() != 0 {
		t.Errorf("exactly once failed across nodes: keys run twice %d, never %d; failed callers %d", twice, never, failed.Load())
	}
	if cuts < 10 {
		t.Errorf("only %d cuts", cuts)
	}
}
