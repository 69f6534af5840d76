// Package libchoice measures the two Redis client libraries redisbroker could
// be built on, go-redis v9 and rueidis, doing what the broker does: publish
// through a Lua script (stream append + PUBLISH) and deliver over one pub/sub
// connection, and SUBSCRIBE/UNSUBSCRIBE churn that waits for Redis to confirm.
//
// It is its own module so the library that lost stays out of redisbroker's
// go.mod. Run it (it needs a Redis; it uses keys under a random prefix and
// deletes them):
//
//	cd redisbroker/libchoice
//	RTHUB_REDIS_URL=redis://127.0.0.1:6379/0 GOWORK=off go test -run '^$' -bench . -benchtime 20000x -count 3
//
// The results and the decision are in redisbroker/README.md.
package libchoice

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// publishLua is the broker's publish step: next offset, stream append with a
// bound and a TTL, then PUBLISH of "offset:payload".
const publishLua = `
local o = redis.call('hincrby', KEYS[1], 'o', 1)
redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[2], o, 'd', ARGV[1])
redis.call('pexpire', KEYS[2], ARGV[3])
redis.call('pexpire', KEYS[1], ARGV[4])
redis.call('publish', ARGV[5], o .. ':' .. ARGV[1])
return o
`

// lib is what the benchmarks need from a client library.
type lib interface {
	publish(ctx context.Context, meta, stream, channel, payload string) error
	// subscribe and unsubscribe return once Redis has confirmed every channel.
	subscribe(ctx context.Context, channels ...string) error
	unsubscribe(ctx context.Context, channels ...string) error
	close()
}

func redisURL(b testing.TB) string {
	u := os.Getenv("RTHUB_REDIS_URL")
	if u == "" {
		b.Skip("RTHUB_REDIS_URL not set")
	}
	return u
}

func prefix() string {
	var p [6]byte
	rand.Read(p[:])
	return "rthub-libchoice:" + hex.EncodeToString(p[:]) + ":"
}

// --- go-redis ---------------------------------------------------------------

type goRedis struct {
	c      *redis.Client
	script *redis.Script
	ps     *redis.PubSub
	onMsg  func(channel, payload string)
	mu     sync.Mutex
	wait   map[string]chan struct{} // "kind channel" -> closed on confirmation
	done   chan struct{}
}

func newGoRedis(b testing.TB, onMsg func(channel, payload string)) lib {
	opt, err := redis.ParseURL(redisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	opt.PoolSize = 64
	g := &goRedis{c: redis.NewClient(opt), script: redis.NewScript(publishLua), onMsg: onMsg,
		wait: map[string]chan struct{}{}, done: make(chan struct{})}
	if err := g.script.Load(context.Background(), g.c).Err(); err != nil {
		b.Fatal(err)
	}
	g.ps = g.c.Subscribe(context.Background())
	go g.receive()
	return g
}

func (g *goRedis) receive() {
	defer close(g.done)
	for {
		m, err := g.ps.Receive(context.Background())
		if err != nil {
			return // closed
		}
		switch m := m.(type) {
		case *redis.Message:
			g.onMsg(m.Channel, m.Payload)
		case *redis.Subscription:
			g.mu.Lock()
			if ch, ok := g.wait[m.Kind+" "+m.Channel]; ok {
				close(ch)
				delete(g.wait, m.Kind+" "+m.Channel)
			}
			g.mu.Unlock()
		}
	}
}

func (g *goRedis) publish(ctx context.Context, meta, stream, channel, payload string) error {
	return g.script.EvalSha(ctx, g.c, []string{meta, stream}, payload, 100, 60000, 120000, channel).Err()
}

func (g *goRedis) confirm(ctx context.Context, kind string, channels []string, send func() error) error {
	waits := make([]chan struct{}, len(channels))
	g.mu.Lock()
	for i, c := range channels {
		waits[i] = make(chan struct{})
		g.wait[kind+" "+c] = waits[i]
	}
	g.mu.Unlock()
	if err := send(); err != nil {
		return err
	}
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (g *goRedis) subscribe(ctx context.Context, channels ...string) error {
	return g.confirm(ctx, "subscribe", channels, func() error { return g.ps.Subscribe(ctx, channels...) })
}

func (g *goRedis) unsubscribe(ctx context.Context, channels ...string) error {
	return g.confirm(ctx, "unsubscribe", channels, func() error { return g.ps.Unsubscribe(ctx, channels...) })
}

func (g *goRedis) close() {
	g.ps.Close()
	<-g.done
	g.c.Close()
}

// --- rueidis ----------------------------------------------------------------

type rueidisLib struct {
	c      rueidis.Client
	script *rueidis.Lua
	dc     rueidis.DedicatedClient
	cancel func()
	hooks  <-chan error
}

func newRueidis(b testing.TB, onMsg func(channel, payload string)) lib {
	opt, err := rueidis.ParseURL(redisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		b.Fatal(err)
	}
	r := &rueidisLib{c: c, script: rueidis.NewLuaScript(publishLua)}
	r.dc, r.cancel = c.Dedicate()
	r.hooks = r.dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: func(m rueidis.PubSubMessage) {
		onMsg(m.Channel, m.Message)
	}})
	return r
}

func (r *rueidisLib) publish(ctx context.Context, meta, stream, channel, payload string) error {
	return r.script.Exec(ctx, r.c, []string{meta, stream}, []string{payload, "100", "60000", "120000", channel}).Error()
}

func (r *rueidisLib) subscribe(ctx context.Context, channels ...string) error {
	return r.dc.Do(ctx, r.dc.B().Subscribe().Channel(channels...).Build()).Error()
}

func (r *rueidisLib) unsubscribe(ctx context.Context, channels ...string) error {
	return r.dc.Do(ctx, r.dc.B().Unsubscribe().Channel(channels...).Build()).Error()
}

func (r *rueidisLib) close() {
	r.dc.Close()
	r.cancel()
	<-r.hooks
	r.c.Close()
}

var libs = []struct {
	name string
	new  func(testing.TB, func(channel, payload string)) lib
}{
	{"goredis", newGoRedis},
	{"rueidis", newRueidis},
}

// cleanup deletes every key under p.
func cleanup(b testing.TB, p string) {
	u, _ := url.Parse(redisURL(b))
	opt, _ := redis.ParseURL(u.String())
	c := redis.NewClient(opt)
	defer c.Close()
	ctx := context.Background()
	keys, _ := c.Keys(ctx, p+"*").Result()
	for k := range slices.Chunk(keys, 500) {
		c.Del(ctx, k...)
	}
}

// BenchmarkPublishDeliver publishes b.N payloads of 256 bytes to 100 rooms
// through the Lua script, from `publishers` goroutines, and stops the clock
// when the one pub/sub connection has received all of them. It reports
// deliveries per second and the publish-to-delivery latency percentiles.
func BenchmarkPublishDeliver(b *testing.B) {
	for _, publishers := range []int{1, 16, 64} {
		for _, l := range libs {
			b.Run(fmt.Sprintf("%s/publishers=%d", l.name, publishers), func(b *testing.B) {
				benchPublishDeliver(b, l.new, publishers)
			})
		}
	}
}

func benchPublishDeliver(b *testing.B, newLib func(testing.TB, func(string, string)) lib, publishers int) {
	p := prefix()
	defer cleanup(b, p)
	const rooms = 100
	var (
		got  atomic.Int64
		done = make(chan struct{})
		lat  = make([]time.Duration, 0, b.N)
		mu   sync.Mutex
		want = int64(b.N)
	)
	l := newLib(b, func(channel, payload string) {
		// payload is "offset:unixnano:padding"
		_, rest, _ := strings.Cut(payload, ":")
		ns, _, _ := strings.Cut(rest, ":")
		t, _ := strconv.ParseInt(ns, 10, 64)
		d := time.Duration(time.Now().UnixNano() - t)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
		if got.Add(1) == want {
			close(done)
		}
	})
	defer l.close()
	ctx := context.Background()
	channels := make([]string, rooms)
	for i := range channels {
		channels[i] = p + "c:" + strconv.Itoa(i)
	}
	if err := l.subscribe(ctx, channels...); err != nil {
		b.Fatal(err)
	}
	pad := strings.Repeat("x", 256-20)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < publishers; w++ {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= want {
					return
				}
				r := strconv.Itoa(int(i % rooms))
				payload := strconv.FormatInt(time.Now().UnixNano(), 10) + ":" + pad
				if err := l.publish(ctx, p+"m:"+r, p+"s:"+r, p+"c:"+r, payload); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("delivered %d of %d", got.Load(), want)
	}
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkChurn measures SUBSCRIBE+UNSUBSCRIBE of one channel, each waiting
// for Redis's confirmation, from 64 goroutines at once on one pub/sub
// connection (a hub whose members join and leave rooms), and the same in
// batches of 100 channels per command.
func BenchmarkChurn(b *testing.B) {
	for _, batch := range []int{1, 100} {
		for _, l := range libs {
			b.Run(fmt.Sprintf("%s/batch=%d", l.name, batch), func(b *testing.B) {
				benchChurn(b, l.new, batch)
			})
		}
	}
}

func benchChurn(b *testing.B, newLib func(testing.TB, func(string, string)) lib, batch int) {
	p := prefix()
	l := newLib(b, func(string, string) {})
	defer l.close()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	ops := int64(b.N) // channels subscribed and unsubscribed
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Go(func() {
			chans := make([]string, batch)
			for {
				i := next.Add(int64(batch)) - int64(batch)
				if i >= ops {
					return
				}
				for j := range chans {
					chans[j] = p + strconv.FormatInt(i+int64(j), 10)
				}
				if err := l.subscribe(ctx, chans...); err != nil {
					b.Error(err)
					return
				}
				if err := l.unsubscribe(ctx, chans...); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "channels/s")
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}

// BenchmarkTrim compares the Redis-side cost of the publish script with exact
// (MAXLEN n) and approximate (MAXLEN ~ n) stream trimming, history size 100,
// 64 B and 1 KiB payloads, from 16 publishers through rueidis. It reports the
// microseconds Redis spent per EVALSHA (from INFO commandstats, as a
// difference, so other clients of the server do not skew it much).
func BenchmarkTrim(b *testing.B) {
	for _, size := range []int{64, 1024} {
		for _, mode := range []string{"exact", "approx"} {
			b.Run(fmt.Sprintf("%s/payload=%d", mode, size), func(b *testing.B) { benchTrim(b, mode, size) })
		}
	}
}

func benchTrim(b *testing.B, mode string, size int) {
	{
		{
			lua := strings.Replace(publishLua, "'MAXLEN', '~',", map[string]string{"exact": "'MAXLEN',", "approx": "'MAXLEN', '~',"}[mode], 1)
			script := rueidis.NewLuaScript(lua)
			opt, _ := rueidis.ParseURL(redisURL(b))
			opt.DisableCache = true
			c, err := rueidis.NewClient(opt)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			p := prefix()
			defer cleanup(b, p)
			ctx := context.Background()
			payload := strings.Repeat("x", size)
			stat := func() (calls, usec float64) {
				s, _ := c.Do(ctx, c.B().Info().Section("commandstats").Build()).ToString()
				for _, line := range strings.Split(s, "\n") {
					if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:"); ok {
						for _, kv := range strings.Split(rest, ",") {
							k, v, _ := strings.Cut(kv, "=")
							f, _ := strconv.ParseFloat(v, 64)
							switch k {
							case "calls":
								calls = f
							case "usec":
								usec = f
							}
						}
					}
				}
				return
			}
			// Fill every room's stream first, so each publish trims.
			for r := range 100 {
				for range 120 {
					script.Exec(ctx, c, []string{p + "m:" + strconv.Itoa(r), p + "s:" + strconv.Itoa(r)}, []string{payload, "100", "60000", "120000", p + "c"})
				}
			}
			calls0, usec0 := stat()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 16 {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						r := strconv.Itoa(int(i % 100))
						if err := script.Exec(ctx, c, []string{p + "m:" + r, p + "s:" + r}, []string{payload, "100", "60000", "120000", p + "c"}).Error(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			calls1, usec1 := stat()
			b.ReportMetric((usec1-usec0)/(calls1-calls0), "redis-µs/publish")
			var mem, entries int64
			for r := range 100 {
				n, _ := c.Do(ctx, c.B().MemoryUsage().Key(p+"s:"+strconv.Itoa(r)).Samples(0).Build()).AsInt64()
				mem += n
				n, _ = c.Do(ctx, c.B().Xlen().Key(p+"s:"+strconv.Itoa(r)).Build()).AsInt64()
				entries += n
			}
			b.ReportMetric(float64(mem)/100, "stream-bytes/room")
			b.ReportMetric(float64(entries)/100, "entries/room")
		}
	}
}
