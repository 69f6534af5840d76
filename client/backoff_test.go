package client

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoff_delay(t *testing.T) {
	t.Parallel()
	const s, ms = time.Second, time.Millisecond
	def, err := Backoff{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	fast, err := Backoff{Min: 10 * ms, Max: 50 * ms, Factor: 3, Jitter: -1}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		b    Backoff
		u    float64 // jitter draw
		want []time.Duration
	}{
		{"defaultsNoJitter", def, 0.5, []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s, 30 * s}},
		{"defaultsShortest", def, 0, []time.Duration{800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 12800 * ms, 24 * s, 24 * s}},
		{"defaultsLongest", def, 1, []time.Duration{1200 * ms, 2400 * ms, 4800 * ms, 9600 * ms, 19200 * ms, 36 * s, 36 * s}},
		{"customNoJitter", fast, 0, []time.Duration{10 * ms, 30 * ms, 50 * ms, 50 * ms}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for n, want := range tt.want {
				if got := tt.b.delay(n, tt.u); got != want {
					t.Errorf("delay(%d, %v) = %v, want %v", n, tt.u, got, want)
				}
			}
		})
	}
	// Far attempts stay at Max instead of overflowing.
	for _, n := range []int{60, 1000, 1 << 30} {
		if got := def.delay(n, 0.5); got != 30*s {
			t.Errorf("delay(%d) = %v, want 30s", n, got)
		}
	}
}

// Random jitter stays within ±20 % of the nominal wait.
func TestBackoff_jitterBounds(t *testing.T) {
	t.Parallel()
	b, _ := Backoff{}.withDefaults()
	nominal := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for range 200 {
		for n, d := range nominal {
			d *= time.Second
			got := b.delay(n, rand.Float64())
			if lo, hi := d*8/10, d*12/10; got < lo || got > hi {
				t.Fatalf("delay(%d) = %v, outside [%v, %v]", n, got, lo, hi)
			}
		}
	}
}

func TestBackoff_withDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Backoff
		want Backoff
		bad  bool
	}{
		{"zero", Backoff{}, Backoff{Min: time.Second, Max: 30 * time.Second, Factor: 2, Jitter: 0.2}, false},
		{"noJitter", Backoff{Jitter: -1}, Backoff{Min: time.Second, Max: 30 * time.Second, Factor: 2}, false},
		{"bigMin", Backoff{Min: time.Minute}, Backoff{Min: time.Minute, Max: time.Minute, Factor: 2, Jitter: 0.2}, false},
		{"negativeMin", Backoff{Min: -1}, Backoff{}, true},
		{"maxBelowMin", Backoff{Min: time.Second, Max: time.Millisecond}, Backoff{}, true},
		{"factorBelowOne", Backoff{Factor: 0.9}, Backoff{}, true},
		{"jitterAboveOne", Backoff{Jitter: 1.1}, Backoff{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.in.withDefaults()
			if (err != nil) != tt.bad {
				t.Fatalf("withDefaults(%+v) error = %v, want error %v", tt.in, err, tt.bad)
			}
			if !tt.bad && got != tt.want {
				t.Errorf("withDefaults(%+v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	if err := sleep(t.Context(), time.Millisecond); err != nil {
		t.Fatalf("sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	errorIs(t, sleep(ctx, time.Hour), context.Canceled)
}

func TestState_String(t *testing.T) {
	t.Parallel()
	for s, want := range map[State]string{Connecting: "connecting", Connected: "connected",
		Reconnecting: "reconnecting", Closed: "closed", 0: "State(0)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}
