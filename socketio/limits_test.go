package socketio_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/org/rthub/socketio"
)

// wsClient is a Socket.IO client over WebSocket, by hand.
type wsClient struct {
	t  *testing.T
	rw io.ReadWriter
	nc interface{ Close() error }
}

func dialWS(t *testing.T, url, token string) *wsClient {
	t.Helper()
	nc, br, _, err := ws.Dial(t.Context(), "ws"+strings.TrimPrefix(url, "http")+"/socket.io/?EIO=4&transport=websocket")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &wsClient{t: t, rw: nc, nc: nc}
	if br != nil {
		c.rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, nc), nc}
	}
	c.until("0{")
	c.send(`40{"token":"` + token + `"}`)
	c.until("40{")
	return c
}

func (c *wsClient) send(p string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.rw, []byte(p)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsClient) until(prefix string) string {
	c.t.Helper()
	for {
		msg, err := wsutil.ReadServerText(c.rw)
		if err != nil {
			c.t.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(string(msg), prefix) {
			return string(msg)
		}
	}
}

// TestLimits_slowClient: a client that stops reading is closed when its
// session's queue overflows (once the kernel's socket buffers are full);
// the hub's writers never wait for it, so a reading client in the same
// room gets every event at once.
func TestLimits_slowClient(t *testing.T) {
	ts := newTestServer(t, socketio.Options{QueuePackets: 64, WriteTimeout: time.Minute}, nil)
	slow := dialWS(t, ts.URL, ts.mint("slow", "staff", time.Hour))
	fast := dialWS(t, ts.URL, ts.mint("fast", "staff", time.Hour))
	_ = slow // never read again
	big := strings.Repeat("x", 8<<10)
	start := time.Now()
	for i := 0; i < 2000 && ts.sio.Stats().Overflows == 0; i++ {
		if err := ts.hub.Publish(t.Context(), "staff", "sensor:data", map[string]any{"n": i, "pad": big}); err != nil {
			t.Fatal(err)
		}
		fast.until(`42["sensor:data",{"n":` + strconv.Itoa(i) + `,`)
		if time.Since(start) > 30*time.Second {
			t.Fatal("the reading client was slowed down")
		}
	}
	if st := ts.sio.Stats(); st.Overflows != 1 || st.Sessions != 1 {
		t.Fatalf("after 16 MB to a client that does not read: %+v, want its session closed (1 overflow, 1 session left)", st)
	}
	fast.send(`421["rthub:presence","staff"]`)
	if p := fast.until("431"); !strings.Contains(p, `"ok":true`) {
		t.Errorf("the reading client after the overflow: %s", p)
	}
}

// TestLimits_timeouts: a session that never connects a namespace closes
// after ConnectTimeout; a connected one whose client stops answering pings
// closes after PingTimeout; both leave the hub.
func TestLimits_timeouts(t *testing.T) {
	ts := newTestServer(t, socketio.Options{PingInterval: 100 * time.Millisecond, PingTimeout: 200 * time.Millisecond, ConnectTimeout: 300 * time.Millisecond}, nil)
	idle := &pollClient{t: t, url: ts.URL}
	idle.open()
	silent := dialWS(t, ts.URL, ts.mint("alice", "staff", time.Hour))
	_ = silent
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, hs := ts.sio.Stats(), ts.hub.Stats()
		if st.Sessions == 0 && hs.Connections == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions %d, hub connections %d after 5 s", st.Sessions, hs.Connections)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, _ := idle.do("GET", ""); status != http.StatusBadRequest {
		t.Errorf("poll of an expired session: %d, want 400", status)
	}
}

// TestLimits_sizes: MaxSessions refuses handshakes with 503; a POST over
// MaxPayload is refused with 413 and closes its session; a WebSocket
// message over it closes the session.
func TestLimits_sizes(t *testing.T) {
	ts := newTestServer(t, socketio.Options{MaxSessions: 2, MaxPayload: 1000}, nil)
	a := &pollClient{t: t, url: ts.URL}
	a.open()
	b := dialWS(t, ts.URL, ts.mint("bob", "staff", time.Hour))
	c := &pollClient{t: t, url: ts.URL}
	if status, _ := c.do("GET", ""); status != http.StatusServiceUnavailable {
		t.Errorf("handshake past MaxSessions: %d, want 503", status)
	}
	if status, _ := a.do("POST", "4"+strings.Repeat("x", 1000)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("POST past MaxPayload: %d, want 413", status)
	}
	b.send(`42["alert:ack","staff",{"note":"` + strings.Repeat("x", 1000) + `"}]`)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for ts.sio.Stats().Sessions != 0 {
		if ctx.Err() != nil {
			t.Fatalf("sessions %d after the oversized messages", ts.sio.Stats().Sessions)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBinaryRefused: an event with a binary attachment is answered
// bad_request and its attachment dropped; the session goes on. An unknown
// event of the reserved rthub: prefix is answered unknown_event.
func TestBinaryRefused(t *testing.T) {
	ts := newTestServer(t, socketio.Options{}, nil)
	c := dialWS(t, ts.URL, ts.mint("alice", "staff", time.Hour))
	c.send(`451-1["alert:ack","staff",{"_placeholder":true,"num":0}]`)
	if err := wsutil.WriteClientBinary(c.rw, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if p := c.until("431"); !strings.HasPrefix(p, `431[{"ok":false,"error":{"code":"bad_request","message":"binary attachments are not supported"}}]`) {
		t.Errorf("binary event ack %s", p)
	}
	c.send(`422["rthub:presence","staff"]`)
	if p := c.until("432"); !strings.Contains(p, `"ok":true`) {
		t.Errorf("after the binary event: %s", p)
	}
	c.send(`423["rthub:nope"]`) // reserved prefix
	if p := c.until("433"); !strings.HasPrefix(p, `433[{"ok":false,"error":{"code":"unknown_event"`) {
		t.Errorf("an unknown rthub: event: %s", p)
	}
}
