package client

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
)

// The server goes away (dropped connections, or a drain with 1001) and comes
// back on the same address: the client reconnects and rejoins its rooms.
func TestReconnect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		stop func(t *testing.T, ts *testServer)
		code rthub.CloseCode
	}{
		{"drop", func(t *testing.T, ts *testServer) { ts.kill() }, rthub.CloseAbnormal},
		{"drain", func(t *testing.T, ts *testServer) {
			// Clients are told 1001 and are refused (503) until the restart.
			if err := ts.Hub().Shutdown(t.Context()); err != nil {
				t.Error(err)
			}
		}, rthub.CloseGoingAway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startHub(t, nil)
			rec := newStateRecorder()
			c := dialTest(t, ts.url, Options{
				Token:   hourToken(t, "alice", "staff"),
				Rooms:   []string{"device:1"},
				OnState: rec.record,
			})
			ctx := t.Context()
			if err := c.Join(ctx, "device:2"); err != nil {
				t.Fatal(err)
			}
			events := make(chan Event, 10)
			c.On("sensor:data", func(e Event) { events <- e })
			rec.wait(t, Connected)
			old := c.ConnID()

			tt.stop(t, ts)
			sc := rec.wait(t, Reconnecting)
			if got := rthub.CloseStatus(sc.err); got != tt.code {
				t.Errorf("Reconnecting with %v (code %d), want code %d", sc.err, got, tt.code)
			}
			ts.restart()
			rec.wait(t, Connected)

			if id := c.ConnID(); id == "" || id == old {
				t.Errorf("ConnID after reconnecting = %q, old %q", id, old)
			}
			if got := c.Rooms(); !equalRooms(got, "device:1", "device:2", "staff", "user:alice") {
				t.Errorf("Rooms after reconnecting = %v", got)
			}
			// The rooms were rejoined before Connected was reported.
			for _, room := range []string{"device:1", "device:2", "user:alice"} {
				if err := ts.Hub().Publish(ctx, room, "sensor:data", room); err != nil {
					t.Fatal(err)
				}
				if e := within(t, events, "event after reconnecting"); e.Room != room {
					t.Errorf("event from %q, want %q", e.Room, room)
				}
			}
		})
	}
}

// The waits between attempts follow the Backoff, and start again from Min
// after a successful connection. The sleep seam records them: no real time
// passes.
func TestReconnect_backoff(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	delays := make(chan time.Duration)
	resume := make(chan struct{})
	setup := func(c *Client) {
		c.rand = func() float64 { return 0.5 } // no jitter
		c.sleep = func(ctx context.Context, d time.Duration) error {
			select {
			case delays <- d:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case <-resume:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	rec := newStateRecorder()
	_, err := dialTestErr(t, ts.url, Options{
		Token:   hourToken(t, "alice", "staff"),
		Backoff: Backoff{Factor: 2}, // and the other defaults: 1 s doubling to 30 s
		OnState: rec.record,
	}, setup)
	if err != nil {
		t.Fatal(err)
	}
	rec.wait(t, Connected)
	s := time.Second
	check := func(want []time.Duration) {
		t.Helper()
		for i, w := range want {
			if got := within(t, delays, "backoff sleep"); got != w {
				t.Errorf("wait %d = %v, want %v", i, got, w)
			}
			if i == len(want)-1 {
				ts.restart() // the last attempt finds the server
			}
			resume <- struct{}{}
		}
		rec.wait(t, Connected)
	}
	ts.kill()
	check([]time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 30 * s, 30 * s})
	ts.kill()
	check([]time.Duration{1 * s, 2 * s})
}

// Commands made while the client reconnects wait for the connection,
// bounded by their context.
func TestCall_whileReconnecting(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	rec := newStateRecorder()
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), OnState: rec.record})
	ts.kill()
	rec.wait(t, Reconnecting)

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	errorIs(t, c.Ping(ctx), context.DeadlineExceeded)
	if id := c.ConnID(); id != "" {
		t.Errorf("ConnID while reconnecting = %q", id)
	}

	joined := make(chan error, 1)
	go func() { joined <- c.Join(t.Context(), "device:3") }() // ends: Join is bounded by the restart below
	ts.restart()
	if err := within(t, joined, "Join"); err != nil {
		t.Fatalf("Join issued while reconnecting: %v", err)
	}
	if got := c.Rooms(); !equalRooms(got, "device:3", "staff", "user:alice") {
		t.Errorf("Rooms = %v", got)
	}
}

// A room the server no longer allows is dropped when rejoining.
func TestReconnect_rejoinRefused(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	var role atomic.Value
	role.Store("admin")
	log, logs := bufferLogger()
	rec := newStateRecorder()
	c := dialTest(t, ts.url, Options{
		TokenFunc: func(context.Context) (string, error) { return hourToken(t, "alice", role.Load().(string)), nil },
		Rooms:     []string{"device:1:temp"}, // admin only (device:**)
		OnState:   rec.record,
		Logger:    log,
	})
	if err := c.Join(t.Context(), "device:2"); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, Connected)
	role.Store("staff")
	ts.restart()
	rec.wait(t, Reconnecting)
	rec.wait(t, Connected)
	if got := c.Rooms(); !equalRooms(got, "device:2", "staff", "user:alice") {
		t.Errorf("Rooms = %v, want device:1:temp dropped", got)
	}
	if !strings.Contains(logs.String(), "room refused on rejoin") {
		t.Errorf("no log for the dropped room; logs:\n%s", logs)
	}
}

// 4101 (DisconnectUser) is terminal: no reconnection, Done closes, Err has the code.
func TestDisconnectUser(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	rec := newStateRecorder()
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), OnState: rec.record})
	rec.wait(t, Connected)
	if n, err := ts.Hub().DisconnectUser(t.Context(), "alice", "banned"); err != nil || n != 1 {
		t.Fatalf("DisconnectUser = %d, %v", n, err)
	}
	waitDone(t, c)
	err := c.Err()
	var ce rthub.CloseError
	if !errors.As(err, &ce) || ce.Code != rthub.CloseDisconnected || ce.Reason != "banned" {
		t.Fatalf("Err = %v, want CloseError 4101 banned", err)
	}
	if got := rec.drain(); len(got) != 1 || got[0] != Closed {
		t.Errorf("states after the disconnect = %v, want [closed]", got)
	}
	err = c.Join(t.Context(), "device:1")
	errorIs(t, err, ErrClosed)
	if rthub.CloseStatus(err) != rthub.CloseDisconnected {
		t.Errorf("Join after stop: %v, want it to carry 4101", err)
	}
	if id := c.ConnID(); id != "" {
		t.Errorf("ConnID after stop = %q", id)
	}
}

// With TokenFunc, the client refreshes when warned and keeps its connection
// past the first token's expiry.
func TestTokenRefresh_auto(t *testing.T) {
	t.Parallel()
	ts := startHub(t, func(o *rthub.Options) { o.Auth.ExpiryWarning = time.Second })
	exp := time.Unix(time.Now().Unix()+3, 0) // 2 to 3 s from now
	var calls atomic.Int32
	refreshed := make(chan struct{})
	tokenFunc := func(context.Context) (string, error) {
		switch calls.Add(1) {
		case 1:
			return testToken(t, "alice", exp, "staff"), nil
		case 2:
			close(refreshed)
		}
		return hourToken(t, "alice", "staff"), nil
	}
	rec := newStateRecorder()
	c := dialTest(t, ts.url, Options{TokenFunc: tokenFunc, OnState: rec.record})
	id := c.ConnID()
	within(t, refreshed, "refresh")
	select {
	case <-time.After(time.Until(exp) + 500*time.Millisecond):
	case <-c.Done():
		t.Fatalf("client stopped: %v", c.Err())
	}
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping after the first token expired: %v", err)
	}
	if got := c.ConnID(); got != id {
		t.Errorf("ConnID = %q, was %q: the client reconnected", got, id)
	}
	if got := rec.drain(); len(got) != 2 || got[1] != Connected {
		t.Errorf("states = %v, want [connecting connected] only", got)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("TokenFunc called %d times, want 2", n)
	}
}

// With a static token, expiry closes the connection (4002); the
// reconnection is refused with 401 and the client stops.
func TestTokenExpiry_static(t *testing.T) {
	t.Parallel()
	ts := startHub(t, func(o *rthub.Options) { o.Auth.ExpiryWarning = time.Second })
	exp := time.Unix(time.Now().Unix()+3, 0)
	rec := newStateRecorder()
	c := dialTest(t, ts.url, Options{Token: testToken(t, "alice", exp, "staff"), OnState: rec.record})
	sc := rec.wait(t, Reconnecting)
	if rthub.CloseStatus(sc.err) != rthub.CloseTokenExpired {
		t.Errorf("Reconnecting because of %v, want 4002", sc.err)
	}
	waitDone(t, c)
	err := c.Err()
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != 401 {
		t.Fatalf("Err = %v, want a 401 *HandshakeError", err)
	}
	errorIs(t, err, rthub.ErrTokenExpired)
}

// Close is idempotent, stops a client that waits to reconnect, and ends calls
// waiting for the connection.
func TestClose(t *testing.T) {
	t.Parallel()
	t.Run("connected", func(t *testing.T) {
		t.Parallel()
		disconnected := make(chan error, 10)
		ts := startHub(t, func(o *rthub.Options) {
			o.OnDisconnect = func(_ context.Context, _ rthub.ConnInfo, err error) { disconnected <- err }
		})
		rec := newStateRecorder()
		c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), OnState: rec.record})
		start := time.Now()
		for range 3 {
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}
		if d := time.Since(start); d > closeTimeout/2 {
			t.Errorf("Close took %v with a responsive server", d)
		}
		waitDone(t, c)
		errorIs(t, c.Err(), ErrClosed)
		errorIs(t, c.Ping(t.Context()), ErrClosed)
		if got := rec.drain(); got[len(got)-1] != Closed {
			t.Errorf("states = %v, want closed last", got)
		}
		// The server saw a normal close from the client.
		if err := within(t, disconnected, "OnDisconnect"); rthub.CloseStatus(err) != rthub.CloseNormal {
			t.Errorf("server saw %v, want a normal close", err)
		}
	})
	t.Run("reconnecting", func(t *testing.T) {
		t.Parallel()
		ts := startHub(t, nil)
		rec := newStateRecorder()
		c := dialTest(t, ts.url, Options{
			Token:   hourToken(t, "alice", "staff"),
			Backoff: Backoff{Min: time.Hour},
			OnState: rec.record,
		})
		ts.kill()
		rec.wait(t, Reconnecting)
		pinged := make(chan error, 1)
		go func() { pinged <- c.Ping(context.Background()) }() // ends: Close ends the wait
		start := time.Now()
		c.Close()
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Close took %v", d)
		}
		errorIs(t, within(t, pinged, "Ping"), ErrClosed)
		errorIs(t, c.Err(), ErrClosed)
	})
}
