package redisbroker

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub"
	"github.com/redis/rueidis"
)

// shard is one Redis server: a client for commands (auto-pipelined) and the
// state of this node's pub/sub connection to it, which one goroutine (run)
// owns.
type shard struct {
	b       *Broker
	name    string
	client  rueidis.Client
	probeCh string
	relayCh string           // this node's relay channel, if it is on this shard (relay.go); set before Start
	relayFn func(msg []byte) // its listener

	// mu guards the subscription state. Subscribe and Unsubscribe change
	// desired and queue an op with the next seq; run sends the queued ops in
	// order and advances applied, waking waiters through appliedCh.
	mu        sync.Mutex
	desired   map[string]struct{} // rooms this node wants
	pending   []op
	seq       uint64
	applied   uint64
	appliedCh chan struct{} // closed and replaced when applied advances
	connected bool
	lastErr   string
	kick      chan struct{} // 1-slot: ops are pending

	// The gate holds back the publications of a new connection until run has
	// called HandleResync, so a resync comes before them.
	gate sync.Mutex
	open atomic.Bool
	held []rueidis.PubSubMessage

	// Probe state: written by run, read by the hook goroutine.
	probeMu   sync.Mutex
	probeSeq  uint64
	probeSent time.Time
	probing   bool // a probe is out and not back yet
	deaf      atomic.Bool
	rtt       atomic.Int64 // ns
	lastProbe atomic.Int64 // unix ns

	resubscribes, published, publishErrors, delivered atomic.Uint64
}

// op is a queued change of subscriptions.
type op struct {
	sub   bool
	rooms []string
}

func newShard(b *Broker, i int, name string, c rueidis.Client) *shard {
	return &shard{
		b: b, name: name, client: c,
		probeCh:   b.names.probe(b.opts.NodeID, i),
		desired:   make(map[string]struct{}),
		appliedCh: make(chan struct{}),
		kick:      make(chan struct{}, 1),
	}
}

// enqueue records the wanted state of rooms and returns the seq to wait for.
func (s *shard) enqueue(rooms []string, on bool) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var changed []string
	for _, r := range rooms {
		if _, ok := s.desired[r]; ok == on {
			continue
		}
		if on {
			s.desired[r] = struct{}{}
		} else {
			delete(s.desired, r)
		}
		changed = append(changed, r)
	}
	if len(changed) > 0 {
		s.seq++
		s.pending = append(s.pending, op{sub: on, rooms: changed})
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return s.seq // also covers an op of the same rooms still in flight
}

// wait returns when every op up to seq is in place in Redis.
func (s *shard) wait(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		done, ch := s.applied >= seq, s.appliedCh
		s.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.b.stop:
			return rthub.ErrBrokerClosed
		}
	}
}

// setApplied marks ops up to seq as in place; s.mu is held.
func (s *shard) setApplied(seq uint64) {
	if seq > s.applied {
		s.applied = seq
		close(s.appliedCh)
		s.appliedCh = make(chan struct{})
	}
}

// run keeps a pub/sub connection with every wanted room subscribed until ctx
// ends. A connection that was up for a second or more is replaced at once;
// otherwise attempts are spaced from 50 ms, doubling up to MaxReconnectDelay.
func (s *shard) run(ctx context.Context) {
	const minDelay = 50 * time.Millisecond
	delay := minDelay
	wasUp := false
	for ctx.Err() == nil {
		upAt, err := s.session(ctx, wasUp)
		wasUp = wasUp || !upAt.IsZero()
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.lastErr = err.Error()
		s.mu.Unlock()
		wait := delay
		if !upAt.IsZero() && time.Since(upAt) >= time.Second {
			wait, delay = 0, minDelay
		} else {
			delay = min(2*delay, s.b.opts.MaxReconnectDelay)
		}
		s.b.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "redisbroker: pub/sub connection lost",
			slog.String("shard", s.name), slog.String("error", err.Error()), slog.Duration("retry_in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session runs one pub/sub connection: subscribes the wanted rooms (and the
// probe channel), tells the handler to resync them if an earlier connection
// existed, then serves queued ops and probes until the connection fails. upAt
// is when the subscriptions were in place (zero if they never were).
func (s *shard) session(ctx context.Context, resync bool) (upAt time.Time, err error) {
	dc, release := s.client.Dedicate()
	s.gate.Lock()
	s.open.Store(false)
	s.held = nil
	s.gate.Unlock()
	hookErr := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: s.onMessage})
	defer func() {
		s.mu.Lock()
		s.connected = false
		s.mu.Unlock()
		dc.Close()
		select { // the hooks (and so handler calls) have stopped once hookErr closes
		case <-hookErr:
		case <-time.After(s.b.opts.CommandTimeout):
		}
		release()
	}()

	s.mu.Lock()
	rooms := slices.Sorted(maps.Keys(s.desired))
	seq := s.seq
	s.pending = nil // their effect is in desired
	s.mu.Unlock()
	channels := make([]string, 0, len(rooms)+1)
	channels = append(channels, s.probeCh)
	if s.relayCh != "" {
		channels = append(channels, s.relayCh)
	}
	for _, r := range rooms {
		channels = append(channels, s.b.names.channel(r))
	}
	if err := s.do(ctx, dc, s.commands(dc, []op{{sub: true, rooms: channels}})); err != nil {
		return time.Time{}, err
	}
	upAt = time.Now()
	s.mu.Lock()
	s.connected = true
	s.setApplied(seq)
	s.mu.Unlock()
	if resync {
		s.resubscribes.Add(1)
		s.b.opts.Logger.LogAttrs(ctx, slog.LevelInfo, "redisbroker: resubscribed",
			slog.String("shard", s.name), slog.Int("rooms", len(rooms)))
	} else {
		rooms = nil
	}
	s.openGate(rooms)
	return upAt, s.serve(ctx, dc, hookErr)
}

// serve sends queued ops and probes until the connection fails or ctx ends.
func (s *shard) serve(ctx context.Context, dc rueidis.DedicatedClient, hookErr <-chan error) error {
	var tick <-chan time.Time
	if s.b.opts.ProbeInterval > 0 {
		t := time.NewTicker(s.b.opts.ProbeInterval)
		defer t.Stop()
		tick = t.C
	}
	s.probeMu.Lock()
	s.probing = false
	s.probeMu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-hookErr:
			if err == nil {
				err = errors.New("pub/sub connection closed")
			}
			return err
		case <-s.kick:
			s.mu.Lock()
			ops, seq := s.pending, s.seq
			s.pending = nil
			s.mu.Unlock()
			for i := range ops {
				for j, r := range ops[i].rooms {
					ops[i].rooms[j] = s.b.names.channel(r)
				}
			}
			if err := s.do(ctx, dc, s.commands(dc, ops)); err != nil {
				return err
			}
			s.mu.Lock()
			s.setApplied(seq)
			s.mu.Unlock()
		case <-tick:
			if err := s.probe(ctx); err != nil {
				return err
			}
		}
	}
}

// commands turns ops into SUBSCRIBE/UNSUBSCRIBE commands of at most
// SubscribeBatch channels, merging neighbouring ops of the same kind and
// keeping their order.
func (s *shard) commands(dc rueidis.DedicatedClient, ops []op) rueidis.Commands {
	var cmds rueidis.Commands
	var batch []string
	var sub bool
	flush := func() {
		for c := range slices.Chunk(batch, s.b.opts.SubscribeBatch) {
			if sub {
				cmds = append(cmds, dc.B().Subscribe().Channel(c...).Build())
			} else {
				cmds = append(cmds, dc.B().Unsubscribe().Channel(c...).Build())
			}
		}
		batch = batch[:0]
	}
	for _, o := range ops {
		if o.sub != sub && len(batch) > 0 {
			flush()
		}
		sub = o.sub
		batch = append(batch, o.rooms...)
	}
	flush()
	return cmds
}

// do sends cmds in one pipeline and waits for every reply, within
// CommandTimeout.
func (s *shard) do(ctx context.Context, dc rueidis.DedicatedClient, cmds rueidis.Commands) error {
	if len(cmds) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.b.opts.CommandTimeout)
	defer cancel()
	for _, r := range dc.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// probe checks the last probe came back and sends the next one. It returns
// ErrDeaf when the subscription is deaf: the caller replaces the connection.
func (s *shard) probe(ctx context.Context) error {
	timeout := s.b.opts.ProbeTimeout
	s.probeMu.Lock()
	if s.probing {
		late := time.Since(s.probeSent) > timeout
		s.probeMu.Unlock()
		if late {
			return s.declareDeaf(ctx, "probe not back after "+timeout.String())
		}
		return nil
	}
	s.probeSeq++
	seq := s.probeSeq
	s.probeSent, s.probing = time.Now(), true
	s.probeMu.Unlock()

	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	n, err := s.client.Do(pctx, s.client.B().Publish().Channel(s.probeCh).Message(strconv.FormatUint(seq, 10)).Build()).AsInt64()
	if err != nil {
		// Commands fail too: not a pub/sub problem; try again next tick.
		s.probeMu.Lock()
		s.probing = false
		s.probeMu.Unlock()
		s.b.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "redisbroker: probe publish failed",
			slog.String("shard", s.name), slog.String("error", err.Error()))
		return nil
	}
	if n == 0 {
		return s.declareDeaf(ctx, "Redis has no subscriber for the probe channel")
	}
	return nil
}

func (s *shard) declareDeaf(ctx context.Context, why string) error {
	s.deaf.Store(true)
	s.b.opts.Logger.LogAttrs(ctx, slog.LevelError, "redisbroker: pub/sub deaf, reconnecting",
		slog.String("shard", s.name), slog.String("why", why))
	return ErrDeaf
}

// probeBack records a probe that came back.
func (s *shard) probeBack(msg string) {
	seq, err := strconv.ParseUint(msg, 10, 64)
	if err != nil {
		return
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if !s.probing || seq != s.probeSeq {
		return // an old one
	}
	now := time.Now()
	s.probing = false
	s.rtt.Store(int64(now.Sub(s.probeSent)))
	s.lastProbe.Store(now.UnixNano())
	s.deaf.Store(false)
}

// onMessage is the pub/sub hook: rueidis calls it for each message of the
// connection, one at a time.
func (s *shard) onMessage(m rueidis.PubSubMessage) {
	if m.Channel == s.probeCh {
		s.probeBack(m.Message)
		return
	}
	if s.relayCh != "" && m.Channel == s.relayCh {
		s.relayFn([]byte(m.Message))
		return
	}
	if !s.open.Load() {
		s.gate.Lock()
		if !s.open.Load() {
			s.held = append(s.held, m)
			s.gate.Unlock()
			return
		}
		s.gate.Unlock()
	}
	s.dispatch(m)
}

// openGate calls HandleResync for rooms (if any), delivers the publications
// held meanwhile, and lets the following ones through.
func (s *shard) openGate(rooms []string) {
	s.gate.Lock()
	defer s.gate.Unlock()
	if len(rooms) > 0 {
		s.b.handler.HandleResync(rooms)
	}
	for _, m := range s.held {
		s.dispatch(m)
	}
	s.held = nil
	s.open.Store(true)
}

// dispatch decodes a room channel's message and passes it to the handler if
// the room is still wanted.
func (s *shard) dispatch(m rueidis.PubSubMessage) {
	room := s.b.names.room(m.Channel)
	if room == "" {
		return
	}
	s.mu.Lock()
	_, want := s.desired[room]
	s.mu.Unlock()
	if !want {
		return
	}
	pub, ok := decode(room, m.Message)
	if !ok {
		s.b.opts.Logger.LogAttrs(context.Background(), slog.LevelError, "redisbroker: malformed message",
			slog.String("channel", m.Channel), slog.Int("bytes", len(m.Message)))
		return
	}
	s.delivered.Add(1)
	s.b.handler.HandlePublication(pub)
}

func (s *shard) stats() ShardStats {
	s.mu.Lock()
	st := ShardStats{Name: s.name, Connected: s.connected, Rooms: len(s.desired), LastError: s.lastErr}
	s.mu.Unlock()
	st.Deaf = s.deaf.Load()
	st.ProbeRTT = time.Duration(s.rtt.Load())
	if ns := s.lastProbe.Load(); ns != 0 {
		st.LastProbe = time.Unix(0, ns)
	}
	st.Resubscribes = s.resubscribes.Load()
	st.Published = s.published.Load()
	st.PublishErrors = s.publishErrors.Load()
	st.Delivered = s.delivered.Load()
	return st
}
