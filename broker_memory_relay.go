package rthub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// memoryRelays are the listeners of the nodes of one in-memory cluster
// ([NodeRelay]), by node ID.
type memoryRelays struct {
	mu    sync.Mutex
	nodes map[string]*memoryRelay
}

// memoryRelay is one node's listener. mu makes its calls come one at a time.
type memoryRelay struct {
	b  *MemoryBroker
	mu sync.Mutex
	fn func(msg []byte)
}

var _ NodeRelay = (*MemoryBroker)(nil)

// ListenRelay implements [NodeRelay]: messages relayed to node by b or any
// of its peers go to fn, from Start until Close. A node ID is one node's:
// listening as a node another live peer listens as is an error.
func (b *MemoryBroker) ListenRelay(node string, fn func(msg []byte)) error {
	if node == "" || fn == nil {
		return errors.New("rthub: ListenRelay needs a node ID and a function")
	}
	if b.closed.Load() {
		return ErrBrokerClosed
	}
	rs := &b.store.relays
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if old, ok := rs.nodes[node]; ok && !old.b.closed.Load() {
		return fmt.Errorf("rthub: node %q already listens for relayed messages", node)
	}
	if rs.nodes == nil {
		rs.nodes = make(map[string]*memoryRelay)
	}
	for id, r := range rs.nodes { // forget the nodes closed since (bounded by the live ones)
		if r.b.closed.Load() {
			delete(rs.nodes, id)
		}
	}
	rs.nodes[node] = &memoryRelay{b: b, fn: fn}
	return nil
}

// Relay implements [NodeRelay]: it calls the listener of node (with a copy
// of msg) before it returns, so messages arrive in the order of the Relay
// calls that returned.
func (b *MemoryBroker) Relay(ctx context.Context, node string, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return ErrBrokerClosed
	}
	if len(msg) > MaxRelayBytes {
		return fmt.Errorf("%w: relayed message of %d bytes, at most %d", ErrBadRequest, len(msg), MaxRelayBytes)
	}
	rs := &b.store.relays
	rs.mu.Lock()
	r := rs.nodes[node]
	rs.mu.Unlock()
	if r == nil {
		return fmt.Errorf("%w: %q", ErrNoNode, node)
	}
	// The target's read lock, as around its publication handler: its Close
	// waits for this call, and no call starts after it.
	r.b.mu.RLock()
	defer r.b.mu.RUnlock()
	if r.b.handler == nil || r.b.closed.Load() { // not started, or closed
		return fmt.Errorf("%w: %q", ErrNoNode, node)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fn(slices.Clone(msg))
	return nil
}
