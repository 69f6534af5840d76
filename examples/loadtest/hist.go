package main

import (
	"encoding/json"
	"math"
	"time"
)

// Hist is a log-bucketed latency histogram, in the manner of HDR histograms:
// bucket i holds values in [g^(i-1), g^i) microseconds with g = 1.01, so a
// quantile is off by at most 1 % and memory is fixed (about 19 KiB) whatever
// the number of samples. Histograms add, so child processes send theirs and
// the parent merges them. The zero value is not ready; use newHist.
type Hist struct {
	counts   []uint64
	N        uint64
	Sum, Max float64 // microseconds; Max is exact
	Min      float64
}

const (
	histGrowth  = 1.01
	histBuckets = 2400 // 1.01^2400 µs ≈ 23 days
)

var logGrowth = math.Log(histGrowth)

func newHist() *Hist { return &Hist{counts: make([]uint64, histBuckets)} }

// Record adds one duration.
func (h *Hist) Record(d time.Duration) { h.RecordMicros(float64(d) / 1e3) }

// RecordMicros adds one value in microseconds; negative values count as 0.
func (h *Hist) RecordMicros(v float64) {
	if v < 0 {
		v = 0
	}
	i := 0
	if v >= 1 {
		i = min(int(math.Log(v)/logGrowth)+1, histBuckets-1)
	}
	h.counts[i]++
	if h.N == 0 || v < h.Min {
		h.Min = v
	}
	h.N++
	h.Sum += v
	h.Max = max(h.Max, v)
}

// Merge adds o's samples to h.
func (h *Hist) Merge(o *Hist) {
	if o == nil || o.N == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.N == 0 || o.Min < h.Min {
		h.Min = o.Min
	}
	h.N += o.N
	h.Sum += o.Sum
	h.Max = max(h.Max, o.Max)
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1) in
// microseconds: the upper bound of the bucket holding it, clamped to
// [Min, Max]. It is 0 for an empty histogram.
func (h *Hist) Quantile(q float64) float64 {
	if h.N == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.N)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := 1.0
			if i > 0 {
				v = math.Pow(histGrowth, float64(i))
			}
			return min(max(v, h.Min), h.Max)
		}
	}
	return h.Max
}

// Mean returns the mean in microseconds.
func (h *Hist) Mean() float64 {
	if h.N == 0 {
		return 0
	}
	return h.Sum / float64(h.N)
}

type histJSON struct {
	B        [][2]uint64 `json:"b"` // sparse [bucket, count]
	N        uint64      `json:"n"`
	Sum, Max float64
	Min      float64
}

// MarshalJSON writes only non-empty buckets.
func (h *Hist) MarshalJSON() ([]byte, error) {
	j := histJSON{N: h.N, Sum: h.Sum, Max: h.Max, Min: h.Min, B: [][2]uint64{}}
	for i, c := range h.counts {
		if c != 0 {
			j.B = append(j.B, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = Hist{counts: make([]uint64, histBuckets), N: j.N, Sum: j.Sum, Max: j.Max, Min: j.Min}
	for _, bc := range j.B {
		if bc[0] < histBuckets {
			h.counts[bc[0]] = bc[1]
		}
	}
	return nil
}

// Percentile returns the nearest-rank q-quantile of sorted samples (0 < q <= 1),
// 0 for none. Used for the few exact samples (reconnection times).
func Percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	r := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(r, 0), len(sorted)-1)]
}

// Summary holds a histogram's figures in milliseconds, for result.json.
type Summary struct {
	N    uint64  `json:"n"`
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func (h *Hist) Summary() Summary {
	ms := func(v float64) float64 { return math.Round(v) / 1e3 }
	return Summary{N: h.N, P50: ms(h.Quantile(0.5)), P95: ms(h.Quantile(0.95)), P99: ms(h.Quantile(0.99)),
		Max: ms(h.Max), Mean: ms(h.Mean())}
}

// Fit returns the least-squares line y = slope*x + intercept through the
// points; slope 0 and the mean of ys if there are fewer than two distinct xs.
func Fit(xs, ys []float64) (slope, intercept float64) {
	n := float64(len(xs))
	if len(xs) == 0 || len(xs) != len(ys) {
		return 0, 0
	}
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	if sxx == 0 {
		return 0, my
	}
	slope = sxy / sxx
	return slope, my - slope*mx
}
