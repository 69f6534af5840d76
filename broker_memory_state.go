package rthub

import (
	"context"
	"fmt"
	"time"
)

// This file holds the memory broker's keyed latest state (see [StateBroker]).

var _ StateBroker = (*MemoryBroker)(nil)

// State implements [StateBroker]: it reads the room's state and position
// under the shard's lock, which every Publish takes to assign an offset, so
// the two always agree.
func (b *MemoryBroker) State(ctx context.Context, room string) ([]Publication, StreamPosition, error) {
	if err := b.check(ctx, room); err != nil {
		return nil, StreamPosition{}, err
	}
	s := b.store.shard(room)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	r := s.room(b.store, room, now)
	r.touched = now
	s.reschedule(r)
	cur := StreamPosition{Offset: r.offset, Epoch: r.epoch}
	if r.state == nil {
		return nil, cur, fmt.Errorf("%w: %q", ErrNoState, room)
	}
	s.stateBytes -= int64(r.state.expire(now))
	return r.state.entries(), cur, nil
}

// keyedState is one room's latest publication per key, in a list ordered by
// update (oldest first), which is also offset order.
type keyedState struct {
	limits     StateLimits
	keys       map[string]*stateEntry
	head, tail *stateEntry
	bytes      int
}

type stateEntry struct {
	pub        Publication
	at         time.Time // the update: the key expires TTL after it
	cost       int
	prev, next *stateEntry
}

func newKeyedState(l StateLimits) *keyedState {
	return &keyedState{limits: l, keys: make(map[string]*stateEntry)}
}

// put makes pub its key's latest publication and evicts what no longer
// fits. It returns the change in bytes kept.
func (ks *keyedState) put(pub Publication, now time.Time) int {
	before := ks.bytes
	if e := ks.keys[pub.Key]; e != nil {
		ks.unlink(e)
	}
	e := &stateEntry{pub: pub, at: now, cost: StateCost(&pub)}
	ks.keys[pub.Key] = e
	e.prev = ks.tail
	if ks.tail != nil {
		ks.tail.next = e
	} else {
		ks.head = e
	}
	ks.tail = e
	ks.bytes += e.cost
	for ks.head != nil && (len(ks.keys) > ks.limits.MaxKeys || ks.bytes > ks.limits.MaxBytes) {
		ks.unlink(ks.head) // oldest update first; the new one last
	}
	ks.expire(now)
	return ks.bytes - before
}

// expire drops the keys not updated for TTL; it returns the bytes freed.
func (ks *keyedState) expire(now time.Time) int {
	before := ks.bytes
	for ks.head != nil && !ks.head.at.Add(ks.limits.TTL).After(now) {
		ks.unlink(ks.head)
	}
	return before - ks.bytes
}

func (ks *keyedState) unlink(e *stateEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		ks.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		ks.tail = e.prev
	}
	e.prev, e.next = nil, nil
	delete(ks.keys, e.pub.Key)
	ks.bytes -= e.cost
}

// entries returns the kept publications, oldest update first.
func (ks *keyedState) entries() []Publication {
	out := make([]Publication, 0, len(ks.keys))
	for e := ks.head; e != nil; e = e.next {
		out = append(out, e.pub)
	}
	return out
}
