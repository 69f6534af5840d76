package redisbroker_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/redisbroker"
)

type countHandler struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (h *countHandler) HandlePublication(rthub.Publication) {
	if h.n.Add(1) == h.want {
		close(h.done)
	}
}
func (h *countHandler) HandleResync([]string) {}

// BenchmarkPublishDeliver publishes b.N events of 256 bytes from 16
// goroutines on one node to 100 rooms that another node subscribed, through
// the real Redis, and stops the clock when that node's handler has them all.
func BenchmarkPublishDeliver(b *testing.B) {
	url := testenvURL(b)
	if url == "" {
		return
	}
	prefix := "rthubbench:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	ctx := context.Background()
	mk := func() *redisbroker.Broker {
		n, err := redisbroker.New(redisbroker.Options{Prefix: prefix, Shards: []redisbroker.Shard{{URL: url}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close(ctx) })
		return n
	}
	sub, pub := mk(), mk()
	h := &countHandler{want: int64(b.N), done: make(chan struct{})}
	sub.Start(ctx, h)
	rooms := make([]string, 100)
	for i := range rooms {
		rooms[i] = "bench:" + strconv.Itoa(i)
	}
	if err := sub.Subscribe(ctx, rooms...); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { deleteKeysTB(b, url, prefix) })
	data := make([]byte, 256)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if _, err := pub.Publish(ctx, rooms[i%100], rthub.Message{Data: data}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		b.Fatalf("delivered %d of %d", h.n.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}
