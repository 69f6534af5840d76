package brokertest

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
)

// This file holds the conformance cases of relaying to a node
// ([rthub.NodeRelay]); they are skipped for a broker without it.

// relayCases are the relay conformance cases, run by Run.
func (s *suite) relayCases() []struct {
	name string
	fn   func(t *testing.T)
} {
	return []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"RelayInOrder", s.relayInOrder},
		{"RelayNoNode", s.relayNoNode},
		{"RelayLimitsAndClose", s.relayLimits},
	}
}

// relayInbox collects what a node's relay listener receives.
type relayInbox struct {
	mu   sync.Mutex
	msgs [][]byte
	more chan struct{} // 1-slot: a message arrived
}

func (r *relayInbox) add(msg []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, msg)
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

// wait returns the messages once there are n, failing t after 10 s.
func (r *relayInbox) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		got := len(r.msgs)
		msgs := r.msgs
		r.mu.Unlock()
		if got >= n {
			return msgs
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("relay listener got %d messages, want %d", got, n)
		}
	}
}

// relayNode returns a started node that listens for relayed messages as
// node, and its inbox; it skips t for a broker without NodeRelay.
func (s *suite) relayNode(t *testing.T, node string) (rthub.NodeRelay, *relayInbox) {
	t.Helper()
	b := s.newBroker(t)
	r, ok := b.(rthub.NodeRelay)
	if !ok {
		_ = b.Close(context.Background())
		t.Skip("the broker does not implement rthub.NodeRelay")
	}
	in := &relayInbox{more: make(chan struct{}, 1)}
	if err := r.ListenRelay(node, in.add); err != nil {
		t.Fatalf("ListenRelay: %v", err)
	}
	rec := NewRecorder()
	if err := b.Start(ctx(t), rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r, in
}

// relayFirst relays msg until the target listens (a broker may start
// listening shortly after Start), for at most 10 s.
func relayFirst(t *testing.T, r rthub.NodeRelay, node string, msg []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := r.Relay(ctx(t), node, msg)
		if err == nil {
			return
		}
		if !errors.Is(err, rthub.ErrNoNode) || time.Now().After(deadline) {
			t.Fatalf("Relay: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// relayInOrder: messages another node relays arrive once each, unchanged
// and in order, and only at the node they are for.
func (s *suite) relayInOrder(t *testing.T) {
	target := "bt" + s.run + "-relay-" + strconv.FormatInt(s.rooms.Add(1), 10)
	_, in := s.relayNode(t, target)
	_, bystander := s.relayNode(t, target+"x")
	sender, _ := s.node(t)
	r, ok := sender.(rthub.NodeRelay)
	if !ok {
		t.Skip("the broker does not implement rthub.NodeRelay")
	}
	relayFirst(t, r, target, []byte("0"))
	const n = 200
	want := [][]byte{[]byte("0")}
	for i := 1; i < n; i++ {
		msg := []byte(strconv.Itoa(i) + "\x00\n\xff")
		if err := r.Relay(ctx(t), target, msg); err != nil {
			t.Fatalf("Relay %d: %v", i, err)
		}
		want = append(want, msg)
	}
	got := in.wait(t, n)
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("message %d = %q, want %q", i, got[i], want[i])
		}
	}
	bystander.mu.Lock()
	defer bystander.mu.Unlock()
	if len(bystander.msgs) != 0 {
		t.Fatalf("another node got %d messages", len(bystander.msgs))
	}
}

// relayNoNode: relaying to a node nobody listens as fails with ErrNoNode.
func (s *suite) relayNoNode(t *testing.T) {
	sender, _ := s.node(t)
	r, ok := sender.(rthub.NodeRelay)
	if !ok {
		t.Skip("the broker does not implement rthub.NodeRelay")
	}
	if err := r.Relay(ctx(t), "bt"+s.run+"-nobody", []byte("x")); !errors.Is(err, rthub.ErrNoNode) {
		t.Fatalf("Relay to nobody: %v, want ErrNoNode", err)
	}
}

// relayLimits: a message over MaxRelayBytes is refused; a closed broker
// relays nothing; a closed node is no longer relayed to.
func (s *suite) relayLimits(t *testing.T) {
	target := "bt" + s.run + "-relay-" + strconv.FormatInt(s.rooms.Add(1), 10)
	b := s.newBroker(t)
	tr, ok := b.(rthub.NodeRelay)
	if !ok {
		_ = b.Close(context.Background())
		t.Skip("the broker does not implement rthub.NodeRelay")
	}
	in := &relayInbox{more: make(chan struct{}, 1)}
	if err := tr.ListenRelay(target, in.add); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx(t), NewRecorder()); err != nil {
		t.Fatal(err)
	}
	sender, _ := s.node(t)
	r := sender.(rthub.NodeRelay)
	relayFirst(t, r, target, []byte("hello"))
	if err := r.Relay(ctx(t), target, make([]byte, rthub.MaxRelayBytes+1)); !errors.Is(err, rthub.ErrBadRequest) {
		t.Errorf("Relay of MaxRelayBytes+1: %v, want ErrBadRequest", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Relay(cctx, target, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Relay with a cancelled ctx: %v", err)
	}
	if err := b.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := tr.Relay(ctx(t), target, []byte("x")); !errors.Is(err, rthub.ErrBrokerClosed) {
		t.Errorf("Relay on a closed broker: %v, want ErrBrokerClosed", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := r.Relay(ctx(t), target, []byte("late"))
		if errors.Is(err, rthub.ErrNoNode) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("Relay to a closed node: %v, want ErrNoNode", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, m := range in.msgs {
		if string(m) == "late" {
			t.Fatal("a closed node's listener was called")
		}
	}
}
