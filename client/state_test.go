package client

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
)

// stateView is an app's view of a room joined with state: the snapshot,
// then the events after it.
type stateView struct {
	mu    sync.Mutex
	vals  map[string]int
	last  uint64
	snaps int
	errs  []string
	ch    chan struct{}
}

func newStateView() *stateView { return &stateView{ch: make(chan struct{}, 1000)} }

type kv struct {
	K string `json:"k"`
	V int    `json:"v"`
}

func (v *stateView) snapshot(s Snapshot) {
	v.mu.Lock()
	v.snaps++
	v.vals = map[string]int{}
	for _, e := range s.Events {
		var x kv
		_ = json.Unmarshal(e.Data, &x)
		v.vals[x.K] = x.V
	}
	v.last = s.Position.Offset
	v.mu.Unlock()
	v.ch <- struct{}{}
}

func (v *stateView) event(e Event) {
	var x kv
	_ = json.Unmarshal(e.Data, &x)
	v.mu.Lock()
	if v.vals == nil || e.Position.Offset != v.last+1 {
		v.errs = append(v.errs, fmt.Sprintf("event at %d after %d", e.Position.Offset, v.last))
	}
	if v.vals != nil {
		v.vals[x.K], v.last = x.V, e.Position.Offset
	}
	v.mu.Unlock()
	v.ch <- struct{}{}
}

// waitFor waits until the view's last offset is at least off.
func (v *stateView) waitFor(t *testing.T, off uint64) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		v.mu.Lock()
		done, got := v.last >= off, fmt.Sprint(v.vals)
		v.mu.Unlock()
		if done {
			return got
		}
		select {
		case <-v.ch:
		case <-deadline:
			t.Fatalf("view stuck at %d (%s), want offset %d", v.last, got, off)
		}
	}
}

// TestJoinState: JoinState returns the snapshot and passes it to
// OnSnapshot before the events after it; after a restart beyond history
// (recovered:false) the client asks for the state again on its own.
func TestJoinState(t *testing.T) {
	t.Parallel()
	root, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{
		History: rthub.HistoryPolicy{Default: rthub.HistoryLimits{Size: 2}},
		State:   rthub.StatePolicy{Rules: []rthub.StateRule{{Pattern: "device:**"}, {Pattern: "staff"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := startHub(t, func(o *rthub.Options) { o.Broker = root.Peer() })
	other, err := rthub.New(rthub.Options{Auth: rthub.AuthOptions{Keys: map[string]any{"": testSecret}}, Broker: root.Peer(), PublishOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	n := 0
	pubTo := func(room string, keys ...string) {
		t.Helper()
		for _, k := range keys {
			n++
			if err := other.Publish(t.Context(), room, "sensor:data", kv{k, n}, rthub.WithKey(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	pub := func(keys ...string) { t.Helper(); pubTo("device:1", keys...) }
	staffN := 0
	pubStaff := func(keys ...string) {
		t.Helper()
		for _, k := range keys {
			staffN++
			if err := other.Publish(t.Context(), "staff", "staff:data", kv{k, staffN}, rthub.WithKey(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	pub("a", "b", "a")
	view, staffView := newStateView(), newStateView()
	states := newStateRecorder()
	resets := make(chan string, 10)
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), OnSnapshot: func(s Snapshot) {
		if s.Room == "staff" {
			staffView.snapshot(s)
		} else {
			view.snapshot(s)
		}
	}, OnState: states.record, OnReset: func(r string) { resets <- r }})
	c.On("sensor:data", view.event)
	c.On("staff:data", staffView.event)
	states.wait(t, Connected)
	snap, err := c.JoinState(t.Context(), "device:1")
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Kept || snap.Position.Offset != 3 || len(snap.Events) != 2 || snap.Events[1].Position.Offset != 3 {
		t.Fatalf("snapshot %+v, want the latest of a and b at offset 3", snap)
	}
	pub("c")
	if got := view.waitFor(t, 4); got != "map[a:3 b:2 c:4]" {
		t.Fatalf("view %s", got)
	}
	// staff, a room the server joins by itself, joined with state too.
	pubStaff("x")
	if _, err := c.JoinState(t.Context(), "staff"); err != nil {
		t.Fatal(err)
	}
	if got := staffView.waitFor(t, 1); got != "map[x:1]" {
		t.Fatalf("staff view %s", got)
	}

	ts.kill()
	states.wait(t, Reconnecting)
	pub("a", "d", "b", "d") // more than the history of 2: not recoverable
	pubStaff("y", "x", "y")
	ts.serve(ts.addr)
	states.wait(t, Connected)
	pub("e")
	pubStaff("z")
	if got := view.waitFor(t, 9); got != "map[a:5 b:7 c:4 d:8 e:9]" {
		t.Fatalf("view after the restart %s", got)
	}
	if got := staffView.waitFor(t, 5); got != "map[x:3 y:4 z:5]" {
		t.Fatalf("staff view after the restart %s (resumed with ?since=, not recoverable: a new snapshot)", got)
	}
	for name, v := range map[string]*stateView{"device:1": view, "staff": staffView} {
		v.mu.Lock()
		if v.snaps != 2 || len(v.errs) != 0 {
			t.Errorf("%s: %d snapshots (want 2: the join's and the reconnection's), errors %v", name, v.snaps, v.errs)
		}
		v.mu.Unlock()
	}
	select {
	case r := <-resets:
		t.Logf("OnReset(%s) too", r)
	default:
	}

	// A room without state: the join succeeds, Kept is false.
	snap, err = c.JoinState(t.Context(), "user:alice")
	if err != nil || snap.Kept {
		t.Fatalf("JoinState of a room without state: %+v %v", snap, err)
	}
}
