package rthub

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memoryCluster starts n hubs on peers of one memory broker.
func memoryCluster(t *testing.T, n int, mod func(*Options)) (*MemoryBroker, []*Hub, []string) {
	t.Helper()
	first, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var hubs []*Hub
	var urls []string
	for i := range n {
		b := first
		if i > 0 {
			b = first.Peer()
		}
		h, url := testHub(t, func(o *Options) {
			o.Broker = b
			if mod != nil {
				mod(o)
			}
		})
		hubs = append(hubs, h)
		urls = append(urls, url)
	}
	return first, hubs, urls
}

// Control calls made on one node act on the connections of every node.
func TestControlCluster(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	roles := map[string][]string{"ann": {"admin"}}
	_, hubs, urls := memoryCluster(t, 3, func(o *Options) {
		o.Roles = func(ctx context.Context, id *Identity) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			return roles[id.Subject], nil
		}
	})
	a := hubs[0]
	var mallory, ann, bob []*wsClient
	for _, url := range urls[1:] {
		for range 2 {
			mallory = append(mallory, dial(t, url, issued(t, "mallory", time.Now().Add(-time.Minute), "", "staff")))
		}
		ann = append(ann, dial(t, url, testToken(t, "ann", time.Hour, "admin")))
		bob = append(bob, dial(t, url, testToken(t, "bob", time.Hour, "staff")))
	}
	for _, c := range append(append(append([]*wsClient{}, mallory...), ann...), bob...) {
		c.readType("welcome")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	if err := a.JoinUser(ctx, "bob", "device:3"); err != nil {
		t.Fatalf("JoinUser: %v", err)
	}
	for _, c := range bob {
		if m := c.readType("joined"); m.Room != "device:3" {
			t.Errorf("joined %q", m.Room)
		}
	}
	if err := a.LeaveUser(ctx, "bob", "device:3"); err != nil {
		t.Fatalf("LeaveUser: %v", err)
	}
	for _, c := range bob {
		c.readType("left")
	}

	mu.Lock()
	roles["ann"] = []string{"staff"}
	mu.Unlock()
	res, err := a.ControlUser(ctx, "ann", UserAction{Kind: UserRecheck})
	if err != nil || res.Connections != 2 || res.Nodes != 3 {
		t.Fatalf("recheck = %+v, %v; want 2 connections, 3 nodes", res, err)
	}
	for _, c := range ann {
		if m := c.readType("left"); m.Room != "admin" || m.Reason != "recheck" {
			t.Errorf("left %q reason %q", m.Room, m.Reason)
		}
	}

	res, err = a.Revoke(ctx, Revocation{Subject: "mallory", Reason: "stolen"})
	if err != nil || res.Connections != 4 || res.Nodes != 3 || !res.Complete() {
		t.Fatalf("Revoke = %+v, %v; want 4 connections on 3 nodes", res, err)
	}
	for _, c := range mallory {
		if code := c.closeCode(); code != int(CloseTokenRevoked) {
			t.Errorf("close code %d", code)
		}
	}
	for _, url := range urls {
		expectRefused(t, url, issued(t, "mallory", time.Now().Add(-time.Minute), "", "staff"), "token_revoked")
	}
	// A node started later loads the revocation from the broker.
	late, lateURL := testHub(t, func(o *Options) { o.Broker = hubs[0].broker.(*MemoryBroker).Peer() })
	expectRefused(t, lateURL, issued(t, "mallory", time.Now().Add(-time.Minute), "", "staff"), "token_revoked")
	if n := late.Stats().RevocationsKept; n != 1 {
		t.Errorf("late node keeps %d revocations, want 1", n)
	}

	n, err := a.DisconnectUser(ctx, "bob", "bye")
	if err != nil || n != 2 {
		t.Fatalf("DisconnectUser = %d, %v", n, err)
	}
	for _, c := range bob {
		c.closeCode()
	}
	// Once their teardown is done (soon after the close handshake), bob is
	// found nowhere.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := a.DisconnectUser(ctx, "bob", "bye")
		if errors.Is(err, ErrNotFound) {
			break
		}
		if n != 0 || err != nil || time.Now().After(deadline) {
			t.Fatalf("DisconnectUser of a disconnected user: %d, %v", n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// silentNode is a control-plane node that never answers until released.
type silentNode struct{ release chan struct{} }

func (s silentNode) HandleControl(ctx context.Context, msg []byte) []byte {
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return []byte(`{"n":0}`)
}
func (silentNode) HandleControlResync() {}

// A node that does not answer before ctx's deadline makes the call
// incomplete: the error wraps ErrIncomplete and carries what the others did.
func TestControlCluster_Incomplete(t *testing.T) {
	t.Parallel()
	first, hubs, urls := memoryCluster(t, 2, nil)
	silent := first.Peer()
	rec := nopHandler{}
	if err := silent.Start(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	s := silentNode{release: make(chan struct{})}
	if err := silent.StartControl(t.Context(), "silent", s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(s.release)
		_ = silent.Close(context.Background())
	})
	c := dial(t, urls[1], testToken(t, "bob", time.Hour, "staff"))
	c.readType("welcome")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	n, err := hubs[0].DisconnectUser(ctx, "bob", "")
	var ie *IncompleteError
	if !errors.Is(err, ErrIncomplete) || !errors.As(err, &ie) {
		t.Fatalf("DisconnectUser = %d, %v; want ErrIncomplete", n, err)
	}
	if n != 1 || ie.Result != (ControlResult{Connections: 1, Nodes: 2, Missing: 1}) {
		t.Errorf("n = %d, result %+v", n, ie.Result)
	}
	if st := hubs[0].Stats(); st.ControlIncomplete != 1 {
		t.Errorf("ControlIncomplete = %d", st.ControlIncomplete)
	}
}

// brokenControl is a memory broker whose control plane fails after it
// started: the cluster is out of reach.
type brokenControl struct{ *MemoryBroker }

var errControlDown = errors.New("control plane down")

func (b brokenControl) Control(context.Context, []byte) ([]ControlReply, []string, error) {
	return nil, nil, errControlDown
}
func (b brokenControl) PutRevocation(context.Context, []byte, time.Duration) error {
	return errControlDown
}

// Without a ControlBroker the calls act on this node only; with one that
// fails they act here and say the rest is unknown.
func TestControl_NoOrBrokenControlPlane(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		broker      Broker
		wantMissing int
		wantErr     error
		revokeErr   error
	}{
		{"plain broker: this node only", struct{ Broker }{mb}, 0, nil, nil},
		{"broken control plane", brokenControl{mb.Peer()}, -1, ErrIncomplete, errControlDown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, url := testHub(t, func(o *Options) { o.Broker = tc.broker })
			c := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
			c.readType("welcome")
			res, err := h.ControlUser(t.Context(), "bob", UserAction{Kind: UserDisconnect})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("ControlUser: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil && !errors.Is(err, errControlDown) {
				t.Errorf("the broker's error is not in the chain: %v", err)
			}
			if res != (ControlResult{Connections: 1, Nodes: 1, Missing: tc.wantMissing}) {
				t.Errorf("result %+v", res)
			}
			if code := c.closeCode(); code != int(CloseDisconnected) {
				t.Errorf("close code %d", code)
			}
			_, err = h.Revoke(t.Context(), Revocation{Subject: "bob"})
			if !errors.Is(err, tc.revokeErr) || (tc.revokeErr == nil && err != nil) {
				t.Fatalf("Revoke: %v, want %v", err, tc.revokeErr)
			}
			// Enforced here either way.
			expectRefused(t, url, testToken(t, "bob", time.Hour, "staff"), "token_revoked")
		})
	}
}

// deafControl is a memory broker node whose control subscription can be
// down: while deaf, control messages never reach its hub (its answers are
// missing), as with a Redis connection that dropped; hearing again, it
// tells the hub to resync, as the Redis broker does on reconnecting.
type deafControl struct {
	*MemoryBroker
	deaf atomic.Bool
	h    ControlHandler
}

func (d *deafControl) StartControl(ctx context.Context, node string, h ControlHandler) error {
	d.h = h
	return d.MemoryBroker.StartControl(ctx, node, deafHandler{d})
}

type deafHandler struct{ d *deafControl }

func (x deafHandler) HandleControl(ctx context.Context, msg []byte) []byte {
	if x.d.deaf.Load() {
		<-ctx.Done() // lost: the caller counts this node missing
		return nil
	}
	return x.d.h.HandleControl(ctx, msg)
}
func (x deafHandler) HandleControlResync() { x.d.h.HandleControlResync() }

// TestControlCluster_RevokedDuringOutage: a revocation made while a node's
// control subscription was down closes that node's connections with the
// token once the node resyncs (the reload after the resync is where the
// missed push arrives), and counts them once.
func TestControlCluster_RevokedDuringOutage(t *testing.T) {
	t.Parallel()
	first, hubs, _ := memoryCluster(t, 1, nil)
	d := &deafControl{MemoryBroker: first.Peer()}
	b, bURL := testHub(t, func(o *Options) { o.Broker = d })
	c := dial(t, bURL, issued(t, "mallory", time.Now().Add(-time.Minute), "m1", "staff"))
	c.readType("welcome")
	other := dial(t, bURL, issued(t, "mallory", time.Now().Add(-time.Minute), "m2", "staff"))
	other.readType("welcome")

	d.deaf.Store(true)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := hubs[0].Revoke(ctx, Revocation{TokenID: "m1"}); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("Revoke with a deaf node: %v, want ErrIncomplete", err)
	}
	if r := c.cmd("ping", nil); !r.OK {
		t.Fatalf("before the resync the deaf node's connection is open: %+v", r)
	}

	d.deaf.Store(false)
	d.h.HandleControlResync()
	if code := c.closeCode(); code != int(CloseTokenRevoked) {
		t.Fatalf("after the resync: close code %d, want %d", code, CloseTokenRevoked)
	}
	if r := other.cmd("ping", nil); !r.OK {
		t.Errorf("a connection with another token: %+v", r)
	}
	if n := b.Stats().RevokedConns; n != 1 {
		t.Errorf("RevokedConns = %d, want 1", n)
	}
}
