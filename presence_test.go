package rthub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// presenceHub is testHub with presence on in "staff" and "device:*".
func presenceHub(t *testing.T, mod func(*Options)) (*Hub, string) {
	t.Helper()
	return testHub(t, func(o *Options) {
		o.Policy.Presence = []string{"staff", "device:*"}
		if mod != nil {
			mod(o)
		}
	})
}

// nextEvent reads until an event of one of the given names arrives.
func (w *wsClient) nextEvent(names ...string) serverMsg {
	w.t.Helper()
	for {
		m := w.read()
		if m.Type == "event" && slices.Contains(names, m.Event) {
			return m
		}
	}
}

// noEvent checks that no event of the given names arrives before a ping's reply.
func (w *wsClient) noEvent(names ...string) {
	w.t.Helper()
	w.nextID++
	w.write(map[string]any{"id": w.nextID, "op": "ping"})
	for {
		m := w.read()
		if m.Type == "reply" && m.ID == w.nextID {
			return
		}
		if m.Type == "event" && slices.Contains(names, m.Event) {
			w.t.Fatalf("unexpected %s %s", m.Event, m.Data)
		}
	}
}

func presenceOf(t *testing.T, r serverMsg) Presence {
	t.Helper()
	if !r.OK {
		t.Fatalf("presence: %+v", r.Error)
	}
	var p Presence
	if err := json.Unmarshal(r.Data, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// seqOf returns the "seq" of an online or offline event's data; it fails
// the test if there is none.
func seqOf(t *testing.T, data json.RawMessage) uint64 {
	t.Helper()
	var d struct{ Seq uint64 }
	if err := json.Unmarshal(data, &d); err != nil || d.Seq == 0 {
		t.Fatalf("no seq in %s", data)
	}
	return d.Seq
}

func TestPresence_MultiTab(t *testing.T) {
	t.Parallel()
	h, url := presenceHub(t, nil)
	watcher := dial(t, url, testToken(t, "watcher", time.Hour, "staff"))
	watcher.readType("welcome")
	watcher.nextEvent("user:online") // its own arrival in "staff"

	// Alice's first tab: one online event, with name and roles.
	tab1 := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	on := watcher.nextEvent("user:online", "user:offline")
	onSeq := seqOf(t, on.Data)
	if on.Event != "user:online" || on.Room != "staff" || string(on.Data) != fmt.Sprintf(`{"user":"alice","name":"ALICE","roles":["staff"],"seq":%d}`, onSeq) {
		t.Fatalf("got %s %s %s", on.Event, on.Room, on.Data)
	}
	// Four more tabs: no event.
	tabs := []*wsClient{tab1}
	for range 4 {
		tabs = append(tabs, dial(t, url, testToken(t, "alice", time.Hour, "staff")))
	}
	for _, tb := range tabs {
		tb.readType("welcome")
	}
	watcher.noEvent("user:online", "user:offline")

	p := presenceOf(t, watcher.cmd("presence", map[string]any{"room": "staff"}))
	if p.Count != 2 || len(p.Users) != 2 || p.Truncated {
		t.Fatalf("presence = %+v, want alice and watcher", p)
	}
	alice := p.Users[0]
	if alice.User != "alice" || alice.Name != "ALICE" || len(alice.Conns) != 5 {
		t.Fatalf("alice = %+v, want 5 conns", alice)
	}
	if st, err := h.Presence(t.Context(), "staff"); err != nil || st.Count != 2 {
		t.Fatalf("Hub.Presence = %+v, %v", st, err)
	}

	// Closing four tabs: still online, no event. The fifth: offline, once.
	for _, tb := range tabs[:4] {
		tb.c.CloseNow()
	}
	waitConnCount(t, h, 2)
	watcher.noEvent("user:online", "user:offline")
	tabs[4].c.CloseNow()
	off := watcher.nextEvent("user:online", "user:offline")
	if off.Event != "user:offline" || string(off.Data) != fmt.Sprintf(`{"user":"alice","seq":%d}`, seqOf(t, off.Data)) {
		t.Fatalf("got %s %s, want user:offline alice", off.Event, off.Data)
	}
	if seqOf(t, off.Data) <= onSeq {
		t.Fatalf("offline seq %d not after online seq %d", seqOf(t, off.Data), onSeq)
	}
	watcher.noEvent("user:online", "user:offline")
	if p := presenceOf(t, watcher.cmd("presence", map[string]any{"room": "staff"})); p.Count != 1 || p.Users[0].User != "watcher" {
		t.Fatalf("presence after = %+v", p)
	}
}

func TestPresence_Viewing(t *testing.T) {
	t.Parallel()
	_, url := presenceHub(t, nil)
	watcher := dial(t, url, testToken(t, "watcher", time.Hour, "staff"))
	watcher.readType("welcome")
	a1 := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	a2 := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	a1w, a2w := a1.readType("welcome"), a2.readType("welcome")
	watcher.nextEvent("user:online")

	if r := a1.cmd("viewing", map[string]any{"target": "device:42"}); !r.OK {
		t.Fatalf("viewing: %+v", r.Error)
	}
	v := watcher.nextEvent("user:viewing")
	want := fmt.Sprintf(`{"user":"alice","conn":%q,"viewing":"device:42"}`, a1w.Conn)
	if string(v.Data) != want || v.Room != "staff" {
		t.Fatalf("viewing event %s in %s, want %s in staff", v.Data, v.Room, want)
	}
	// The same target again: nothing. A change: an event.
	if r := a1.cmd("viewing", map[string]any{"target": "device:42"}); !r.OK {
		t.Fatal(r.Error)
	}
	watcher.noEvent("user:viewing")
	a2.cmd("viewing", map[string]any{"target": "device:7"})
	if v := watcher.nextEvent("user:viewing"); !strings.Contains(string(v.Data), `"viewing":"device:7"`) {
		t.Fatalf("got %s", v.Data)
	}
	p := presenceOf(t, watcher.cmd("presence", map[string]any{"room": "staff"}))
	got := map[string]string{}
	for _, c := range p.Users[0].Conns {
		got[c.Conn] = c.Viewing
	}
	if got[a1w.Conn] != "device:42" || got[a2w.Conn] != "device:7" {
		t.Fatalf("presence conns %+v", p.Users[0].Conns)
	}
	// A tab that was viewing closes while alice stays: viewing ends ("").
	a1.c.CloseNow()
	v = watcher.nextEvent("user:viewing", "user:offline")
	if want := fmt.Sprintf(`{"user":"alice","conn":%q,"viewing":""}`, a1w.Conn); string(v.Data) != want {
		t.Fatalf("got %s %s, want %s", v.Event, v.Data, want)
	}
	// Clearing and bad targets.
	if r := a2.cmd("viewing", map[string]any{"target": ""}); !r.OK {
		t.Fatal(r.Error)
	}
	if v := watcher.nextEvent("user:viewing"); !strings.Contains(string(v.Data), `"viewing":""`) {
		t.Fatalf("got %s", v.Data)
	}
	if r := a2.cmd("viewing", map[string]any{"target": "no spaces allowed"}); r.OK || r.Error.Code != "bad_request" {
		t.Fatalf("bad target: %+v", r)
	}
}

func TestPresence_Permissions(t *testing.T) {
	t.Parallel()
	var refusals []Refusal
	refused := make(chan Refusal, 10)
	_, url := presenceHub(t, func(o *Options) {
		o.Policy.Presence = append(o.Policy.Presence, "admin")
		o.OnRefused = func(_ context.Context, r Refusal) { refused <- r }
	})
	staff := dial(t, url, testToken(t, "sam", time.Hour, "staff"))
	staff.readType("welcome")

	tests := []struct {
		room, code string
	}{
		{"admin", "forbidden"},      // presence on, but staff may not join admin
		{"user:sam", "bad_request"}, // a room without presence
		{"device:9", ""},            // joinable, not joined: allowed, empty
		{"bad room", "bad_room"},    // invalid name
		{"staff", ""},               // member
		{strings.Repeat("x", 200), "bad_room"},
	}
	for _, tt := range tests {
		r := staff.cmd("presence", map[string]any{"room": tt.room})
		switch {
		case tt.code == "" && !r.OK:
			t.Errorf("presence %q: %+v, want ok", tt.room, r.Error)
		case tt.code != "" && (r.OK || r.Error.Code != tt.code):
			t.Errorf("presence %q: ok=%v %+v, want %s", tt.room, r.OK, r.Error, tt.code)
		}
	}
	select {
	case r := <-refused:
		refusals = append(refusals, r)
	case <-time.After(5 * time.Second):
	}
	if len(refusals) != 1 || refusals[0].Op != "presence" || refusals[0].Room != "admin" || refusals[0].Subject != "sam" {
		t.Fatalf("refusals %+v, want the admin presence query", refusals)
	}
}

func TestPresence_ServerJoinsAndLimits(t *testing.T) {
	t.Parallel()
	h, url := presenceHub(t, func(o *Options) {
		o.Presence = PresenceOptions{OnlineEvent: "here", OfflineEvent: "gone", MaxList: 3,
			Info: func(id *Identity) any { return map[string]int{"len": len(id.Subject)} }}
	})
	watcher := dial(t, url, testToken(t, "w", time.Hour, "staff"))
	watcher.readType("welcome")
	// Its own arrival events (staff, device:1) come before the join's reply,
	// which cmd waits for.
	if r := watcher.cmd("join", map[string]any{"room": "device:1"}); !r.OK {
		t.Fatal(r.Error)
	}
	var subs []string
	for i := range 5 {
		sub := fmt.Sprintf("user%d", i)
		subs = append(subs, sub)
		c := dial(t, url, testToken(t, sub, time.Hour, "guest")) // a role that may join nothing
		c.readType("welcome")
		if err := h.JoinUser(t.Context(), sub, "device:1"); err != nil {
			t.Fatal(err)
		}
		ev := watcher.nextEvent("here", "gone")
		if want := fmt.Sprintf(`{"user":%q,"name":%q,"roles":["guest"],"info":{"len":5},"seq":%d}`, sub, strings.ToUpper(sub), seqOf(t, ev.Data)); ev.Event != "here" || string(ev.Data) != want {
			t.Fatalf("got %s %s, want here %s", ev.Event, ev.Data, want)
		}
	}
	p := presenceOf(t, watcher.cmd("presence", map[string]any{"room": "device:1"}))
	if p.Count != 6 || len(p.Users) != 3 || !p.Truncated || p.Users[0].User != "user0" {
		t.Fatalf("presence = %+v, want 3 of 6, truncated, sorted", p)
	}
	if err := h.LeaveUser(t.Context(), subs[0], "device:1"); err != nil {
		t.Fatal(err)
	}
	if ev := watcher.nextEvent("here", "gone"); ev.Event != "gone" || string(ev.Data) != fmt.Sprintf(`{"user":"user0","seq":%d}`, seqOf(t, ev.Data)) {
		t.Fatalf("got %s %s", ev.Event, ev.Data)
	}
	if _, err := h.Presence(t.Context(), "user:w"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("Hub.Presence of a room without presence: %v", err)
	}
}

func TestPresence_Options(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Options)
	}{
		{"sub in pattern", func(o *Options) { o.Policy.Presence = []string{"user:{sub}"} }},
		{"bad pattern", func(o *Options) { o.Policy.Presence = []string{"a::b"} }},
		{"bad event name", func(o *Options) { o.Presence.OnlineEvent = "has space" }},
		{"negative MaxList", func(o *Options) { o.Presence.MaxList = -1 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{Auth: AuthOptions{Keys: map[string]any{"": testSecret}}}
			tt.mod(&opts)
			if _, err := New(opts); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("New: %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// TestPresence_BigRoomsGoQuiet: past MaxEventPeople, arrivals send no event
// (n² frames), lists still count everyone.
func TestPresence_BigRoomsGoQuiet(t *testing.T) {
	t.Parallel()
	_, url := presenceHub(t, func(o *Options) { o.Presence.MaxEventPeople = 2 })
	w := dial(t, url, testToken(t, "w", time.Hour, "staff"))
	w.readType("welcome")
	a := dial(t, url, testToken(t, "a", time.Hour, "staff"))
	a.readType("welcome")
	if ev := w.nextEvent("user:online"); !strings.Contains(string(ev.Data), `"user":"w"`) {
		t.Fatalf("got %s", ev.Data)
	}
	if ev := w.nextEvent("user:online"); !strings.Contains(string(ev.Data), `"user":"a"`) {
		t.Fatalf("got %s", ev.Data)
	}
	b := dial(t, url, testToken(t, "b", time.Hour, "staff"))
	b.readType("welcome")
	w.noEvent("user:online", "user:offline")
	if p := presenceOf(t, w.cmd("presence", map[string]any{"room": "staff"})); p.Count != 3 {
		t.Fatalf("count %d, want 3", p.Count)
	}
}
