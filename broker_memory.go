package rthub

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryBrokerOptions configures [NewMemoryBroker]. The zero value is ready to
// use.
type MemoryBrokerOptions struct {
	// History bounds each room's history; the zero value keeps the last 100
	// publications of a room for 5 minutes after its last one.
	History HistoryPolicy
	// State says which rooms keep keyed latest state (see [StateBroker]);
	// the zero value keeps none. A room's state lives as long as its
	// position (History's MetaTTL), each key at most its rule's TTL.
	State StatePolicy
	// SweepInterval is how often a started broker frees the history of rooms
	// whose TTL passed (expired history is never returned, whatever this is).
	// 0 means 1 second.
	SweepInterval time.Duration
	// MaxHistoryBytes bounds the memory all rooms' history may take (the
	// publications' data and metadata plus about 100 bytes each, and 48 more
	// for a header and for each of its entries), so that many busy
	// rooms nobody watches cannot grow the process without bound: past it,
	// the history of the rooms that published least recently is dropped
	// first (a client resuming one of them is told recovered:false, as
	// after a TTL). The bound is kept per internal shard (1/64 of it each),
	// so it holds within a shard's share. 0 means 64 MiB; negative means no
	// bound.
	MaxHistoryBytes int64
}

// DefaultMaxHistoryBytes is MemoryBrokerOptions.MaxHistoryBytes's default.
const DefaultMaxHistoryBytes = 64 << 20

// pubOverhead is what a kept publication costs beyond its data: the
// Publication value in the ring and the data's allocation header, roughly.
const pubOverhead = 100

// headerOverhead is what a header costs beyond its keys and values: the
// map and, per entry, its slot and the two strings' headers, roughly.
const headerOverhead, headerEntryOverhead = 48, 48

// keptBytes is what a kept publication counts against MaxHistoryBytes.
func keptBytes(p *Publication) int64 {
	n := len(p.Data) + p.metaBytes() + pubOverhead
	if len(p.Header) > 0 {
		n += headerOverhead + headerEntryOverhead*len(p.Header)
	}
	return int64(n)
}

// MemoryBrokerStats is a snapshot of a memory broker's streams (shared by
// its peers).
type MemoryBrokerStats struct {
	Rooms            int    // rooms with a stream (history or a position)
	HistoryBytes     int64  // bytes of kept history, as MaxHistoryBytes counts them
	HistoryEvictions uint64 // room histories dropped to stay within MaxHistoryBytes
	StateBytes       int64  // bytes of kept state, as StateLimits.MaxBytes counts them
}

// MemoryBroker is the single-process [Broker], the hub's default: publications
// go from Publish straight to the handlers of the nodes that subscribed the
// room, and each room keeps a bounded history in memory (a ring of its last
// HistoryLimits.Size publications), so a client that reconnects to the same
// process resumes without loss. All rooms' history together stays within
// MemoryBrokerOptions.MaxHistoryBytes (64 MiB by default).
//
// Several hubs in one process can share streams: [MemoryBroker.Peer] returns
// another node of the same in-memory cluster, which is how tests run a
// multi-node setup without Redis.
//
// Delivery is synchronous: Publish calls the handlers of the subscribed nodes
// before it returns, and publications of rooms in the same internal shard (one
// of 64, by room name) are serialised, which keeps every room in one order for
// all nodes. A slow handler therefore slows publishers; Publish waits for its
// turn only as long as its ctx allows.
//
// All methods are safe for concurrent use.
type MemoryBroker struct {
	store *memoryStore

	// mu is read-locked around each handler call; Close write-locks it to wait
	// for calls in flight.
	mu      sync.RWMutex
	handler BrokerHandler
	closed  atomic.Bool

	subMu   sync.Mutex // guards rooms, started; taken before a shard's mu
	rooms   map[string]struct{}
	started bool

	stop     chan struct{} // closed by Close: stops the sweeper
	sweeping sync.WaitGroup

	ctl memoryControlNode // this node's control plane (broker_memory_control.go)
}

var _ Broker = (*MemoryBroker)(nil)

// NewMemoryBroker returns a memory broker, the first node of a new in-memory
// cluster. The error, wrapping [ErrInvalidOptions], lists every problem of
// opts.History.
func NewMemoryBroker(opts MemoryBrokerOptions) (*MemoryBroker, error) {
	if err := errors.Join(opts.History.Validate(), opts.State.Validate()); err != nil {
		return nil, err
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Second
	}
	opts.History.Rules = slices.Clone(opts.History.Rules) // the caller's slice may change
	opts.State.Rules = slices.Clone(opts.State.Rules)
	if opts.MaxHistoryBytes == 0 {
		opts.MaxHistoryBytes = DefaultMaxHistoryBytes
	}
	s := &memoryStore{opts: opts, seed: maphash.MakeSeed(), shardBudget: -1}
	s.ctl.nodes = make(map[string]*MemoryBroker)
	if opts.MaxHistoryBytes > 0 {
		s.shardBudget = max(opts.MaxHistoryBytes/memoryShards, 1)
	}
	for i := range s.shards {
		s.shards[i] = memoryShard{
			turn:  make(chan struct{}, 1),
			rooms: make(map[string]*memoryRoom),
			subs:  make(map[string][]*MemoryBroker),
		}
	}
	return newMemoryNode(s), nil
}

func newMemoryNode(s *memoryStore) *MemoryBroker {
	return &MemoryBroker{store: s, rooms: make(map[string]struct{}), stop: make(chan struct{})}
}

// Peer returns a new node sharing b's streams, as another process of a
// cluster would: a publication on either node reaches the handlers of every
// node that subscribed its room, and History answers the same on all. The peer
// is started and closed on its own.
func (b *MemoryBroker) Peer() *MemoryBroker { return newMemoryNode(b.store) }

// Start implements [Broker]. It starts a goroutine that frees expired history
// every MemoryBrokerOptions.SweepInterval, until Close.
func (b *MemoryBroker) Start(ctx context.Context, h BrokerHandler) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if h == nil {
		return errors.New("rthub: broker handler is nil")
	}
	b.subMu.Lock()
	defer b.subMu.Unlock()
	switch {
	case b.closed.Load():
		return ErrBrokerClosed
	case b.started:
		return errors.New("rthub: broker already started")
	}
	b.started = true
	b.mu.Lock()
	b.handler = h
	b.mu.Unlock()
	b.sweeping.Go(b.sweep) // owner: b; stopped by Close (b.stop), waited for there
	return nil
}

// sweep frees expired history and positions until Close.
func (b *MemoryBroker) sweep() {
	t := time.NewTicker(b.store.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			now := time.Now()
			for i := range b.store.shards {
				s := &b.store.shards[i]
				s.mu.Lock()
				s.expire(now)
				s.mu.Unlock()
			}
		}
	}
}

// Publish implements [Broker]. It calls the handlers of the subscribed nodes
// before it returns. msg is kept as it is (an empty Header becomes nil): the
// handlers and History share its Data and Header.
func (b *MemoryBroker) Publish(ctx context.Context, room string, msg Message) (StreamPosition, error) {
	if err := b.check(ctx, room); err != nil {
		return StreamPosition{}, err
	}
	if err := msg.Check(); err != nil {
		return StreamPosition{}, err
	}
	if len(msg.Header) == 0 {
		msg.Header = nil
	}
	s := b.store.shard(room)
	select { // take the shard's turn: one publish+delivery at a time
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		return StreamPosition{}, ctx.Err()
	}
	defer func() { <-s.turn }()

	now := time.Now()
	s.mu.Lock()
	s.expire(now)
	r := s.room(b.store, room, now)
	r.offset++
	pub := Publication{Room: room, Offset: r.offset, Epoch: r.epoch, Message: msg}
	s.bytes += r.push(pub)
	if r.state != nil && msg.Key != "" {
		s.stateBytes += int64(r.state.put(pub, now))
	}
	r.lastPub, r.touched = now, now
	s.reschedule(r)
	s.fit(b.store, r)
	subs := s.subs[room]
	s.mu.Unlock()

	for _, n := range subs {
		n.deliver(pub)
	}
	return pub.Position(), nil
}

// deliver passes pub to b's handler unless b is closed.
func (b *MemoryBroker) deliver(pub Publication) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.closed.Load() && b.handler != nil {
		b.handler.HandlePublication(pub)
	}
}

// Subscribe implements [Broker].
func (b *MemoryBroker) Subscribe(ctx context.Context, rooms ...string) error {
	return b.setSubscribed(ctx, rooms, true)
}

// Unsubscribe implements [Broker].
func (b *MemoryBroker) Unsubscribe(ctx context.Context, rooms ...string) error {
	return b.setSubscribed(ctx, rooms, false)
}

func (b *MemoryBroker) setSubscribed(ctx context.Context, rooms []string, on bool) error {
	for _, room := range rooms {
		if err := b.check(ctx, room); err != nil {
			return err
		}
	}
	b.subMu.Lock()
	defer b.subMu.Unlock()
	switch {
	case b.closed.Load():
		return ErrBrokerClosed
	case !b.started:
		return errors.New("rthub: broker not started")
	}
	for _, room := range rooms {
		if _, ok := b.rooms[room]; ok == on {
			continue
		}
		if on {
			b.rooms[room] = struct{}{}
		} else {
			delete(b.rooms, room)
		}
		b.store.shard(room).setSubscriber(room, b, on)
	}
	return nil
}

// History implements [Broker].
func (b *MemoryBroker) History(ctx context.Context, room string, since StreamPosition, limit int) ([]Publication, StreamPosition, error) {
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
	if since.IsZero() {
		return nil, cur, nil
	}
	var first uint64 // oldest kept offset after since
	if n := uint64(len(r.buf)); n > 0 {
		first = max(r.offset-n+1, since.Offset+1)
	}
	if err := CheckHistory(room, since, cur, r.limits.Size, first); err != nil {
		return nil, cur, err
	}
	n := int(cur.Offset - since.Offset)
	if limit >= 0 && limit < n {
		n = limit
	}
	if n == 0 {
		return nil, cur, nil
	}
	pubs := make([]Publication, n)
	for i := range pubs {
		pubs[i] = r.at(since.Offset + 1 + uint64(i))
	}
	return pubs, cur, nil
}

// Close implements [Broker]: it unsubscribes every room of this node, stops
// its sweeper, takes it out of the control plane and waits for handler
// calls in flight, control handlers included (as long as ctx allows).
// Other peers are not affected.
func (b *MemoryBroker) Close(ctx context.Context) error {
	b.subMu.Lock()
	if b.closed.Swap(true) {
		b.subMu.Unlock()
		return nil
	}
	for room := range b.rooms {
		b.store.shard(room).setSubscriber(room, b, false)
	}
	clear(b.rooms)
	close(b.stop)
	b.subMu.Unlock()

	done := make(chan struct{})
	go func() { // owner: Close; ends when the handler calls in flight do
		b.mu.Lock()
		b.handler = nil
		b.mu.Unlock()
		b.sweeping.Wait()
		b.closeControl()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rthub: memory broker close: %w", ctx.Err())
	}
}

// check is the common argument and state check of every method.
func (b *MemoryBroker) check(ctx context.Context, room string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return ErrBrokerClosed
	}
	return ValidRoom(room)
}

// memoryShards is the number of independently locked parts of the store.
const memoryShards = 64

// memoryStore is what the nodes of one in-memory cluster share.
type memoryStore struct {
	opts        MemoryBrokerOptions
	seed        maphash.Seed
	shardBudget int64 // history bytes per shard; -1: no bound
	evictions   atomic.Uint64
	shards      [memoryShards]memoryShard
	ctl         memoryControl
	relays      memoryRelays // the nodes listening for relayed messages (broker_memory_relay.go)
}

// Stats returns a snapshot of the streams b shares with its peers.
func (b *MemoryBroker) Stats() MemoryBrokerStats {
	st := MemoryBrokerStats{HistoryEvictions: b.store.evictions.Load()}
	for i := range b.store.shards {
		s := &b.store.shards[i]
		s.mu.Lock()
		st.Rooms += len(s.rooms)
		st.HistoryBytes += s.bytes
		st.StateBytes += s.stateBytes
		s.mu.Unlock()
	}
	return st
}

func (s *memoryStore) shard(room string) *memoryShard {
	return &s.shards[maphash.String(s.seed, room)%memoryShards]
}

// memoryShard holds the streams and subscribers of the rooms hashed to it.
type memoryShard struct {
	// turn is a lock (a 1-slot channel, so waiting for it honours a ctx) held
	// by a publish from assigning the offset until its delivery is done.
	turn chan struct{}

	mu    sync.Mutex // guards everything below; never held while calling out
	rooms map[string]*memoryRoom
	subs  map[string][]*MemoryBroker // copy-on-write slices
	exp   expiryHeap
	bytes int64 // history bytes kept (see pubOverhead)
	// stateBytes is the keyed state kept (see StateCost).
	stateBytes int64
}

// fit drops whole room histories, the least recently published first, until
// the shard's history is within its budget again; keep (the room just
// published to) goes last. A whole history at a time, so that a shard over
// budget is not scanned again at every publish.
func (s *memoryShard) fit(st *memoryStore, keep *memoryRoom) {
	for st.shardBudget >= 0 && s.bytes > st.shardBudget {
		var victim *memoryRoom
		for _, r := range s.rooms {
			if len(r.buf) > 0 && r != keep && (victim == nil || r.lastPub.Before(victim.lastPub)) {
				victim = r
			}
		}
		if victim == nil {
			victim = keep // one room alone is over the budget
		}
		if len(victim.buf) == 0 {
			return
		}
		s.dropHistory(victim)
		st.evictions.Add(1)
	}
}

// dropHistory frees r's history; its position lives on.
func (s *memoryShard) dropHistory(r *memoryRoom) {
	s.bytes -= r.bytes
	r.buf, r.head, r.bytes = nil, 0, 0
	s.reschedule(r)
}

// setSubscriber adds or removes node n from room's subscribers.
func (s *memoryShard) setSubscriber(room string, n *MemoryBroker, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.subs[room]
	var subs []*MemoryBroker
	for _, o := range old {
		if o != n {
			subs = append(subs, o)
		}
	}
	if on {
		subs = append(subs, n)
	}
	if len(subs) == 0 {
		delete(s.subs, room)
	} else {
		s.subs[room] = subs
	}
}

// room returns room's stream, starting a new one (with a new epoch) if it
// has none.
func (s *memoryShard) room(st *memoryStore, name string, now time.Time) *memoryRoom {
	r := s.rooms[name]
	if r == nil {
		r = &memoryRoom{name: name, epoch: newEpoch(), limits: st.opts.History.Limits(name), touched: now, idx: -1}
		if l, ok := st.opts.State.Limits(name, st.opts.History); ok {
			r.state = newKeyedState(l)
		}
		s.rooms[name] = r
		s.reschedule(r)
	}
	return r
}

// reschedule puts r in the expiry heap at its next deadline.
func (s *memoryShard) reschedule(r *memoryRoom) {
	r.deadline = r.nextDeadline()
	if r.idx < 0 {
		heap.Push(&s.exp, r)
	} else {
		heap.Fix(&s.exp, r.idx)
	}
}

// expire drops the history of rooms silent for their TTL, and the rooms
// whose position expired.
func (s *memoryShard) expire(now time.Time) {
	for len(s.exp) > 0 && !s.exp[0].deadline.After(now) {
		r := s.exp[0]
		if len(r.buf) > 0 {
			s.dropHistory(r) // history expired; the position lives on
			continue
		}
		heap.Pop(&s.exp)
		if r.state != nil {
			s.stateBytes -= int64(r.state.bytes)
		}
		delete(s.rooms, r.name)
	}
}

// memoryRoom is one room's stream: its position and a ring of its last
// publications.
type memoryRoom struct {
	name    string
	epoch   string
	offset  uint64
	limits  HistoryLimits
	buf     []Publication // the last len(buf) publications; a ring once full
	head    int           // index of the oldest in buf once it is full
	bytes   int64         // what buf holds, as MaxHistoryBytes counts it
	state   *keyedState   // nil unless a state rule covers the room
	lastPub time.Time     // last publication: history expires TTL after it
	touched time.Time     // last publication or History: the position expires MetaTTL after it

	deadline time.Time // next expiry, the heap's key
	idx      int       // index in the heap, -1 if not in it
}

func (r *memoryRoom) nextDeadline() time.Time {
	if len(r.buf) > 0 {
		return r.lastPub.Add(r.limits.TTL)
	}
	return r.touched.Add(r.limits.MetaTTL)
}

// push appends p, the room's latest publication, dropping the oldest one
// beyond the size limit. It returns the change in the bytes r keeps.
func (r *memoryRoom) push(p Publication) int64 {
	n := keptBytes(&p)
	switch size := r.limits.Size; {
	case size == 0:
		return 0
	case len(r.buf) < size:
		r.buf = append(r.buf, p)
	default:
		n -= keptBytes(&r.buf[r.head])
		r.buf[r.head] = p
		r.head = (r.head + 1) % size
	}
	r.bytes += n
	return n
}

// at returns the kept publication with offset off.
func (r *memoryRoom) at(off uint64) Publication {
	oldest := r.offset - uint64(len(r.buf)) + 1
	return r.buf[(r.head+int(off-oldest))%len(r.buf)]
}

// expiryHeap orders rooms by deadline.
type expiryHeap []*memoryRoom

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *expiryHeap) Push(x any) {
	r := x.(*memoryRoom)
	r.idx = len(*h)
	*h = append(*h, r)
}
func (h *expiryHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	r.idx = -1
	return r
}

// newEpoch returns a random epoch: 16 hex digits.
func newEpoch() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
