package brokertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
)

// This file holds the conformance cases of the optional
// [rthub.ControlBroker]: control messages reach every live node and come
// back with their answers, a node that does not answer in time is reported
// missing, a closed node is no longer waited for, and revocation records
// are kept for their TTL. Nodes of other tests (or other processes) sharing
// the backend may answer too: the cases only check their own nodes.

// controlCases are the control-plane conformance cases, run by Run.
func (s *suite) controlCases() []struct {
	name string
	fn   func(t *testing.T)
} {
	return []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"ControlReachesEveryNode", s.controlReachesEveryNode},
		{"ControlMissingNode", s.controlMissingNode},
		{"ControlClosedNodeNotWaitedFor", s.controlClosedNode},
		{"ControlLimits", s.controlLimits},
		{"RevocationsKeptForTTL", s.revocationsKept},
	}
}

// ctlHandler answers "<node>|<msg>"; while block is open it holds every
// call until release is closed.
type ctlHandler struct {
	name    string
	mu      sync.Mutex
	got     [][]byte
	block   bool
	release chan struct{}
}

func (h *ctlHandler) HandleControl(ctx context.Context, msg []byte) []byte {
	h.mu.Lock()
	h.got = append(h.got, bytes.Clone(msg))
	block := h.block
	h.mu.Unlock()
	if block {
		select {
		case <-h.release:
		case <-ctx.Done():
		}
	}
	return []byte(h.name + "|" + string(msg))
}

func (h *ctlHandler) HandleControlResync() {}

// controlNode returns a started node that joined the control plane with a
// fresh name, or skips t when the broker is no ControlBroker.
func (s *suite) controlNode(t *testing.T) (rthub.ControlBroker, *ctlHandler) {
	t.Helper()
	b, _ := s.node(t)
	cb, ok := rthub.BrokerAs[rthub.ControlBroker](b)
	if !ok {
		t.Skipf("%T does not implement rthub.ControlBroker", b)
	}
	h := &ctlHandler{name: fmt.Sprintf("bt%s-%d", s.run, s.rooms.Add(1)), release: make(chan struct{})}
	if err := cb.StartControl(ctx(t), h.name, h); err != nil {
		t.Fatalf("StartControl: %v", err)
	}
	return cb, h
}

// replyOf returns the reply of node, or nil.
func replyOf(replies []rthub.ControlReply, node string) []byte {
	for _, r := range replies {
		if r.Node == node {
			return r.Data
		}
	}
	return nil
}

func (s *suite) controlReachesEveryNode(t *testing.T) {
	var nodes []rthub.ControlBroker
	var hs []*ctlHandler
	for range 3 {
		n, h := s.controlNode(t)
		nodes = append(nodes, n)
		hs = append(hs, h)
	}
	for i, from := range nodes {
		msg := fmt.Sprintf("hello %d from %s", i, hs[i].name)
		replies, missing, err := from.Control(ctx(t), []byte(msg))
		if err != nil {
			t.Fatalf("Control: %v", err)
		}
		for _, h := range hs {
			if got := string(replyOf(replies, h.name)); got != h.name+"|"+msg {
				t.Errorf("node %s answered %q, want %q", h.name, got, h.name+"|"+msg)
			}
			if slices.Contains(missing, h.name) {
				t.Errorf("node %s missing although it answered", h.name)
			}
		}
		if len(missing) > 0 {
			t.Logf("other live nodes missing (another test's?): %v", missing)
		}
	}
	for _, h := range hs {
		h.mu.Lock()
		if len(h.got) != len(nodes) {
			t.Errorf("node %s handled %d messages, want %d (each exactly once)", h.name, len(h.got), len(nodes))
		}
		h.mu.Unlock()
	}
}

func (s *suite) controlMissingNode(t *testing.T) {
	a, ha := s.controlNode(t)
	_, hb := s.controlNode(t)
	hb.mu.Lock()
	hb.block = true
	hb.mu.Unlock()
	defer close(hb.release)
	c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	replies, missing, err := a.Control(c, []byte("are you there"))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Control: %v", err)
	}
	if !slices.Contains(missing, hb.name) {
		t.Errorf("the silent node %s is not in missing %v", hb.name, missing)
	}
	if replyOf(replies, ha.name) == nil {
		t.Errorf("the answering node %s has no reply", ha.name)
	}
	if replyOf(replies, hb.name) != nil {
		t.Errorf("the silent node %s has a reply", hb.name)
	}
	if took < 400*time.Millisecond || took > 5*time.Second {
		t.Errorf("Control returned after %v, want at its ctx's deadline (500 ms)", took)
	}
}

func (s *suite) controlClosedNode(t *testing.T) {
	a, ha := s.controlNode(t)
	b, hb := s.controlNode(t)
	if err := b.(rthub.Broker).Close(ctx(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	replies, missing, err := a.Control(c, []byte("who is live"))
	if err != nil {
		t.Fatalf("Control: %v", err)
	}
	if replyOf(replies, ha.name) == nil {
		t.Errorf("the live node has no reply")
	}
	if replyOf(replies, hb.name) != nil || slices.Contains(missing, hb.name) {
		t.Errorf("the closed node %s was sent the message (replies %d, missing %v)", hb.name, len(replies), missing)
	}
	if _, _, err := b.Control(ctx(t), []byte("x")); !errors.Is(err, rthub.ErrBrokerClosed) {
		t.Errorf("Control after Close: %v, want ErrBrokerClosed", err)
	}
}

func (s *suite) controlLimits(t *testing.T) {
	a, _ := s.controlNode(t)
	if _, _, err := a.Control(ctx(t), bytes.Repeat([]byte("x"), rthub.MaxControlBytes+1)); err == nil {
		t.Errorf("Control of %d bytes succeeded, want an error", rthub.MaxControlBytes+1)
	}
	if err := a.PutRevocation(ctx(t), bytes.Repeat([]byte("x"), rthub.MaxControlBytes+1), time.Minute); err == nil {
		t.Errorf("PutRevocation of %d bytes succeeded, want an error", rthub.MaxControlBytes+1)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := a.Control(c, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Control with a cancelled ctx: %v, want context.Canceled", err)
	}
	if err := a.PutRevocation(c, []byte("x"), time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("PutRevocation with a cancelled ctx: %v, want context.Canceled", err)
	}
	if _, err := a.Revocations(c, 10); !errors.Is(err, context.Canceled) {
		t.Errorf("Revocations with a cancelled ctx: %v, want context.Canceled", err)
	}
}

func (s *suite) revocationsKept(t *testing.T) {
	a, _ := s.controlNode(t)
	b, _ := s.controlNode(t)
	short := "short-" + s.run + "-" + randomID()
	long := "long-" + s.run + "-" + randomID()
	if err := a.PutRevocation(ctx(t), []byte(short), 300*time.Millisecond); err != nil {
		t.Fatalf("PutRevocation: %v", err)
	}
	if err := a.PutRevocation(ctx(t), []byte(long), time.Minute); err != nil {
		t.Fatalf("PutRevocation: %v", err)
	}
	has := func(recs [][]byte, want string) bool {
		return slices.ContainsFunc(recs, func(r []byte) bool { return string(r) == want })
	}
	recs, err := b.Revocations(ctx(t), 1<<20)
	if err != nil {
		t.Fatalf("Revocations: %v", err)
	}
	if !has(recs, short) || !has(recs, long) {
		t.Fatalf("another node's Revocations lacks what was put (%d records)", len(recs))
	}
	if got, err := b.Revocations(ctx(t), 1); err != nil || len(got) != 1 {
		t.Errorf("Revocations(limit 1) = %d records, %v; want 1", len(got), err)
	}
	time.Sleep(600 * time.Millisecond)
	recs, err = b.Revocations(ctx(t), 1<<20)
	if err != nil {
		t.Fatalf("Revocations: %v", err)
	}
	if has(recs, short) {
		t.Errorf("a record is still returned after its TTL")
	}
	if !has(recs, long) {
		t.Errorf("a record within its TTL is gone")
	}
}
