package rthub

import (
	"errors"
	"fmt"
	"testing"
)

func TestCloseStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want CloseCode
	}{
		{"nil", nil, 0},
		{"no close error", errors.New("boom"), 0},
		{"close error", CloseError{Code: CloseGoingAway, Reason: "draining"}, CloseGoingAway},
		{"wrapped", fmt.Errorf("read: %w", CloseError{Code: CloseTokenExpired}), CloseTokenExpired},
		{"joined", errors.Join(errors.New("other"), CloseError{Code: CloseDisconnected}), CloseDisconnected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := CloseStatus(tt.err); got != tt.want {
				t.Errorf("CloseStatus(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestErrorCode: every sentinel has its own wire code, ErrorCode and
// ReplyError.Is are inverses, and errors without a sentinel are "internal".
func TestErrorCode(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for _, ec := range errorCodes {
		if seen[ec.code] {
			t.Errorf("code %q used twice", ec.code)
		}
		seen[ec.code] = true
		if got := ErrorCode(fmt.Errorf("wrapped: %w", ec.err)); got != ec.code {
			t.Errorf("ErrorCode(%v) = %q, want %q", ec.err, got, ec.code)
		}
		if re := (&ReplyError{Code: ec.code}); !errors.Is(re, ec.err) {
			t.Errorf("ReplyError{%q} is not %v", ec.code, ec.err)
		}
	}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("boom"), "internal"},
		{&ReplyError{Code: "my_code"}, "my_code"},
	} {
		if got := ErrorCode(tt.err); got != tt.want {
			t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
