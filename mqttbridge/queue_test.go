package mqttbridge

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// qmsg is a test entry: key k, payload p, accounted size sz (default 1).
func qmsg(k, p string, sz int) *entry {
	if sz == 0 {
		sz = 1
	}
	return &entry{key: k, msg: &Message{Payload: []byte(p)}, size: sz}
}

func drainQueue(q *queue) []string {
	var out []string
	for e := q.pop(); e != nil; e = q.pop() {
		out = append(out, e.key+"="+string(e.msg.Payload))
	}
	return out
}

func TestQueue_Policies(t *testing.T) {
	t.Parallel()
	type step struct {
		key, payload string
		size         int
		want         pushResult
	}
	tests := []struct {
		name     string
		maxMsgs  int
		maxBytes int
		overflow Overflow
		conflate bool
		steps    []step
		want     []string // pop order afterwards
		bytes    int      // expected accounted bytes before popping
	}{
		{
			name: "fifo", maxMsgs: 3, maxBytes: 100,
			steps: []step{{"a", "1", 0, pushResult{queued: true}}, {"a", "2", 0, pushResult{queued: true}}},
			want:  []string{"a=1", "a=2"}, bytes: 2,
		},
		{
			name: "dropOldest", maxMsgs: 2, maxBytes: 100, overflow: DropOldest,
			steps: []step{
				{"a", "1", 0, pushResult{queued: true}},
				{"b", "2", 0, pushResult{queued: true}},
				{"c", "3", 0, pushResult{queued: true, dropped: 1}},
			},
			want: []string{"b=2", "c=3"}, bytes: 2,
		},
		{
			name: "dropNewest", maxMsgs: 2, maxBytes: 100, overflow: DropNewest,
			steps: []step{
				{"a", "1", 0, pushResult{queued: true}},
				{"b", "2", 0, pushResult{queued: true}},
				{"c", "3", 0, pushResult{dropped: 1}},
			},
			want: []string{"a=1", "b=2"}, bytes: 2,
		},
		{
			name: "conflateInPlace", maxMsgs: 3, maxBytes: 100, conflate: true,
			steps: []step{
				{"a", "1", 0, pushResult{queued: true}},
				{"b", "1", 0, pushResult{queued: true}},
				{"a", "2", 5, pushResult{queued: true, merged: true}},
				{"a", "3", 0, pushResult{queued: true, merged: true}},
			},
			// a keeps its place ahead of b, with its newest payload.
			want: []string{"a=3", "b=1"}, bytes: 2,
		},
		{
			name: "conflateFullStillMerges", maxMsgs: 2, maxBytes: 100, conflate: true, overflow: DropNewest,
			steps: []step{
				{"a", "1", 0, pushResult{queued: true}},
				{"b", "1", 0, pushResult{queued: true}},
				{"b", "2", 0, pushResult{queued: true, merged: true}},
				{"c", "1", 0, pushResult{dropped: 1}},
			},
			want: []string{"a=1", "b=2"}, bytes: 2,
		},
		{
			name: "conflateDropOldestEvictsKey", maxMsgs: 2, maxBytes: 100, conflate: true,
			steps: []step{
				{"a", "1", 0, pushResult{queued: true}},
				{"b", "1", 0, pushResult{queued: true}},
				{"c", "1", 0, pushResult{queued: true, dropped: 1}},
				// a was evicted: a new a is a new entry, evicting b.
				{"a", "2", 0, pushResult{queued: true, dropped: 1}},
			},
			want: []string{"c=1", "a=2"}, bytes: 2,
		},
		{
			name: "bytesDropOldest", maxMsgs: 10, maxBytes: 10,
			steps: []step{
				{"a", "1", 4, pushResult{queued: true}},
				{"b", "2", 4, pushResult{queued: true}},
				{"c", "3", 6, pushResult{queued: true, dropped: 1}},
				{"d", "4", 9, pushResult{queued: true, dropped: 2}},
			},
			want: []string{"d=4"}, bytes: 9,
		},
		{
			name: "bytesDropNewest", maxMsgs: 10, maxBytes: 10, overflow: DropNewest,
			steps: []step{
				{"a", "1", 4, pushResult{queued: true}},
				{"b", "2", 7, pushResult{dropped: 1}},
				{"c", "3", 6, pushResult{queued: true}},
			},
			want: []string{"a=1", "c=3"}, bytes: 10,
		},
		{
			name: "oversizedIntoEmptyQueue", maxMsgs: 10, maxBytes: 10,
			steps: []step{{"a", "1", 50, pushResult{queued: true}}},
			want:  []string{"a=1"}, bytes: 50,
		},
		{
			name: "conflateGrowsPastBytes", maxMsgs: 10, maxBytes: 10, conflate: true,
			steps: []step{
				{"a", "1", 4, pushResult{queued: true}},
				{"b", "1", 4, pushResult{queued: true}},
				// b grows to 8: a must go to make room.
				{"b", "2", 8, pushResult{queued: true, merged: true, dropped: 1}},
			},
			want: []string{"b=2"}, bytes: 8,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := newQueue(tt.maxMsgs, tt.maxBytes, tt.overflow, tt.conflate)
			for i, s := range tt.steps {
				if got := q.push(qmsg(s.key, s.payload, s.size), nil); got != s.want {
					t.Errorf("step %d: push(%s=%s) = %+v, want %+v", i, s.key, s.payload, got, s.want)
				}
				if n, _, _ := q.len(); n > tt.maxMsgs {
					t.Errorf("step %d: %d queued, over the bound %d", i, n, tt.maxMsgs)
				}
			}
			if _, b, _ := q.len(); b != tt.bytes {
				t.Errorf("bytes = %d, want %d", b, tt.bytes)
			}
			if got := drainQueue(q); !slices.Equal(got, tt.want) {
				t.Errorf("popped %q, want %q", got, tt.want)
			}
			if n, b, _ := q.len(); n != 0 || b != 0 {
				t.Errorf("after draining: %d entries, %d bytes", n, b)
			}
		})
	}
}

func TestQueue_Block(t *testing.T) {
	t.Parallel()
	q := newQueue(1, 100, Block, false)
	q.push(qmsg("a", "1", 0), nil)

	// A push into the full queue waits for a pop.
	res := make(chan pushResult)
	go func() { res <- q.push(qmsg("b", "2", 0), nil) }()
	select {
	case r := <-res:
		t.Fatalf("push into a full Block queue returned %+v without waiting", r)
	case <-time.After(50 * time.Millisecond):
	}
	if e := q.pop(); e == nil || e.key != "a" {
		t.Fatalf("pop = %v", e)
	}
	select {
	case r := <-res:
		if r != (pushResult{queued: true}) {
			t.Fatalf("push after room = %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("push still blocked after a pop")
	}

	// Closing stop gives up, dropping the message.
	stop := make(chan struct{})
	go func() { res <- q.push(qmsg("c", "3", 0), stop) }()
	close(stop)
	select {
	case r := <-res:
		if r != (pushResult{dropped: 1}) {
			t.Fatalf("push on stop = %+v, want dropped", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("push did not give up on stop")
	}
	if got := drainQueue(q); !slices.Equal(got, []string{"b=2"}) {
		t.Fatalf("queue holds %q", got)
	}
}

// TestQueue_BoundedUnderBurst pushes many messages and checks the bound and
// the accounting: every message is either popped, dropped or merged.
func TestQueue_BoundedUnderBurst(t *testing.T) {
	t.Parallel()
	for _, conflate := range []bool{false, true} {
		for _, ov := range []Overflow{DropOldest, DropNewest} {
			t.Run(fmt.Sprintf("%v/conflate=%v", ov, conflate), func(t *testing.T) {
				q := newQueue(16, 1<<20, ov, conflate)
				var dropped, merged, popped int
				for i := range 10000 {
					r := q.push(qmsg(fmt.Sprint(i%10), fmt.Sprint(i), 0), nil)
					dropped += r.dropped
					if r.merged {
						merged++
					}
					if i%100 == 0 {
						if q.pop() != nil {
							popped++
						}
					}
				}
				popped += len(drainQueue(q))
				if _, _, hw := q.len(); hw > 16 {
					t.Fatalf("high water %d over 16", hw)
				}
				if popped+dropped+merged != 10000 {
					t.Fatalf("popped %d + dropped %d + merged %d != 10000", popped, dropped, merged)
				}
				if conflate && merged == 0 || !conflate && merged != 0 {
					t.Fatalf("merged = %d with conflate=%v", merged, conflate)
				}
			})
		}
	}
}
