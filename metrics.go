package rthub

import (
	"slices"
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
