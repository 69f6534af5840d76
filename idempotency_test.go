package rthub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestValidIdemKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key  string
		want bool
	}{
		{"k", true},
		{"0b6f7a1e-5c1d-4c2e-9a57-2f1d3a9c8e10", true},
		{strings.Repeat("k", MaxIdempotencyKeyLen), true},
		{strings.Repeat("k", MaxIdempotencyKeyLen+1), false},
		{"", false},
		{"with space", true},
		{"nul\x00", false},
		{"tab\t", false},
		{"é", false},
	} {
		if got := validIdemKey(tc.key); got != tc.want {
			t.Errorf("validIdemKey(%q) = %v, want %v", tc.key, got, tc.want)
		}
	}
}

// TestIdemStore_Bounds steps through the store's bounds and TTL on a fake
// clock.
func TestIdemStore_Bounds(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := newIdemStore(IdempotencyOptions{TTL: time.Minute, MaxKeysPerUser: 2, MaxBytesPerUser: 1000, MaxBytes: 1500}, nil)
	s.now = func() time.Time { return now }
	run := func(user, key string, data string) {
		t.Helper()
		e, first, err := s.begin(user, key, "call", "rpc", "")
		if err != nil || !first {
			t.Fatalf("begin(%s, %s) = first %v, err %v; want a first run", user, key, first, err)
		}
		s.finish(e, json.RawMessage(data), nil, true)
	}
	remembered := func(user, key string) bool {
		t.Helper()
		e, first, err := s.begin(user, key, "call", "rpc", "")
		if err != nil {
			t.Fatal(err)
		}
		if first {
			s.finish(e, nil, nil, false) // leave no trace
			return false
		}
		_, _, ok := s.outcome(e)
		return ok
	}

	run("alice", "a1", `1`)
	run("alice", "a2", `2`)
	if !remembered("alice", "a1") || !remembered("alice", "a2") {
		t.Fatal("alice's two keys are not remembered")
	}
	run("alice", "a3", `3`) // MaxKeysPerUser 2: a1 goes
	if remembered("alice", "a1") || !remembered("alice", "a3") {
		t.Error("past MaxKeysPerUser the oldest key is not the one forgotten")
	}
	if remembered("bob", "a3") {
		t.Error("keys are shared between users")
	}
	// A key reused for another command is refused.
	if _, _, err := s.begin("alice", "a3", "emit", "rpc", ""); !errors.Is(err, ErrBadRequest) {
		t.Errorf("reused key: err = %v, want ErrBadRequest", err)
	}
	// MaxBytesPerUser: one outcome of 700 bytes leaves room for no other.
	big := `"` + strings.Repeat("x", 500) + `"`
	run("carol", "c1", big)
	run("carol", "c2", big)
	if remembered("carol", "c1") || !remembered("carol", "c2") {
		t.Error("past MaxBytesPerUser the oldest key is not the one forgotten")
	}
	// MaxBytes (all users): dave's outcome pushes out the hub's oldest.
	run("dave", "d1", big)
	if n, b := s.size(); b > 1500 {
		t.Errorf("store holds %d outcomes, %d bytes > MaxBytes 1500", n, b)
	}
	if !remembered("dave", "d1") {
		t.Error("the newest outcome was evicted")
	}
	// Too large on its own: not remembered.
	run("erin", "e1", `"`+strings.Repeat("x", 1000)+`"`)
	if remembered("erin", "e1") {
		t.Error("an outcome over MaxBytesPerUser was remembered")
	}
	// TTL.
	now = now.Add(time.Minute)
	if remembered("dave", "d1") {
		t.Error("an outcome past its TTL was remembered")
	}
	if n, b := s.size(); n != 0 || b != 0 {
		t.Errorf("after the TTL the store holds %d outcomes, %d bytes", n, b)
	}
	if len(s.users) != 0 {
		t.Errorf("after the TTL the store has %d users", len(s.users))
	}
}

// TestIdemStore_Forgotten: a run that leaves no outcome wakes its waiters,
// and the next begin runs again.
func TestIdemStore_Forgotten(t *testing.T) {
	t.Parallel()
	s := newIdemStore(IdempotencyOptions{TTL: time.Minute, MaxKeysPerUser: 10, MaxBytesPerUser: 1 << 20, MaxBytes: 1 << 20}, nil)
	e, first, _ := s.begin("u", "k", "emit", "chat:message", "staff")
	if !first {
		t.Fatal("not first")
	}
	e2, first2, _ := s.begin("u", "k", "emit", "chat:message", "staff")
	if first2 || e2 != e {
		t.Fatal("a retry during the run is not given the running entry")
	}
	s.finish(e, nil, context.Canceled, false)
	<-e2.ready
	if _, _, ok := s.outcome(e2); ok {
		t.Error("a forgotten run has an outcome")
	}
	if _, first, _ := s.begin("u", "k", "emit", "chat:message", "staff"); !first {
		t.Error("after a forgotten run, the key does not run again")
	}
}

func TestNewIdemStore_Off(t *testing.T) {
	t.Parallel()
	o := IdempotencyOptions{TTL: -1}
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if newIdemStore(o, nil) != nil {
		t.Error("a negative TTL does not turn the memory off")
	}
	o = IdempotencyOptions{MaxBytes: -1}
	if err := o.setDefaults(); err == nil {
		t.Error("negative MaxBytes accepted")
	}
}

var (
	testIdemRPC   = NewRPC[string, string]("test:idem")
	testIdemEvent = NewEvent[chatMessage]("test:idem-emit")
)

// TestHub_Idempotency: over real sockets, a retried key is answered with
// the first outcome, a retry during the first run joins it (the handler
// runs once), a run cut short is not remembered, and keys are per user.
func TestHub_Idempotency(t *testing.T) {
	t.Parallel()
	var callRuns, emitRuns atomic.Int64
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	h, url := testHub(t, func(o *Options) {
		o.Policy = rpcPolicy([]string{"test:*"})
		for name, r := range o.Policy.Roles {
			r.Emit = append(r.Emit, EmitRule{Events: []string{"test:idem-emit"}, Rooms: []string{"staff"}})
			o.Policy.Roles[name] = r
		}
		o.Handlers = append(o.Handlers, testIdemEvent.Handle(func(ctx context.Context, in Incoming[chatMessage]) error {
			emitRuns.Add(1)
			if in.Data.Text == "refuse" {
				return &ReplyError{Code: "refused", Message: "no"}
			}
			return nil
		}))
		o.RPCs = []RPCHandler{testIdemRPC.Handle(func(ctx context.Context, req Request[string]) (string, error) {
			n := callRuns.Add(1)
			switch req.Data {
			case "block":
				started <- struct{}{}
				select {
				case <-release:
				case <-ctx.Done():
					return "", ctx.Err()
				}
			case "hold":
				started <- struct{}{}
				<-ctx.Done()
				return "", ctx.Err()
			case "err":
				return "", &ReplyError{Code: "app_error", Message: "first"}
			}
			return fmt.Sprintf("%s#%d by %s", req.Data, n, req.Key), nil
		})}
	})
	alice := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	alice.readType("welcome")
	alice2 := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	alice2.readType("welcome")
	bob := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	bob.readType("welcome")

	call := func(w *wsClient, data, key string) serverMsg {
		t.Helper()
		return w.cmd("call", map[string]any{"rpc": "test:idem", "data": data, "idem": key})
	}
	first := call(alice, "x", "k1")
	if !first.OK || string(first.Data) != `"x#1 by k1"` {
		t.Fatalf("first call = %+v", first)
	}
	if r := call(alice2, "x", "k1"); !r.OK || string(r.Data) != string(first.Data) {
		t.Errorf("retry on another connection = %s, want the first result %s", r.Data, first.Data)
	}
	if r := call(bob, "x", "k1"); string(r.Data) != `"x#2 by k1"` {
		t.Errorf("bob's call with alice's key = %s, want a run of its own", r.Data)
	}
	// Errors are outcomes too.
	e1 := call(alice, "err", "k2")
	e2 := call(alice, "err", "k2")
	if e1.Error == nil || e2.Error == nil || *e1.Error != *e2.Error {
		t.Errorf("error outcome not replayed: %+v / %+v", e1.Error, e2.Error)
	}
	if r := alice.cmd("emit", map[string]any{"event": "test:idem-emit", "room": "staff", "data": chatMessage{}, "idem": "k1"}); r.Error == nil || r.Error.Code != "bad_request" {
		t.Errorf("key reused for an emit: %+v, want bad_request", r.Error)
	}
	if got := callRuns.Load(); got != 3 {
		t.Errorf("handler ran %d times, want 3", got)
	}

	// A retry while the first run is going waits for it.
	alice.write(map[string]any{"id": 500, "op": "call", "rpc": "test:idem", "data": "block", "idem": "k3"})
	<-started
	alice2.write(map[string]any{"id": 501, "op": "call", "rpc": "test:idem", "data": "block", "idem": "k3"})
	deadline := time.Now().Add(10 * time.Second)
	for h.idem.waiters.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	r1, r2 := alice.readType("reply"), alice2.readType("reply")
	if !r1.OK || string(r1.Data) != string(r2.Data) {
		t.Errorf("joined retry = %s, first = %s", r2.Data, r1.Data)
	}
	if got := callRuns.Load(); got != 4 {
		t.Errorf("handler ran %d times, want 4", got)
	}
	if s := h.Stats(); s.Joined != 1 || s.Replayed != 2 {
		t.Errorf("Stats Joined %d Replayed %d, want 1 and 2", s.Joined, s.Replayed)
	}

	// A run cut short (its deadline) is not remembered: the retry runs.
	before := callRuns.Load()
	if r := alice.cmd("call", map[string]any{"rpc": "test:idem", "data": "hold", "idem": "k4", "timeout": 50}); r.Error == nil || r.Error.Code != "timeout" {
		t.Errorf("blocking call with a 50 ms timeout = %+v, want timeout", r)
	}
	<-started
	if r := call(alice, "x", "k4"); !r.OK || string(r.Data) != fmt.Sprintf(`"x#%d by k4"`, before+2) {
		t.Errorf("retry after a timeout = %+v %s, want a new run", r.Error, r.Data)
	}

	// Emits: the handler runs once per key, refusals included.
	for range 2 {
		if r := alice.cmd("emit", map[string]any{"event": "test:idem-emit", "room": "staff", "data": chatMessage{Text: "hi"}, "idem": "e1"}); !r.OK {
			t.Errorf("emit = %+v", r.Error)
		}
		if r := alice2.cmd("emit", map[string]any{"event": "test:idem-emit", "room": "staff", "data": chatMessage{Text: "refuse"}, "idem": "e2"}); r.Error == nil || r.Error.Code != "refused" {
			t.Errorf("refused emit = %+v", r)
		}
	}
	if got := emitRuns.Load(); got != 2 {
		t.Errorf("emit handler ran %d times, want 2", got)
	}
}
