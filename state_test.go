package rthub

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// stateBrokerOpts keeps state for device rooms.
var stateBrokerOpts = MemoryBrokerOptions{State: StatePolicy{Rules: []StateRule{{Pattern: "device:**"}}}}

func newStateBroker(t *testing.T) *MemoryBroker {
	t.Helper()
	mb, err := NewMemoryBroker(stateBrokerOpts)
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

type reading struct {
	K string `json:"k"`
	V int    `json:"v"`
}

func publishKeyed(t *testing.T, h *Hub, room string, rs ...reading) {
	t.Helper()
	for _, r := range rs {
		if err := h.Publish(t.Context(), room, "sensor:data", r, WithKey(r.K)); err != nil {
			t.Fatal(err)
		}
	}
}

type stateReply struct {
	joinReply
	State []eventMsg `json:"state"`
	Has   bool       `json:"-"`
}

// joinState sends a join with state (and since, if given) and returns its
// reply; events that came before it are stashed for roomEvents.
func joinState(t *testing.T, c *wsClient, room string, since *StreamPosition) (stateReply, *ReplyError) {
	t.Helper()
	c.nextID++
	f := map[string]any{"id": c.nextID, "op": "join", "room": room, "state": true}
	if since != nil {
		f["since"] = since
	}
	c.write(f)
	var r serverMsg
	for {
		b := c.readRaw()
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if r.Type == "reply" && r.ID == c.nextID {
			break
		}
		c.stash = append(c.stash, b)
	}
	if !r.OK {
		return stateReply{}, r.Error
	}
	var sr stateReply
	if err := json.Unmarshal(r.Data, &sr); err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(r.Data, &raw)
	_, sr.Has = raw["state"]
	return sr, nil
}

func readingsOf(t *testing.T, evs []eventMsg) string {
	t.Helper()
	var parts []string
	for _, e := range evs {
		var r reading
		if err := json.Unmarshal(e.Data, &r); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, fmt.Sprintf("%s=%d@%d", r.K, r.V, e.Offset))
	}
	return strings.Join(parts, " ")
}

// A join with state gets the latest event per key with the position, then
// exactly the events after it.
func TestJoinState_Snapshot(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, func(o *Options) { o.Broker = newStateBroker(t) })
	publishKeyed(t, h, "device:1", reading{"a", 1}, reading{"b", 2}, reading{"a", 3})
	if err := h.Publish(t.Context(), "device:1", "note", "unkeyed"); err != nil {
		t.Fatal(err)
	}
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	r, rerr := joinState(t, c, "device:1", nil)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if got := readingsOf(t, r.State); got != "b=2@2 a=3@3" || r.Offset != 4 || r.Epoch == "" {
		t.Fatalf("snapshot %q at %d@%s, want b=2@2 a=3@3 at 4", got, r.Offset, r.Epoch)
	}
	for _, e := range r.State {
		if e.Type != "event" || e.Event != "sensor:data" || e.Room != "device:1" || e.Epoch != r.Epoch {
			t.Fatalf("snapshot entry %+v is not the event as delivered", e)
		}
	}
	publishKeyed(t, h, "device:1", reading{"c", 5})
	evs := c.roomEvents("device:1", 1)
	if got := readingsOf(t, evs); got != "c=5@5" {
		t.Fatalf("after the snapshot: %s, want c=5@5", got)
	}
}

// A room without a state rule (or a broker without state) answers the join
// without "state"; a room the role may not join gets no state either.
func TestJoinState_NoStateAndForbidden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		broker func(t *testing.T) Broker
		room   string
	}{
		{"roomWithoutRule", func(t *testing.T) Broker { return newStateBroker(t) }, "staff"},
		{"brokerWithoutState", func(t *testing.T) Broker { return &historyOnly{newStateBroker(t)} }, "device:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, url := testHub(t, func(o *Options) { o.Broker = tc.broker(t) })
			publishKeyed(t, h, tc.room, reading{"a", 1})
			c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
			c.readType("welcome")
			r, rerr := joinState(t, c, tc.room, nil)
			if rerr != nil || r.Has || r.Offset != 1 {
				t.Fatalf("join with state: %+v %v; want ok at offset 1 without state", r, rerr)
			}
		})
	}
	h, url := testHub(t, func(o *Options) { o.Broker = newStateBroker(t) })
	publishKeyed(t, h, "device:1:secret", reading{"a", 1})
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	if _, rerr := joinState(t, c, "device:1:secret", nil); rerr == nil || rerr.Code != "forbidden" {
		t.Fatalf("join with state of a room the role may not join: %v, want forbidden", rerr)
	}
}

// historyOnly hides the broker's State method.
type historyOnly struct{ b *MemoryBroker }

func (h *historyOnly) Start(ctx context.Context, bh BrokerHandler) error { return h.b.Start(ctx, bh) }
func (h *historyOnly) Publish(ctx context.Context, room string, m Message) (StreamPosition, error) {
	return h.b.Publish(ctx, room, m)
}
func (h *historyOnly) Subscribe(ctx context.Context, rooms ...string) error {
	return h.b.Subscribe(ctx, rooms...)
}
func (h *historyOnly) Unsubscribe(ctx context.Context, rooms ...string) error {
	return h.b.Unsubscribe(ctx, rooms...)
}
func (h *historyOnly) History(ctx context.Context, room string, since StreamPosition, limit int) ([]Publication, StreamPosition, error) {
	return h.b.History(ctx, room, since, limit)
}
func (h *historyOnly) Close(ctx context.Context) error { return h.b.Close(ctx) }

// A resume with state: recovered, it replays and carries no state; not
// recovered (history trimmed, or another epoch), it carries the snapshot.
func TestJoinState_Resume(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{
		State:   stateBrokerOpts.State,
		History: HistoryPolicy{Default: HistoryLimits{Size: 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, url := testHub(t, func(o *Options) { o.Broker = mb })
	tok := testToken(t, "alice", time.Hour, "staff")
	keep := dial(t, url, testToken(t, "bob", time.Hour, "staff")) // keeps the room subscribed
	keep.readType("welcome")
	joinSince(t, keep, "device:1", nil)
	publishKeyed(t, h, "device:1", reading{"a", 1}, reading{"b", 2})
	c := dial(t, url, tok)
	c.readType("welcome")
	r, _ := joinState(t, c, "device:1", nil)
	at := StreamPosition{Offset: r.Offset, Epoch: r.Epoch}
	c.c.CloseNow()

	publishKeyed(t, h, "device:1", reading{"a", 3})
	c = dial(t, url, tok)
	c.readType("welcome")
	r, _ = joinState(t, c, "device:1", &at)
	if r.Recovered == nil || !*r.Recovered || r.Has {
		t.Fatalf("recoverable resume with state: %+v, want recovered:true without state", r)
	}
	if got := readingsOf(t, c.roomEvents("device:1", 1)); got != "a=3@3" {
		t.Fatalf("replayed %s, want a=3@3", got)
	}
	at = StreamPosition{Offset: 3, Epoch: r.Epoch}
	c.c.CloseNow()

	publishKeyed(t, h, "device:1", reading{"c", 4}, reading{"c", 5}, reading{"d", 6}, reading{"b", 7})
	for _, since := range []StreamPosition{at, {Offset: 1, Epoch: "another"}} {
		c = dial(t, url, tok)
		c.readType("welcome")
		r, _ = joinState(t, c, "device:1", &since)
		if r.Recovered == nil || *r.Recovered || !r.Has {
			t.Fatalf("resume from %v with state: %+v, want recovered:false with state", since, r)
		}
		if got := readingsOf(t, r.State); got != "a=3@3 c=5@5 d=6@6 b=7@7" || r.Offset != 7 {
			t.Fatalf("snapshot %q at %d", got, r.Offset)
		}
		c.c.CloseNow()
	}
}

// gatedBroker holds the deliveries to its hub while gated, so that a
// state read can be ahead of the room's delivery.
type gatedBroker struct {
	*MemoryBroker
	h     BrokerHandler
	mu    sync.Mutex
	gated bool
	held  []Publication
}

func (g *gatedBroker) Start(ctx context.Context, h BrokerHandler) error {
	g.h = h
	return g.MemoryBroker.Start(ctx, g)
}

func (g *gatedBroker) HandlePublication(p Publication) {
	g.mu.Lock()
	if g.gated {
		g.held = append(g.held, p)
		g.mu.Unlock()
		return
	}
	g.mu.Unlock()
	g.h.HandlePublication(p)
}

func (g *gatedBroker) HandleResync(rooms []string) { g.h.HandleResync(rooms) }

func (g *gatedBroker) open() {
	g.mu.Lock()
	held := g.held
	g.held, g.gated = nil, false
	g.mu.Unlock()
	for _, p := range held {
		g.h.HandlePublication(p)
	}
}

// A snapshot ahead of what the room has delivered: the events it already
// holds are not sent again when the room delivers them.
func TestJoinState_SnapshotAheadOfDelivery(t *testing.T) {
	t.Parallel()
	g := &gatedBroker{MemoryBroker: newStateBroker(t)}
	h, url := testHub(t, func(o *Options) { o.Broker = g })
	other := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	other.readType("welcome")
	joinSince(t, other, "device:1", nil)
	publishKeyed(t, h, "device:1", reading{"a", 1})
	other.roomEvents("device:1", 1)

	g.mu.Lock()
	g.gated = true
	g.mu.Unlock()
	publishKeyed(t, h, "device:1", reading{"b", 2}, reading{"a", 3}) // in the state, not yet delivered
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	r, _ := joinState(t, c, "device:1", nil)
	if got := readingsOf(t, r.State); got != "b=2@2 a=3@3" || r.Offset != 3 {
		t.Fatalf("snapshot %q at %d, want b=2@2 a=3@3 at 3", got, r.Offset)
	}
	g.open()
	publishKeyed(t, h, "device:1", reading{"c", 4})
	if got := readingsOf(t, c.roomEvents("device:1", 1)); got != "c=4@4" {
		t.Fatalf("after a snapshot ahead of delivery: %s, want only c=4@4", got)
	}
	if got := readingsOf(t, other.roomEvents("device:1", 3)); got != "b=2@2 a=3@3 c=4@4" {
		t.Fatalf("the other member got %s", got)
	}
}

// Many joins with state while keyed events are published: on the wire,
// each connection gets exactly the events after its snapshot's position
// (before or after the reply), and ends with the publisher's state.
func TestJoinState_ConcurrentWire(t *testing.T) {
	t.Parallel()
	mb := newStateBroker(t)
	h, url := testHub(t, func(o *Options) { o.Broker = mb })
	const clients, events, keys = 20, 2000, 10
	final := map[string]int{}
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= events; i++ {
			r := reading{fmt.Sprintf("k%d", i%keys), i}
			final[r.K] = i
			if err := h.Publish(context.Background(), "device:1", "sensor:data", r, WithKey(r.K)); err != nil {
				done <- err
				return
			}
			if i%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		done <- nil
	}()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	views := make([]map[string]int, clients)
	tok := testToken(t, "alice", time.Hour, "staff")
	for n := range clients {
		c := dial(t, url, tok)
		c.readType("welcome")
		wg.Go(func() {
			time.Sleep(time.Duration(n) * time.Millisecond)
			r, rerr := joinState(t, c, "device:1", nil)
			if rerr != nil {
				errs <- rerr
				return
			}
			view := map[string]int{}
			for _, e := range r.State {
				var x reading
				_ = json.Unmarshal(e.Data, &x)
				view[x.K] = x.V
			}
			last := r.Offset
			for last < events {
				e := c.roomEvents("device:1", 1)[0]
				if e.Offset != last+1 {
					errs <- fmt.Errorf("client %d: event at %d after %d (snapshot at %d)", n, e.Offset, last, r.Offset)
					return
				}
				var x reading
				_ = json.Unmarshal(e.Data, &x)
				view[x.K], last = x.V, e.Offset
			}
			views[n] = view
		})
	}
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for n, v := range views {
		if v != nil && fmt.Sprint(v) != fmt.Sprint(final) {
			t.Errorf("client %d: view %v, want %v", n, v, final)
		}
	}
}

var keyedReading = NewEvent[reading]("test:keyed").KeyBy(func(r reading) string { return "dev-" + r.K })

// An event declared with KeyBy is published with its key; WithKey wins.
func TestEventKeyBy(t *testing.T) {
	t.Parallel()
	mb := newStateBroker(t)
	h, _ := testHub(t, func(o *Options) { o.Broker = mb })
	if !keyedReading.Keyed() || testChat.Keyed() {
		t.Fatal("Keyed: want true for the keyed event only")
	}
	for _, tc := range []struct {
		r    reading
		opts []PublishOption
	}{
		{reading{"a", 1}, nil},
		{reading{"b", 2}, []PublishOption{WithKey("explicit")}},
		{reading{"a", 3}, []PublishOption{WithCorrelationID("c1")}},
		{reading{strings.Repeat("x", MaxKeyLen), 4}, nil}, // key too long: no key
	} {
		if err := keyedReading.Publish(t.Context(), h, "device:9", tc.r, tc.opts...); err != nil {
			t.Fatal(err)
		}
	}
	st, _, err := mb.State(t.Context(), "device:9")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range st {
		got = append(got, fmt.Sprintf("%s@%d", p.Key, p.Offset))
	}
	if strings.Join(got, " ") != "explicit@2 dev-a@3" {
		t.Fatalf("state keys %v, want explicit@2 dev-a@3", got)
	}
}
