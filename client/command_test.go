package client

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
)

func TestJoinLeave(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff")})
	ctx := t.Context()
	got := make(chan Event, 10)
	c.On("sensor:data", func(e Event) { got <- e })

	if err := c.Join(ctx, "device:7"); err != nil {
		t.Fatalf("Join device:7: %v", err)
	}
	// Forbidden: a *rthub.ReplyError, and the connection stays up.
	err := c.Join(ctx, "admin")
	errorIs(t, err, rthub.ErrForbidden)
	var re *rthub.ReplyError
	if !errors.As(err, &re) || re.Code != "forbidden" {
		t.Fatalf("Join admin: err = %v, want a forbidden *rthub.ReplyError", err)
	}
	if err := c.Join(ctx, "device:8"); err != nil {
		t.Fatalf("Join device:8 after a refusal: %v", err)
	}
	errorIs(t, c.Join(ctx, "bad room!"), rthub.ErrBadRoom)
	if got := c.Rooms(); !equalRooms(got, "device:7", "device:8", "staff", "user:alice") {
		t.Errorf("Rooms = %v", got)
	}

	if err := c.Leave(ctx, "device:7"); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if got := c.Rooms(); !equalRooms(got, "device:8", "staff", "user:alice") {
		t.Errorf("Rooms after Leave = %v", got)
	}
	// Events of one connection arrive in publish order: if device:8's event
	// comes first, device:7's was not delivered.
	h := ts.Hub()
	if err := h.Publish(ctx, "device:7", "sensor:data", 7); err != nil {
		t.Fatal(err)
	}
	if err := h.Publish(ctx, "device:8", "sensor:data", 8); err != nil {
		t.Fatal(err)
	}
	if e := within(t, got, "event"); e.Room != "device:8" || string(e.Data) != "8" || e.Name != "sensor:data" {
		t.Fatalf("event = %+v, want device:8's", e)
	}
}

func TestEmit(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	alice := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff")})
	bob := dialTest(t, ts.url, Options{Token: hourToken(t, "bob", "staff")})
	raw := make(chan Event, 10)
	typed := make(chan chatMessage, 10)
	bob.On(testChat.Name(), func(e Event) { raw <- e })
	Handle(bob, testChat, func(room string, m chatMessage) {
		if room != "staff" {
			t.Errorf("Handle: room %q", room)
		}
		typed <- m
	})
	mine := make(chan Event, 10)
	alice.On(testChat.Name(), func(e Event) { mine <- e })

	ctx := t.Context()
	if err := alice.Emit(ctx, "chat:message", "staff", chatMessage{Text: "hi"}); err != nil {
		t.Fatalf("Emit: %v", err)
	}
	if e := within(t, raw, "raw event"); e.Name != "chat:message" || e.Room != "staff" || string(e.Data) != `{"text":"hi"}` {
		t.Errorf("On got %+v", e)
	}
	if m := within(t, typed, "typed event"); m.Text != "hi" {
		t.Errorf("Handle got %+v", m)
	}
	if err := EmitEvent(ctx, alice, testChat, "staff", chatMessage{Text: "typed"}); err != nil {
		t.Fatalf("EmitEvent: %v", err)
	}
	if m := within(t, typed, "typed event"); m.Text != "typed" {
		t.Errorf("Handle got %+v", m)
	}
	if err := alice.Emit(ctx, "chat:message", "staff", json.RawMessage(`{"text":"raw"}`)); err != nil {
		t.Fatalf("Emit RawMessage: %v", err)
	}
	if m := within(t, typed, "typed event"); m.Text != "raw" {
		t.Errorf("Handle got %+v", m)
	}

	tests := []struct {
		name, event, room string
		data              any
		is                error
	}{
		{"unknownEvent", "chat:nope", "staff", 1, rthub.ErrUnknownEvent},
		{"notMember", "chat:message", "device:7", chatMessage{}, rthub.ErrForbidden},
		{"badPayload", "chat:message", "staff", 42, rthub.ErrBadPayload},
		{"unencodable", "chat:message", "staff", make(chan int), rthub.ErrBadPayload},
		{"invalidRawJSON", "chat:message", "staff", json.RawMessage(`{"text":`), rthub.ErrBadPayload},
		{"badRoom", "chat:message", "no room", chatMessage{}, rthub.ErrBadRoom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := alice.Emit(ctx, tt.event, tt.room, tt.data)
			errorIs(t, err, tt.is)
		})
	}
	// The sender does not get its own relayed events; all refusals kept it connected.
	if err := alice.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-mine:
		t.Errorf("sender got its own event %+v", e)
	default:
	}
}

func TestHandle_badPayload(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	log, logs := bufferLogger()
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), Logger: log})
	raw := make(chan Event, 10)
	typed := make(chan chatMessage, 10)
	c.On(testChat.Name(), func(e Event) { raw <- e })
	Handle(c, testChat, func(_ string, m chatMessage) { typed <- m })

	ctx := t.Context()
	if err := ts.Hub().Publish(ctx, "staff", "chat:message", []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := ts.Hub().Publish(ctx, "staff", "chat:message", chatMessage{Text: "ok"}); err != nil {
		t.Fatal(err)
	}
	if m := within(t, typed, "typed event"); m.Text != "ok" {
		t.Fatalf("Handle got %+v, want the good event only", m)
	}
	if e := within(t, raw, "raw event"); string(e.Data) != "[1,2]" {
		t.Errorf("On got %s, want the bad payload too", e.Data)
	}
	if !strings.Contains(logs.String(), "does not decode") {
		t.Errorf("no log for the bad payload; logs:\n%s", logs)
	}
}

// 1,000 events published to a room arrive in order.
func TestEvents_order(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), Rooms: []string{"device:1"}})
	const n = 1000
	type reading struct{ N int }
	ev := make(chan int, n)
	c.On("sensor:data", func(e Event) {
		var r reading
		if err := json.Unmarshal(e.Data, &r); err != nil {
			t.Errorf("decode %s: %v", e.Data, err)
		}
		ev <- r.N
	})
	for i := range n {
		if err := ts.Hub().Publish(t.Context(), "device:1", "sensor:data", reading{N: i}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if got := within(t, ev, "event"); got != i {
			t.Fatalf("event %d has N = %d", i, got)
		}
	}
}

// Handlers can be registered, concurrently, while events arrive.
func TestOn_concurrent(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff")})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				c.On("sensor:data", func(Event) {})
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			_ = ts.Hub().Publish(t.Context(), "staff", "sensor:data", i)
		}
	})
	wg.Wait()
	last := make(chan struct{})
	c.On("sensor:last", func(Event) { close(last) })
	if err := ts.Hub().Publish(t.Context(), "staff", "sensor:last", nil); err != nil {
		t.Fatal(err)
	}
	within(t, last, "last event")
}

// The server's own room changes (server-side joins, leaves, and rooms a
// refreshed token no longer allows) are reflected in Rooms.
func TestRooms_serverChanges(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	var mu sync.Mutex
	role := "admin"
	tokenFunc := func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return hourToken(t, "alice", role), nil
	}
	c := dialTest(t, ts.url, Options{TokenFunc: tokenFunc})
	ctx := t.Context()
	h := ts.Hub()
	if err := h.JoinUser(ctx, "alice", "device:9"); err != nil {
		t.Fatal(err)
	}
	// Ping is a barrier: the server's messages before its reply are handled.
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.Rooms(); !equalRooms(got, "admin", "device:9", "staff", "user:alice") {
		t.Fatalf("Rooms after JoinUser = %v", got)
	}
	if err := h.LeaveUser(ctx, "alice", "device:9"); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(ctx, "device:1"); err != nil {
		t.Fatal(err)
	}
	if got := c.Rooms(); !equalRooms(got, "admin", "device:1", "staff", "user:alice") {
		t.Fatalf("Rooms after LeaveUser = %v", got)
	}

	mu.Lock()
	role = "staff"
	mu.Unlock()
	if err := c.Refresh(ctx); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if got := c.Rooms(); !equalRooms(got, "device:1", "staff", "user:alice") {
		t.Fatalf("Rooms after a refresh to staff = %v (admin must be gone)", got)
	}
}

func TestRefresh_errors(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	static := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff")})
	errorIs(t, static.Refresh(t.Context()), ErrNoTokenFunc)

	var mu sync.Mutex
	tok := hourToken(t, "bob", "staff")
	c := dialTest(t, ts.url, Options{TokenFunc: func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return tok, nil
	}})
	mu.Lock()
	tok = testToken(t, "bob", time.Now().Add(-time.Minute), "staff")
	mu.Unlock()
	err := c.Refresh(t.Context())
	errorIs(t, err, rthub.ErrTokenExpired)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping after a refused refresh: %v", err)
	}
}

// A command's context bounds it; ending it does not hurt the connection.
func TestCall_ctx(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff")})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	errorIs(t, c.Join(ctx, "device:1"), context.Canceled)
	errorIs(t, c.Emit(ctx, "chat:message", "staff", chatMessage{}), context.Canceled)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	// A handler that blocks holds up replies: a call's deadline still ends it.
	release := make(chan struct{})
	c.On("sensor:block", func(Event) { <-release })
	if err := ts.Hub().Publish(t.Context(), "staff", "sensor:block", nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	errorIs(t, c.Ping(ctx), context.DeadlineExceeded)
	close(release)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping after the handler returned: %v", err)
	}
}
