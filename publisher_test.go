package rthub

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recPublisher is a Publisher wrapping a hub that records each call.
type recPublisher struct {
	next  Publisher
	mu    sync.Mutex
	calls []any // the data of each call
}

func (r *recPublisher) Publish(ctx context.Context, room, event string, data any, opts ...PublishOption) error {
	r.mu.Lock()
	r.calls = append(r.calls, data)
	r.mu.Unlock()
	return r.next.Publish(ctx, room, event, data, opts...)
}

// tagged is a client's view of an event, with its correlation ID.
type tagged struct {
	Event, Room, CID string
	Data             json.RawMessage
}

func nextTagged(t *testing.T, c *wsClient) tagged {
	t.Helper()
	var e tagged
	if err := json.Unmarshal(c.nextRaw(), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// unencodable has no JSON encoding.
var unencodable = NewEvent[func()]("test:unencodable")

// TestEventPublish_Publishers: Event.Publish gives the same result through
// the hub itself (which skips re-validating its own encoding) and through a
// wrapper, which gets the encoded value as a json.RawMessage; the options
// pass through; errors are the same.
func TestEventPublish_Publishers(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	rec := &recPublisher{next: h}
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		pub  Publisher
	}{{"hub", h}, {"wrapper", rec}} {
		if err := testChat.Publish(ctx, tt.pub, "staff", chatMessage{Text: "hi <" + tt.name + ">"}, WithCorrelationID("cid-"+tt.name)); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		want := tagged{Event: "chat:message", Room: "staff", CID: "cid-" + tt.name, Data: json.RawMessage(`{"text":"hi \u003c` + tt.name + `\u003e"}`)}
		if got := nextTagged(t, c); got.Event != want.Event || got.Room != want.Room || got.CID != want.CID || string(got.Data) != string(want.Data) {
			t.Errorf("%s: client got %+v (data %s), want %+v (data %s)", tt.name, got, got.Data, want, want.Data)
		}
		if err := testChat.Publish(ctx, tt.pub, "bad room!", chatMessage{}); !errors.Is(err, ErrBadRoom) {
			t.Errorf("%s: bad room: %v, want ErrBadRoom", tt.name, err)
		}
		if err := unencodable.Publish(ctx, tt.pub, "staff", func() {}); !errors.Is(err, ErrBadPayload) {
			t.Errorf("%s: unencodable: %v, want ErrBadPayload", tt.name, err)
		}
	}
	rec.mu.Lock()
	calls := rec.calls
	rec.mu.Unlock()
	if len(calls) != 2 { // the unencodable value never reaches the Publisher
		t.Fatalf("wrapper called %d times, want 2: %v", len(calls), calls)
	}
	if raw, ok := calls[0].(json.RawMessage); !ok || string(raw) != `{"text":"hi \u003cwrapper\u003e"}` {
		t.Errorf("wrapper got %T %v, want the encoded event as a json.RawMessage", calls[0], calls[0])
	}
	h.Close()
	for _, p := range []Publisher{h, rec} {
		if err := testChat.Publish(ctx, p, "staff", chatMessage{}); !errors.Is(err, ErrHubClosed) {
			t.Errorf("after Close: %v, want ErrHubClosed", err)
		}
	}
}

// TestPublish_Except: a publication made WithExcept is not delivered to that
// connection, live or when the connection rejoins the room and gets it
// replayed from history; others get it.
func TestPublish_Except(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	const room = "device:1"
	alice := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	aliceID := alice.readType("welcome").Conn
	bob := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	bob.readType("welcome")
	joinSince(t, bob, room, nil)
	at := joinSince(t, alice, room, nil)
	since := StreamPosition{Offset: at.Offset, Epoch: at.Epoch}

	if r := alice.cmd("leave", map[string]any{"room": room}); !r.OK {
		t.Fatalf("leave: %+v", r.Error)
	}
	publishN(t, h, room, 1, 1)
	if err := h.Publish(t.Context(), room, "sensor:data", map[string]int{"n": 2}, WithExcept(aliceID)); err != nil {
		t.Fatal(err)
	}
	publishN(t, h, room, 3, 3)
	if jr := joinSince(t, alice, room, &since); jr.Recovered == nil || !*jr.Recovered {
		t.Fatalf("rejoin: %+v", jr)
	}
	if err := h.Publish(t.Context(), room, "sensor:data", map[string]int{"n": 4}, WithExcept(aliceID)); err != nil {
		t.Fatal(err)
	}
	publishN(t, h, room, 5, 5)
	got := func(c *wsClient, n int) []int {
		var out []int
		for _, e := range c.roomEvents(room, n) {
			var d struct{ N int }
			_ = json.Unmarshal(e.Data, &d)
			out = append(out, d.N)
		}
		return out
	}
	if g := got(alice, 3); g[0] != 1 || g[1] != 3 || g[2] != 5 {
		t.Errorf("alice (excepted) got %v, want [1 3 5]: replayed 1 and 3, live 5", g)
	}
	if g := got(bob, 5); g[0] != 1 || g[4] != 5 {
		t.Errorf("bob got %v, want all of 1..5", g)
	}
}

// TestPublish_Key checks that WithKey reaches the broker as Message.Key (and
// so its history and its subscribers), and that an invalid key is dropped.
func TestPublish_Key(t *testing.T) {
	t.Parallel()
	b, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := testHub(t, func(o *Options) { o.Broker = b })
	ctx := t.Context()
	for _, key := range []string{"device:7/temp", "", "tab\there", strings.Repeat("k", MaxKeyLen+1), strings.Repeat("k", MaxKeyLen)} {
		if err := h.Publish(ctx, "r", "e", 1, WithKey(key)); err != nil {
			t.Fatal(err)
		}
	}
	pubs, _, err := b.History(ctx, "r", StreamPosition{Offset: 0, Epoch: mustPos(t, b, "r").Epoch}, -1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pubs {
		got = append(got, p.Key)
	}
	want := []string{"device:7/temp", "", "", "", strings.Repeat("k", MaxKeyLen)}
	if !slices.Equal(got, want) {
		t.Errorf("keys in history = %q, want %q", got, want)
	}
}

func mustPos(t *testing.T, b Broker, room string) StreamPosition {
	t.Helper()
	_, pos, err := b.History(t.Context(), room, StreamPosition{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}
