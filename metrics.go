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
