package client

import (
	"context"
	"errors"
	"math"
	"time"
)

// Backoff says how long the client waits before each reconnection attempt.
// Attempt n (from 0) waits Min × Factor^n, at most Max, then varied by ±Jitter
// of itself at random, so that clients dropped together do not come back
// together. With the defaults the waits are 1 s, 2 s, 4 s, 8 s, 16 s, 30 s,
// 30 s, ..., each ± 20 %. The count starts again from 0 after every
// successful connection. The zero value is the default.
type Backoff struct {
	// Min is the wait before the first attempt. Default 1 s.
	Min time.Duration
	// Max caps the wait, before jitter. Default 30 s.
	Max time.Duration
	// Factor multiplies the wait after each failed attempt; at least 1.
	// Default 2.
	Factor float64
	// Jitter is the fraction, 0 to 1, by which each wait varies either way.
	// Default (0) is 0.2; a negative value turns jitter off.
	Jitter float64
}

func (b Backoff) withDefaults() (Backoff, error) {
	if b.Min == 0 {
		b.Min = time.Second
	}
	if b.Max == 0 {
		b.Max = max(30*time.Second, b.Min)
	}
	if b.Factor == 0 {
		b.Factor = 2
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = 0.2
	case b.Jitter < 0:
		b.Jitter = 0
	}
	var errs []error
	if b.Min < 0 {
		errs = append(errs, errors.New("rthub/client: Backoff.Min is negative"))
	}
	if b.Max < b.Min {
		errs = append(errs, errors.New("rthub/client: Backoff.Max is less than Min"))
	}
	if b.Factor < 1 || math.IsNaN(b.Factor) || math.IsInf(b.Factor, 0) {
		errs = append(errs, errors.New("rthub/client: Backoff.Factor must be at least 1"))
	}
	if b.Jitter > 1 || math.IsNaN(b.Jitter) {
		errs = append(errs, errors.New("rthub/client: Backoff.Jitter is more than 1"))
	}
	return b, errors.Join(errs...)
}

// delay returns the wait before attempt n (from 0); u, in [0, 1), picks the
// jitter: 0 is the shortest wait, 0.5 none, values near 1 the longest. b has
// its defaults applied.
func (b Backoff) delay(n int, u float64) time.Duration {
	d := float64(b.Min) * math.Pow(b.Factor, float64(n))
	if d > float64(b.Max) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	return time.Duration(d * (1 + b.Jitter*(2*u-1)))
}

// sleep waits for d or until ctx ends; it is the default of Client.sleep.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
