package rthub

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockingHistory blocks the first history read (with a position) of one
// room until released, as a slow Redis shard or a long resume read would.
type blockingHistory struct {
	*MemoryBroker
	room    string
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (b *blockingHistory) History(ctx context.Context, room string, since StreamPosition, limit int) ([]Publication, StreamPosition, error) {
	if room == b.room && !since.IsZero() && b.armed.CompareAndSwap(true, false) {
		close(b.entered)
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, StreamPosition{}, ctx.Err()
		}
	}
	return b.MemoryBroker.History(ctx, room, since, limit)
}

// sameShard returns a room other than room that the memory broker delivers
// on the same shard (one publish and delivery at a time, as one Redis
// connection delivers many rooms).
func sameShard(mb *MemoryBroker, room string) string {
	for i := 0; ; i++ {
		other := fmt.Sprintf("device:fast%d", i)
		if mb.store.shard(other) == mb.store.shard(room) {
			return other
		}
	}
}

// A history read that blocks for one room (a resume into it) must not hold
// up delivery to other rooms, nor publishing to the room itself: before, the
// room's lock was held across the read, the broker's delivery of the room
// waited on it, and with it every room of the shard.
func TestSync_SlowHistoryDoesNotBlockDelivery(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	slow := "device:slow"
	fast := sameShard(mb, slow)
	bb := &blockingHistory{MemoryBroker: mb, room: slow, entered: make(chan struct{}), release: make(chan struct{})}
	h, url := testHub(t, func(o *Options) {
		o.Broker = bb
		o.BrokerTimeout = time.Minute
	})

	watcher := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	watcher.readType("welcome")
	joinSince(t, watcher, fast, nil)
	joinSince(t, watcher, slow, nil)
	publishN(t, h, slow, 1, 3)
	evs := watcher.roomEvents(slow, 3)

	// alice resumes from event 1: her history read blocks.
	alice := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	alice.readType("welcome")
	since := StreamPosition{Offset: evs[0].Offset, Epoch: evs[0].Epoch}
	bb.armed.Store(true)
	joined := make(chan joinReply, 1)
	go func() { joined <- joinSince(t, alice, slow, &since) }()
	<-bb.entered

	// While it blocks: publishing to the room and to another room of the
	// same shard returns, and the other members get both events.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i, room := range []string{slow, fast} {
		if err := h.Publish(ctx, room, "sensor:data", map[string]int{"n": 4 + i}); err != nil {
			t.Fatalf("publish to %s while a history read of %s blocks: %v", room, slow, err)
		}
	}
	checkSeq(t, watcher.roomEvents(slow, 1), 4)
	checkSeq(t, watcher.roomEvents(fast, 1), 5)
	select {
	case <-joined:
		t.Fatal("the join returned before its history read")
	default:
	}

	// Released: alice gets 2, 3 (replayed), then 4 (held for her), in order.
	close(bb.release)
	jr := <-joined
	if jr.Recovered == nil || !*jr.Recovered {
		t.Fatalf("join reply %+v, want recovered", jr)
	}
	checkSeq(t, alice.roomEvents(slow, 3), 2)
	publishN(t, h, slow, 6, 6)
	checkSeq(t, alice.roomEvents(slow, 1), 6)
}

// Resumes and leaves racing a stream of publications: every resuming
// client gets exactly the events after its position, in order, with no
// gap and no duplicate, whatever the interleaving.
func TestSync_ResumesUnderLoad(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{History: HistoryPolicy{Default: HistoryLimits{Size: 1000}}})
	if err != nil {
		t.Fatal(err)
	}
	h, url := testHub(t, func(o *Options) { o.Broker = mb })
	room := "device:load"
	first := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	first.readType("welcome")
	joinSince(t, first, room, nil)
	publishN(t, h, room, 1, 5)
	start := first.roomEvents(room, 5)[0]
	since := StreamPosition{Offset: start.Offset, Epoch: start.Epoch}

	const total = 300
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	pubs.Go(func() {
		for i := 6; i <= total; i++ {
			if err := h.Publish(context.Background(), room, "sensor:data", map[string]int{"n": i}); err != nil {
				t.Error(err)
				return
			}
			if i%20 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		close(stop)
	})
	var clients sync.WaitGroup
	for k := range 8 {
		clients.Go(func() {
			c := dial(t, url, testToken(t, fmt.Sprintf("u%d", k), time.Hour, "staff"))
			c.readType("welcome")
			time.Sleep(time.Duration(k) * 3 * time.Millisecond)
			if jr := joinSince(t, c, room, &since); jr.Recovered == nil || !*jr.Recovered {
				t.Errorf("client %d: %+v", k, jr)
				return
			}
			checkSeq(t, c.roomEvents(room, total-1), 2)
		})
	}
	clients.Wait()
	pubs.Wait()
	if n := h.Stats().Unrecovered; n != 0 {
		t.Errorf("Unrecovered = %d", n)
	}
}

// A resuming connection taken out of the room while it catches up leaves
// nothing behind: the join fails, and the room, empty, is removed and
// unsubscribed.
func TestSync_JoinerLeaves(t *testing.T) {
	t.Parallel()
	room := "device:gone"
	h, mb, bb, c, w := blockedResume(t, room, nil)
	if err := h.LeaveConn(t.Context(), w.Conn, room); err != nil {
		t.Fatal(err)
	}
	close(bb.release)
	for {
		m := c.read()
		if m.Type == "reply" && m.ID == 1 {
			if m.OK || m.Error == nil || m.Error.Code != "not_found" {
				t.Fatalf("join reply %+v, want not_found", m)
			}
			break
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	subscribed := func() bool {
		sh := mb.store.shard(room)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return len(sh.subs[room]) > 0
	}
	for slices.Contains(h.Rooms(), room) || subscribed() {
		if time.Now().After(deadline) {
			t.Fatalf("room %s still here after its only joiner left: rooms %v", room, h.Rooms())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Context semantics of the server-side calls: a call whose ctx has ended
// does nothing.
func TestServerCalls_CanceledContext(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	w := c.readType("welcome")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, call := range map[string]func() error{
		"JoinUser":  func() error { return h.JoinUser(ctx, "alice", "device:9") },
		"JoinConn":  func() error { return h.JoinConn(ctx, w.Conn, "device:9") },
		"LeaveUser": func() error { return h.LeaveUser(ctx, "alice", "staff") },
		"LeaveConn": func() error { return h.LeaveConn(ctx, w.Conn, "staff") },
		"DisconnectUser": func() error {
			_, err := h.DisconnectUser(ctx, "alice", "")
			return err
		},
	} {
		if err := call(); err != context.Canceled {
			t.Errorf("%s with a cancelled ctx: %v, want context.Canceled", name, err)
		}
	}
	if got := h.Rooms(); fmt.Sprint(got) != "[staff user:alice]" {
		t.Errorf("rooms %v: a call with a cancelled ctx acted", got)
	}
	if r := c.cmd("leave", map[string]any{"room": "staff"}); !r.OK {
		t.Errorf("still connected and in staff: %+v", r)
	}
}

// Each connection's context is what its hooks get, and it ends with the
// connection (a departed client's work is cancelled).
func TestConn_ContextCancelledAtTeardown(t *testing.T) {
	t.Parallel()
	got := make(chan context.Context, 1)
	after := make(chan error, 1)
	_, url := testHub(t, func(o *Options) {
		o.OnConnect = func(ctx context.Context, _ ConnInfo) { got <- ctx }
		o.OnDisconnect = func(ctx context.Context, _ ConnInfo, _ error) { after <- ctx.Err() }
	})
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	ctx := <-got
	if ctx.Err() != nil {
		t.Fatalf("context ended while connected: %v", ctx.Err())
	}
	c.c.CloseNow()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection's context was not cancelled at teardown")
	}
	if err := <-after; err != nil {
		t.Errorf("OnDisconnect got an ended context: %v", err)
	}
}

// Close does not wait for a resume's history read: the connection's context
// ends with the hub, and the read with it.
func TestSync_CloseDuringHistoryRead(t *testing.T) {
	t.Parallel()
	h, _, _, _, _ := blockedResume(t, "device:stuck", func(o *Options) { o.BrokerTimeout = time.Hour })
	done := make(chan struct{})
	go func() {
		h.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for a history read (BrokerTimeout 1 h)")
	}
}

// blockedResume starts a hub on a memory broker whose first history read of
// room blocks, publishes two events to room, and has alice resume from the
// first: it returns once her join's history read has started (and blocks
// until bb.release is closed). w is alice's welcome.
func blockedResume(t *testing.T, room string, mod func(*Options)) (h *Hub, mb *MemoryBroker, bb *blockingHistory, c *wsClient, w serverMsg) {
	t.Helper()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bb = &blockingHistory{MemoryBroker: mb, room: room, entered: make(chan struct{}), release: make(chan struct{})}
	h, url := testHub(t, func(o *Options) {
		o.Broker = bb
		if mod != nil {
			mod(o)
		}
	})
	publishN(t, h, room, 1, 2)
	_, pos, err := mb.History(t.Context(), room, StreamPosition{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	pos.Offset--
	c = dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	w = c.readType("welcome")
	bb.armed.Store(true)
	c.write(map[string]any{"id": 1, "op": "join", "room": room, "since": pos})
	<-bb.entered
	return h, mb, bb, c, w
}
