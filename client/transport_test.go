package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/org/rthub"
)

// With Compression on, large messages make the round trip both ways. (That
// they travel compressed is checked by TestKnownHubBugs/deflateNotNegotiated:
// the hub does not negotiate yet.)
func TestCompression(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	opts := func(sub string) Options {
		return Options{Token: hourToken(t, sub, "staff"), Compression: true}
	}
	alice := dialTest(t, ts.url, opts("alice"))
	bob := dialTest(t, ts.url, opts("bob"))
	got := make(chan chatMessage, 2)
	Handle(bob, testChat, func(_ string, m chatMessage) { got <- m })

	big := strings.Repeat("compressible ", 5000) // 65 000 bytes
	if err := ts.Hub().Publish(t.Context(), "staff", "chat:message", chatMessage{Text: big}); err != nil {
		t.Fatal(err)
	}
	if m := within(t, got, "published event"); m.Text != big {
		t.Fatalf("published event: got %d bytes, want %d", len(m.Text), len(big))
	}
	for i := range 3 { // similar messages: a shared deflate window would show
		if err := alice.Emit(t.Context(), "chat:message", "staff", chatMessage{Text: big}); err != nil {
			t.Fatalf("Emit %d: %v", i, err)
		}
		if m := within(t, got, "relayed event"); m.Text != big {
			t.Fatalf("relayed event: got %d bytes, want %d", len(m.Text), len(big))
		}
	}
}

// A message over MaxMessageSize drops the connection, which reconnects.
func TestMaxMessageSize(t *testing.T) {
	t.Parallel()
	ts := startHub(t, nil)
	rec := newStateRecorder()
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), MaxMessageSize: 1000, OnState: rec.record})
	rec.wait(t, Connected)
	if err := ts.Hub().Publish(t.Context(), "staff", "sensor:data", strings.Repeat("x", 2000)); err != nil {
		t.Fatal(err)
	}
	sc := rec.wait(t, Reconnecting)
	if rthub.CloseStatus(sc.err) != rthub.CloseAbnormal {
		t.Errorf("Reconnecting because of %v, want 1006", sc.err)
	}
	rec.wait(t, Connected)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// fakeServer is a WebSocket server that speaks just enough of the protocol
// to test how the client copes with a misbehaving server: each connection is
// sent first and then hears nothing more. If deaf, the server does not even
// read (so it never answers a close frame) until the test ends.
func fakeServer(t *testing.T, first string, deaf bool) string {
	t.Helper()
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{rthub.Subprotocol}})
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := r.Context()
		if err := ws.Write(ctx, websocket.MessageText, []byte(first)); err != nil {
			return
		}
		if deaf {
			<-stop
			return
		}
		for { // answer control frames, ignore commands, never ping
			if _, _, err := ws.Read(ctx); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // first: hijacked handlers outlive srv.Close
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// A server that falls silent (no messages, no pings) is taken for dead: the
// client drops the connection as 1006 and reconnects.
func TestIdleServer(t *testing.T) {
	t.Parallel()
	url := fakeServer(t, `{"type":"welcome","version":1,"conn":"fake","rooms":[],"ping":1}`, false)
	rec := newStateRecorder()
	var ping atomic.Int64
	_, err := dialTestErr(t, url, Options{OnState: rec.record}, func(c *Client) {
		c.idleFor = func(p time.Duration) time.Duration {
			ping.Store(int64(p))
			return 100 * time.Millisecond
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if ping := time.Duration(ping.Load()); ping != time.Second {
		t.Errorf("ping interval from the welcome = %v, want 1s", ping)
	}
	rec.wait(t, Connected)
	sc := rec.wait(t, Reconnecting)
	if !errors.Is(sc.err, errIdle) || rthub.CloseStatus(sc.err) != rthub.CloseAbnormal {
		t.Errorf("Reconnecting because of %v, want 1006 and errIdle", sc.err)
	}
	rec.wait(t, Connected)
}

func TestIdleFor(t *testing.T) {
	t.Parallel()
	for ping, want := range map[time.Duration]time.Duration{0: 0, time.Second: 7 * time.Second, 25 * time.Second: 55 * time.Second} {
		if got := idleFor(ping); got != want {
			t.Errorf("idleFor(%v) = %v, want %v", ping, got, want)
		}
	}
}

// A server whose first message is not a welcome is refused by Dial.
func TestDial_noWelcome(t *testing.T) {
	t.Parallel()
	url := fakeServer(t, `{"type":"event","event":"x","room":"y","data":1}`, false)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := Dial(ctx, url, Options{})
	if err == nil || !strings.Contains(err.Error(), "not a welcome") {
		t.Fatalf("Dial: %v, want a protocol error", err)
	}
}

// Close does not wait long for a server that never answers the close frame.
func TestClose_deafServer(t *testing.T) {
	t.Parallel()
	url := fakeServer(t, `{"type":"welcome","version":1,"conn":"fake","rooms":[],"ping":0}`, true)
	c, err := dialTestErr(t, url, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Let the reader park in Read: cancelling that read is what cuts the
	// connection off. (Had Close won the read lock first, coder/websocket's
	// own 5 s wait would bound it instead.)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	c.Close()
	if d := time.Since(start); d < closeTimeout || d > closeTimeout+2*time.Second {
		t.Errorf("Close took %v, want about %v", d, closeTimeout)
	}
	errorIs(t, c.Err(), ErrClosed)
}
