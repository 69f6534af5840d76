package redisbroker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"slices"
	"strconv"
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

// slowHistory is a Redis broker whose history reads of one room (with a
// position: resumes and gap fills) take 3 s, as a slow shard or a large
// replay would.
type slowHistory struct {
	*redisbroker.Broker
	room  string
	delay time.Duration
	slow  atomic.Bool
}

func (s *slowHistory) History(ctx context.Context, room string, since rthub.StreamPosition, limit int) ([]rthub.Publication, rthub.StreamPosition, error) {
	if s.slow.Load() && room == s.room && !since.IsZero() {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, rthub.StreamPosition{}, ctx.Err()
		}
	}
	return s.Broker.History(ctx, room, since, limit)
}

type stamp struct {
	T int64 `json:"t"`
}

var stampEvent = rthub.NewEvent[stamp]("bench:stamp")

// BenchmarkSlowHistoryIsolation measures the delivery latency of a busy room
// (50 subscribers, 100 events/s) on a node whose broker is one real Redis
// shard, while resumes into another room on the same shard (10 events/s)
// read a history that takes 3 s each, back to back; and, as the baseline,
// with the same resumes fast. It reports p50/p99/max delivery latency in µs of the busy
// room. With the room lock held across the history read (before the core
// rework) the busy room's p99 grew to the history delay. b.N is ignored;
// run with -benchtime=1x.
func BenchmarkSlowHistoryIsolation(b *testing.B) {
	url := testenvURL(b)
	if url == "" {
		return
	}
	for _, slow := range []bool{false, true} {
		b.Run(fmt.Sprintf("slowHistory=%v", slow), func(b *testing.B) {
			for b.Loop() {
			}
			p50, p99, most, n := isolationRun(b, url, slow)
			b.ReportMetric(p50, "p50-µs")
			b.ReportMetric(p99, "p99-µs")
			b.ReportMetric(most, "max-µs")
			b.ReportMetric(float64(n), "deliveries")
		})
	}
}

func isolationRun(b *testing.B, url string, slow bool) (p50, p99, most float64, n int) {
	ctx := context.Background()
	prefix := "rthubiso:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	b.Cleanup(func() { deleteKeysTB(b, url, prefix) })
	rb, err := redisbroker.New(redisbroker.Options{Prefix: prefix, Shards: []redisbroker.Shard{{URL: url}}})
	if err != nil {
		b.Fatal(err)
	}
	br := &slowHistory{Broker: rb, room: "device:slow", delay: 3 * time.Second}
	secret := []byte("isolation-bench-secret-0123456789")
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff":   {Join: []string{"device:*"}},
			"resumer": {Join: []string{"device:slow"}, AutoJoin: []string{"device:slow"}},
		}},
		Broker:        br,
		BrokerTimeout: 10 * time.Second,
		Limits:        rthub.Limits{Commands: -1},
	})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	defer func() {
		srv.Close()
		hub.Close()
		rb.Close(ctx)
	}()
	ws := "ws" + strings.TrimPrefix(srv.URL, "http")
	token := func(sub, role string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "roles": []string{role},
			"exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}

	var mu sync.Mutex
	var lat []float64
	for i := range 50 {
		c, err := client.Dial(ctx, ws, client.Options{Token: token(fmt.Sprintf("sub%d", i), "staff"), Rooms: []string{"device:fast"}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		client.Handle(c, stampEvent, func(_ string, s stamp) {
			d := float64(time.Now().UnixNano()-s.T) / 1e3
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		})
	}
	// Give the slow room a stream to resume from.
	for range 3 {
		if err := stampEvent.Publish(ctx, hub, "device:slow", stamp{T: time.Now().UnixNano()}); err != nil {
			b.Fatal(err)
		}
	}
	_, pos, err := rb.History(ctx, "device:slow", rthub.StreamPosition{}, 0)
	if err != nil {
		b.Fatal(err)
	}
	br.slow.Store(slow)

	// Resumers: each connects resuming device:slow (auto-joined) from an
	// older position, so its join reads history (3 s when slow), back to
	// back for the whole run.
	stop := make(chan struct{})
	var resumers sync.WaitGroup
	for i := range 4 {
		resumers.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				since := rthub.StreamPosition{Offset: pos.Offset - 2, Epoch: pos.Epoch}
				dctx, cancel := context.WithTimeout(ctx, 8*time.Second)
				c, err := client.Dial(dctx, ws+"?since="+sinceParam("device:slow", since),
					client.Options{Token: token(fmt.Sprintf("res%d-%d", i, k), "resumer")})
				cancel()
				if err == nil {
					c.Close()
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)

	// The busy room: 100 events/s for 8 s; the slow room gets 10 events/s,
	// which this node's delivery must pass on while its history is read.
	tick := time.NewTicker(10 * time.Millisecond)
	for i := range 800 {
		<-tick.C
		if err := stampEvent.Publish(ctx, hub, "device:fast", stamp{T: time.Now().UnixNano()}); err != nil {
			b.Fatal(err)
		}
		if i%10 == 0 {
			if err := stampEvent.Publish(ctx, hub, "device:slow", stamp{T: time.Now().UnixNano()}); err != nil {
				b.Fatal(err)
			}
		}
	}
	tick.Stop()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	resumers.Wait()

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("nothing delivered")
	}
	q := func(f float64) float64 { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	return q(0.5), q(0.99), lat[len(lat)-1], len(lat)
}

// sinceParam is the handshake's since parameter for one room.
func sinceParam(room string, pos rthub.StreamPosition) string {
	b, _ := json.Marshal(map[string]rthub.StreamPosition{room: pos})
	return base64.RawURLEncoding.EncodeToString(b)
}
