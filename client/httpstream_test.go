package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
)

// Over the HTTP stream: the welcome, a join, events, an emit, and a
// reconnection after the server drops the stream.
func TestHTTPStreamTransport(t *testing.T) {
	t.Parallel()
	ts := startHub(t, func(o *rthub.Options) { o.HTTPStream.Enabled = true })
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), Transport: TransportHTTPStream})
	got := make(chan chatMessage, 4)
	Handle(c, testChat, func(_ string, m chatMessage) { got <- m })
	if err := c.Join(t.Context(), "device:1"); err != nil {
		t.Fatalf("Join: %v", err)
	}
	if err := ts.Hub().Publish(t.Context(), "device:1", "chat:message", chatMessage{Text: "one"}); err != nil {
		t.Fatal(err)
	}
	if m := within(t, got, "an event over the stream"); m.Text != "one" {
		t.Fatalf("event %q", m.Text)
	}
	if err := c.Emit(t.Context(), "chat:message", "staff", chatMessage{Text: "hi"}); err != nil {
		t.Fatalf("Emit: %v", err)
	}
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if st := ts.Hub().Stats(); st.Connections != 1 {
		t.Fatalf("%d connections", st.Connections)
	}
}

// TransportAuto: WebSocket refused by something in the way, the client
// connects over the HTTP stream instead.
func TestTransportAuto(t *testing.T) {
	t.Parallel()
	h, err := rthub.New(rthub.Options{
		Auth:       rthub.AuthOptions{Keys: map[string]any{"": testSecret}},
		Policy:     testPolicy,
		Handlers:   []rthub.Handler{testChat.Relay()},
		HTTPStream: rthub.HTTPStreamOptions{Enabled: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" { // a proxy that does not do WebSocket
			refused.Add(1)
			http.Error(w, "no upgrades here", http.StatusBadGateway)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	c := dialTest(t, url, Options{Token: hourToken(t, "bob", "staff"), Transport: TransportAuto})
	if err := c.Join(t.Context(), "device:2"); err != nil {
		t.Fatalf("Join: %v", err)
	}
	if refused.Load() != 1 {
		t.Fatalf("%d WebSocket attempts, want 1", refused.Load())
	}
	got := make(chan chatMessage, 1)
	Handle(c, testChat, func(_ string, m chatMessage) { got <- m })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := h.Publish(ctx, "device:2", "chat:message", chatMessage{Text: "via HTTP"}); err != nil {
		t.Fatal(err)
	}
	if m := within(t, got, "an event"); m.Text != "via HTTP" {
		t.Fatalf("event %q", m.Text)
	}
}

// TransportAuto's count: more than one short-lived or failed WebSocket in a
// row moves to the HTTP stream; a WebSocket that lived starts the count again.
func TestTransportAutoCount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		outcomes []bool
		wantHTTP bool
	}{
		{"oneFailure", []bool{false}, false},
		{"twoFailures", []bool{false, false}, true},
		{"interrupted", []bool{false, true, false}, false},
		{"neverWithWebSocketOnly", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newClient(t.Context(), "ws://127.0.0.1:9/ws", Options{Token: "t", Transport: TransportAuto})
			if err != nil {
				t.Fatal(err)
			}
			defer c.cancel()
			for _, ok := range tc.outcomes {
				c.wsOutcome(ok)
			}
			if got := c.useHTTP(); got != tc.wantHTTP {
				t.Errorf("useHTTP() = %v, want %v", got, tc.wantHTTP)
			}
		})
	}
}
