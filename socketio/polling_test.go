package socketio_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub/socketio"
)

// pollClient speaks Engine.IO's polling transport by hand: what
// socket.io-client does, packet by packet, to check the wire format.
type pollClient struct {
	t   *testing.T
	url string
	sid string
	buf []string // packets polled and not yet looked at
}

func (c *pollClient) do(method, body string) (int, string) {
	c.t.Helper()
	u := c.url + "/socket.io/?EIO=4&transport=polling"
	if c.sid != "" {
		u += "&sid=" + c.sid
	}
	req, err := http.NewRequestWithContext(c.t.Context(), method, u, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// open does the handshake and returns the open packet's fields.
func (c *pollClient) open() map[string]any {
	c.t.Helper()
	status, body := c.do("GET", "")
	if status != 200 || !strings.HasPrefix(body, "0{") {
		c.t.Fatalf("handshake: %d %q", status, body)
	}
	var o map[string]any
	if err := json.Unmarshal([]byte(body[1:]), &o); err != nil {
		c.t.Fatal(err)
	}
	c.sid = o["sid"].(string)
	return o
}

func (c *pollClient) send(packets ...string) {
	c.t.Helper()
	if status, body := c.do("POST", strings.Join(packets, "\x1e")); status != 200 || body != "ok" {
		c.t.Fatalf("post: %d %q", status, body)
	}
}

// poll returns the packets of one poll.
func (c *pollClient) poll() []string {
	c.t.Helper()
	status, body := c.do("GET", "")
	if status != 200 {
		c.t.Fatalf("poll: %d %q", status, body)
	}
	return strings.Split(body, "\x1e")
}

// until polls until a packet starts with prefix and returns it.
func (c *pollClient) until(prefix string) string {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for len(c.buf) > 0 {
			p := c.buf[0]
			c.buf = c.buf[1:]
			if p == "2" {
				c.send("3")
			}
			if strings.HasPrefix(p, prefix) {
				return p
			}
		}
		c.buf = c.poll()
	}
	c.t.Fatalf("no packet %q within 5 s", prefix)
	return ""
}

func TestPolling_wire(t *testing.T) {
	ts := newTestServer(t, socketio.Options{PingInterval: 300 * time.Millisecond, PingTimeout: 2 * time.Second}, nil)
	c := &pollClient{t: t, url: ts.URL}
	o := c.open()
	if o["pingInterval"].(float64) != 300 || o["pingTimeout"].(float64) != 2000 || o["maxPayload"].(float64) != 100000 {
		t.Errorf("open packet %v", o)
	}
	if up := o["upgrades"].([]any); len(up) != 1 || up[0] != "websocket" {
		t.Errorf("upgrades %v", up)
	}

	// A refused token: CONNECT_ERROR with the hub's code; the session stays.
	c.send(`40{"token":"not-a-jwt"}`)
	p := c.until("44")
	var ce struct {
		Message string
		Data    struct {
			Code   string
			Status int
		}
	}
	if err := json.Unmarshal([]byte(p[2:]), &ce); err != nil || ce.Data.Code != "token_malformed" || ce.Data.Status != 401 || ce.Message == "" {
		t.Errorf("connect_error %q (%v)", p, err)
	}

	// Another namespace: refused as Socket.IO does.
	c.send(`40/admin,{}`)
	if p := c.until("44/admin,"); !strings.Contains(p, "Invalid namespace") {
		t.Errorf("namespace refusal %q", p)
	}

	c.send(`40{"token":"` + ts.mint("alice", "staff", time.Hour) + `"}`)
	p = c.until("40")
	var ok struct{ SID, PID string }
	if err := json.Unmarshal([]byte(p[2:]), &ok); err != nil || ok.SID == "" || ok.PID != "" {
		t.Errorf("connect %q (%v)", p, err)
	}
	if p := c.until(`42["rthub:welcome",`); !strings.Contains(p, `"rooms":["staff"]`) {
		t.Errorf("welcome %q", p)
	}
	c.send(`421["rthub:join","device:7"]`, `422["rthub:join","admin"]`)
	if p := c.until("431"); !strings.HasPrefix(p, `431[{"ok":true,"data":{"room":"device:7","offset":0,"epoch":"`) {
		t.Errorf("join ack %q", p)
	}
	if p := c.until("432"); !strings.HasPrefix(p, `432[{"ok":false,"error":{"code":"forbidden"`) {
		t.Errorf("forbidden join ack %q", p)
	}
	if err := ts.hub.Publish(t.Context(), "device:7", "sensor:data", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if p := c.until(`42["sensor:data"`); p != `42["sensor:data",{"n":1}]` {
		t.Errorf("event %q", p)
	}
	c.send(`423["alert:ack","staff",{"id":3}]`, `424["alert:ack","staff",{"id":"x"}]`)
	if p := c.until("433"); p != `433[{"ok":true,"data":null}]` {
		t.Errorf("emit ack %q", p)
	}
	if p := c.until("434"); !strings.HasPrefix(p, `434[{"ok":false,"error":{"code":"bad_payload"`) {
		t.Errorf("bad emit ack %q", p)
	}
	c.send("41")
	if st := ts.sio.Stats(); st.Sessions != 1 || st.Sockets != 0 {
		t.Errorf("after disconnect: %+v", st)
	}
	c.send("1")
	if status, _ := c.do("GET", ""); status != 400 {
		t.Errorf("poll of a closed session: %d, want 400", status)
	}
}

// TestPolling_protocolErrors: a second poll while one waits, and a
// malformed packet, close the session (as Engine.IO does); unknown
// versions and transports are refused with Engine.IO's error codes.
func TestPolling_protocolErrors(t *testing.T) {
	ts := newTestServer(t, socketio.Options{}, nil)
	for _, q := range []struct{ query, want string }{
		{"EIO=3&transport=polling", `{"code":5,"message":"Unsupported protocol version"}`},
		{"EIO=4&transport=flash", `{"code":0,"message":"Transport unknown"}`},
		{"EIO=4&transport=polling&sid=nope", `{"code":1,"message":"Session ID unknown"}`},
	} {
		res, err := http.Get(ts.URL + "/socket.io/?" + q.query)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 400 || string(b) != q.want {
			t.Errorf("%s: %d %s, want 400 %s", q.query, res.StatusCode, b, q.want)
		}
	}

	c := &pollClient{t: t, url: ts.URL}
	c.open()
	statuses := make(chan int, 2)
	for range 2 {
		go func() {
			res, err := http.Get(ts.URL + "/socket.io/?EIO=4&transport=polling&sid=" + c.sid)
			if err != nil {
				statuses <- 0
				return
			}
			res.Body.Close()
			statuses <- res.StatusCode
		}()
	}
	// The waiting poll ends with a close packet (200), the other is refused.
	if a, b := <-statuses, <-statuses; a+b != 600 || a*b != 200*400 {
		t.Errorf("two polls at once: %d and %d, want 200 and 400", a, b)
	}
	if st := ts.sio.Stats(); st.Sessions != 0 {
		t.Errorf("sessions %d after two polls at once, want 0", st.Sessions)
	}

	c = &pollClient{t: t, url: ts.URL}
	c.open()
	c.send(`42{"not":"an array"}`)
	if st := ts.sio.Stats(); st.Sessions != 0 {
		t.Errorf("sessions %d after a malformed packet, want 0", st.Sessions)
	}
}
