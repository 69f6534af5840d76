// Package commandstoretest is a conformance suite for implementations of
// [mqttbridge.CommandStore]: the in-memory store passes it, and so must
// yours (examples/iotserver runs it against its PostgreSQL store).
//
//	func TestPGCommandStore(t *testing.T) {
//		commandstoretest.Run(t, func(t *testing.T) mqttbridge.CommandStore {
//			return newEmptyStore(t)
//		})
//	}
package commandstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub/mqttbridge"
)

// Run runs the suite. newStore returns an empty store for each subtest
// (they run one after the other); the test's cleanup may close it.
func Run(t *testing.T, newStore func(t *testing.T) mqttbridge.CommandStore) {
	t.Run("AddGet", func(t *testing.T) { testAddGet(t, newStore(t)) })
	t.Run("Bounds", func(t *testing.T) { testBounds(t, newStore(t)) })
	t.Run("Queued", func(t *testing.T) { testQueued(t, newStore(t)) })
	t.Run("ClaimOnce", func(t *testing.T) { testClaimOnce(t, newStore(t)) })
	t.Run("Finish", func(t *testing.T) { testFinish(t, newStore(t)) })
	t.Run("Expire", func(t *testing.T) { testExpire(t, newStore(t)) })
}

// t0 is a fixed time, microsecond precision (PostgreSQL's).
var t0 = time.Date(2026, 12, 2, 8, 0, 0, 123456000, time.UTC)

func cmd(id, device string, created time.Time, ttl time.Duration) mqttbridge.Result {
	return mqttbridge.Result{ID: id, Device: device, Name: "set", Args: json.RawMessage(`{"v":1}`),
		State: mqttbridge.CommandQueued, Created: created, Expires: created.Add(ttl)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustAdd(t *testing.T, s mqttbridge.CommandStore, c mqttbridge.Result) {
	t.Helper()
	if err := s.Add(ctx(t), c, 100, 1000); err != nil {
		t.Fatalf("Add(%s): %v", c.ID, err)
	}
}

func ids(rs []mqttbridge.Result) string {
	out := ""
	for i, r := range rs {
		if i > 0 {
			out += ","
		}
		out += r.ID
	}
	return out
}

func testAddGet(t *testing.T, s mqttbridge.CommandStore) {
	c := cmd("c1", "d1", t0, time.Minute)
	mustAdd(t, s, c)
	got, err := s.Get(ctx(t), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "c1" || got.Device != "d1" || got.Name != "set" || string(got.Args) != `{"v":1}` ||
		got.State != mqttbridge.CommandQueued || !got.Created.Equal(t0) || !got.Expires.Equal(t0.Add(time.Minute)) ||
		!got.SentAt.IsZero() || !got.FinishedAt.IsZero() {
		t.Fatalf("Get = %+v", got)
	}
	if err := s.Add(ctx(t), c, 100, 1000); !errors.Is(err, mqttbridge.ErrDuplicateCommand) {
		t.Fatalf("Add of a known ID: %v, want ErrDuplicateCommand", err)
	}
	if _, err := s.Get(ctx(t), "nope"); !errors.Is(err, mqttbridge.ErrUnknownCommand) {
		t.Fatalf("Get of an unknown ID: %v, want ErrUnknownCommand", err)
	}
}

func testBounds(t *testing.T, s mqttbridge.CommandStore) {
	steps := []struct {
		id, device string
		full       bool
	}{
		{"a1", "a", false}, {"a2", "a", false}, {"a3", "a", true}, // 2 per device
		{"b1", "b", false}, {"c1", "c", true}, // 3 in total
	}
	for i, st := range steps {
		err := s.Add(ctx(t), cmd(st.id, st.device, t0.Add(time.Duration(i)*time.Millisecond), time.Minute), 2, 3)
		if st.full != errors.Is(err, mqttbridge.ErrQueueFull) || (!st.full && err != nil) {
			t.Errorf("step %d: Add(%s) = %v, want full %v", i, st.id, err, st.full)
		}
	}
	// A finished command no longer counts.
	if _, ok, err := s.Finish(ctx(t), "a1", "a", mqttbridge.CommandDone, nil, "", t0.Add(time.Second)); !ok || err != nil {
		t.Fatalf("Finish: %v %v", ok, err)
	}
	if err := s.Add(ctx(t), cmd("a4", "a", t0.Add(time.Second), time.Minute), 2, 3); err != nil {
		t.Fatalf("Add after a finish: %v", err)
	}
}

func testQueued(t *testing.T, s mqttbridge.CommandStore) {
	mustAdd(t, s, cmd("q2", "d", t0.Add(2*time.Millisecond), time.Minute))
	mustAdd(t, s, cmd("q1", "d", t0.Add(time.Millisecond), time.Minute))
	mustAdd(t, s, cmd("q3", "d", t0.Add(3*time.Millisecond), time.Minute))
	mustAdd(t, s, cmd("short", "d", t0, time.Second))
	mustAdd(t, s, cmd("other", "e", t0, time.Minute))
	now := t0.Add(2 * time.Second) // short has expired
	tests := []struct {
		n    int
		want string
	}{{10, "q1,q2,q3"}, {2, "q1,q2"}}
	for _, tt := range tests {
		got, err := s.Queued(ctx(t), "d", now, tt.n)
		if err != nil || ids(got) != tt.want {
			t.Errorf("Queued(n=%d) = %s, %v; want %s", tt.n, ids(got), err, tt.want)
		}
	}
	if ok, err := s.Claim(ctx(t), "q1", now); !ok || err != nil {
		t.Fatalf("Claim: %v %v", ok, err)
	}
	if got, _ := s.Queued(ctx(t), "d", now, 10); ids(got) != "q2,q3" {
		t.Errorf("Queued after a claim = %s", ids(got))
	}
	got, err := s.Waiting(ctx(t), now, 10)
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"d", "e"}) {
		t.Errorf("Waiting = %q, %v; want [d e]", got, err)
	}
	if got, _ := s.Waiting(ctx(t), now, 1); len(got) != 1 {
		t.Errorf("Waiting(n=1) = %q", got)
	}
	if got, _ := s.Waiting(ctx(t), t0.Add(time.Hour), 10); len(got) != 0 {
		t.Errorf("Waiting after every TTL = %q", got)
	}
	if err := s.Release(ctx(t), "q1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Queued(ctx(t), "d", now, 10); ids(got) != "q1,q2,q3" {
		t.Errorf("Queued after a release = %s", ids(got))
	}
}

func testClaimOnce(t *testing.T, s mqttbridge.CommandStore) {
	mustAdd(t, s, cmd("once", "d", t0, time.Minute))
	mustAdd(t, s, cmd("late", "d", t0, time.Second))
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 16 {
		wg.Go(func() {
			ok, err := s.Claim(ctx(t), "once", t0.Add(time.Millisecond))
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent Claims won, want 1", wins)
	}
	got, _ := s.Get(ctx(t), "once")
	if got.State != mqttbridge.CommandSent || !got.SentAt.Equal(t0.Add(time.Millisecond)) {
		t.Fatalf("after Claim: %+v", got)
	}
	for _, tt := range []struct {
		id string
		at time.Time
	}{{"unknown", t0}, {"late", t0.Add(time.Second)}} {
		if ok, err := s.Claim(ctx(t), tt.id, tt.at); ok || err != nil {
			t.Errorf("Claim(%s) = %v, %v; want false, nil", tt.id, ok, err)
		}
	}
}

func testFinish(t *testing.T, s mqttbridge.CommandStore) {
	mustAdd(t, s, cmd("f", "d", t0, time.Minute))
	at := t0.Add(time.Second)
	if _, ok, err := s.Finish(ctx(t), "f", "other", mqttbridge.CommandDone, nil, "", at); ok || err != nil {
		t.Fatalf("Finish by another device = %v, %v", ok, err)
	}
	r, ok, err := s.Finish(ctx(t), "f", "d", mqttbridge.CommandFailed, json.RawMessage(`{"x":2}`), "no", at)
	if !ok || err != nil || r.State != mqttbridge.CommandFailed || r.Error != "no" || string(r.Reply) != `{"x":2}` || !r.FinishedAt.Equal(at) {
		t.Fatalf("Finish = %+v, %v, %v", r, ok, err)
	}
	if got, _ := s.Get(ctx(t), "f"); got.State != mqttbridge.CommandFailed || got.Error != "no" {
		t.Fatalf("Get after Finish = %+v", got)
	}
	if _, ok, _ := s.Finish(ctx(t), "f", "d", mqttbridge.CommandDone, nil, "", at); ok {
		t.Fatal("a second Finish won")
	}
	if ok, _ := s.Claim(ctx(t), "f", at); ok {
		t.Fatal("Claim of a finished command won")
	}
	if _, ok, _ := s.Finish(ctx(t), "unknown", "d", mqttbridge.CommandDone, nil, "", at); ok {
		t.Fatal("Finish of an unknown command won")
	}
}

func testExpire(t *testing.T, s mqttbridge.CommandStore) {
	for i := range 5 {
		mustAdd(t, s, cmd(fmt.Sprintf("e%d", i), "d", t0, time.Duration(i+1)*time.Second))
	}
	if ok, _ := s.Claim(ctx(t), "e0", t0); !ok {
		t.Fatal("Claim e0")
	}
	if _, ok, _ := s.Finish(ctx(t), "e1", "d", mqttbridge.CommandDone, nil, "", t0); !ok {
		t.Fatal("Finish e1")
	}
	now := t0.Add(3 * time.Second) // e0, e1, e2 due; e1 finished
	got, err := s.Expire(ctx(t), now, 1)
	if err != nil || ids(got) != "e0" {
		t.Fatalf("Expire(n=1) = %s, %v; want e0", ids(got), err)
	}
	if r := got[0]; r.State != mqttbridge.CommandExpired || !r.FinishedAt.Equal(now) || !r.SentAt.Equal(t0) {
		t.Fatalf("expired sent command = %+v", r)
	}
	got, err = s.Expire(ctx(t), now, 10)
	if err != nil || ids(got) != "e2" {
		t.Fatalf("Expire = %s, %v; want e2", ids(got), err)
	}
	if got, _ := s.Expire(ctx(t), now, 10); len(got) != 0 {
		t.Fatalf("a second Expire = %s", ids(got))
	}
	if _, ok, _ := s.Finish(ctx(t), "e2", "d", mqttbridge.CommandDone, nil, "", now); ok {
		t.Fatal("Finish of an expired command won")
	}
	if q, _ := s.Queued(ctx(t), "d", now, 10); ids(q) != "e3,e4" {
		t.Fatalf("Queued = %s, want e3,e4", ids(q))
	}
}
