package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
)

func TestDial(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	rec := newStateRecorder()
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), OnState: rec.record})
	if c.ConnID() == "" {
		t.Error("ConnID is empty")
	}
	if got := c.Rooms(); !equalRooms(got, "staff", "user:alice") {
		t.Errorf("Rooms = %v, want the auto rooms [staff user:alice]", got)
	}
	if got := rec.drain(); len(got) != 2 || got[0] != Connecting || got[1] != Connected {
		t.Errorf("states = %v, want [connecting connected]", got)
	}
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	select {
	case <-c.Done():
		t.Fatal("Done closed while connected")
	default:
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err = %v while connected", err)
	}
}

func TestDial_refused(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	otherKey, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "roles": []string{"staff"}}).
		SignedString([]byte("another-secret-0123456789abcdefgh"))
	if err != nil {
		t.Fatal(err)
	}
	draining := startHub(t, nil)
	if err := draining.Hub().Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		url    string
		token  string
		status int
		code   string
		is     error
	}{
		{"noToken", ts.url, "", 401, "token_missing", rthub.ErrTokenMissing},
		{"expired", ts.url, testToken(t, "alice", time.Now().Add(-time.Hour), "staff"), 401, "token_expired", rthub.ErrTokenExpired},
		{"badSignature", ts.url, otherKey, 401, "token_signature_invalid", rthub.ErrTokenSignature},
		{"malformed", ts.url, "not-a-jwt", 401, "token_malformed", rthub.ErrTokenMalformed},
		{"shuttingDown", draining.url, hourToken(t, "alice", "staff"), 503, "shutting_down", rthub.ErrHubClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := newStateRecorder()
			c, err := dialTestErr(t, tt.url, Options{Token: tt.token, OnState: rec.record}, nil)
			if err == nil {
				t.Fatal("Dial succeeded")
			}
			if c != nil {
				t.Error("Dial returned a client with an error")
			}
			var he *HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("err = %T %v, want a *HandshakeError", err, err)
			}
			if he.Status != tt.status || he.Code != tt.code || he.Message == "" {
				t.Errorf("HandshakeError = %+v, want status %d code %s and a message", he, tt.status, tt.code)
			}
			errorIs(t, err, tt.is)
			if errors.Is(err, rthub.ErrForbidden) {
				t.Error("errors.Is matches an unrelated sentinel")
			}
			if got := rec.drain(); len(got) != 2 || got[1] != Closed {
				t.Errorf("states = %v, want [connecting closed]", got)
			}
		})
	}
}

func TestDial_roomRefused(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	_, err := dialTestErr(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), Rooms: []string{"device:1", "admin"}}, nil)
	errorIs(t, err, rthub.ErrForbidden)
	var re *rthub.ReplyError
	if !errors.As(err, &re) || re.Code != "forbidden" {
		t.Fatalf("err = %v, want a forbidden *rthub.ReplyError", err)
	}
}

func TestDial_badOptions(t *testing.T) {
	t.Parallel()
	tokenFunc := func(context.Context) (string, error) { return "", nil }
	tests := []struct {
		name string
		opts Options
	}{
		{"tokenAndTokenFunc", Options{Token: "x", TokenFunc: tokenFunc}},
		{"negativeMin", Options{Backoff: Backoff{Min: -time.Second}}},
		{"maxBelowMin", Options{Backoff: Backoff{Min: time.Minute, Max: time.Second}}},
		{"factorBelowOne", Options{Backoff: Backoff{Factor: 0.5}}},
		{"jitterAboveOne", Options{Backoff: Backoff{Jitter: 1.5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Dial(t.Context(), "ws://127.0.0.1:1/", tt.opts)
			if err == nil {
				t.Fatal("Dial accepted bad options")
			}
			if !strings.HasPrefix(err.Error(), "rthub/client: ") {
				t.Fatalf("err = %v, want an options error", err)
			}
		})
	}
}

func TestDial_unreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = dialTestErr(t, "ws://"+addr+"/ws", Options{Token: hourToken(t, "alice", "staff")}, nil)
	if err == nil {
		t.Fatal("Dial succeeded")
	}
	var he *HandshakeError
	if errors.As(err, &he) {
		t.Fatalf("err = %v, want a network error", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("err = %v, want a *net.OpError in the chain", err)
	}
}

func TestDial_tokenFuncError(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	boom := errors.New("auth server down")
	_, err := dialTestErr(t, ts.url, Options{TokenFunc: func(context.Context) (string, error) { return "", boom }}, nil)
	errorIs(t, err, boom)
}

// The connection outlives Dial's context.
func TestDial_ctxEndsAfterDial(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	c, err := Dial(ctx, ts.url, Options{Token: hourToken(t, "alice", "staff")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	time.Sleep(50 * time.Millisecond) // let a (wrong) cancellation propagate
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping after Dial's ctx ended: %v", err)
	}
}
