package rthub

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLatencyHistogram(t *testing.T) {
	var h latencyHist
	if q := h.snapshot().Quantile(0.99); q != 0 {
		t.Fatalf("empty p99 = %v", q)
	}
	for range 90 {
		h.observe(200 * time.Microsecond) // bucket ≤250µs
	}
	for range 9 {
		h.observe(20 * time.Millisecond) // ≤25ms
	}
	h.observe(time.Minute) // over every bound
	s := h.snapshot()
	if s.Count != 100 || s.Counts[1] != 90 || s.Counts[len(s.Counts)-1] != 99 {
		t.Fatalf("snapshot %+v", s)
	}
	if s.Sum != 90*200*time.Microsecond+9*20*time.Millisecond+time.Minute {
		t.Errorf("sum %v", s.Sum)
	}
	if p50 := s.Quantile(0.5); p50 <= 100*time.Microsecond || p50 > 250*time.Microsecond {
		t.Errorf("p50 %v, want within (100µs, 250µs]", p50)
	}
	if p95 := s.Quantile(0.95); p95 <= 10*time.Millisecond || p95 > 25*time.Millisecond {
		t.Errorf("p95 %v, want within (10ms, 25ms]", p95)
	}
	if p999 := s.Quantile(0.999); p999 != 10*time.Second {
		t.Errorf("p99.9 %v, want the last bound", p999)
	}
}

// TestHub_BroadcastLatency: publications to members are measured, once each.
func TestHub_BroadcastLatency(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	before := h.Stats().BroadcastLatency.Count
	for i := range 5 {
		if err := h.Publish(t.Context(), "staff", "sensor:data", i); err != nil {
			t.Fatal(err)
		}
		c.readType("event")
	}
	if err := h.Publish(t.Context(), "device:none", "sensor:data", 1); err != nil { // no members: not measured
		t.Fatal(err)
	}
	// A publication whose only recipient is still being written to rides on
	// that write and is not measured: between 1 and 5 observations.
	deadline := time.Now().Add(5 * time.Second)
	for h.Stats().BroadcastLatency.Count == before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	s := h.Stats().BroadcastLatency
	if n := s.Count - before; n < 1 || n > 5 || s.Sum <= 0 {
		t.Fatalf("latency histogram %+v: %d more observations, want 1 to 5", s, n)
	}
}

// TestHub_CorrelationID: a publish's correlation ID reaches the client as
// "cid"; an invalid one is dropped, not sent.
func TestHub_CorrelationID(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	for _, tc := range []struct{ cid, want string }{
		{"mqtt-7f3a", `"cid":"mqtt-7f3a"`},
		{"bad\nid", ""},
		{strings.Repeat("x", 129), ""},
	} {
		if err := h.Publish(t.Context(), "staff", "sensor:data", 1, WithCorrelationID(tc.cid)); err != nil {
			t.Fatal(err)
		}
		b := c.readRaw()
		if tc.want != "" && !strings.Contains(string(b), tc.want) || tc.want == "" && strings.Contains(string(b), `"cid"`) {
			t.Fatalf("cid %q: frame %s", tc.cid, b)
		}
	}
}

// TestHub_ByteCounters: received bytes, event bytes before and after
// compression, and reconnects (handshakes with since) are counted.
func TestHub_ByteCounters(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	tok := testToken(t, "alice", time.Hour, "staff")
	defl := dialRaw(t, url, rawOpts{token: tok, extensions: rawDeflateOffer})
	defl.next(nil) // welcome
	s0 := h.Stats()
	big := strings.Repeat(`{"metric":"temperature","value":21.5},`, 100)
	if err := h.Publish(t.Context(), "staff", "sensor:data", json.RawMessage("["+big[:len(big)-1]+"]")); err != nil {
		t.Fatal(err)
	}
	if m := defl.next(nil); !m.compressed {
		t.Fatal("event not compressed")
	}
	defl.write(text(`{"id":1,"op":"ping"}`))
	if r, _ := defl.repliesUntil(1); len(r) != 0 {
		t.Fatal(r)
	}
	s1 := h.Stats()
	if eb := s1.EventBytes - s0.EventBytes; eb < uint64(len(big)) {
		t.Errorf("EventBytes grew by %d, want ≥ %d", eb, len(big))
	}
	if wb, eb := s1.EventWireBytes-s0.EventWireBytes, s1.EventBytes-s0.EventBytes; wb == 0 || wb*2 > eb {
		t.Errorf("EventWireBytes %d for %d bytes of events: compression not counted", wb, eb)
	}
	if s1.BytesReceived-s0.BytesReceived != uint64(len(`{"id":1,"op":"ping"}`)) {
		t.Errorf("BytesReceived grew by %d", s1.BytesReceived-s0.BytesReceived)
	}
	c := dial(t, url+"?since="+sinceParam(map[string]StreamPosition{"staff": {Offset: 1, Epoch: "x"}}), tok)
	c.readType("welcome")
	if h.Stats().Reconnects != 1 {
		t.Errorf("Reconnects = %d, want 1", h.Stats().Reconnects)
	}
}

// TestHub_QueueAndReplyErrors: reply errors are counted by code; queue
// depth is reported (zero once written).
func TestHub_QueueAndReplyErrors(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	c.cmd("join", map[string]any{"room": "admin"})    // forbidden
	c.cmd("join", map[string]any{"room": "bad room"}) // bad_room
	c.cmd("join", map[string]any{"room": "admin"})    // forbidden
	s := h.Stats()
	if s.ReplyErrors["forbidden"] != 2 || s.ReplyErrors["bad_room"] != 1 || len(s.ReplyErrors) != 2 {
		t.Fatalf("ReplyErrors %v", s.ReplyErrors)
	}
	if s.QueuedFrames < 0 || s.QueuedBytes < 0 {
		t.Fatalf("queue %d frames, %d bytes", s.QueuedFrames, s.QueuedBytes)
	}
	if replyErrorCode(replyErrorIndex("my_app_code")) != "other" || replyErrorCode(replyErrorIndex("forbidden")) != "forbidden" {
		t.Fatal("code index round trip")
	}
}

// TestHub_EventCounts: publications, deliveries and drops are counted by
// event; a drop (a full send queue) is counted for its event and in
// DroppedFrames with the frame it discarded from the queue.
func TestHub_EventCounts(t *testing.T) {
	t.Parallel()
	// A room's second event within WriteDelay is held in the queue; a third
	// that does not fit next to it overflows the queue.
	h, url := testHub(t, func(o *Options) {
		o.WriteDelay = time.Second
		o.SendQueueBytes = 3000
		o.PingInterval = time.Hour // no ping frame in the counts
	})
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	small := json.RawMessage(`{"v":1}`)
	for range 2 {
		if err := h.Publish(t.Context(), "staff", "alpha", small); err != nil {
			t.Fatal(err)
		}
		c.readType("event")
		time.Sleep(1100 * time.Millisecond) // past WriteDelay: not held
	}
	big := json.RawMessage(`"` + strings.Repeat("x", 2000) + `"`)
	for i := range 3 {
		if err := h.Publish(t.Context(), "staff", "beta", big); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			c.readType("event") // written at once; the next one is held
		}
	}
	s := h.Stats()
	if got, want := s.Events["alpha"], (EventCounts{Published: 2, Delivered: 2}); got != want {
		t.Errorf("alpha: %+v, want %+v", got, want)
	}
	if got, want := s.Events["beta"], (EventCounts{Published: 3, Delivered: 2, Dropped: 1}); got != want {
		t.Errorf("beta: %+v, want %+v", got, want)
	}
	if s.DroppedFrames != 2 { // beta #3 refused, beta #2 discarded from the queue
		t.Errorf("DroppedFrames = %d, want 2", s.DroppedFrames)
	}
	if s.SlowConsumers != 1 {
		t.Errorf("SlowConsumers = %d, want 1", s.SlowConsumers)
	}
	// The default broker keeps the 5 publications' history.
	if s.HistoryBytes < 2*2000+2*7 || s.HistoryEvictions != 0 {
		t.Errorf("history: %d bytes, %d evictions", s.HistoryBytes, s.HistoryEvictions)
	}
}

// TestHub_EventCountsBounded: names past MaxEventNames-1 share OtherEvents.
func TestHub_EventCountsBounded(t *testing.T) {
	t.Parallel()
	h, _ := testHub(t, nil)
	for i := range MaxEventNames + 44 {
		if err := h.Publish(t.Context(), "staff", fmt.Sprintf("ev:%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	ev := h.Stats().Events
	if len(ev) != MaxEventNames {
		t.Errorf("%d keys, want %d", len(ev), MaxEventNames)
	}
	if got := ev[OtherEvents].Published; got != 45 {
		t.Errorf("%s published %d, want 45", OtherEvents, got)
	}
	if ev["ev:0"].Published != 1 || ev[fmt.Sprintf("ev:%d", MaxEventNames-2)].Published != 1 {
		t.Errorf("early names not counted: %v", ev["ev:0"])
	}
}

func TestEventNameOf(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{string(appendEvent(nil, "sensor:data", "device:1", []byte(`{}`))), "sensor:data"},
		{string(appendEventCID(nil, "cid-1", "alert:new", "staff", nil)), "alert:new"},
		{`{"type":"reset","room":"staff"}`, ""},
		{`{"type":"event","event":""}`, ""},
		{`{"type":"event","event":"unterminated`, ""},
		{``, ""},
	} {
		if got := string(eventNameOf([]byte(tc.msg))); got != tc.want {
			t.Errorf("eventNameOf(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

// TestHub_PublishErrors: Publish's argument errors are testable sentinels.
func TestHub_PublishErrors(t *testing.T) {
	t.Parallel()
	h, _ := testHub(t, nil)
	for _, tc := range []struct {
		room, event string
		data        any
		want        error
	}{
		{"staff", "bad event", nil, ErrBadEvent},
		{"staff", "", nil, ErrBadEvent},
		{"bad room", "tick", nil, ErrBadRoom},
		{"staff", "tick", json.RawMessage(`{`), ErrBadPayload},
		{"staff", "tick", func() {}, ErrBadPayload},
	} {
		if err := h.Publish(t.Context(), tc.room, tc.event, tc.data); !errors.Is(err, tc.want) {
			t.Errorf("Publish(%q, %q) = %v, want %v", tc.room, tc.event, err, tc.want)
		}
	}
	if n := len(h.Stats().Events); n != 0 {
		t.Errorf("refused publications counted under %d event names", n)
	}
}
