package mqttbridge

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a bridge's state and counters, from [Bridge.Stats].
// Counters only grow; Connected, Subscribed and the Queued fields are current
// values. It depends on nothing, so a metrics exporter can read it as is.
//
// Every message received is accounted for exactly once, per route:
//
//	Received = Sent + DecodeErrors + Skipped + Unchanged + InvalidTopic
//	         + Dropped + Merged + Queued (+ at most one in the route's hands)
type Stats struct {
	// Connected is true while an MQTT connection is up.
	Connected bool
	// Subscribed is true while the connection is up and the broker has
	// accepted every route's subscription: the bridge is receiving.
	Subscribed bool
	// Connects counts the connections established, the first included.
	Connects uint64
	// Reconnects counts the connections established after the first.
	Reconnects uint64
	// ConnectErrors counts failed connection attempts and subscriptions.
	ConnectErrors uint64
	// LastError is the latest problem (connection, subscription, decode,
	// topic or publish error), nil if none yet; it wraps [ErrConnect],
	// [ErrDecode], [ErrInvalidTopic] or the Publisher's error.
	LastError error
	// LastErrorTime is when LastError happened.
	LastErrorTime time.Time

	// Totals over all routes (see RouteStats), plus in Received and
	// InvalidTopic the messages whose topic matched no route.
	Received      uint64
	Sent          uint64
	Published     uint64
	PublishErrors uint64
	DecodeErrors  uint64
	Skipped       uint64
	Unchanged     uint64
	InvalidTopic  uint64
	Dropped       uint64
	Merged        uint64
	Queued        int

	// Routes has one entry per route, in Config.Routes order.
	Routes []RouteStats

	// Commands are the downlink's counters (zero without Config.Commands).
	Commands CommandStats
}

// RouteStats are the counters of one route.
type RouteStats struct {
	// Name is the route's name (Route.Name, default its Topic).
	Name string
	// Received counts the messages whose topic matched the route.
	Received uint64
	// Sent counts the messages whose data went to the Publisher, for each
	// of their rooms (a batch counts each message it holds).
	Sent uint64
	// Published counts the Publisher.Publish calls that succeeded: one per
	// room per message, or per room per batch.
	Published uint64
	// PublishErrors counts the Publisher.Publish calls that failed (e.g.
	// rthub.ErrHubClosed); the message is not retried.
	PublishErrors uint64
	// DecodeErrors counts the messages the DecodeFunc rejected (or whose
	// result did not encode as JSON); they were not published.
	DecodeErrors uint64
	// Skipped counts the messages the DecodeFunc dropped with [ErrSkip].
	Skipped uint64
	// Unchanged counts the messages Route.OnChange did not publish.
	Unchanged uint64
	// InvalidTopic counts the messages with a topic variable that cannot be
	// part of a room name; they were not published.
	InvalidTopic uint64
	// Dropped counts the messages discarded by the Overflow policy, or
	// still queued when a shutdown ran out of time.
	Dropped uint64
	// Merged counts the queued messages replaced by a newer one with the
	// same key (Route.Conflate).
	Merged uint64
	// Queued is the number of messages waiting in the route's queue now,
	// QueuedBytes their accounted size, and QueueHighWater the most that
	// ever waited at once (at most Route.QueueSize).
	Queued, QueuedBytes, QueueHighWater int
}

type routeCounters struct {
	received, sent, published, publishErrors atomic.Uint64
	decodeErrors, skipped, unchanged         atomic.Uint64
	invalidTopic, dropped, merged            atomic.Uint64
}

func (c *routeCounters) snapshot(name string, q *queue) RouteStats {
	s := RouteStats{
		Name:          name,
		Received:      c.received.Load(),
		Sent:          c.sent.Load(),
		Published:     c.published.Load(),
		PublishErrors: c.publishErrors.Load(),
		DecodeErrors:  c.decodeErrors.Load(),
		Skipped:       c.skipped.Load(),
		Unchanged:     c.unchanged.Load(),
		InvalidTopic:  c.invalidTopic.Load(),
		Dropped:       c.dropped.Load(),
		Merged:        c.merged.Load(),
	}
	s.Queued, s.QueuedBytes, s.QueueHighWater = q.len()
	return s
}

// Stats returns a snapshot of the bridge's state and counters. It is safe
// for concurrent use and cheap enough to call on every scrape.
func (b *Bridge) Stats() Stats {
	b.mu.Lock()
	s := Stats{
		Connected:     b.connected,
		Subscribed:    b.subscribed,
		Connects:      b.connects,
		LastError:     b.lastErr,
		LastErrorTime: b.lastErrAt,
	}
	b.mu.Unlock()
	if s.Connects > 1 {
		s.Reconnects = s.Connects - 1
	}
	s.ConnectErrors = b.connectErrors.Load()
	s.Received = b.unrouted.Load()
	s.InvalidTopic = s.Received
	s.Routes = make([]RouteStats, len(b.routes))
	for i, r := range b.routes {
		rs := r.stats.snapshot(r.Name, r.queue)
		s.Routes[i] = rs
		s.Received += rs.Received
		s.Sent += rs.Sent
		s.Published += rs.Published
		s.PublishErrors += rs.PublishErrors
		s.DecodeErrors += rs.DecodeErrors
		s.Skipped += rs.Skipped
		s.Unchanged += rs.Unchanged
		s.InvalidTopic += rs.InvalidTopic
		s.Dropped += rs.Dropped
		s.Merged += rs.Merged
		s.Queued += rs.Queued
	}
	if b.cmd != nil {
		s.Commands = b.cmd.snapshot()
	}
	return s
}

// logLimiter lets one log line through per interval and counts the rest, so
// a flood of bad messages cannot flood the logs.
type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many lines were suppressed
// since the last one.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < time.Second {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
