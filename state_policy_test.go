package rthub

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestStatePolicy_Validate: every bad rule is reported, in one error that
// wraps ErrInvalidOptions; good rules (zero limits included) pass.
func TestStatePolicy_Validate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		rules []StateRule
		want  []string // substrings of the error; none: valid
	}{
		{"zero value", nil, nil},
		{"defaults", []StateRule{{Pattern: "device:**"}}, nil},
		{"at the bounds", []StateRule{{Pattern: "device:*", StateLimits: StateLimits{MaxKeys: 1, MaxBytes: MaxStateBytes, TTL: time.Millisecond}}}, nil},
		{"bad pattern", []StateRule{{Pattern: "device:**:x"}}, []string{`state rule 0 ("device:**:x")`}},
		{"{sub}", []StateRule{{Pattern: "user:{sub}"}}, []string{"{sub} has no meaning in a state rule"}},
		{"negative MaxKeys", []StateRule{{Pattern: "a", StateLimits: StateLimits{MaxKeys: -1}}}, []string{"negative MaxKeys -1"}},
		{"MaxBytes over the bound", []StateRule{{Pattern: "a", StateLimits: StateLimits{MaxBytes: MaxStateBytes + 1}}}, []string{"MaxBytes 983041 not within 0..983040"}},
		{"negative MaxBytes", []StateRule{{Pattern: "a", StateLimits: StateLimits{MaxBytes: -1}}}, []string{"MaxBytes -1 not within"}},
		{"negative TTL", []StateRule{{Pattern: "a", StateLimits: StateLimits{TTL: -time.Second}}}, []string{"negative TTL -1s"}},
		{"every problem at once", []StateRule{
			{Pattern: "ok:*"},
			{Pattern: "a", StateLimits: StateLimits{MaxKeys: -1, TTL: -1}},
			{Pattern: "user:{sub}"},
		}, []string{"state rule 1", "negative MaxKeys", "negative TTL", "state rule 2", "{sub}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := StatePolicy{Rules: tc.rules}.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Validate: %v, want an error wrapping ErrInvalidOptions", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v, want it to mention %q", err, w)
				}
			}
		})
	}
	// The brokers refuse such a policy.
	if _, err := NewMemoryBroker(MemoryBrokerOptions{State: StatePolicy{Rules: []StateRule{{Pattern: "a", StateLimits: StateLimits{MaxKeys: -1}}}}}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("NewMemoryBroker with a bad state rule: %v", err)
	}
}

// TestStatePolicy_Limits: the first matching rule wins, zero limits get the
// defaults, and the TTL never outlives the room's position (MetaTTL).
func TestStatePolicy_Limits(t *testing.T) {
	t.Parallel()
	p := StatePolicy{Rules: []StateRule{
		{Pattern: "device:hot", StateLimits: StateLimits{MaxKeys: 5, MaxBytes: 1000, TTL: time.Minute}},
		{Pattern: "device:*"},
		{Pattern: "plant:*", StateLimits: StateLimits{TTL: 48 * time.Hour}},
	}}
	hist := HistoryPolicy{Rules: []HistoryRule{{Pattern: "plant:short", HistoryLimits: HistoryLimits{TTL: time.Minute, MetaTTL: 10 * time.Minute}}}}
	for _, tc := range []struct {
		room string
		want StateLimits
		ok   bool
	}{
		{"device:hot", StateLimits{MaxKeys: 5, MaxBytes: 1000, TTL: time.Minute}, true},
		{"device:7", StateLimits{MaxKeys: DefaultStateMaxKeys, MaxBytes: DefaultStateMaxBytes, TTL: DefaultStateTTL}, true},
		{"plant:1", StateLimits{MaxKeys: DefaultStateMaxKeys, MaxBytes: DefaultStateMaxBytes, TTL: DefaultHistoryMetaTTL}, true}, // 48 h capped at MetaTTL's default, 24 h
		{"plant:short", StateLimits{MaxKeys: DefaultStateMaxKeys, MaxBytes: DefaultStateMaxBytes, TTL: 10 * time.Minute}, true},
		{"user:7", StateLimits{}, false},
		{"device:7:x", StateLimits{}, false},
	} {
		got, ok := p.Limits(tc.room, hist)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Limits(%q) = %+v, %v; want %+v, %v", tc.room, got, ok, tc.want, tc.ok)
		}
	}
}
