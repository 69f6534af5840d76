package rthub

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// LatencyHistogram is a snapshot of a latency distribution in fixed buckets,
// in the shape Prometheus histograms use: Counts[i] is the number of
// observations at or below Bounds[i] (cumulative), Count of all of them.
type LatencyHistogram struct {
	Bounds []time.Duration // upper bounds, ascending; the last bucket is +Inf (Count)
	Counts []uint64        // cumulative, one per bound
	Count  uint64
	Sum    time.Duration
}

// Quantile estimates the q-quantile (0 < q < 1) by linear interpolation
// within the bucket it falls in, as Prometheus's histogram_quantile does. It
// is 0 without observations, and the largest bound when q falls past it.
func (l LatencyHistogram) Quantile(q float64) time.Duration {
	if l.Count == 0 || len(l.Bounds) == 0 {
		return 0
	}
	rank := q * float64(l.Count)
	var lower time.Duration
	var below uint64
	for i, b := range l.Bounds {
		if float64(l.Counts[i]) >= rank {
			in := l.Counts[i] - below
			if in == 0 {
				return b
			}
			return lower + time.Duration(float64(b-lower)*(rank-float64(below))/float64(in))
		}
		lower, below = b, l.Counts[i]
	}
	return l.Bounds[len(l.Bounds)-1]
}

// latencyBounds are the buckets of the broadcast latency histogram.
var latencyBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// latencyHist records durations with atomic counters: no lock, no allocation.
type latencyHist struct {
	buckets [len(latencyBounds)]atomic.Uint64 // per bucket (not cumulative)
	over    atomic.Uint64                     // above the last bound
	sum     atomic.Int64                      // nanoseconds
}

func (h *latencyHist) observe(d time.Duration) {
	h.sum.Add(int64(d))
	for i, b := range &latencyBounds {
		if d <= b {
			h.buckets[i].Add(1)
			return
		}
	}
	h.over.Add(1)
}

func (h *latencyHist) snapshot() LatencyHistogram {
	s := LatencyHistogram{Bounds: slices.Clone(latencyBounds[:]), Counts: make([]uint64, len(latencyBounds))}
	var cum uint64
	for i := range latencyBounds {
		cum += h.buckets[i].Load()
		s.Counts[i] = cum
	}
	s.Count = cum + h.over.Load()
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// EventCounts counts one event's publications and their fate on this hub.
type EventCounts struct {
	Published uint64 // Publish calls for the event made on this hub (one per room)
	Delivered uint64 // frames of it queued to connections on this hub (one per recipient)
	// Dropped counts the recipients on this hub a frame of it could not be
	// queued to: the connection was closing, or its send queue was full
	// (it is then closed as a slow consumer). Frames discarded later, from
	// the queue of a connection that dies, are in Stats.DroppedFrames only.
	Dropped uint64
}

// OtherEvents is the key of [Stats.Events] under which events are counted
// once [MaxEventNames] distinct names have been seen. It cannot be an event
// name (those are room-shaped).
const OtherEvents = "(other)"

// MaxEventNames bounds the number of keys [Stats.Events] holds, [OtherEvents]
// included, so that a publisher inventing names cannot grow it (or a metrics
// backend's cardinality) without bound: once MaxEventNames-1 names have their
// own counts, further names are counted as OtherEvents.
const MaxEventNames = 256

// eventCounters counts publications, deliveries and drops by event name.
// One lookup per publication (not per recipient) on the hot path: a read
// lock and a map index.
type eventCounters struct {
	mu sync.RWMutex
	m  map[string]*eventCounter
}

type eventCounter struct{ published, delivered, dropped atomic.Uint64 }

// of returns the counters of the event named name, creating them on first
// use.
func (e *eventCounters) of(name string) *eventCounter {
	e.mu.RLock()
	c := e.m[name]
	e.mu.RUnlock()
	if c != nil {
		return c
	}
	return e.add(name)
}

// ofBytes is of for a name read from a message: the lookup does not
// allocate (only a first sighting does).
func (e *eventCounters) ofBytes(name []byte) *eventCounter {
	e.mu.RLock()
	c := e.m[string(name)]
	e.mu.RUnlock()
	if c != nil {
		return c
	}
	return e.add(string(name))
}

// add creates the counters of name, or returns those of OtherEvents once
// MaxEventNames-1 names have their own.
func (e *eventCounters) add(name string) *eventCounter {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.m[name]; c != nil {
		return c
	}
	if len(e.m) >= MaxEventNames-1 { // keep a key for OtherEvents
		name = OtherEvents
		if c := e.m[name]; c != nil {
			return c
		}
	}
	if e.m == nil {
		e.m = make(map[string]*eventCounter)
	}
	c := new(eventCounter)
	e.m[name] = c
	return c
}

// snapshot returns the counts by event name, nil if none.
func (e *eventCounters) snapshot() map[string]EventCounts {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if len(e.m) == 0 {
		return nil
	}
	out := make(map[string]EventCounts, len(e.m))
	for name, c := range e.m {
		out[name] = EventCounts{Published: c.published.Load(), Delivered: c.delivered.Load(), Dropped: c.dropped.Load()}
	}
	return out
}

// eventNameOf returns the event name of an encoded event message, as
// appendEventCID writes it (the name needs no escaping: names are
// room-shaped), or nil if msg is not one.
func eventNameOf(msg []byte) []byte {
	const prefix = `{"type":"event","event":"`
	if !bytes.HasPrefix(msg, []byte(prefix)) {
		return nil
	}
	rest := msg[len(prefix):]
	i := bytes.IndexByte(rest, '"')
	if i <= 0 {
		return nil
	}
	return rest[:i]
}

// Stats is a snapshot of a hub's counters. Counters only grow; gauges
// (Connections, Users, Rooms) are current values.
type Stats struct {
	Connections int // open connections
	Users       int // distinct subjects connected
	Rooms       int // rooms with at least one local member

	Accepted       uint64 // connections upgraded
	Unauthorized   uint64 // handshakes refused with 401
	Refused        uint64 // handshakes refused otherwise (400, 503, upgrade failures)
	Published      uint64 // Publish calls handed to the broker (with or without local members)
	Delivered      uint64 // event frames queued to connections
	FramesSent     uint64 // frames written to sockets (events, replies, control)
	Writes         uint64 // write system calls that carried them (FramesSent/Writes = coalescing)
	BytesSent      uint64 // bytes written to sockets
	MessagesIn     uint64 // client messages read
	SlowConsumers  uint64 // connections closed because their queue overflowed
	PingTimeouts   uint64 // connections closed as silent
	TokenExpired   uint64 // connections closed at token expiry
	ProtocolErrs   uint64 // connections closed for protocol violations
	Throttled      uint64 // handshakes refused with 429 (rate or connection limits); also in Refused
	Forbidden      uint64 // joins, emits, presence queries refused by the policy
	RateLimited    uint64 // client commands dropped by the command rate limit
	AbuseCloses    uint64 // connections closed (1008) for hammering past the limit
	Resumes        uint64 // joins with a since position (resume attempts)
	Unrecovered    uint64 // resumes and live gaps that could not be filled from history (clients told to reload)
	GapsRecovered  uint64 // live gaps (missed publications) filled from history
	BrokerErrors   uint64 // failed broker calls (publish, subscribe, history)
	Reconnects     uint64 // handshakes that carried since positions: clients coming back
	RelayedPosts   uint64 // POSTs of HTTP stream commands this node relayed to the node holding the stream (see NodeRelay)
	BytesReceived  uint64 // message bytes read from clients (after inflating)
	EventBytes     uint64 // event messages queued to connections, uncompressed bytes
	EventWireBytes uint64 // the same events as frames on the wire (compressed when negotiated): EventWireBytes/EventBytes is the compression ratio
	DroppedFrames  uint64 // frames never written: refused by a closing connection or a full send queue, or discarded from the queue of one that closed

	// OverflowDropped and OverflowConflated count the events the overflow
	// policy ([Policy].Overflow) left out of slow connections' queues, one
	// per connection: dropped (drop-oldest, or conflate for an event without
	// a key or when conflating was not enough) and conflated (a newer event
	// of the same room and key was queued). They are not in DroppedFrames.
	// GapNotices counts the gap messages queued to tell connections so
	// (one announces every loss of a room until it is written).
	OverflowDropped   uint64
	OverflowConflated uint64
	GapNotices        uint64

	// Calls counts the RPC calls started (docs/rpc.md), retries answered
	// from the idempotency memory included.
	Calls uint64
	// Replayed counts the emits and calls with an idempotency key answered
	// with the remembered outcome of their first run; Joined those that
	// arrived while the first run was still going and waited for it
	// ([IdempotencyOptions]). Neither ran a handler.
	Replayed, Joined uint64

	// HistoryBytes and HistoryEvictions are the in-memory broker's (see
	// [MemoryBrokerStats]); 0 with another broker, whose history lives
	// outside the process.
	HistoryBytes     int64
	HistoryEvictions uint64

	// Control plane ([Hub.ControlUser], [Hub.Revoke]; docs/scaling.md).
	ControlCalls       uint64 // control calls made on this node (ControlUser, Revoke, DisconnectUser, JoinUser, LeaveUser)
	ControlIncomplete  uint64 // of them, those some node did not answer in time (or the broker failed)
	Revocations        uint64 // revocations accepted by Revoke on this node
	RevokedConns       uint64 // connections this node closed with 4102 (token revoked)
	RevokedRefused     uint64 // handshakes and refreshes this node refused with token_revoked
	RevocationsKept    int    // entries in this node's replica of the revocations now
	RevocationsDropped uint64 // revocations this node could not keep (replica at Revocation.MaxEntries)

	QueuedFrames int // frames waiting in connections' send queues now
	QueuedBytes  int // their bytes

	// Events counts publications, deliveries and drops by event name (at
	// most MaxEventNames names; see OtherEvents). Nil before the first
	// publication.
	Events map[string]EventCounts

	// ReplyErrors counts error replies to client commands by error code
	// ("forbidden", "rate_limited", ...; docs/protocol.md §2.4). Nil when
	// there were none.
	ReplyErrors map[string]uint64

	// BroadcastLatency is the time from a publication reaching this hub (from
	// its broker) to the write of its frame to the last member's socket,
	// one observation per publication that started at least one socket
	// write (one whose members were all mid-write rides on those writes and
	// is not observed). It
	// includes WriteDelay and time spent waiting for a flush worker; it does
	// not include the broker's own transit (see the broker's stats).
	BroadcastLatency LatencyHistogram
}

type hubStats struct {
	accepted, unauthorized, refused    atomic.Uint64
	published, delivered               atomic.Uint64
	framesSent, bytesSent, messagesIn  atomic.Uint64
	slowConsumers, pingTimeouts        atomic.Uint64
	tokenExpired, protocolErrors       atomic.Uint64
	brokerErrors, resumes, unrecovered atomic.Uint64
	gapsRecovered                      atomic.Uint64
	reconnects, bytesIn                atomic.Uint64
	relayedPosts                       atomic.Uint64
	replyErrors                        [maxReplyCodes]atomic.Uint64 // by replyErrorIndex
	eventBytes, eventWire              atomic.Uint64
	writes                             atomic.Uint64
	throttled, forbidden               atomic.Uint64
	rateLimited, abuseCloses           atomic.Uint64
	droppedFrames                      atomic.Uint64
	overflowDropped, overflowConflated atomic.Uint64
	gapNotices                         atomic.Uint64
	controlCalls, controlIncomplete    atomic.Uint64
	revocations, revokedConns          atomic.Uint64
	revokedRefused, revocationsDropped atomic.Uint64
	calls                              atomic.Uint64
	idemReplayed, idemJoined           atomic.Uint64
	events                             eventCounters
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	s := Stats{Connections: len(h.conns), Users: len(h.users), Rooms: len(h.rooms)}
	for _, c := range h.conns {
		c.mu.Lock()
		if c.queue != nil {
			s.QueuedFrames += len(c.queue.bufs)
		}
		s.QueuedBytes += c.queued
		c.mu.Unlock()
	}
	h.mu.RUnlock()
	st := &h.stats
	for i := range st.replyErrors {
		if n := st.replyErrors[i].Load(); n > 0 {
			if s.ReplyErrors == nil {
				s.ReplyErrors = make(map[string]uint64)
			}
			s.ReplyErrors[replyErrorCode(i)] = n
		}
	}
	s.Accepted = st.accepted.Load()
	s.Unauthorized = st.unauthorized.Load()
	s.Refused = st.refused.Load()
	s.Published = st.published.Load()
	s.Delivered = st.delivered.Load()
	s.FramesSent = st.framesSent.Load()
	s.Writes = st.writes.Load()
	s.BytesSent = st.bytesSent.Load()
	s.MessagesIn = st.messagesIn.Load()
	s.SlowConsumers = st.slowConsumers.Load()
	s.PingTimeouts = st.pingTimeouts.Load()
	s.TokenExpired = st.tokenExpired.Load()
	s.ProtocolErrs = st.protocolErrors.Load()
	s.Throttled = st.throttled.Load()
	s.Forbidden = st.forbidden.Load()
	s.RateLimited = st.rateLimited.Load()
	s.AbuseCloses = st.abuseCloses.Load()
	s.Resumes = st.resumes.Load()
	s.Unrecovered = st.unrecovered.Load()
	s.GapsRecovered = st.gapsRecovered.Load()
	s.BrokerErrors = st.brokerErrors.Load()
	s.Reconnects = st.reconnects.Load()
	s.RelayedPosts = st.relayedPosts.Load()
	s.BytesReceived = st.bytesIn.Load()
	s.EventBytes = st.eventBytes.Load()
	s.EventWireBytes = st.eventWire.Load()
	s.DroppedFrames = st.droppedFrames.Load()
	s.OverflowDropped = st.overflowDropped.Load()
	s.OverflowConflated = st.overflowConflated.Load()
	s.GapNotices = st.gapNotices.Load()
	s.ControlCalls = st.controlCalls.Load()
	s.ControlIncomplete = st.controlIncomplete.Load()
	s.Revocations = st.revocations.Load()
	s.RevokedConns = st.revokedConns.Load()
	s.RevokedRefused = st.revokedRefused.Load()
	s.RevocationsDropped = st.revocationsDropped.Load()
	s.RevocationsKept = h.revs.len()
	s.Calls = st.calls.Load()
	s.Replayed = st.idemReplayed.Load()
	s.Joined = st.idemJoined.Load()
	s.Events = st.events.snapshot()
	if mb, ok := h.broker.(interface{ Stats() MemoryBrokerStats }); ok {
		ms := mb.Stats()
		s.HistoryBytes, s.HistoryEvictions = ms.HistoryBytes, ms.HistoryEvictions
	}
	s.BroadcastLatency = h.latency.snapshot()
	return s
}
