package redisbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub"
	"github.com/redis/rueidis"
)

// This file makes the Broker an [rthub.ControlBroker]. The control plane
// lives on one shard, the one whose name sorts first (every node agrees):
//
//	<prefix>ctl           channel  control messages: "1:<len(from)>:<from><call ID, 16 hex><msg>"
//	<prefix>ctl:r:<node>  channel  answers to node's calls: "1:<len(node)>:<node><call ID><answer>"
//	<prefix>ctl:nodes     zset     live nodes, scored by the Redis time (ms) their heartbeat expires
//	<prefix>ctl:revs      zset     revocation records, scored by the Redis time (ms) they expire
//
// A node subscribes both of its channels on a dedicated connection; while
// that is up it renews its heartbeat every NodeTTL/3. A call reads the live
// set, publishes the message and waits for the answer of each live node.
// Scores use Redis's clock (TIME in the scripts), so nodes' clocks do not
// matter.

var _ rthub.ControlBroker = (*Broker)(nil)

// Bounds of the control plane.
const (
	// controlQueue bounds the control messages received and not yet
	// handled; one arriving at a full queue is dropped (its sender sees this
	// node missing) and counted in ControlStats.Dropped.
	controlQueue = 256
	// controlWorkers is how many handler calls run at once.
	controlWorkers = 8
	// controlCalls bounds this node's Control calls in flight; more wait
	// for a slot (as long as their ctx allows).
	controlCalls = 256
)

// heartbeatScript renews a node's heartbeat and drops expired ones.
//
//	KEYS[1] nodes zset   ARGV[1] node   ARGV[2] TTL ms
var heartbeatScript = rueidis.NewLuaScript(`
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('pexpire', KEYS[1], 10 * tonumber(ARGV[2]))
return 1`)

// liveScript returns the live nodes.
//
//	KEYS[1] nodes zset
var liveScript = rueidis.NewLuaScript(`
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('zrangebyscore', KEYS[1], '(' .. now, '+inf')`)

// putRevocationScript keeps a record until now + TTL (the later expiry
// wins for the same record) and drops expired ones; the zset lives as long
// as its longest record.
//
//	KEYS[1] revs zset   ARGV[1] record   ARGV[2] TTL ms
var putRevocationScript = rueidis.NewLuaScript(`
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
redis.call('zadd', KEYS[1], 'GT', now + ttl, ARGV[1])
if redis.call('pttl', KEYS[1]) < ttl then
  redis.call('pexpire', KEYS[1], ttl)
end
return 1`)

// revocationsScript returns at most ARGV[1] records that have not expired.
//
//	KEYS[1] revs zset   ARGV[1] limit
var revocationsScript = rueidis.NewLuaScript(`
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('zrangebyscore', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, tonumber(ARGV[1]))`)

// control is the broker's control plane, made by StartControl.
type control struct {
	b       *Broker
	s       *shard // the shard it lives on
	node    string
	h       rthub.ControlHandler
	reply   string // this node's answer channel
	work    chan ctlMsg
	calls   chan struct{} // controlCalls slots
	up      chan struct{} // closed once the first subscription is in place
	upOnce  sync.Once
	live    atomic.Bool // subscriptions in place, heartbeat renewed
	dropped atomic.Uint64
	resyncs atomic.Uint64

	mu      sync.Mutex
	pending map[string]*ctlCall // calls in flight by ID
}

// ctlMsg is a received control message.
type ctlMsg struct {
	from, id string
	data     []byte
}

// ctlCall collects the answers of one call.
type ctlCall struct {
	mu      sync.Mutex
	replies []rthub.ControlReply
	seen    map[string]bool
	kick    chan struct{} // 1-slot: an answer arrived
}

// ControlStats is the state of a broker's control plane ([Broker.Stats]).
type ControlStats struct {
	// Live: the control subscription is up and the heartbeat renewed.
	Live bool
	// Dropped counts control messages dropped because 256 were waiting.
	Dropped uint64
	// Resyncs counts control subscriptions restored (each one reloads the
	// revocations).
	Resyncs uint64
}

func (n names) ctl() string                 { return n.prefix + "ctl" }
func (n names) ctlReply(node string) string { return n.prefix + "ctl:r:" + node }
func (n names) ctlNodes() string            { return n.prefix + "ctl:nodes" }
func (n names) ctlRevocations() string      { return n.prefix + "ctl:revs" }
func (b *Broker) controlShard() *shard      { return b.shards[b.ctlIdx] }

// newCallID returns 16 random hex digits.
func newCallID() string {
	var x [8]byte
	_, _ = rand.Read(x[:])
	return hex.EncodeToString(x[:])
}

// envelope frames a control message or answer with its node and call ID.
func envelope(node, id string, d []byte) string {
	return "1:" + strconv.Itoa(len(node)) + ":" + node + id + string(d)
}

// parseEnvelope is envelope's inverse.
func parseEnvelope(m string) (node, id string, data []byte, ok bool) {
	rest, ok := strings.CutPrefix(m, "1:")
	if !ok {
		return "", "", nil, false
	}
	ls, rest, ok := strings.Cut(rest, ":")
	n, err := strconv.Atoi(ls)
	if !ok || err != nil || n < 0 || n > len(rest)-16 {
		return "", "", nil, false
	}
	return rest[:n], rest[n : n+16], []byte(rest[n+16:]), true
}

// StartControl implements [rthub.ControlBroker]. It starts the control
// loop (the subscription and the heartbeat) and its workers, and waits
// until the node is live or ctx ends; in the latter case it returns nil and
// the node becomes live once Redis answers (the handler's
// HandleControlResync is called each time the subscription is in place,
// the first time included). Call it after Start.
func (b *Broker) StartControl(ctx context.Context, node string, h rthub.ControlHandler) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if h == nil || node == "" || strings.ContainsAny(node, " \t\r\n{}") {
		return errors.New("redisbroker: StartControl needs a handler and a node name without spaces or braces")
	}
	b.mu.Lock()
	switch {
	case b.closed.Load():
		b.mu.Unlock()
		return rthub.ErrBrokerClosed
	case !b.started:
		b.mu.Unlock()
		return errors.New("redisbroker: StartControl before Start")
	case b.ctl.Load() != nil:
		b.mu.Unlock()
		return errors.New("redisbroker: control already started")
	}
	c := &control{
		b: b, s: b.controlShard(), node: node, h: h, reply: b.names.ctlReply(node),
		work: make(chan ctlMsg, controlQueue), calls: make(chan struct{}, controlCalls),
		up: make(chan struct{}), pending: make(map[string]*ctlCall),
	}
	b.ctl.Store(c)
	run := b.run
	b.loops.Go(func() { c.loop(run) }) // owner: b; stopped by Close (cancel), waited for there
	for range controlWorkers {
		b.loops.Go(func() { c.serve(run) }) // the same
	}
	b.mu.Unlock()
	select {
	case <-c.up:
	case <-ctx.Done():
		b.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "redisbroker: control plane not up yet", slog.String("node", node))
	}
	return nil
}

// loop holds the control subscription and renews the heartbeat, restoring
// the connection when it is lost, until ctx ends; then it takes the node
// out of the live set.
func (c *control) loop(ctx context.Context) {
	const minDelay = 50 * time.Millisecond
	delay := minDelay
	for ctx.Err() == nil {
		upAt, err := c.session(ctx)
		if ctx.Err() != nil {
			break
		}
		wait := delay
		if !upAt.IsZero() && time.Since(upAt) >= time.Second {
			wait, delay = 0, minDelay
		} else {
			delay = min(2*delay, c.b.opts.MaxReconnectDelay)
		}
		c.b.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "redisbroker: control connection lost",
			slog.String("error", err.Error()), slog.Duration("retry_in", wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	// Leave the live set now rather than at the heartbeat's expiry.
	dctx, cancel := context.WithTimeout(context.Background(), c.b.opts.CommandTimeout)
	defer cancel()
	_ = c.s.client.Do(dctx, c.s.client.B().Zrem().Key(c.b.names.ctlNodes()).Member(c.node).Build()).Error()
}

// session runs one control connection: subscribes, tells the handler to
// resync, then renews the heartbeat until the connection fails.
func (c *control) session(ctx context.Context) (upAt time.Time, err error) {
	dc, release := c.s.client.Dedicate()
	hookErr := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: c.onMessage})
	defer func() {
		c.live.Store(false)
		dc.Close()
		select {
		case <-hookErr:
		case <-time.After(c.b.opts.CommandTimeout):
		}
		release()
	}()
	sctx, cancel := context.WithTimeout(ctx, c.b.opts.CommandTimeout)
	err = dc.Do(sctx, dc.B().Subscribe().Channel(c.b.names.ctl(), c.reply).Build()).Error()
	cancel()
	if err != nil {
		return time.Time{}, err
	}
	if err := c.heartbeat(ctx); err != nil {
		return time.Time{}, err
	}
	upAt = time.Now()
	c.live.Store(true)
	c.upOnce.Do(func() { close(c.up) })
	c.resyncs.Add(1)
	c.h.HandleControlResync()
	t := time.NewTicker(max(c.b.opts.NodeTTL/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return upAt, ctx.Err()
		case err := <-hookErr:
			if err == nil {
				err = errors.New("control pub/sub connection closed")
			}
			return upAt, err
		case <-t.C:
			if err := c.heartbeat(ctx); err != nil {
				return upAt, err
			}
		}
	}
}

func (c *control) heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.b.opts.CommandTimeout)
	defer cancel()
	return heartbeatScript.Exec(ctx, c.s.client, []string{c.b.names.ctlNodes()},
		[]string{c.node, ms(c.b.opts.NodeTTL)}).Error()
}

// onMessage is the control connection's hook: control messages are queued
// for the workers, answers handed to their call.
func (c *control) onMessage(m rueidis.PubSubMessage) {
	from, id, data, ok := parseEnvelope(m.Message)
	if !ok {
		c.b.opts.Logger.LogAttrs(context.Background(), slog.LevelError, "redisbroker: malformed control message",
			slog.String("channel", m.Channel), slog.Int("bytes", len(m.Message)))
		return
	}
	if m.Channel == c.reply {
		c.mu.Lock()
		call := c.pending[id]
		c.mu.Unlock()
		if call != nil {
			call.add(from, data)
		}
		return
	}
	select {
	case c.work <- ctlMsg{from: from, id: id, data: data}:
	default:
		c.dropped.Add(1)
	}
}

func (call *ctlCall) add(node string, data []byte) {
	call.mu.Lock()
	if !call.seen[node] {
		call.seen[node] = true
		call.replies = append(call.replies, rthub.ControlReply{Node: node, Data: data})
	}
	call.mu.Unlock()
	select {
	case call.kick <- struct{}{}:
	default:
	}
}

// serve handles queued control messages and publishes the answers, until
// ctx ends.
func (c *control) serve(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-c.work:
			answer := c.h.HandleControl(ctx, m.data)
			if len(answer) > rthub.MaxControlBytes {
				answer = answer[:0] // the caller decodes nothing and reports it
			}
			pctx, cancel := context.WithTimeout(ctx, c.b.opts.CommandTimeout)
			err := c.s.client.Do(pctx, c.s.client.B().Publish().Channel(c.b.names.ctlReply(m.from)).
				Message(envelope(c.node, m.id, answer)).Build()).Error()
			cancel()
			if err != nil && ctx.Err() == nil {
				c.b.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "redisbroker: answering a control message",
					slog.String("to", m.from), slog.String("error", err.Error()))
			}
		}
	}
}

// Control implements [rthub.ControlBroker]: it reads the live set, publishes
// msg and waits for each live node's answer until ctx ends. It fails when
// this node's control subscription is not up (it could not hear answers).
func (b *Broker) Control(ctx context.Context, msg []byte) ([]rthub.ControlReply, []string, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if b.closed.Load() {
		return nil, nil, rthub.ErrBrokerClosed
	}
	if len(msg) > rthub.MaxControlBytes {
		return nil, nil, fmt.Errorf("redisbroker: control message of %d bytes, at most %d", len(msg), rthub.MaxControlBytes)
	}
	c := b.ctl.Load()
	if c == nil {
		return nil, nil, errors.New("redisbroker: Control before StartControl")
	}
	if !c.live.Load() {
		return nil, nil, errors.New("redisbroker: control connection down")
	}
	select {
	case c.calls <- struct{}{}:
		defer func() { <-c.calls }()
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	id := newCallID()
	call := &ctlCall{seen: make(map[string]bool), kick: make(chan struct{}, 1)}
	c.mu.Lock()
	c.pending[id] = call
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	live, err := liveScript.Exec(ctx, c.s.client, []string{b.names.ctlNodes()}, nil).AsStrSlice()
	if err != nil {
		return nil, nil, b.wrap(ctx, "control", "", err)
	}
	if !slices.Contains(live, c.node) {
		live = append(live, c.node) // this node is live: its heartbeat may just be due
	}
	err = c.s.client.Do(ctx, c.s.client.B().Publish().Channel(b.names.ctl()).Message(envelope(c.node, id, msg)).Build()).Error()
	if err != nil {
		return nil, nil, b.wrap(ctx, "control", "", err)
	}
	for {
		call.mu.Lock()
		var missing []string
		for _, n := range live {
			if !call.seen[n] {
				missing = append(missing, n)
			}
		}
		replies := slices.Clone(call.replies)
		call.mu.Unlock()
		if len(missing) == 0 {
			return replies, nil, nil
		}
		select {
		case <-call.kick:
		case <-ctx.Done():
			slices.Sort(missing)
			return replies, missing, nil
		}
	}
}

// PutRevocation implements [rthub.ControlBroker]: one script on the control
// shard (ZADD to <prefix>ctl:revs).
func (b *Broker) PutRevocation(ctx context.Context, rec []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return rthub.ErrBrokerClosed
	}
	if len(rec) > rthub.MaxControlBytes {
		return fmt.Errorf("redisbroker: revocation of %d bytes, at most %d", len(rec), rthub.MaxControlBytes)
	}
	if ttl <= 0 {
		return fmt.Errorf("redisbroker: revocation TTL %v", ttl)
	}
	s := b.controlShard()
	if err := putRevocationScript.Exec(ctx, s.client, []string{b.names.ctlRevocations()}, []string{string(rec), ms(ttl)}).Error(); err != nil {
		return b.wrap(ctx, "put revocation", "", err)
	}
	return nil
}

// Revocations implements [rthub.ControlBroker].
func (b *Broker) Revocations(ctx context.Context, limit int) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.closed.Load() {
		return nil, rthub.ErrBrokerClosed
	}
	s := b.controlShard()
	recs, err := revocationsScript.Exec(ctx, s.client, []string{b.names.ctlRevocations()}, []string{strconv.Itoa(max(limit, 0))}).AsStrSlice()
	if err != nil {
		return nil, b.wrap(ctx, "revocations", "", err)
	}
	out := make([][]byte, len(recs))
	for i, r := range recs {
		out[i] = []byte(r)
	}
	return out, nil
}

// controlStats returns the control plane's stats (zero before StartControl).
func (b *Broker) controlStats() ControlStats {
	c := b.ctl.Load()
	if c == nil {
		return ControlStats{}
	}
	return ControlStats{Live: c.live.Load(), Dropped: c.dropped.Load(), Resyncs: c.resyncs.Load()}
}
