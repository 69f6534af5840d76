// Package redisbroker is an [rthub.Broker] on Redis, for running several hubs
// (nodes) behind a load balancer.
//
// Each publication runs one Lua script (EVALSHA) that assigns the room's next
// offset, appends the encoded event to the room's Redis Stream (bounded length
// and TTL, per room pattern) and PUBLISHes it on the room's channel, so the
// offset, the history and what subscribers receive always agree. A room's
// epoch lives in Redis next to its offset: if Redis loses the room (a restart
// without persistence, eviction, FLUSHDB), the next publish or History starts a
// new epoch and older positions are reported as not recoverable instead of
// being resumed into the wrong stream.
//
// A node SUBSCRIBEs only the rooms the hub asks for (rooms with local
// members), over one pub/sub connection per Redis server; concurrent
// Subscribe and Unsubscribe calls are batched into pipelined commands. When
// that connection is lost the broker reconnects, subscribes every room again
// and calls the handler's HandleResync, so the hub recovers what was published
// meanwhile from history. A liveness probe (a PUBLISH on a node-private
// channel that must come back within Options.ProbeTimeout) catches a
// connection that is up but receives nothing; [Broker.Stats] reports it, and
// the broker reconnects.
//
// Rooms can be spread over several Redis servers (Options.Shards) by
// client-side rendezvous hashing of the room name: all keys and the channel of
// a room are on one server. Standalone Redis 6.2 or later is required (no
// Cluster, no Sentinel). Keys, memory and guarantees are described in the
// module's README.md.
package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub"
	"github.com/redis/rueidis"
)

// Shard is one Redis server of a broker.
type Shard struct {
	// URL is "redis://[[user]:password@]host[:port][/db]", "rediss://..." for
	// TLS or "unix:///path/to/socket".
	URL string
	// Name identifies the shard when rooms are placed: a room goes to the shard
	// whose name scores highest with it, so every node must use the same names
	// for the same servers. Changing a name moves rooms, which then lose their
	// history (clients are told recovered: false). Default: the URL's
	// host:port/db.
	Name string
}

// Options configures [New].
type Options struct {
	// Shards are the Redis servers; at least one. Rooms are spread over them by
	// rendezvous hashing of the room name: adding a server moves about 1/n of
	// the rooms (which lose their history), removing one moves only its rooms.
	Shards []Shard
	// Prefix starts every key and channel name; default "rthub:". Nodes of one
	// cluster use the same prefix; several clusters can share a Redis with
	// different ones. It must not contain '{' or '}'.
	Prefix string
	// History bounds each room's history (see [rthub.HistoryPolicy]); every node
	// of a cluster should use the same policy.
	History rthub.HistoryPolicy
	// State says which rooms keep keyed latest state (see
	// [rthub.StateBroker]), shared by all nodes and updated atomically with
	// each publication; every node of a cluster should use the same policy.
	// The zero value keeps none.
	State rthub.StatePolicy
	// NodeID names this node in Redis: its connections are called
	// "rthub-<NodeID>" (CLIENT LIST) and its probe channel is
	// "<Prefix>node:<NodeID>:<shard>". Default: 16 random hex digits. Two live nodes
	// must not share one.
	NodeID string
	// ProbeInterval is how often the liveness probe is published on each shard;
	// default 1 s, negative disables the probe.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe may take to come back before the
	// subscription is declared deaf and its connection replaced; default 3 s.
	ProbeTimeout time.Duration
	// CommandTimeout bounds the dial and each SUBSCRIBE/UNSUBSCRIBE round trip
	// of the pub/sub connections; past it the connection is replaced. Default
	// 5 s.
	CommandTimeout time.Duration
	// MaxReconnectDelay caps the delay between attempts to restore a lost
	// pub/sub connection (it starts at 50 ms and doubles); default 2 s.
	MaxReconnectDelay time.Duration
	// NodeTTL is how long this node counts as live in the control plane
	// ([rthub.ControlBroker]) after its last heartbeat; it renews it every
	// NodeTTL/3 while its control subscription is up. A control call waits
	// for a crashed node (reporting it missing at its deadline) for at most
	// NodeTTL after the crash. Default 3 s.
	NodeTTL time.Duration
	// SubscribeBatch is the most channels in one SUBSCRIBE or UNSUBSCRIBE
	// command; default 512.
	SubscribeBatch int
	// Logger receives reconnects, deafness and errors of background work; nil
	// discards them.
	Logger *slog.Logger
}

// Broker is an [rthub.Broker] on one or more Redis servers. Create it with
// [New]; all methods are safe for concurrent use.
type Broker struct {
	opts   Options
	names  names
	shards []*shard
	keys   []string // shard names, for placement

	mu      sync.Mutex // guards started
	started bool
	handler rthub.BrokerHandler // set once by Start, before the shard loops

	closed atomic.Bool
	stop   chan struct{}   // closed by Close
	run    context.Context // the background work's, set by Start; cancelled by Close
	cancel context.CancelFunc
	loops  sync.WaitGroup // the shard loops, the control loop and its workers

	ctlIdx int                     // the shard the control plane lives on
	ctl    atomic.Pointer[control] // set by StartControl (control.go)
}

var _ rthub.Broker = (*Broker)(nil)

// ErrDeaf is what a shard's pub/sub connection is closed with when a liveness
// probe did not come back in time; it shows in logs and in
// [ShardStats].LastError.
var ErrDeaf = errors.New("redisbroker: pub/sub deaf: probe did not come back")

// New connects to every shard and returns a broker ready to Publish and read
// History; [Broker.Start] starts its subscriptions. Its error wraps
// [rthub.ErrInvalidOptions] for bad options, or is the first connection
// error.
func New(opts Options) (*Broker, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	b := &Broker{opts: opts, names: names{opts.Prefix}, stop: make(chan struct{})}
	for i, sh := range opts.Shards {
		copt, _ := rueidis.ParseURL(sh.URL) // checked by fill
		copt.ClientName = "rthub-" + opts.NodeID
		copt.DisableCache = true
		copt.Dialer.Timeout = opts.CommandTimeout
		c, err := rueidis.NewClient(copt)
		if err != nil {
			for _, s := range b.shards {
				s.client.Close()
			}
			return nil, fmt.Errorf("redisbroker: shard %q: %w", sh.Name, err)
		}
		b.shards = append(b.shards, newShard(b, i, sh.Name, c))
		b.keys = append(b.keys, sh.Name)
		if sh.Name < b.keys[b.ctlIdx] {
			b.ctlIdx = i
		}
	}
	return b, nil
}

func (o *Options) fill() error {
	var errs []error
	if len(o.Shards) == 0 {
		errs = append(errs, errors.New("no shards"))
	}
	o.Shards = slices.Clone(o.Shards)
	o.History.Rules = slices.Clone(o.History.Rules)
	o.State.Rules = slices.Clone(o.State.Rules)
	seen := map[string]bool{}
	for i := range o.Shards {
		sh := &o.Shards[i]
		copt, err := rueidis.ParseURL(sh.URL)
		if err != nil {
			errs = append(errs, fmt.Errorf("shard %d: %w", i, err))
			continue
		}
		if sh.Name == "" {
			sh.Name = strings.Join(copt.InitAddress, ",") + "/" + strconv.Itoa(copt.SelectDB)
		}
		if seen[sh.Name] {
			errs = append(errs, fmt.Errorf("shard %d: name %q used twice", i, sh.Name))
		}
		seen[sh.Name] = true
	}
	if o.Prefix == "" {
		o.Prefix = "rthub:"
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		errs = append(errs, fmt.Errorf("prefix %q contains a brace", o.Prefix))
	}
	if err := o.History.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.State.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.NodeID == "" {
		o.NodeID = fmt.Sprintf("%016x", rand.Uint64())
	}
	if strings.ContainsAny(o.NodeID, " \t\r\n") {
		errs = append(errs, fmt.Errorf("node ID %q contains white space", o.NodeID))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ProbeInterval, time.Second)
	def(&o.ProbeTimeout, 3*time.Second)
	def(&o.CommandTimeout, 5*time.Second)
	def(&o.MaxReconnectDelay, 2*time.Second)
	def(&o.NodeTTL, 3*time.Second)
	if o.ProbeTimeout < 0 || o.CommandTimeout < 0 || o.MaxReconnectDelay < 0 || o.NodeTTL < 0 {
		errs = append(errs, errors.New("negative timeout"))
	}
	if o.SubscribeBatch <= 0 {
		o.SubscribeBatch = 512
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("redisbroker: %w: %w", rthub.ErrInvalidOptions, errors.Join(errs...))
}

// NodeID returns the node's ID (Options.NodeID or the random default).
func (b *Broker) NodeID() string { return b.opts.NodeID }

// Start implements [rthub.Broker]: it starts one goroutine per shard that
// holds the pub/sub connection (and restores it), until Close. It does not
// wait for the connections: Subscribe does.
func (b *Broker) Start(ctx context.Context, h rthub.BrokerHandler) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if h == nil {
		return errors.New("redisbroker: handler is nil")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed.Load():
		return rthub.ErrBrokerClosed
	case b.started:
		return errors.New("redisbroker: already started")
	}
	b.started = true
	b.handler = h
	run, cancel := context.WithCancel(context.Background())
	b.run, b.cancel = run, cancel
	for _, s := range b.shards {
		b.loops.Go(func() { s.run(run) }) // owner: b; stopped by Close (cancel), waited for there
	}
	return nil
}

// Publish implements [rthub.Broker]: one EVALSHA on the room's shard. The
// message's Except and Header travel encoded next to its data (see the
// module's README.md), in its pub/sub message and its stream entry.
func (b *Broker) Publish(ctx context.Context, room string, msg rthub.Message) (rthub.StreamPosition, error) {
	if err := b.check(ctx, room); err != nil {
		return rthub.StreamPosition{}, err
	}
	if err := msg.Check(); err != nil {
		return rthub.StreamPosition{}, fmt.Errorf("redisbroker: publish %q: %w", room, err)
	}
	var meta string
	if msg.Except != "" || len(msg.Header) > 0 || msg.Key != "" {
		meta = string(appendMeta(nil, msg))
	}
	s := b.shardOf(room)
	l := b.opts.History.Limits(room)
	sl, keeps := b.opts.State.Limits(room, b.opts.History)
	maxKeys := "0"
	if keeps {
		maxKeys = strconv.Itoa(sl.MaxKeys)
	}
	p := rthub.Publication{Message: msg}
	res, err := publishScript.Exec(ctx, s.client,
		[]string{b.names.meta(room), b.names.stream(room), b.names.state(room), b.names.order(room)},
		[]string{string(msg.Data), strconv.Itoa(l.Size), ms(l.TTL), ms(l.MetaTTL), b.names.channel(room), newEpoch(), meta,
			msg.Key, maxKeys, strconv.Itoa(sl.MaxBytes), ms(sl.TTL), strconv.Itoa(rthub.StateCost(&p))},
	).ToArray()
	var pos rthub.StreamPosition
	if err == nil {
		pos, err = position(res)
	}
	if err != nil {
		s.publishErrors.Add(1)
		return rthub.StreamPosition{}, b.wrap(ctx, "publish", room, err)
	}
	s.published.Add(1)
	return pos, nil
}

// position parses {offset, epoch} from a script's reply.
func position(res []rueidis.RedisMessage) (rthub.StreamPosition, error) {
	if len(res) < 2 {
		return rthub.StreamPosition{}, errors.New("short script reply")
	}
	var off uint64
	if n, err := res[0].AsInt64(); err == nil {
		off = uint64(n)
	} else if s, err := res[0].ToString(); err == nil {
		if off, err = strconv.ParseUint(s, 10, 64); err != nil {
			return rthub.StreamPosition{}, err
		}
	} else {
		return rthub.StreamPosition{}, err
	}
	epoch, err := res[1].ToString()
	return rthub.StreamPosition{Offset: off, Epoch: epoch}, err
}

// History implements [rthub.Broker]: one EVALSHA on the room's shard reads the
// position and the stream entries after since.
func (b *Broker) History(ctx context.Context, room string, since rthub.StreamPosition, limit int) ([]rthub.Publication, rthub.StreamPosition, error) {
	if err := b.check(ctx, room); err != nil {
		return nil, rthub.StreamPosition{}, err
	}
	s := b.shardOf(room)
	l := b.opts.History.Limits(room)
	n := limit
	if n < 0 || n > l.Size {
		n = l.Size // more than Size after since is never recoverable
	}
	epoch := since.Epoch
	if since.IsZero() {
		epoch = ""
	}
	keys := []string{b.names.meta(room), b.names.stream(room), b.names.state(room), b.names.order(room)}
	args := []string{epoch, strconv.FormatUint(since.Offset+1, 10), strconv.Itoa(max(n, 1)), ms(l.MetaTTL), newEpoch()}
	res, err := historyScript.Exec(ctx, s.client, keys, args).ToArray()
	if _, redisErr := rueidis.IsRedisErr(err); err != nil && !redisErr && ctx.Err() == nil && !b.closed.Load() {
		// A connection that broke since its last use (a Redis restart, a
		// killed connection) fails its first command. Reading history is safe
		// to repeat, so try once more on a fresh connection.
		res, err = historyScript.Exec(ctx, s.client, keys, args).ToArray()
	}
	var cur rthub.StreamPosition
	var entries []rueidis.XRangeEntry
	if err == nil {
		if cur, err = position(res); err == nil && len(res) > 2 {
			entries, err = res[2].AsXRange()
		}
	}
	if err != nil {
		return nil, rthub.StreamPosition{}, b.wrap(ctx, "history", room, err)
	}
	if since.IsZero() {
		return nil, cur, nil
	}
	var first uint64
	if len(entries) > 0 {
		first = entryOffset(entries[0].ID)
	}
	if err := rthub.CheckHistory(room, since, cur, l.Size, first); err != nil {
		return nil, cur, err
	}
	n = min(n, int(cur.Offset-since.Offset), len(entries))
	if n == 0 {
		return nil, cur, nil
	}
	pubs := make([]rthub.Publication, n)
	for i := range pubs {
		e := entries[i]
		if off := entryOffset(e.ID); off != since.Offset+1+uint64(i) {
			// A hole in the stream: only outside interference makes one.
			return nil, cur, &rthub.UnrecoverableError{Room: room, Since: since, Current: cur}
		}
		pubs[i] = rthub.Publication{Room: room, Offset: since.Offset + 1 + uint64(i), Epoch: cur.Epoch}
		if meta, ok := e.FieldValues["m"]; ok && !decodeMeta(meta, &pubs[i].Message) {
			// Only outside interference writes one: the entry cannot be
			// replayed as published, so the stream cannot be continued.
			b.opts.Logger.LogAttrs(ctx, slog.LevelError, "redisbroker: malformed metadata in a stream entry",
				slog.String("room", room), slog.String("id", e.ID))
			return nil, cur, &rthub.UnrecoverableError{Room: room, Since: since, Current: cur}
		}
		pubs[i].Data = []byte(e.FieldValues["d"])
	}
	return pubs, cur, nil
}

// entryOffset returns the offset of a stream entry ID "<offset>-0", or 0.
func entryOffset(id string) uint64 {
	ms, _, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(ms, 10, 64)
	return n
}

// Subscribe implements [rthub.Broker]. Concurrent calls are batched into
// pipelined SUBSCRIBE commands on each shard's pub/sub connection; Subscribe
// returns once Redis confirmed them. While a shard's connection is down, it
// waits (as long as ctx allows) for the connection to be restored with the
// rooms subscribed.
func (b *Broker) Subscribe(ctx context.Context, rooms ...string) error {
	return b.setSubscribed(ctx, rooms, true)
}

// Unsubscribe implements [rthub.Broker], batched like Subscribe; it returns
// once Redis confirmed the UNSUBSCRIBE commands.
func (b *Broker) Unsubscribe(ctx context.Context, rooms ...string) error {
	return b.setSubscribed(ctx, rooms, false)
}

func (b *Broker) setSubscribed(ctx context.Context, rooms []string, on bool) error {
	for _, room := range rooms {
		if err := b.check(ctx, room); err != nil {
			return err
		}
	}
	b.mu.Lock()
	started := b.started
	b.mu.Unlock()
	if !started {
		return errors.New("redisbroker: not started")
	}
	byShard := make(map[*shard][]string)
	for _, room := range rooms {
		s := b.shardOf(room)
		byShard[s] = append(byShard[s], room)
	}
	waits := make(map[*shard]uint64, len(byShard))
	for s, rs := range byShard {
		waits[s] = s.enqueue(rs, on)
	}
	for s, seq := range waits {
		if err := s.wait(ctx, seq); err != nil {
			return err
		}
	}
	return nil
}

// Close implements [rthub.Broker]: it stops the shard loops (closing the
// pub/sub connections), waits for them as long as ctx allows, and closes the
// Redis clients.
func (b *Broker) Close(ctx context.Context) error {
	b.mu.Lock()
	if b.closed.Swap(true) {
		b.mu.Unlock()
		return nil
	}
	close(b.stop)
	if b.cancel != nil {
		b.cancel()
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.loops.Wait(); close(done) }() // owner: Close; ends with the loops
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("redisbroker: close: %w", ctx.Err())
	}
	for _, s := range b.shards {
		s.client.Close()
	}
	return err
}

func (b *Broker) check(ctx context.Context, room string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return rthub.ErrBrokerClosed
	}
	return rthub.ValidRoom(room)
}

// wrap adds context to a Redis error; a ctx error stays testable with
// errors.Is, and so does ErrBrokerClosed once Close has run.
func (b *Broker) wrap(ctx context.Context, op, room string, err error) error {
	if b.closed.Load() {
		err = errors.Join(rthub.ErrBrokerClosed, err)
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = errors.Join(ctx.Err(), err)
	}
	return fmt.Errorf("redisbroker: %s %q: %w", op, room, err)
}

func (b *Broker) shardOf(room string) *shard {
	return b.shards[shardIndex(b.keys, room)]
}

// ShardOf returns the name of the shard that holds room.
func (b *Broker) ShardOf(room string) string { return b.keys[shardIndex(b.keys, room)] }

// ms formats d in whole milliseconds, rounded up, at least 1.
func ms(d time.Duration) string {
	return strconv.FormatInt(max(1, int64((d+time.Millisecond-1)/time.Millisecond)), 10)
}

// newEpoch returns a random epoch: 16 hex digits.
func newEpoch() string { return fmt.Sprintf("%016x", rand.Uint64()) }

// Stats is a snapshot of a broker's health and counters.
type Stats struct {
	Shards []ShardStats
	// Control is the control plane's state (zero before StartControl).
	Control ControlStats
}

// Healthy reports whether every shard's subscriptions are in place and not
// deaf: what a /health endpoint should check.
func (s Stats) Healthy() bool {
	for _, sh := range s.Shards {
		if !sh.Connected || sh.Deaf {
			return false
		}
	}
	return len(s.Shards) > 0
}

// ShardStats is the state of one shard as this node sees it.
type ShardStats struct {
	Name string
	// Connected: the pub/sub connection is up and its subscriptions in place.
	Connected bool
	// Deaf: the last liveness probe did not come back within ProbeTimeout (or
	// Redis had no subscriber for it). It clears when a probe comes back.
	Deaf bool
	// ProbeRTT is the round trip of the last probe that came back, and
	// LastProbe when it came back (zero if none has).
	ProbeRTT  time.Duration
	LastProbe time.Time
	// Rooms is the number of rooms this node subscribed on the shard.
	Rooms int
	// Resubscribes counts pub/sub connections restored, with all their rooms,
	// after one was lost or found deaf (each one a HandleResync).
	Resubscribes uint64
	// Published, PublishErrors count Publish calls; Delivered counts
	// publications passed to the handler.
	Published, PublishErrors, Delivered uint64
	// LastError is the error the last pub/sub connection ended with, if any.
	LastError string
}

// Stats returns a snapshot of every shard's health and counters.
func (b *Broker) Stats() Stats {
	st := Stats{Shards: make([]ShardStats, len(b.shards))}
	for i, s := range b.shards {
		st.Shards[i] = s.stats()
	}
	st.Control = b.controlStats()
	return st
}
