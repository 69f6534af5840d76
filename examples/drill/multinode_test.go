package drill_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/examples/drill"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/redisbroker"
	"github.com/redis/rueidis"
)

// TestMultiNode runs two hubs in this process on the shared Redis
// (RTHUB_REDIS_URL, with a key prefix of its own): a publication on node A
// reaches the clients of node B, and a client that loses node A and lands on
// node B resumes there with nothing lost and nothing twice, in both kinds of
// room (joined automatically: resumed through the handshake; joined by the
// client: resumed by its join).
func TestMultiNode(t *testing.T) {
	redisURL := testenv.URL(t, testenv.Redis)
	prefix := uniquePrefix(t, redisURL)
	secret := []byte(strings.Repeat("s", 32))
	a := startHub(t, redisURL, prefix, "a", secret)
	b := startHub(t, redisURL, prefix, "b", secret)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("publishOnAReachesB", func(t *testing.T) {
		rec := newRecorder()
		c := dialRecorder(t, ctx, "ws://"+b.addr+"/ws", secret, "reader", "room:1", rec)
		defer c.Close()
		for i := 1; i <= 20; i++ {
			publish(t, a.hub, "room:1", int64(i))
			publish(t, a.hub, drill.BroadcastRoom, int64(i))
		}
		want := seq(1, 20)
		rec.wait(t, "room:1", want)
		rec.wait(t, drill.BroadcastRoom, want)
		if n := rec.resetCount(); n != 0 {
			t.Errorf("%d resets", n)
		}
	})

	t.Run("clientMovesAToB", func(t *testing.T) {
		// The client reaches the hubs through a switch, as through a load
		// balancer: first A, then, once A is gone, B.
		var target atomic.Pointer[url.URL]
		target.Store(&url.URL{Scheme: "http", Host: a.addr})
		lb := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target.Load())
		}})
		defer lb.Close()

		rec := newRecorder()
		c := dialRecorder(t, ctx, "ws"+strings.TrimPrefix(lb.URL, "http")+"/ws", secret, "mover", "room:2", rec)
		defer c.Close()

		// Publish on B all along, every 5 ms, in both rooms.
		var n atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // owner: this subtest; stopped by close(stop), waited for below
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				publish(t, b.hub, "room:2", i)
				publish(t, b.hub, drill.BroadcastRoom, 1000+i)
				n.Store(i)
			}
		})
		rec.waitLen(t, "room:2", 20)
		from := c.ConnID()
		target.Store(&url.URL{Scheme: "http", Host: b.addr})
		a.hub.Close() // node A crashes: its connections drop (1006)
		lostAt := n.Load()
		waitUntil(t, 10*time.Second, "the client to reconnect to B", func() bool {
			id := c.ConnID()
			return id != "" && id != from
		})
		if back := n.Load(); back <= lostAt {
			t.Fatalf("nothing was published while the client was away (%d, %d): the resume was not tested", lostAt, back)
		}
		rec.waitLen(t, "room:2", int(n.Load())+20) // live again, well after the seam
		close(stop)
		wg.Wait()
		last := n.Load()
		rec.wait(t, "room:2", seq(1, last))
		rec.wait(t, drill.BroadcastRoom, seq(1001, 1000+last))
		if r := rec.resetCount(); r != 0 {
			t.Errorf("%d resets: B should have replayed what the client missed", r)
		}
		st := b.hub.Stats()
		if st.Resumes == 0 {
			t.Error("node B counted no resume")
		}
		t.Logf("moved from A to B while %d publications went to each room; B: %d resumes, %d unrecovered", last, st.Resumes, st.Unrecovered)
	})
}

// testHub is one node: a hub on the Redis broker, served over HTTP.
type testHub struct {
	hub  *rthub.Hub
	addr string
}

func startHub(t *testing.T, redisURL, prefix, id string, secret []byte) *testHub {
	t.Helper()
	br, err := redisbroker.New(redisbroker.Options{
		Shards: []redisbroker.Shard{{URL: redisURL}}, Prefix: prefix, NodeID: prefix + id,
	})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"drill": {Join: []string{"room:*"}, AutoJoin: []string{drill.BroadcastRoom}},
		}},
		Broker: br,
	})
	if err != nil {
		_ = br.Close(context.Background())
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
	})
	return &testHub{hub: hub, addr: srv.Listener.Addr().String()}
}

func publish(t *testing.T, h *rthub.Hub, room string, n int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Publish(ctx, room, drill.SeqEvent, drill.SeqData{Seq: n}); err != nil {
		t.Errorf("publish %d to %s: %v", n, room, err)
	}
}

// recorder keeps what a client received, per room, and its resets.
type recorder struct {
	mu     sync.Mutex
	seqs   map[string][]int64
	resets int
}

func newRecorder() *recorder { return &recorder{seqs: make(map[string][]int64)} }

func (r *recorder) onEvent(ev client.Event) {
	var d drill.SeqData
	_ = json.Unmarshal(ev.Data, &d)
	r.mu.Lock()
	r.seqs[ev.Room] = append(r.seqs[ev.Room], d.Seq)
	r.mu.Unlock()
}

func (r *recorder) onReset(string) {
	r.mu.Lock()
	r.resets++
	r.mu.Unlock()
}

func (r *recorder) resetCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resets
}

func (r *recorder) get(room string) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs[room])
}

// waitLen waits until room has at least n events.
func (r *recorder) waitLen(t *testing.T, room string, n int) {
	t.Helper()
	waitUntil(t, 10*time.Second, fmt.Sprintf("%d events in %s", n, room), func() bool { return len(r.get(room)) >= n })
}

// wait waits until room has len(want) events and checks they are want,
// exactly: every number once, in order.
func (r *recorder) wait(t *testing.T, room string, want []int64) {
	t.Helper()
	r.waitLen(t, room, len(want))
	time.Sleep(50 * time.Millisecond) // anything extra (a duplicate) would arrive by now
	if got := r.get(room); !slices.Equal(got, want) {
		t.Errorf("%s: got %d events, want %d in order, once each; first difference: %s", room, len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(got, want []int64) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d got %d want %d", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

func seq(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func dialRecorder(t *testing.T, ctx context.Context, wsURL string, secret []byte, sub, room string, rec *recorder) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, wsURL, client.Options{
		TokenFunc: func(context.Context) (string, error) { return drill.Token(secret, sub, "drill") },
		Rooms:     []string{room},
		OnReset:   rec.onReset,
		// Come back after 200 ms, so that publications are missed meanwhile.
		Backoff: client.Backoff{Min: 200 * time.Millisecond, Jitter: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.On(drill.SeqEvent, rec.onEvent)
	return c
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// uniquePrefix returns a key prefix of this test's own and deletes its keys
// at the end (the shared Redis serves other tests too).
func uniquePrefix(t *testing.T, redisURL string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	p := "rthubdrill:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		opt, err := rueidis.ParseURL(redisURL)
		if err != nil {
			return
		}
		opt.DisableCache = true
		c, err := rueidis.NewClient(opt)
		if err != nil {
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for cursor := uint64(0); ; {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(p+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				return
			}
			if len(e.Elements) > 0 {
				c.Do(ctx, c.B().Del().Key(e.Elements...).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				return
			}
		}
	})
	return p
}
