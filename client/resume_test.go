package client

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
)

// seqRecorder records the n of sensor:data events per room.
type seqRecorder struct {
	mu     sync.Mutex
	got    map[string][]int
	resets []string
	ch     chan struct{}
}

func newSeqRecorder() *seqRecorder {
	return &seqRecorder{got: map[string][]int{}, ch: make(chan struct{}, 1000)}
}

func (r *seqRecorder) event(e Event) {
	var d struct{ N int }
	_ = json.Unmarshal(e.Data, &d)
	r.mu.Lock()
	r.got[e.Room] = append(r.got[e.Room], d.N)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *seqRecorder) reset(room string) {
	r.mu.Lock()
	r.resets = append(r.resets, room)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

// wait waits until room has n events.
func (r *seqRecorder) wait(t *testing.T, room string, n int) []int {
	t.Helper()
	deadline := time.After(testWait)
	for {
		r.mu.Lock()
		got := slices.Clone(r.got[room])
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("room %s: got %v, want %d events", room, got, n)
		}
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestResume: the server restarts while events are published (its broker's
// history survives, as Redis would); the client reconnects, resumes its own
// room and an auto-joined one, and gets every event once, in order.
func TestResume(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		history int
		reset   bool
	}{
		{"within history", 100, false},
		{"beyond history", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{History: rthub.HistoryPolicy{Default: rthub.HistoryLimits{Size: tc.history}}})
			if err != nil {
				t.Fatal(err)
			}
			ts := startHub(t, func(o *rthub.Options) { o.Broker = root.Peer() })
			// Another node publishes while the first is down.
			other, err := rthub.New(rthub.Options{Auth: rthub.AuthOptions{Keys: map[string]any{"": testSecret}}, Broker: root.Peer(), PublishOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { other.Close() })
			pub := func(room string, from, to int) {
				t.Helper()
				for i := from; i <= to; i++ {
					if err := other.Publish(t.Context(), room, "sensor:data", map[string]int{"n": i}); err != nil {
						t.Fatal(err)
					}
				}
			}
			rec := newSeqRecorder()
			states := newStateRecorder()
			c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), Rooms: []string{"device:1"},
				OnReset: rec.reset, OnState: states.record})
			c.On("sensor:data", rec.event)
			states.wait(t, Connected)

			pub("device:1", 1, 3)
			pub("staff", 1, 3)
			rec.wait(t, "device:1", 3)
			rec.wait(t, "staff", 3)
			ts.kill()
			states.wait(t, Reconnecting)
			pub("device:1", 4, 6)
			pub("staff", 4, 6)
			ts.serve(ts.addr)
			states.wait(t, Connected)
			pub("device:1", 7, 7)
			pub("staff", 7, 7)
			if !tc.reset {
				for _, room := range []string{"device:1", "staff"} {
					if got := rec.wait(t, room, 7); fmt.Sprint(got) != fmt.Sprint(seq(1, 7)) {
						t.Errorf("%s: got %v, want 1..7 once each", room, got)
					}
				}
				if len(rec.resets) != 0 {
					t.Errorf("resets %v", rec.resets)
				}
				return
			}
			// Beyond the history: both rooms reset, and carry on live.
			for _, room := range []string{"device:1", "staff"} {
				if got := rec.wait(t, room, 4); fmt.Sprint(got) != fmt.Sprint([]int{1, 2, 3, 7}) {
					t.Errorf("%s: got %v, want 1 2 3, then 7 after the reset", room, got)
				}
			}
			rec.mu.Lock()
			resets := slices.Sorted(slices.Values(rec.resets))
			rec.mu.Unlock()
			if fmt.Sprint(resets) != "[device:1 staff]" {
				t.Errorf("resets %v, want device:1 and staff", resets)
			}
		})
	}
}
