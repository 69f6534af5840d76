package socketio

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/org/rthub"
)

func pos(o uint64) rthub.StreamPosition { return rthub.StreamPosition{Offset: o, Epoch: "e"} }

// TestTracker_rewind: the positions a client has seen are those of the
// last event of each room up to its offset, whatever was sent after it.
func TestTracker_rewind(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		events int    // events sent alternately to a (odd) and b (even); positions 10+i
		offset string // "" or the seq the client got (tag added)
		ok     bool
		a, b   uint64 // positions after the rewind
	}{
		{name: "noEvents", max: 8, events: 0, offset: "", ok: true, a: 1, b: 2},
		{name: "noneReceived", max: 8, events: 4, offset: "", ok: true, a: 1, b: 2},
		{name: "someReceived", max: 8, events: 5, offset: "3", ok: true, a: 13, b: 12},
		{name: "allReceived", max: 8, events: 5, offset: "5", ok: true, a: 15, b: 14},
		{name: "logFullButCovered", max: 4, events: 6, offset: "3", ok: true, a: 13, b: 12},
		{name: "lostBeyondLog", max: 4, events: 9, offset: "3", ok: false},
		{name: "future", max: 8, events: 3, offset: "4", ok: false},
		{name: "garbage", max: 8, events: 3, offset: "x", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(tt.max)
			p1, p2 := pos(1), pos(2)
			tr.join("a", true, &p1)
			tr.join("b", false, &p2)
			for i := 1; i <= tt.events; i++ {
				room := "b"
				if i%2 == 1 {
					room = "a"
				}
				off := tr.sent(room, pos(uint64(10+i)))
				if want := tr.tag + "." + strconv.Itoa(i); off != want {
					t.Fatalf("offset %q, want %q", off, want)
				}
			}
			off := tt.offset
			if off != "" && off != "x" {
				off = tr.tag + "." + off
			}
			if got := tr.rewind(off); got != tt.ok {
				t.Fatalf("rewind(%q) = %v, want %v", off, got, tt.ok)
			}
			if !tt.ok {
				return
			}
			param, client, complete := tr.since()
			raw, _ := base64.RawURLEncoding.DecodeString(param)
			var server map[string]rthub.StreamPosition
			_ = json.Unmarshal(raw, &server)
			if !complete || server["a"].Offset != tt.a || client["b"].Offset != tt.b || len(server) != 1 || len(client) != 1 {
				t.Errorf("since: server %v, client %v, complete %v; want a %d, b %d", server, client, complete, tt.a, tt.b)
			}
			// Events after the rewind are numbered after the offset (those
			// after it never reached the client), and a second rewind
			// counts them.
			s, _ := strconv.Atoi(tt.offset)
			if off := tr.sent("a", pos(100)); off != tr.tag+"."+strconv.Itoa(s+1) {
				t.Errorf("next offset %q, want %d", off, s+1)
			}
			tr.sent("b", pos(101))
			if !tr.rewind(tr.tag + "." + strconv.Itoa(s+1)) {
				t.Fatal("second rewind refused")
			}
			_, client, _ = tr.since()
			if tr.rooms["a"].base.Offset != 100 || client["b"].Offset != tt.b {
				t.Errorf("after a second rewind: a %d, b %d; want 100, %d", tr.rooms["a"].base.Offset, client["b"].Offset, tt.b)
			}
		})
	}
}

func TestTracker_otherTag(t *testing.T) {
	a, b := newTracker(8), newTracker(8)
	for a.tag == b.tag {
		b = newTracker(8)
	}
	off := a.sent("r", pos(1))
	if b.rewind(off) {
		t.Error("a tracker accepted another's offset")
	}
}

// TestRecoveryStore: bounded by max (oldest forgotten first), expired
// after the window, taken once.
func TestRecoveryStore(t *testing.T) {
	now := time.Now()
	r := newRecoveryStore(2)
	r.put("a", newTracker(1), now.Add(time.Minute))
	r.put("b", newTracker(1), now.Add(time.Second))
	r.put("c", newTracker(1), now.Add(time.Minute))
	if r.len() != 2 || r.take("a", now) != nil {
		t.Fatalf("the oldest was not forgotten at the bound: len %d", r.len())
	}
	r.expire(now.Add(2 * time.Second))
	if r.take("b", now) != nil || r.len() != 1 {
		t.Fatal("b did not expire")
	}
	if r.take("c", now) == nil || r.take("c", now) != nil {
		t.Fatal("c is not taken exactly once")
	}
	r.put("d", newTracker(1), now.Add(-time.Second))
	if r.take("d", now) != nil {
		t.Fatal("an expired state was taken")
	}
}
