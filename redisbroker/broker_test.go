package redisbroker_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/brokertest"
	"github.com/org/rthub/redisbroker"
	"github.com/redis/rueidis"
)

func TestConformance(t *testing.T) {
	url := redisURL(t)
	prefix := uniquePrefix(t, url)
	brokertest.Run(t, func(t *testing.T) rthub.Broker {
		return node(t, redisbroker.Options{Prefix: prefix, History: brokertest.History(), State: brokertest.State()}, url)
	})
}

func TestConformanceSharded(t *testing.T) {
	url := redisURL(t)
	srv := startServerOrSkipToDB(t, url)
	prefix := uniquePrefix(t, url, srv)
	brokertest.Run(t, func(t *testing.T) rthub.Broker {
		return node(t, redisbroker.Options{Prefix: prefix, History: brokertest.History(), State: brokertest.State()}, url, srv)
	})
}

// startServerOrSkipToDB is secondShard with a server owned by t itself.
func startServerOrSkipToDB(t *testing.T, url string) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err == nil {
		return startServer(t).url()
	}
	t.Logf("no redis-server binary: the second shard is database 1 of %s", url)
	opt, _ := rueidis.ParseURL(url)
	return fmt.Sprintf("redis://%s/%d", opt.InitAddress[0], opt.SelectDB+1)
}

// Rooms are spread over the shards, and all of a room's keys are on the
// shard ShardOf names.
func TestShardPlacement(t *testing.T) {
	url := redisURL(t)
	srv := startServerOrSkipToDB(t, url)
	prefix := uniquePrefix(t, url, srv)
	b := node(t, redisbroker.Options{Prefix: prefix}, url, srv)
	names := []string{b.Stats().Shards[0].Name, b.Stats().Shards[1].Name}
	clients := map[string]rueidis.Client{names[0]: admin(t, url), names[1]: admin(t, srv)}
	ctx := context.Background()
	count := map[string]int{}
	for i := range 200 {
		room := "device:" + strconv.Itoa(i)
		if _, err := b.Publish(ctx, room, rthub.Message{Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		home := b.ShardOf(room)
		count[home]++
		for name, c := range clients {
			n, err := c.Do(ctx, c.B().Exists().Key(prefix+"{"+room+"}:m", prefix+"{"+room+"}:s").Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int64{true: 2, false: 0}[name == home]; n != want {
				t.Fatalf("room %s (shard %s): %d of its 2 keys on shard %s", room, home, n, name)
			}
		}
	}
	for _, name := range names {
		if count[name] < 60 {
			t.Errorf("shard %s holds %d of 200 rooms; want a fair share", name, count[name])
		}
	}
	// Another node with the shards listed the other way round agrees.
	other := node(t, redisbroker.Options{Prefix: prefix}, srv, url)
	for i := range 200 {
		room := "device:" + strconv.Itoa(i)
		if a, b := b.ShardOf(room), other.ShardOf(room); a != b {
			t.Fatalf("room %s: shard %s on one node, %s on another", room, a, b)
		}
	}
}

// Killing a node's Redis connections (a network blip): it reconnects,
// subscribes every room again and tells the handler, and whatever was
// published meanwhile is in history, so nothing is lost silently.
func TestClientKillResubscribes(t *testing.T) {
	url := redisURL(t)
	prefix := uniquePrefix(t, url)
	opts := redisbroker.Options{Prefix: prefix, History: brokertest.History()}
	a, rec := started(t, opts, url)
	pub := node(t, opts, url)
	ctx := context.Background()
	rooms := []string{"blip:1", "blip:2", "blip:3"}
	if err := a.Subscribe(ctx, rooms...); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(halt)
	wg.Go(func() { // a steady publisher on another node
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if _, err := pub.Publish(ctx, rooms[0], rthub.Message{Data: []byte(strconv.Itoa(i))}); err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
		}
	})
	rec.Wait(t, rooms[0], 20)
	if n := killClients(t, admin(t, url), a.NodeID()); n == 0 {
		t.Fatal("no connection of the node found to kill")
	}
	for _, r := range rooms {
		rec.WaitResync(t, r)
	}
	got := len(rec.Publications(rooms[0]))
	rec.Wait(t, rooms[0], got+20) // delivery goes on
	halt()

	last, err := pub.Publish(ctx, rooms[0], rthub.Message{Data: []byte("last")})
	if err != nil {
		t.Fatal(err)
	}
	rec.WaitOffset(t, rooms[0], last.Offset)
	st := a.Stats().Shards[0]
	if st.Resubscribes != 1 || !st.Connected || st.Rooms != 3 {
		t.Errorf("stats after the blip: %+v; want 1 resubscribe, connected, 3 rooms", st)
	}
	// What the handler missed is exactly what history has: a hub that
	// recovers from the last offset it saw at the resync loses nothing.
	live := rec.Publications(rooms[0])
	seen := map[uint64]bool{}
	for _, p := range live {
		seen[p.Offset] = true
	}
	var missing []uint64
	for off := live[0].Offset; off <= last.Offset; off++ {
		if !seen[off] {
			missing = append(missing, off)
		}
	}
	t.Logf("offsets %d..%d, %d missed live during the blip: %v", live[0].Offset, last.Offset, len(missing), missing)
	if len(missing) > 0 {
		since := rthub.StreamPosition{Offset: missing[0] - 1, Epoch: last.Epoch}
		pubs, _, err := pub.History(ctx, rooms[0], since, len(missing))
		if err != nil {
			t.Fatalf("History(%v): %v", since, err)
		}
		for i, p := range pubs {
			if p.Offset != missing[i] {
				t.Fatalf("history gives offset %d where %d was missed", p.Offset, missing[i])
			}
		}
	}
}

// Losing a room's keys (what FLUSHDB, a restart without persistence or an
// eviction does to it) is seen as an epoch change; losing only the stream as
// history gone; losing only the position starts a clean new stream.
func TestKeyLoss(t *testing.T) {
	url := redisURL(t)
	prefix := uniquePrefix(t, url)
	opts := redisbroker.Options{Prefix: prefix, History: brokertest.History()}
	a, rec := started(t, opts, url)
	b := node(t, opts, url)
	c := admin(t, url)
	ctx := context.Background()
	del := func(keys ...string) {
		t.Helper()
		for i := range keys {
			keys[i] = prefix + keys[i]
		}
		if err := c.Do(ctx, c.B().Del().Key(keys...).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	publishN := func(room string, n int) (last rthub.StreamPosition) {
		for i := range n {
			var err error
			if last, err = b.Publish(ctx, room, rthub.Message{Data: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		return last
	}

	t.Run("all keys", func(t *testing.T) {
		room := "lost:all"
		if err := a.Subscribe(ctx, room); err != nil {
			t.Fatal(err)
		}
		old := publishN(room, 5)
		rec.Wait(t, room, 5)
		del("{"+room+"}:m", "{"+room+"}:s")
		_, cur, err := b.History(ctx, room, old, -1)
		var ue *rthub.UnrecoverableError
		if !errors.As(err, &ue) || !ue.EpochChanged() || cur.Offset != 0 || cur.Epoch == old.Epoch {
			t.Fatalf("History after the keys were deleted: %v, %v; want an epoch change to offset 0", cur, err)
		}
		next := publishN(room, 1)
		if next != (rthub.StreamPosition{Offset: 1, Epoch: cur.Epoch}) {
			t.Fatalf("first publication after the loss at %v, want 1@%s", next, cur.Epoch)
		}
		if p := rec.Wait(t, room, 6)[5]; p.Position() != next {
			t.Fatalf("delivered at %v, want %v", p.Position(), next)
		}
	})
	t.Run("position only", func(t *testing.T) {
		room := "lost:meta"
		old := publishN(room, 3)
		del("{" + room + "}:m")
		next := publishN(room, 1)
		if next.Offset != 1 || next.Epoch == old.Epoch {
			t.Fatalf("after the position was lost: %v, want offset 1 in a new epoch", next)
		}
		pubs, _, err := b.History(ctx, room, rthub.StreamPosition{Epoch: next.Epoch}, -1)
		if err != nil || len(pubs) != 1 || pubs[0].Position() != next {
			t.Fatalf("history of the new stream: %v, %v; want only %v (the stale stream dropped)", pubs, err, next)
		}
	})
	t.Run("stream only", func(t *testing.T) {
		room := "lost:stream"
		last := publishN(room, 3)
		del("{" + room + "}:s")
		_, cur, err := b.History(ctx, room, rthub.StreamPosition{Offset: 1, Epoch: last.Epoch}, -1)
		var ue *rthub.UnrecoverableError
		if !errors.As(err, &ue) || ue.EpochChanged() || cur != last {
			t.Fatalf("History after the stream was deleted: %v, %v; want history gone, position kept", cur, err)
		}
		if pubs, cur, err := b.History(ctx, room, last, -1); err != nil || len(pubs) != 0 || cur != last {
			t.Fatalf("from the last position: %v, %v, %v", pubs, cur, err)
		}
	})
}

// A restart of Redis without persistence: the node resubscribes, the
// handler is told, and the lost streams show as epoch changes.
func TestRedisRestart(t *testing.T) {
	srv := startServer(t)
	opts := redisbroker.Options{Prefix: "rthub:", History: brokertest.History(), MaxReconnectDelay: 100 * time.Millisecond}
	a, rec := started(t, opts, srv.url())
	b := node(t, opts, srv.url())
	ctx := context.Background()
	room := "restart:1"
	if err := a.Subscribe(ctx, room); err != nil {
		t.Fatal(err)
	}
	var old rthub.StreamPosition
	for i := range 3 {
		old, _ = b.Publish(ctx, room, rthub.Message{Data: []byte(strconv.Itoa(i))})
	}
	rec.Wait(t, room, 3)
	srv.restart()
	rec.WaitResync(t, room)
	var next rthub.StreamPosition
	eventually(t, 10*time.Second, "a publish to succeed after the restart", func() bool {
		var err error
		next, err = b.Publish(ctx, room, rthub.Message{Data: []byte("after")})
		return err == nil
	})
	if next.Offset != 1 || next.Epoch == old.Epoch {
		t.Fatalf("first publication after the restart at %v; want offset 1 in a new epoch", next)
	}
	if p := rec.Wait(t, room, 4)[3]; p.Position() != next {
		t.Fatalf("delivered %v, want %v", p.Position(), next)
	}
	_, _, err := b.History(ctx, room, old, -1)
	var ue *rthub.UnrecoverableError
	if !errors.As(err, &ue) || !ue.EpochChanged() {
		t.Fatalf("History from before the restart: %v; want an epoch change", err)
	}
	if st := a.Stats().Shards[0]; st.Resubscribes < 1 || !st.Connected {
		t.Errorf("stats after the restart: %+v", st)
	}
}

// A pub/sub connection that stays open but receives nothing ("connected but
// deaf") is caught by the liveness probe; while it cannot subscribe again
// the broker reports it, and once it can it resubscribes and the handler
// recovers what it missed from history.
func TestDeafProbe(t *testing.T) {
	url := redisURL(t)
	opt, _ := rueidis.ParseURL(url)
	p := startProxy(t, opt.InitAddress[0])
	viaProxy := fmt.Sprintf("redis://%s/%d", p.addr(), opt.SelectDB)
	prefix := uniquePrefix(t, url)
	a, rec := started(t, redisbroker.Options{
		Prefix: prefix, ProbeInterval: 50 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond,
		CommandTimeout: 500 * time.Millisecond, MaxReconnectDelay: 100 * time.Millisecond,
		Shards: []redisbroker.Shard{{URL: viaProxy, Name: "main"}},
	})
	pub := node(t, redisbroker.Options{Prefix: prefix, Shards: []redisbroker.Shard{{URL: url, Name: "main"}}})
	ctx := context.Background()
	room := "deaf:1"
	if err := a.Subscribe(ctx, room); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a first probe to come back", func() bool {
		st := a.Stats()
		return st.Healthy() && !st.Shards[0].LastProbe.IsZero()
	})
	if rtt := a.Stats().Shards[0].ProbeRTT; rtt <= 0 || rtt > time.Second {
		t.Errorf("probe RTT %v", rtt)
	}
	before, _ := pub.Publish(ctx, room, rthub.Message{Data: []byte("before")})
	rec.WaitOffset(t, room, before.Offset)

	p.deaf.Store(true)
	start := time.Now()
	eventually(t, 5*time.Second, "the probe to report the connection deaf", func() bool { return a.Stats().Shards[0].Deaf })
	t.Logf("deaf after %v", time.Since(start).Round(time.Millisecond))
	during, _ := pub.Publish(ctx, room, rthub.Message{Data: []byte("during")})
	eventually(t, 5*time.Second, "the broker to find it cannot subscribe again", func() bool {
		st := a.Stats()
		return !st.Shards[0].Connected && !st.Healthy()
	})
	eventually(t, 5*time.Second, "a resubscribe attempt to fail", func() bool {
		return strings.Contains(a.Stats().Shards[0].LastError, "deadline exceeded")
	})
	if n := len(rec.Publications(room)); n != 1 {
		t.Fatalf("%d publications delivered through a deaf connection", n)
	}

	p.deaf.Store(false)
	rec.WaitResync(t, room)
	eventually(t, 5*time.Second, "the broker to be healthy again", func() bool { return a.Stats().Healthy() })
	after, _ := pub.Publish(ctx, room, rthub.Message{Data: []byte("after")})
	rec.WaitOffset(t, room, after.Offset)
	missed, _, err := a.History(ctx, room, before, -1)
	if err != nil || len(missed) != 2 || missed[0].Position() != during {
		t.Fatalf("History since %v: %v, %v; want %v and %v", before, missed, err, during, after)
	}
	st := a.Stats().Shards[0]
	if st.Resubscribes < 1 || st.LastError == "" {
		t.Errorf("stats: %+v", st)
	}
	t.Logf("stats after recovery: %+v", st)
}

// Subscribe waits for a connection that is down, and returns once the rooms
// are subscribed on the restored one.
func TestSubscribeWhileDisconnected(t *testing.T) {
	srv := startServer(t)
	a, rec := started(t, redisbroker.Options{MaxReconnectDelay: 50 * time.Millisecond, CommandTimeout: 300 * time.Millisecond}, srv.url())
	ctx := context.Background()
	if err := a.Subscribe(ctx, "x:1"); err != nil {
		t.Fatal(err)
	}
	srv.kill()
	eventually(t, 5*time.Second, "the broker to see the server gone", func() bool { return !a.Stats().Shards[0].Connected })
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := a.Subscribe(short, "x:2"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe with the server down: %v, want DeadlineExceeded", err)
	}
	subscribed := make(chan error, 1)
	go func() { subscribed <- a.Subscribe(ctx, "x:3") }()
	srv.start()
	if err := <-subscribed; err != nil {
		t.Fatalf("Subscribe across the restart: %v", err)
	}
	// The resync is told on the connection's goroutine, which may still be on
	// its way there when Subscribe's confirmation came back.
	eventually(t, 5*time.Second, "the resync", func() bool { return len(rec.Resyncs()) > 0 })
	resyncs := rec.Resyncs()
	if len(resyncs) != 1 || !slices.Equal(resyncs[0], []string{"x:1", "x:2", "x:3"}) {
		t.Fatalf("resyncs %v, want one of x:1 x:2 x:3", resyncs)
	}
	var pos rthub.StreamPosition
	eventually(t, 5*time.Second, "a publish to succeed after the restart", func() bool {
		var err error
		pos, err = a.Publish(ctx, "x:3", rthub.Message{Data: []byte("hi")}) // the first may fail on the dead connection
		return err == nil
	})
	rec.WaitOffset(t, "x:3", pos.Offset)
}

// Many concurrent Subscribe/Unsubscribe calls on one node end in the state
// of the last call for each room.
func TestSubscribeChurn(t *testing.T) {
	url := redisURL(t)
	prefix := uniquePrefix(t, url)
	a, rec := started(t, redisbroker.Options{Prefix: prefix}, url)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 50 {
				room := fmt.Sprintf("churn:%d", (w*50+i)%100)
				if err := a.Subscribe(ctx, room); err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := a.Unsubscribe(ctx, room); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	// Settle every room: odd ones subscribed, even ones not.
	for i := range 100 {
		room := fmt.Sprintf("churn:%d", i)
		if i%2 == 1 {
			if err := a.Subscribe(ctx, room); err != nil {
				t.Fatal(err)
			}
		} else if err := a.Unsubscribe(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Stats().Shards[0].Rooms; n != 50 {
		t.Fatalf("%d rooms subscribed, want 50", n)
	}
	c := admin(t, url)
	chans, err := c.Do(ctx, c.B().PubsubChannels().Pattern(prefix+"{churn:*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != 50 {
		t.Fatalf("Redis has %d channels subscribed, want 50", len(chans))
	}
	for i := range 100 {
		if _, err := a.Publish(ctx, fmt.Sprintf("churn:%d", i), rthub.Message{Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	for i := range 100 {
		room := fmt.Sprintf("churn:%d", i)
		if n := len(rec.Publications(room)); n != i%2 {
			t.Errorf("room %s: %d publications", room, n)
		}
	}
}

func TestOptionsInvalid(t *testing.T) {
	tests := []struct {
		name string
		opts redisbroker.Options
		want string
	}{
		{"no shards", redisbroker.Options{}, "no shards"},
		{"bad url", redisbroker.Options{Shards: []redisbroker.Shard{{URL: "http://x"}}}, "shard 0"},
		{"duplicate names", redisbroker.Options{Shards: []redisbroker.Shard{{URL: "redis://a:1"}, {URL: "redis://b:1", Name: "a:1/0"}}}, "used twice"},
		{"brace", redisbroker.Options{Prefix: "x{", Shards: []redisbroker.Shard{{URL: "redis://a:1"}}}, "brace"},
		{"history", redisbroker.Options{History: rthub.HistoryPolicy{Rules: []rthub.HistoryRule{{Pattern: "a::b"}}}, Shards: []redisbroker.Shard{{URL: "redis://a:1"}}}, "rule 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := redisbroker.New(tt.opts)
			if !errors.Is(err, rthub.ErrInvalidOptions) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v; want ErrInvalidOptions mentioning %q", err, tt.want)
			}
		})
	}
}

// TestWireFormat pins what a publication with metadata looks like in Redis
// (README "Keys"), and that readers tolerate what a later version may add:
// unknown stream fields, unknown metadata items; a format they do not know
// is dropped, malformed metadata in history is not replayed.
func TestWireFormat(t *testing.T) {
	url := redisURL(t)
	prefix := uniquePrefix(t, url)
	opts := redisbroker.Options{Prefix: prefix, History: brokertest.History()}
	a, rec := started(t, opts, url)
	c := admin(t, url)
	ctx := context.Background()
	const room = "wire:1"
	stream, channel := prefix+"{"+room+"}:s", prefix+"{"+room+"}"
	if err := a.Subscribe(ctx, room); err != nil {
		t.Fatal(err)
	}
	msg := rthub.Message{Data: []byte(`{"n":1}`), Except: "c1", Header: map[string]string{"traceparent": "00-ab-cd-01", "a": ""}}
	first, err := a.Publish(ctx, room, msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, room, rthub.Message{Data: []byte("plain")}); err != nil {
		t.Fatal(err)
	}
	entries, err := c.Do(ctx, c.B().Xrange().Key(stream).Start("-").End("+").Build()).AsXRange()
	if err != nil || len(entries) != 2 {
		t.Fatalf("stream: %v, %v", entries, err)
	}
	want := []map[string]string{
		{"d": `{"n":1}`, "m": "x2:c1k1:av0:k11:traceparentv11:00-ab-cd-01"},
		{"d": "plain"}, // no metadata, no field
	}
	for i, e := range entries {
		if !maps.Equal(e.FieldValues, want[i]) {
			t.Errorf("stream entry %s: %q, want %q", e.ID, e.FieldValues, want[i])
		}
	}

	// What a later version may write: an unknown field, an unknown item.
	if err := c.Do(ctx, c.B().Xadd().Key(stream).Id("3-0").FieldValue().
		FieldValue("d", "later").FieldValue("m", "q3:newx2:c2").FieldValue("z", "?").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	publishRaw := func(msg string) {
		t.Helper()
		if err := c.Do(ctx, c.B().Publish().Channel(channel).Message(msg).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	e := first.Epoch
	publishRaw("9:3:" + e + ":a format from the future") // dropped
	publishRaw("2:3:" + e + ":11:q3:newx2:c2later")
	publishRaw("1:4:" + e + ":format 1") // what an older node sends
	if err := c.Do(ctx, c.B().Hset().Key(prefix+"{"+room+"}:m").FieldValue().FieldValue("o", "3").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	live := rec.Wait(t, room, 4)
	if p := live[2]; p.Offset != 3 || string(p.Data) != "later" || p.Except != "c2" || p.Header != nil {
		t.Errorf("live offset 3: %+v", p)
	}
	if p := live[3]; p.Offset != 4 || string(p.Data) != "format 1" || p.Except != "" || p.Header != nil {
		t.Errorf("live offset 4: %+v", p)
	}
	if p := live[0]; p.Except != msg.Except || !maps.Equal(p.Header, msg.Header) {
		t.Errorf("live offset 1: %+v", p)
	}
	pubs, _, err := a.History(ctx, room, rthub.StreamPosition{Offset: 2, Epoch: e}, -1)
	if err != nil || len(pubs) != 1 || string(pubs[0].Data) != "later" || pubs[0].Except != "c2" || pubs[0].Header != nil {
		t.Fatalf("history of the entry with unknown parts: %+v, %v", pubs, err)
	}

	// Malformed metadata (only outside interference writes it): not replayed.
	if err := c.Do(ctx, c.B().Xadd().Key(stream).Id("4-0").FieldValue().
		FieldValue("d", "bad").FieldValue("m", "x9:c").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Hset().Key(prefix+"{"+room+"}:m").FieldValue().FieldValue("o", "4").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if pubs, _, err := a.History(ctx, room, rthub.StreamPosition{Offset: 3, Epoch: e}, -1); !errors.Is(err, rthub.ErrUnrecoverable) {
		t.Fatalf("history of a malformed entry: %+v, %v; want ErrUnrecoverable", pubs, err)
	}
}
