package rthub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// This file makes the MemoryBroker a [ControlBroker]: the peers of one
// in-memory cluster ([MemoryBroker.Peer]) are its nodes; a node is live from
// StartControl until Close.

var _ ControlBroker = (*MemoryBroker)(nil)

// Bounds of the memory broker's control plane.
const (
	// memoryControlWorkers bounds the handler calls in flight per node; a
	// message that finds them all busy is not delivered to the node, whose
	// sender sees it missing.
	memoryControlWorkers = 64
	// memoryMaxRevocations bounds the revocations a memory cluster keeps;
	// PutRevocation past it (expired ones pruned) fails.
	memoryMaxRevocations = 1 << 20
)

// errRevocationStoreFull is PutRevocation's error at memoryMaxRevocations.
var errRevocationStoreFull = errors.New("rthub: memory broker: revocation store full")

// memoryControl is the control plane a memory cluster's nodes share.
type memoryControl struct {
	mu    sync.Mutex
	nodes map[string]*MemoryBroker // live nodes by name
	revs  []memoryRevocation
}

type memoryRevocation struct {
	data    []byte
	expires time.Time
}

// memoryControlNode is one node's part of the control plane.
type memoryControlNode struct {
	mu      sync.Mutex // guards the fields below and Adds to wg
	name    string
	h       ControlHandler
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	closed  bool
	started bool
	sem     chan struct{} // memoryControlWorkers slots
	wg      sync.WaitGroup
}

// StartControl implements [ControlBroker]: the node, named node, is live
// until Close.
func (b *MemoryBroker) StartControl(ctx context.Context, node string, h ControlHandler) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if h == nil || node == "" {
		return errors.New("rthub: memory broker: StartControl needs a node name and a handler")
	}
	n := &b.ctl
	n.mu.Lock()
	switch {
	case n.closed || b.closed.Load():
		n.mu.Unlock()
		return ErrBrokerClosed
	case n.started:
		n.mu.Unlock()
		return errors.New("rthub: memory broker: control already started")
	}
	n.started, n.name, n.h = true, node, h
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.sem = make(chan struct{}, memoryControlWorkers)
	n.mu.Unlock()

	c := &b.store.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.nodes[node]; dup {
		return fmt.Errorf("rthub: memory broker: node %q already live", node)
	}
	c.nodes[node] = b
	return nil
}

// Control implements [ControlBroker]. Each live node's handler runs on a
// goroutine of that node (owner: the node; Close waits for it). A node
// with 64 handler calls in flight misses the message and is returned as
// missing at once.
func (b *MemoryBroker) Control(ctx context.Context, msg []byte) ([]ControlReply, []string, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if b.closed.Load() {
		return nil, nil, ErrBrokerClosed
	}
	if len(msg) > MaxControlBytes {
		return nil, nil, fmt.Errorf("rthub: memory broker: control message of %d bytes, at most %d", len(msg), MaxControlBytes)
	}
	c := &b.store.ctl
	c.mu.Lock()
	nodes := make([]*MemoryBroker, 0, len(c.nodes))
	for _, nb := range c.nodes {
		nodes = append(nodes, nb)
	}
	c.mu.Unlock()

	type answer struct {
		node  string
		reply []byte
	}
	answers := make(chan answer, len(nodes)) // never blocks a handler goroutine
	pending := make(map[string]bool, len(nodes))
	var saturated []string  // missing at once: not waited for
	msg = slices.Clone(msg) // the caller may reuse its slice; handlers keep this one
	for _, nb := range nodes {
		n := &nb.ctl
		n.mu.Lock()
		name := n.name
		if n.closed { // gone since the snapshot: not live
			n.mu.Unlock()
			continue
		}
		select {
		case n.sem <- struct{}{}:
		default: // the node is saturated: it misses this message
			n.mu.Unlock()
			saturated = append(saturated, name)
			continue
		}
		pending[name] = true
		h, nctx := n.h, n.ctx
		n.wg.Go(func() {
			defer func() { <-n.sem }()
			answers <- answer{name, h.HandleControl(nctx, msg)}
		})
		n.mu.Unlock()
	}
	var replies []ControlReply
	for len(pending) > 0 {
		select {
		case a := <-answers:
			if pending[a.node] {
				delete(pending, a.node)
				replies = append(replies, ControlReply{Node: a.node, Data: a.reply})
			}
		case <-ctx.Done():
			missing := saturated
			for name := range pending {
				missing = append(missing, name)
			}
			slices.Sort(missing)
			return replies, missing, nil
		}
	}
	slices.Sort(saturated)
	return replies, saturated, nil
}

// PutRevocation implements [ControlBroker]: rec is kept, shared by the
// cluster's nodes, for ttl. At most 1,048,576 are kept (expired ones are
// pruned first); past it PutRevocation fails.
func (b *MemoryBroker) PutRevocation(ctx context.Context, rec []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return ErrBrokerClosed
	}
	if len(rec) > MaxControlBytes {
		return fmt.Errorf("rthub: memory broker: revocation of %d bytes, at most %d", len(rec), MaxControlBytes)
	}
	if ttl <= 0 {
		return fmt.Errorf("rthub: memory broker: revocation TTL %v", ttl)
	}
	now := time.Now()
	c := &b.store.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.revs) >= memoryMaxRevocations {
		c.revs = slices.DeleteFunc(c.revs, func(r memoryRevocation) bool { return !r.expires.After(now) })
		if len(c.revs) >= memoryMaxRevocations {
			return errRevocationStoreFull
		}
	}
	c.revs = append(c.revs, memoryRevocation{data: slices.Clone(rec), expires: now.Add(ttl)})
	return nil
}

// Revocations implements [ControlBroker].
func (b *MemoryBroker) Revocations(ctx context.Context, limit int) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.closed.Load() {
		return nil, ErrBrokerClosed
	}
	now := time.Now()
	c := &b.store.ctl
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revs = slices.DeleteFunc(c.revs, func(r memoryRevocation) bool { return !r.expires.After(now) })
	var out [][]byte
	for _, r := range c.revs {
		if len(out) >= limit {
			break
		}
		out = append(out, slices.Clone(r.data))
	}
	return out, nil
}

// closeControl takes the node out of the live set, cancels its handlers'
// context and waits for them (Close's goroutine calls it).
func (b *MemoryBroker) closeControl() {
	n := &b.ctl
	n.mu.Lock()
	n.closed = true
	started, name := n.started, n.name
	if n.cancel != nil {
		n.cancel()
	}
	n.mu.Unlock()
	if started {
		c := &b.store.ctl
		c.mu.Lock()
		if c.nodes[name] == b {
			delete(c.nodes, name)
		}
		c.mu.Unlock()
	}
	n.wg.Wait()
}
