package client

import (
	"errors"
	"testing"
	"time"

	"github.com/org/rthub"
)

// TestPresence: Presence lists people with their connections; Viewing is
// announced and declared again after a reconnection.
func TestPresence(t *testing.T) {
	t.Parallel()
	ts := startHub(t, func(o *rthub.Options) { o.Policy.Presence = []string{"staff", "admin"} })
	events := make(chan Event, 100)
	watcher := dialTest(t, ts.url, Options{Token: hourToken(t, "watcher", "staff")})
	watcher.On("user:viewing", func(e Event) { events <- e })
	alice := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff")})

	ctx := t.Context()
	if err := alice.Viewing(ctx, "device:42"); err != nil {
		t.Fatal(err)
	}
	ev := within(t, events, "user:viewing")
	if want := `{"user":"alice","conn":"` + alice.ConnID() + `","viewing":"device:42"}`; string(ev.Data) != want {
		t.Fatalf("viewing event %s, want %s", ev.Data, want)
	}
	p, err := watcher.Presence(ctx, "staff")
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 2 || p.Users[0].User != "alice" || p.Users[0].Conns[0].Viewing != "device:42" {
		t.Fatalf("presence %+v", p)
	}
	if _, err := watcher.Presence(ctx, "admin"); !errors.Is(err, rthub.ErrForbidden) {
		t.Fatalf("presence of admin: %v, want forbidden", err)
	}
	if _, err := watcher.Presence(ctx, "user:watcher"); !errors.Is(err, rthub.ErrBadRequest) {
		t.Fatalf("presence of a room without it: %v, want bad_request", err)
	}

	// The server restarts: both reconnect, alice declares her view again.
	ts.restart()
	deadline := time.Now().Add(testWait)
	for {
		p, err := watcher.Presence(ctx, "staff")
		if err == nil && p.Count == 2 && p.Users[0].Conns[0].Viewing == "device:42" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %+v, %v", p, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEventCID: a publish's correlation ID reaches the handler.
func TestEventCID(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	got := make(chan Event, 1)
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff")})
	c.On("sensor:data", func(e Event) { got <- e })
	if err := ts.Hub().Publish(t.Context(), "staff", "sensor:data", 1, rthub.WithCorrelationID("mqtt-42")); err != nil {
		t.Fatal(err)
	}
	if e := within(t, got, "event"); e.CID != "mqtt-42" {
		t.Fatalf("CID = %q", e.CID)
	}
}
