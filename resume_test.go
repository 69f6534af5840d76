package rthub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventMsg is an event frame with its stream position.
type eventMsg struct {
	Type   string          `json:"type"`
	Event  string          `json:"event"`
	Room   string          `json:"room"`
	Data   json.RawMessage `json:"data"`
	Offset uint64          `json:"offset"`
	Epoch  string          `json:"epoch"`
}

func (w *wsClient) nextRaw() []byte {
	w.t.Helper()
	if len(w.stash) > 0 {
		b := w.stash[0]
		w.stash = w.stash[1:]
		return b
	}
	return w.readRaw()
}

// readRaw reads the next message from the socket (not the stash).
func (w *wsClient) readRaw() []byte {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, b, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return b
}

// roomEvents reads until n events of room arrived and returns them, failing
// on a reset message.
func (w *wsClient) roomEvents(room string, n int) []eventMsg {
	w.t.Helper()
	var out []eventMsg
	for len(out) < n {
		b := w.nextRaw()
		var m eventMsg
		if err := json.Unmarshal(b, &m); err != nil {
			w.t.Fatal(err)
		}
		if m.Type == "reset" {
			w.t.Fatalf("unexpected reset %s", b)
		}
		if m.Type == "event" && m.Room == room {
			out = append(out, m)
		}
	}
	return out
}

func publishN(t *testing.T, h *Hub, room string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if err := h.Publish(t.Context(), room, "sensor:data", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
}

func checkSeq(t *testing.T, evs []eventMsg, from int) {
	t.Helper()
	for i, e := range evs {
		var d struct{ N int }
		_ = json.Unmarshal(e.Data, &d)
		if d.N != from+i {
			t.Fatalf("event %d: n=%d (offset %d), want n=%d", i, d.N, e.Offset, from+i)
		}
		if i > 0 && (e.Offset != evs[i-1].Offset+1 || e.Epoch != evs[i-1].Epoch) {
			t.Fatalf("event %d at %d@%s after %d@%s", i, e.Offset, e.Epoch, evs[i-1].Offset, evs[i-1].Epoch)
		}
	}
}

type joinReply struct {
	Room      string `json:"room"`
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered"`
}

func joinSince(t *testing.T, c *wsClient, room string, since *StreamPosition) joinReply {
	t.Helper()
	f := map[string]any{"room": room}
	if since != nil {
		f["since"] = since
	}
	// Replayed events come before the reply: keep them for roomEvents.
	c.nextID++
	f["id"], f["op"] = c.nextID, "join"
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
		t.Fatalf("join %s: %+v", room, r.Error)
	}
	var jr joinReply
	if err := json.Unmarshal(r.Data, &jr); err != nil {
		t.Fatal(err)
	}
	return jr
}

func TestResume_Join(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	tok := testToken(t, "alice", time.Hour, "staff")
	c := dial(t, url, tok)
	c.readType("welcome")
	jr := joinSince(t, c, "device:1", nil)
	if jr.Epoch == "" || jr.Recovered != nil {
		t.Fatalf("join reply %+v: want a position, no recovered flag", jr)
	}
	publishN(t, h, "device:1", 1, 5)
	evs := c.roomEvents("device:1", 5)
	checkSeq(t, evs, 1)
	if evs[0].Offset != jr.Offset+1 || evs[0].Epoch != jr.Epoch {
		t.Fatalf("first event at %d@%s, join said %d@%s", evs[0].Offset, evs[0].Epoch, jr.Offset, jr.Epoch)
	}
	last := StreamPosition{Offset: evs[4].Offset, Epoch: evs[4].Epoch}
	c.c.CloseNow()
	waitConnCount(t, h, 0)

	// Missed while away: 6..10. Keep the room alive with another member so
	// the node delivers them (and a later resume has something to merge with).
	other := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	other.readType("welcome")
	joinSince(t, other, "device:1", nil)
	publishN(t, h, "device:1", 6, 10)
	c2 := dial(t, url, tok)
	c2.readType("welcome")
	jr = joinSince(t, c2, "device:1", &last)
	if jr.Recovered == nil || !*jr.Recovered {
		t.Fatalf("resume reply %+v, want recovered", jr)
	}
	publishN(t, h, "device:1", 11, 12)
	checkSeq(t, c2.roomEvents("device:1", 7), 6) // 6..10 replayed, 11..12 live, no gap, no duplicate

	// Resume from a position with nothing missed, and from the current one.
	c3 := dial(t, url, tok)
	c3.readType("welcome")
	cur := StreamPosition{Offset: jr.Offset + 2, Epoch: jr.Epoch}
	if jr := joinSince(t, c3, "device:1", &cur); jr.Recovered == nil || !*jr.Recovered {
		t.Fatalf("resume at the head: %+v", jr)
	}
	publishN(t, h, "device:1", 13, 13)
	checkSeq(t, c3.roomEvents("device:1", 1), 13)

	// Another epoch: not recoverable.
	c4 := dial(t, url, tok)
	c4.readType("welcome")
	if jr := joinSince(t, c4, "device:1", &StreamPosition{Offset: 3, Epoch: "other"}); jr.Recovered == nil || *jr.Recovered {
		t.Fatalf("resume from another epoch: %+v, want recovered false", jr)
	}
	if s := h.Stats(); s.Resumes < 3 || s.Unrecovered < 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestResume_HistoryExceeded(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{History: HistoryPolicy{Default: HistoryLimits{Size: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	h, url := testHub(t, func(o *Options) { o.Broker = mb })
	keep := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	keep.readType("welcome")
	joinSince(t, keep, "device:1", nil)
	publishN(t, h, "device:1", 1, 2)
	evs := keep.roomEvents("device:1", 2)
	since := StreamPosition{Offset: evs[1].Offset, Epoch: evs[1].Epoch}
	publishN(t, h, "device:1", 3, 10) // 8 missed, 3 kept

	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	jr := joinSince(t, c, "device:1", &since)
	if jr.Recovered == nil || *jr.Recovered {
		t.Fatalf("resume past the history: %+v, want recovered false", jr)
	}
	// Nothing half-replayed: the next event is the next live one.
	publishN(t, h, "device:1", 11, 11)
	checkSeq(t, c.roomEvents("device:1", 1), 11)
	// Within the window: recovered.
	c2 := dial(t, url, testToken(t, "carol", time.Hour, "staff"))
	c2.readType("welcome")
	near := StreamPosition{Offset: jr.Offset - 2, Epoch: jr.Epoch}
	if jr := joinSince(t, c2, "device:1", &near); jr.Recovered == nil || !*jr.Recovered {
		t.Fatalf("resume within the history: %+v", jr)
	}
	checkSeq(t, c2.roomEvents("device:1", 3), 9)
}

// sinceParam encodes positions for the handshake's since parameter.
func sinceParam(m map[string]StreamPosition) string {
	b, _ := json.Marshal(m)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestResume_AutoJoinedRooms(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	tok := testToken(t, "alice", time.Hour, "staff")
	keep := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	keep.readType("welcome")

	c := dial(t, url, tok)
	w := c.readType("welcome")
	var streams struct {
		Streams map[string]streamInfo `json:"streams"`
	}
	c.c.CloseNow()
	_ = w
	publishN(t, h, "staff", 1, 3)
	evs := keep.roomEvents("staff", 3)
	since := map[string]StreamPosition{"staff": {Offset: evs[0].Offset, Epoch: evs[0].Epoch}}

	// Reconnect with ?since=: the welcome says recovered, then 2..3 replayed.
	c2 := dial(t, url+"?since="+sinceParam(since), tok)
	b := c2.nextRaw()
	if err := json.Unmarshal(b, &streams); err != nil || !strings.Contains(string(b), `"type":"welcome"`) {
		t.Fatalf("first message %s", b)
	}
	st := streams.Streams["staff"]
	if st.Recovered == nil || !*st.Recovered || st.Offset != evs[2].Offset {
		t.Fatalf("welcome streams %s", b)
	}
	if _, ok := streams.Streams["user:alice"]; !ok {
		t.Fatalf("welcome lacks the user room's position: %s", b)
	}
	publishN(t, h, "staff", 4, 4)
	checkSeq(t, c2.roomEvents("staff", 3), 2)

	// A bad since parameter is refused before the upgrade.
	for _, bad := range []string{"!!!", base64.RawURLEncoding.EncodeToString([]byte(`{"bad room":{}}`)), base64.RawURLEncoding.EncodeToString([]byte(`[1]`))} {
		st, resp, body := upgradeResponse(t, url+"?since="+bad, bearerHeader(tok))
		if st != 400 {
			t.Fatalf("since=%s: %d %s", bad, st, body)
		}
		checkErrorBody(t, resp, body, "bad_request")
	}
}

// lossyBroker is a MemoryBroker node whose deliveries to the hub can be
// dropped, as a Redis pub/sub blip would, to exercise gap recovery.
type lossyBroker struct {
	*MemoryBroker
	mu   sync.Mutex
	drop map[uint64]bool // offsets not delivered
	h    BrokerHandler
}

func (l *lossyBroker) Start(ctx context.Context, h BrokerHandler) error {
	l.h = h
	return l.MemoryBroker.Start(ctx, l)
}

func (l *lossyBroker) HandlePublication(p Publication) {
	l.mu.Lock()
	d := l.drop[p.Offset]
	l.mu.Unlock()
	if !d {
		l.h.HandlePublication(p)
	}
}

func (l *lossyBroker) HandleResync(rooms []string) { l.h.HandleResync(rooms) }

func TestResume_LiveGap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		history   int
		recovered bool
	}{
		{"filled from history", 100, true},
		{"history too short: reset", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mb, err := NewMemoryBroker(MemoryBrokerOptions{History: HistoryPolicy{Default: HistoryLimits{Size: tc.history}}})
			if err != nil {
				t.Fatal(err)
			}
			lb := &lossyBroker{MemoryBroker: mb, drop: map[uint64]bool{}}
			h, url := testHub(t, func(o *Options) { o.Broker = lb })
			c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
			c.readType("welcome")
			jr := joinSince(t, c, "device:1", nil)
			lb.mu.Lock()
			lb.drop[jr.Offset+2] = true // the second publication is "lost in transit"
			lb.drop[jr.Offset+3] = true
			lb.mu.Unlock()
			publishN(t, h, "device:1", 1, 5)
			if tc.recovered {
				checkSeq(t, c.roomEvents("device:1", 5), 1)
				if h.Stats().GapsRecovered == 0 {
					t.Error("GapsRecovered not counted")
				}
				return
			}
			// 1 arrives; the gap cannot be filled: a reset, then 4.. live.
			var got []string
			for len(got) < 3 {
				var m eventMsg
				_ = json.Unmarshal(c.nextRaw(), &m)
				if m.Room != "device:1" {
					continue
				}
				switch m.Type {
				case "event":
					got = append(got, fmt.Sprintf("event %s", m.Data))
				case "reset":
					got = append(got, fmt.Sprintf("reset %d", m.Offset))
				}
			}
			want := []string{`event {"n":1}`, fmt.Sprintf("reset %d", jr.Offset+3), `event {"n":4}`}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
}

func TestResume_Resync(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lb := &lossyBroker{MemoryBroker: mb, drop: map[uint64]bool{}}
	h, url := testHub(t, func(o *Options) { o.Broker = lb })
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	jr := joinSince(t, c, "device:1", nil)
	lb.mu.Lock()
	for i := uint64(1); i <= 3; i++ {
		lb.drop[jr.Offset+i] = true // the subscription "was down"
	}
	lb.mu.Unlock()
	publishN(t, h, "device:1", 1, 3)
	lb.HandleResync([]string{"device:1", "device:none"}) // the broker reconnected
	publishN(t, h, "device:1", 4, 4)
	checkSeq(t, c.roomEvents("device:1", 4), 1)
}

// TestResume_AcrossNodes: two hubs share a memory broker (as two processes
// share Redis): an event published on one reaches the other's clients, and a
// client that moves from one node to the other resumes there.
func TestResume_AcrossNodes(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hubA, urlA := testHub(t, func(o *Options) { o.Broker = mb })
	hubB, urlB := testHub(t, func(o *Options) { o.Broker = mb.Peer() })
	tok := testToken(t, "alice", time.Hour, "staff")
	onA := dial(t, urlA, tok)
	onA.readType("welcome")
	joinSince(t, onA, "device:1", nil)
	onB := dial(t, urlB, testToken(t, "bob", time.Hour, "staff"))
	onB.readType("welcome")
	joinSince(t, onB, "device:1", nil)

	publishN(t, hubB, "device:1", 1, 2) // published on B, delivered on A too
	evs := onA.roomEvents("device:1", 2)
	checkSeq(t, evs, 1)
	checkSeq(t, onB.roomEvents("device:1", 2), 1)
	last := StreamPosition{Offset: evs[1].Offset, Epoch: evs[1].Epoch}
	onA.c.CloseNow()
	waitConnCount(t, hubA, 0)
	publishN(t, hubA, "device:1", 3, 5) // A has no member: only B delivers

	moved := dial(t, urlB, tok)
	moved.readType("welcome")
	if jr := joinSince(t, moved, "device:1", &last); jr.Recovered == nil || !*jr.Recovered {
		t.Fatalf("resume on the other node: %+v", jr)
	}
	publishN(t, hubA, "device:1", 6, 6)
	checkSeq(t, moved.roomEvents("device:1", 4), 3)
	if hubA.Stats().Rooms != 0 {
		t.Errorf("node A still holds rooms: %+v", hubA.Rooms())
	}
}

func TestResume_PublicationEnvelope(t *testing.T) {
	withCID := appendEventCID(nil, "reading-42", "a:b", "r", []byte(`{"x":1}`))
	if string(withCID) != `{"type":"event","event":"a:b","room":"r","cid":"reading-42","data":{"x":1}}` {
		t.Fatalf("with cid: %s", withCID)
	}
	body := appendEventCID(nil, "", "a:b", "r", []byte(`{"x":1}`))
	if string(body) != `{"type":"event","event":"a:b","room":"r","data":{"x":1}}` {
		t.Fatalf("without cid: %s", body)
	}
	frame := appendPosition(nil, body, StreamPosition{Offset: 42, Epoch: "e\"1"})
	var m eventMsg
	if err := json.Unmarshal(frame, &m); err != nil || m.Offset != 42 || m.Epoch != "e\"1" {
		t.Fatalf("frame %s: %v", frame, err)
	}
	var rs struct {
		Type, Room, Epoch string
		Offset            uint64
	}
	if err := json.Unmarshal(appendReset(nil, "device:1", StreamPosition{Offset: 7, Epoch: "e"}), &rs); err != nil ||
		rs.Type != "reset" || rs.Room != "device:1" || rs.Offset != 7 || rs.Epoch != "e" {
		t.Fatalf("reset %+v %v", rs, err)
	}
}

func bearerHeader(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// flakyHistory fails the first n History calls, as a broker still
// reconnecting would.
type flakyHistory struct {
	*lossyBroker
	mu    sync.Mutex
	fails int
}

func (f *flakyHistory) History(ctx context.Context, room string, since StreamPosition, limit int) ([]Publication, StreamPosition, error) {
	f.mu.Lock()
	fail := f.fails > 0 && !since.IsZero()
	if fail {
		f.fails--
	}
	f.mu.Unlock()
	if fail {
		return nil, StreamPosition{}, fmt.Errorf("connection reset (test)")
	}
	return f.lossyBroker.History(ctx, room, since, limit)
}

// TestResume_ResyncRetried: when the history read of a resync fails, the hub
// retries it: a quiet room gets its missed events without waiting for a
// next publication.
func TestResume_ResyncRetried(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fb := &flakyHistory{lossyBroker: &lossyBroker{MemoryBroker: mb, drop: map[uint64]bool{}}}
	h, url := testHub(t, func(o *Options) { o.Broker = fb })
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	jr := joinSince(t, c, "device:1", nil)
	fb.mu.Lock()
	fb.fails = 2
	fb.mu.Unlock()
	fb.lossyBroker.mu.Lock()
	for i := uint64(1); i <= 3; i++ {
		fb.drop[jr.Offset+i] = true
	}
	fb.lossyBroker.mu.Unlock()
	publishN(t, h, "device:1", 1, 3)
	fb.HandleResync([]string{"device:1"}) // fails; retried after 100 ms, 200 ms
	checkSeq(t, c.roomEvents("device:1", 3), 1)
	if h.Stats().BrokerErrors < 2 {
		t.Errorf("BrokerErrors %d, want the two failed reads", h.Stats().BrokerErrors)
	}
}
