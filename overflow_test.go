package rthub

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
)

// queueConn is a connection with no writer, for the queue's unit tests:
// frames stay queued until the test takes them (takeWork, as the writer
// does).
func queueConn(t testing.TB, msgs, bytes int) *conn {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	h := &Hub{opts: Options{SendQueueMessages: msgs, SendQueueBytes: bytes, MaxRoomsPerConn: 100, CloseTimeout: 1}}
	return &conn{hub: h, nc: a, writing: true} // writing: nobody is scheduled
}

// qpush is one frame offered to a queue: an event of a lossy room (mode
// not OverflowClose), or a frame that may not be lost (a reply, an event of
// an ordered room). label is its payload.
type qpush struct {
	room  string
	mode  OverflowMode
	key   string
	label string
}

func (p qpush) offer(c *conn) (queued bool) {
	f := textFrame([]byte(p.label))
	if p.mode == OverflowClose {
		queued, _ = c.enqueue(f)
		return queued
	}
	queued, _, _ = c.enqueueLossy(f, frameMeta{room: p.room, key: p.key, mode: p.mode})
	return queued
}

// labels returns the payloads of frames, gap notices as gap(room,n).
func labels(t testing.TB, frames [][]byte) []string {
	t.Helper()
	var out []string
	for _, f := range frames {
		p := f[2:]
		if f[1]&0x7f == 126 {
			p = f[4:]
		}
		var g struct {
			Type    string `json:"type"`
			Room    string `json:"room"`
			Dropped uint64 `json:"dropped"`
		}
		if json.Unmarshal(p, &g) == nil && g.Type == "gap" {
			out = append(out, fmt.Sprintf("gap(%s,%d)", g.Room, g.Dropped))
			continue
		}
		out = append(out, string(p))
	}
	return out
}

func queued(t testing.TB, c *conn) []string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.queue == nil {
		return nil
	}
	if c.queue.meta != nil && len(c.queue.meta) != len(c.queue.bufs) {
		t.Fatalf("meta %d entries for %d frames", len(c.queue.meta), len(c.queue.bufs))
	}
	return labels(t, c.queue.bufs)
}

func TestOverflow_queuePolicy(t *testing.T) {
	t.Parallel()
	drop := func(room, label string) qpush { return qpush{room, OverflowDropOldest, "", label} }
	conf := func(room, key, label string) qpush { return qpush{room, OverflowConflate, key, label} }
	ord := func(label string) qpush { return qpush{label: label} }
	tests := []struct {
		name      string
		msgs      int
		bytes     int
		push      []qpush
		want      []string
		gaps      []gapNote // unannounced losses left
		closed    bool
		dropped   uint64
		conflated uint64
	}{
		{
			name: "ordered frames close the connection when full",
			msgs: 2, bytes: 1 << 20,
			push:   []qpush{ord("r1"), ord("r2"), ord("r3")},
			closed: true,
		},
		{
			name: "drop-oldest: the oldest go, a gap notice before the first survivor",
			msgs: 3, bytes: 1 << 20,
			push:    []qpush{drop("a", "a1"), drop("a", "a2"), drop("a", "a3"), drop("a", "a4")},
			want:    []string{"gap(a,2)", "a3", "a4"},
			dropped: 2,
		},
		{
			name: "conflate: superseded events go first, newest per key kept in order",
			msgs: 4, bytes: 1 << 20,
			push: []qpush{conf("a", "k1", "k1.1"), conf("a", "k2", "k2.1"), conf("a", "k1", "k1.2"),
				conf("a", "k2", "k2.2"), conf("a", "k1", "k1.3"), conf("a", "k2", "k2.3")},
			want:      []string{"gap(a,3)", "k2.2", "k1.3", "k2.3"},
			conflated: 3,
		},
		{
			name: "conflate: events without a key are dropped oldest first, before keyed ones",
			msgs: 3, bytes: 1 << 20,
			push:    []qpush{conf("a", "k1", "k1.1"), conf("a", "", "x1"), conf("a", "k2", "k2.1"), conf("a", "", "x2")},
			want:    []string{"k1.1", "gap(a,2)", "k2.1"},
			dropped: 2,
		},
		{
			name: "conflate: distinct keys past the bound drop the oldest keyed event",
			msgs: 2, bytes: 1 << 20,
			push:    []qpush{conf("a", "k1", "k1.1"), conf("a", "k2", "k2.1"), conf("a", "k3", "k3.1")},
			want:    []string{"gap(a,2)", "k3.1"},
			dropped: 2,
		},
		{
			name: "ordered frames shed lossy events, then close the connection",
			msgs: 3, bytes: 1 << 20,
			push:    []qpush{drop("a", "a1"), drop("a", "a2"), ord("r1"), ord("r2"), drop("a", "a3"), ord("r3"), ord("r4")},
			closed:  true,
			dropped: 3,
		},
		{
			name: "an unannounced loss precedes the room's next event",
			msgs: 3, bytes: 1 << 20,
			push:    []qpush{drop("a", "a1"), ord("r1"), ord("r2"), ord("r3")},
			want:    []string{"r1", "r2", "r3"},
			gaps:    []gapNote{{"a", 1}},
			dropped: 1,
		},
		{
			name: "a lossy event that finds no space is itself dropped",
			msgs: 2, bytes: 1 << 20,
			push:    []qpush{ord("r1"), ord("r2"), drop("a", "a1"), drop("a", "a2")},
			want:    []string{"r1", "r2"},
			gaps:    []gapNote{{"a", 2}},
			dropped: 2,
		},
		{
			name: "the byte bound sheds too",
			msgs: 100, bytes: 3 * 102,
			push: []qpush{drop("a", strings.Repeat("1", 100)), drop("a", strings.Repeat("2", 100)),
				drop("a", strings.Repeat("3", 100)), drop("a", strings.Repeat("4", 100))},
			want:    []string{"gap(a,2)", strings.Repeat("3", 100), strings.Repeat("4", 100)},
			dropped: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := queueConn(t, tt.msgs, tt.bytes)
			for _, p := range tt.push {
				p.offer(c)
				checkBounds(t, c)
			}
			got := queued(t, c)
			if tt.want != nil && !slices.Equal(got, tt.want) {
				t.Errorf("queue = %q, want %q", got, tt.want)
			}
			if c.closing != tt.closed {
				t.Errorf("closing = %v, want %v", c.closing, tt.closed)
			}
			if tt.closed && c.code != CloseSlowConsumer {
				t.Errorf("close code %d, want %d", c.code, CloseSlowConsumer)
			}
			if tt.gaps != nil && !slices.Equal(c.gaps, tt.gaps) {
				t.Errorf("unannounced = %v, want %v", c.gaps, tt.gaps)
			}
			st := &c.hub.stats
			if d, cf := st.overflowDropped.Load(), st.overflowConflated.Load(); d != tt.dropped || cf != tt.conflated {
				t.Errorf("dropped %d, conflated %d; want %d, %d", d, cf, tt.dropped, tt.conflated)
			}
		})
	}
}

// TestOverflow_roomsApart: each room's survivors keep their order and each
// room gets its own notice before its first event after a loss.
func TestOverflow_roomsApart(t *testing.T) {
	t.Parallel()
	c := queueConn(t, 4, 1<<20)
	for i := 1; i <= 3; i++ {
		qpush{"a", OverflowDropOldest, "", fmt.Sprint("a", i)}.offer(c)
		qpush{"b", OverflowDropOldest, "", fmt.Sprint("b", i)}.offer(c)
	}
	want := []string{"gap(a,2)", "a3", "gap(b,2)", "b3"}
	if got := queued(t, c); !slices.Equal(got, want) {
		t.Errorf("queue = %q, want %q", got, want)
	}
}

// checkBounds fails when the queue (with what is in flight and the pending
// control frames) is past its bounds.
func checkBounds(t testing.TB, c *conn) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	n, b := c.queueLoad()
	if n > c.hub.opts.SendQueueMessages || n > 1 && b > c.hub.opts.SendQueueBytes {
		t.Fatalf("queue holds %d frames, %d bytes: bounds are %d, %d", n, b, c.hub.opts.SendQueueMessages, c.hub.opts.SendQueueBytes)
	}
	if c.queue != nil && c.queue.meta != nil {
		seen := map[string]bool{}
		for _, m := range c.queue.meta {
			if m.gap > 0 {
				if seen[m.room] {
					t.Fatalf("two gap notices queued for room %q", m.room)
				}
				seen[m.room] = true
			}
		}
	}
}

// TestOverflow_inFlight: frames the writer holds count against the bounds,
// and what a lossy writer could not write goes back to the head of the
// queue, where it can still be shed.
func TestOverflow_inFlight(t *testing.T) {
	t.Parallel()
	c := queueConn(t, 4, 1<<20)
	for i := 1; i <= 4; i++ {
		qpush{"a", OverflowDropOldest, "", fmt.Sprint("a", i)}.offer(c)
	}
	b, _, _ := c.takeWork(false)
	if len(b.bufs) != 4 || c.flightN != 4 {
		t.Fatalf("took %d frames, in flight %d", len(b.bufs), c.flightN)
	}
	// The writer holds the full bound: a new lossy event has no space.
	qpush{"a", OverflowDropOldest, "", "a5"}.offer(c)
	if got := queued(t, c); got != nil {
		t.Fatalf("queued %q while the writer holds the bound", got)
	}
	// The socket took a1 whole and half of a2.
	rest := slices.Clone(b.bufs[1:])
	rest[0] = rest[0][2:]
	if r := c.requeueUnwritten(b, rest); len(r) != 1 {
		t.Fatalf("left %d buffers to finish, want the partial one", len(r))
	}
	if got, want := labels(t, b.bufs), []string{"a1", "a2"}; !slices.Equal(got, want) {
		t.Errorf("written or started = %q, want %q", got, want)
	}
	if got, want := queued(t, c), []string{"a3", "a4"}; !slices.Equal(got, want) {
		t.Errorf("requeued = %q, want %q", got, want)
	}
	releaseBatch(b)
	// The writer, slow now, takes one frame at a time.
	b, _, _ = c.takeWork(true)
	if got, want := labels(t, b.bufs), []string{"a3"}; !slices.Equal(got, want) {
		t.Errorf("took %q, want %q", got, want)
	}
	// a5's loss is announced before the next event of the room.
	qpush{"a", OverflowDropOldest, "", "a6"}.offer(c)
	if got, want := queued(t, c), []string{"a4", "gap(a,1)", "a6"}; !slices.Equal(got, want) {
		t.Errorf("queue = %q, want %q", got, want)
	}
	checkBounds(t, c)
}

// FuzzOverflowQueue offers a random mix of frames (drop-oldest room a,
// conflate room b with and without keys, ordered frames) to a small queue
// while a writer takes frames now and then, and checks the invariants: the
// bounds hold after every step, each room's survivors keep their order, and
// every lost event is announced by a gap notice before the room's next
// event (or is still waiting to be, in c.gaps).
func FuzzOverflowQueue(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 3, 11, 19, 3, 11, 7, 0, 0, 15, 5, 5, 6, 0})
	f.Add([]byte{3, 11, 19, 27, 3, 11, 19, 27, 3, 11, 7, 3, 3, 3, 15, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x40, 0x80, 0xc0, 0xf0, 0x43, 0x83, 7, 0x45, 0x46, 0x15, 0x13})
	f.Fuzz(fuzzBody)
}

// fuzzBody is FuzzOverflowQueue's check of one input.
func fuzzBody(t *testing.T, ops []byte) {
	c := queueConn(t, 6, 600)
	seq := map[string]int{}
	var out []string
	take := func(one bool, k int) {
		b, _, _ := c.takeWork(one)
		if b != nil {
			writeSome(c, b, k)
			out = append(out, labels(t, b.bufs)...)
			releaseBatch(b)
		}
	}
	for _, op := range ops {
		pad := strings.Repeat(".", int(op>>4)*8)
		var p qpush
		switch op % 8 {
		case 0, 1, 2:
			p = qpush{room: "a", mode: OverflowDropOldest}
		case 3, 4:
			p = qpush{room: "b", mode: OverflowConflate, key: fmt.Sprint("k", op/8%4)}
		case 5:
			p = qpush{room: "b", mode: OverflowConflate}
		case 6:
			p = qpush{room: "o"}
		case 7:
			take(op/8%2 == 0, int(op>>4))
			checkBounds(t, c)
			continue
		}
		p.label = fmt.Sprintf("%s %d %s%s", p.room, seq[p.room], p.key, pad)
		seq[p.room]++
		p.offer(c)
		if c.closing {
			return // an ordered frame overran: today's slow consumer close
		}
		checkBounds(t, c)
	}
	take(false, 1<<20)
	take(false, 1<<20)
	last := map[string]int{"a": -1, "b": -1, "o": -1}
	seen := map[string]int{}
	announced := map[string]uint64{}
	for _, l := range out {
		var room string
		var n uint64
		if _, err := fmt.Sscanf(l, "gap(%1s,%d)", &room, &n); err == nil {
			announced[room] += n
			continue
		}
		var s int
		if _, err := fmt.Sscanf(l, "%s %d", &room, &s); err != nil {
			t.Fatalf("frame %q", l)
		}
		if s <= last[room] {
			t.Fatalf("room %s: event %d after %d: %q", room, s, last[room], out)
		}
		last[room] = s
		if lost := uint64(s - seen[room]); lost > announced[room] {
			t.Fatalf("room %s: event %d comes after %d losses, %d announced: %q", room, s, lost, announced[room], out)
		}
		seen[room]++
	}
	for _, g := range c.gaps {
		announced[g.room] += g.n
	}
	for room, n := range seq {
		if lost := uint64(n - seen[room]); lost != announced[room] {
			t.Errorf("room %s: %d events lost, %d announced (%q, unannounced %v)", room, lost, announced[room], out, c.gaps)
		}
	}
	if seen["o"] != seq["o"] {
		t.Errorf("ordered frames lost: %d of %d delivered", seen["o"], seq["o"])
	}
}

// TestOverflow_conflateKeepsNewest: with fewer keys than the queue holds,
// conflation drops only superseded events: the newest event of every key
// is delivered, whatever the interleaving.
func TestOverflow_conflateKeepsNewest(t *testing.T) {
	t.Parallel()
	for seed := range 200 {
		c := queueConn(t, 8, 1<<20)
		newest := map[string]int{}
		var out []string
		x := uint32(seed*2654435761 + 1)
		for i := range 300 {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			key := fmt.Sprint("k", x%5)
			if x%7 == 0 {
				b, _, _ := c.takeWork(x%2 == 0)
				if b != nil {
					writeSome(c, b, int(x>>8%4))
					out = append(out, labels(t, b.bufs)...)
					releaseBatch(b)
				}
			}
			qpush{"b", OverflowConflate, key, fmt.Sprintf("%s %d", key, i)}.offer(c)
			newest[key] = i
			checkBounds(t, c)
		}
		for range 2 {
			if b, _, _ := c.takeWork(false); b != nil {
				out = append(out, labels(t, b.bufs)...)
			}
		}
		for key, i := range newest {
			if !slices.Contains(out, fmt.Sprintf("%s %d", key, i)) {
				t.Fatalf("seed %d: the newest event of %s (%d) was not delivered: %q", seed, key, i, out)
			}
		}
	}
}

// writeSome models a non-blocking write of a lossy batch the socket takes
// only k frames of, the next one in part: the rest goes back to the queue
// (requeueUnwritten); b keeps what was written or started.
func writeSome(c *conn, b *batch, k int) {
	if k >= len(b.bufs) || b.meta == nil {
		return
	}
	rest := slices.Clone(b.bufs[k:])
	if len(rest[0]) > 1 && k%2 == 1 {
		rest[0] = rest[0][1:] // started
	}
	c.requeueUnwritten(b, rest)
}

func TestOverflow_policy(t *testing.T) {
	t.Parallel()
	cp := mustCompile(t, Policy{Overflow: []OverflowRule{
		{Rooms: []string{"telemetry:audit"}, Mode: OverflowClose},
		{Rooms: []string{"telemetry:*", "metrics:**"}, Mode: OverflowConflate},
		{Rooms: []string{"feed:*"}, Mode: OverflowDropOldest},
	}})
	for room, want := range map[string]OverflowMode{
		"telemetry:7":     OverflowConflate,
		"telemetry:audit": OverflowClose, // the first rule that matches decides
		"metrics:a:b":     OverflowConflate,
		"feed:news":       OverflowDropOldest,
		"staff":           OverflowClose,
	} {
		if got := cp.overflowOf(room); got != want {
			t.Errorf("overflowOf(%q) = %v, want %v", room, got, want)
		}
	}
	for _, tt := range []struct {
		rule OverflowRule
		want string
	}{
		{OverflowRule{Rooms: []string{"a"}, Mode: 9}, "Overflow[0]: unknown mode 9"},
		{OverflowRule{Mode: OverflowConflate}, "Overflow[0]: no rooms"},
		{OverflowRule{Rooms: []string{"user:{sub}"}, Mode: OverflowConflate}, "{sub} is not allowed"},
		{OverflowRule{Rooms: []string{"bad room"}, Mode: OverflowConflate}, "Overflow[0].Rooms[0]"},
	} {
		_, err := compilePolicy(Policy{Overflow: []OverflowRule{tt.rule}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: error %v, want one containing %q", tt.rule, err, tt.want)
		}
	}
	for m, want := range map[OverflowMode]string{OverflowClose: "close", OverflowDropOldest: "drop-oldest", OverflowConflate: "conflate", 7: "OverflowMode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint8(m), got, want)
		}
	}
}
