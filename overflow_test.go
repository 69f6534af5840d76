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
