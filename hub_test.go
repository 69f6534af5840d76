package rthub

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestHub_Smoke(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	alice := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	w := alice.read()
	if w.Type != "welcome" || w.User != "alice" {
		t.Fatalf("welcome = %+v", w)
	}
	if got := len(w.Rooms); got != 2 {
		t.Fatalf("auto rooms = %v", w.Rooms)
	}
	r := alice.cmd("join", map[string]any{"room": "device:7"})
	if !r.OK {
		t.Fatalf("join device:7: %+v", r.Error)
	}
	r = alice.cmd("join", map[string]any{"room": "admin"})
	if r.OK || r.Error == nil || r.Error.Code != "forbidden" {
		t.Fatalf("join admin = %+v", r)
	}
	if err := h.Publish(t.Context(), "device:7", "sensor:data", map[string]int{"v": 1}); err != nil {
		t.Fatal(err)
	}
	ev := alice.readType("event")
	if ev.Event != "sensor:data" || ev.Room != "device:7" || string(ev.Data) != `{"v":1}` {
		t.Fatalf("event = %+v", ev)
	}
}

// TestHub_WelcomeAfterAutoJoin: once a client has read its welcome, it is in
// every room the welcome lists, so an event published at once is not missed.
func TestHub_WelcomeAfterAutoJoin(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	for i := range 20 {
		c := dial(t, url, testToken(t, fmt.Sprintf("w%d", i), time.Hour, "staff"))
		if w := c.read(); w.Type != "welcome" || !slices.Contains(w.Rooms, "staff") {
			t.Fatalf("welcome = %+v", w)
		}
		if err := h.Publish(t.Context(), "user:"+fmt.Sprintf("w%d", i), "note", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
		if ev := c.readType("event"); ev.Room != fmt.Sprintf("user:w%d", i) {
			t.Fatalf("event = %+v", ev)
		}
	}
}
