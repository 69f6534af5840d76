package client

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
)

// TestJoinState_Gap: a room with OverflowConflate and state; the client's
// handler is slow, so the hub drops events for it and sends gaps; the client
// reports them (OnGap) and asks for the state again; its final view is the
// publisher's final state.
func TestJoinState_Gap(t *testing.T) {
	t.Parallel()
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{State: rthub.StatePolicy{Rules: []rthub.StateRule{{Pattern: "device:**"}}}})
	if err != nil {
		t.Fatal(err)
	}
	ts := startHub(t, func(o *rthub.Options) {
		o.Broker = mb
		o.SendQueueMessages = 16
		o.Policy.Overflow = []rthub.OverflowRule{{Rooms: []string{"device:**"}, Mode: rthub.OverflowConflate}}
	})
	view := newStateView()
	var gaps atomic.Int64
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), OnSnapshot: view.snapshot, OnGap: func(string) { gaps.Add(1) }})
	c.On("sensor:data", func(e Event) {
		time.Sleep(2 * time.Millisecond) // a slow reader: 500 events/s at most
		view.mu.Lock()
		if view.vals != nil {
			var x kv
			_ = decodeJSON(e.Data, &x)
			view.vals[x.K], view.last = x.V, e.Position.Offset
		}
		view.mu.Unlock()
		view.ch <- struct{}{}
	})
	if _, err := c.JoinState(t.Context(), "device:1"); err != nil {
		t.Fatal(err)
	}
	final := map[string]int{}
	const n = 3000
	for i := 1; i <= n; i++ {
		k := []string{"a", "b", "c", "d"}[i%4]
		final[k] = i
		if err := ts.Hub().Publish(t.Context(), "device:1", "sensor:data", kv{k, i}, rthub.WithKey(k)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		view.mu.Lock()
		done := view.vals["a"] == final["a"] && view.vals["b"] == final["b"] && view.vals["c"] == final["c"] && view.vals["d"] == final["d"]
		got := view.vals
		view.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("view %v, want %v (gaps %d, snapshots %d)", got, final, gaps.Load(), view.snaps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if gaps.Load() == 0 || view.snaps < 2 {
		t.Fatalf("gaps %d, snapshots %d: want gaps, each followed by a new snapshot", gaps.Load(), view.snaps)
	}
	t.Logf("%d gaps, %d snapshots", gaps.Load(), view.snaps)
}

func decodeJSON(b []byte, v any) error { return json.Unmarshal(b, v) }
