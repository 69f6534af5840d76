package rthub

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// streamClient is a test client of the HTTP stream transport on a real
// socket: it reads the event stream with bufio and POSTs commands.
type streamClient struct {
	t       testing.TB
	url     string // http://…
	token   string
	session string
	resp    *http.Response
	br      *bufio.Reader
	nextID  uint64
}

// streamEvent is one parsed event of the stream.
type streamEvent struct {
	name string // "" for a message
	data string
}

// openStream opens a stream; extra headers (Last-Event-ID) may be given.
func openStream(t testing.TB, url, token string, hdr ...string) *streamClient {
	t.Helper()
	s, status, err := openStreamErr(url, token, hdr...)
	if err != nil {
		t.Fatalf("open stream: status %d: %v", status, err)
	}
	t.Cleanup(func() { s.resp.Body.Close() })
	return s
}

func openStreamErr(url, token string, hdr ...string) (*streamClient, int, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, resp.StatusCode, fmt.Errorf("%s", b)
	}
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "deflate" {
		zr, err := zlib.NewReader(resp.Body)
		if err != nil {
			resp.Body.Close()
			return nil, resp.StatusCode, err
		}
		body = zr
	}
	s := &streamClient{url: url, token: token, resp: resp, br: bufio.NewReader(body)}
	ev, err := s.event()
	if err != nil || ev.name != "session" {
		resp.Body.Close()
		return nil, resp.StatusCode, fmt.Errorf("first event %+v, %v", ev, err)
	}
	s.session = ev.data
	return s, resp.StatusCode, nil
}

// event reads the next event (comment lines skipped).
func (s *streamClient) event() (streamEvent, error) {
	var ev streamEvent
	var data []string
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data == nil && ev.name == "" {
				continue // a comment's blank line
			}
			ev.data = strings.Join(data, "\n")
			return ev, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		}
	}
}

// read returns the next server message (a close event is returned as a
// message of type "close").
func (s *streamClient) read() serverMsg {
	s.t.Helper()
	ev, err := s.event()
	if err != nil {
		s.t.Fatalf("read: %v", err)
	}
	var m serverMsg
	if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
		s.t.Fatalf("bad JSON %q: %v", ev.data, err)
	}
	return m
}

func (s *streamClient) readType(typ string) serverMsg {
	s.t.Helper()
	for {
		if m := s.read(); m.Type == typ {
			return m
		}
	}
}

// post POSTs body with the stream's session to url and returns the status.
func (s *streamClient) post(url, body string) int {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set(SessionHeader, s.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("post: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// cmd POSTs a command to url (the stream's own URL if "") and reads its
// reply from the stream.
func (s *streamClient) cmd(url, op string, fields map[string]any) serverMsg {
	s.t.Helper()
	if url == "" {
		url = s.url
	}
	s.nextID++
	m := map[string]any{"id": s.nextID, "op": op}
	for k, v := range fields {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	if st := s.post(url, string(b)); st != http.StatusAccepted {
		s.t.Fatalf("post %s: status %d", op, st)
	}
	for {
		if r := s.read(); r.Type == "reply" && r.ID == s.nextID {
			return r
		}
	}
}

// streamHub starts a hub with the HTTP stream enabled; it returns the hub
// and its http:// URL.
func streamHub(t testing.TB, mod func(*Options)) (*Hub, string) {
	t.Helper()
	h, url := testHub(t, func(o *Options) {
		o.HTTPStream.Enabled = true
		if mod != nil {
			mod(o)
		}
	})
	return h, "http" + strings.TrimPrefix(url, "ws")
}

func TestHTTPStream_RoomsCommandsAndEvents(t *testing.T) {
	t.Parallel()
	h, url := streamHub(t, nil)
	s := openStream(t, url, testToken(t, "ann", time.Hour, "staff"))
	s.t = t
	w := s.read()
	if w.Type != "welcome" || w.User != "ann" || strings.Join(w.Rooms, ",") != "staff,user:ann" {
		t.Fatalf("welcome = %+v", w)
	}
	if !strings.HasPrefix(s.session, w.Conn+".") {
		t.Fatalf("session %q is not for conn %q", s.session, w.Conn)
	}
	if r := s.cmd("", "join", map[string]any{"room": "device:7"}); !r.OK {
		t.Fatalf("join: %+v", r)
	}
	if r := s.cmd("", "join", map[string]any{"room": "admin"}); r.OK || r.Error.Code != "forbidden" {
		t.Fatalf("forbidden join: %+v", r)
	}
	if err := h.Publish(context.Background(), "device:7", "sensor:data", map[string]int{"t": 21}); err != nil {
		t.Fatal(err)
	}
	if ev := s.readType("event"); ev.Room != "device:7" || string(ev.Data) != `{"t":21}` {
		t.Fatalf("event = %+v", ev)
	}
	// Line breaks in a payload become several data lines, joined again.
	if err := h.Publish(context.Background(), "device:7", "sensor:data", json.RawMessage("{\n \"t\":\r\n 22\r}")); err != nil {
		t.Fatal(err)
	}
	if ev := s.readType("event"); !json.Valid(ev.Data) || !strings.Contains(string(ev.Data), "22") {
		t.Fatalf("event = %+v", ev)
	}
	// An emit goes through the same dispatch (and policy) as on a WebSocket.
	if r := s.cmd("", "emit", map[string]any{"event": "chat:message", "room": "staff", "data": map[string]string{"text": "hi"}}); !r.OK {
		t.Fatalf("emit: %+v", r)
	}
	// Two commands in one POST are handled in order.
	s.nextID = 10
	if st := s.post(url, `{"id":11,"op":"ping"}`+"\n"+`{"id":12,"op":"leave","room":"device:7"}`); st != http.StatusAccepted {
		t.Fatalf("post: %d", st)
	}
	if r := s.readType("reply"); r.ID != 11 || !r.OK {
		t.Fatalf("first reply %+v", r)
	}
	if r := s.readType("reply"); r.ID != 12 || !r.OK {
		t.Fatalf("second reply %+v", r)
	}
	// Shutdown closes the stream with a close event (1001: reconnect).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { _ = h.Shutdown(ctx) }()
	ev, err := s.event()
	for err == nil && ev.name != "close" {
		ev, err = s.event()
	}
	if err != nil || !strings.Contains(ev.data, `"code":1001`) {
		t.Fatalf("close event = %+v, %v", ev, err)
	}
	if _, err := s.event(); err != io.EOF {
		t.Fatalf("after the close event: %v, want EOF", err)
	}
}

// TestHTTPStream_Compressed: with Accept-Encoding: deflate the stream is a
// zlib stream, in which each big event is the frame compressed once for
// every connection (WebSocket or stream) and the rest goes in stored blocks.
func TestHTTPStream_Compressed(t *testing.T) {
	t.Parallel()
	h, url := streamHub(t, nil)
	tok := testToken(t, "gus", time.Hour, "staff")
	s := openStream(t, url, tok, "Accept-Encoding", "gzip, deflate, br")
	s.t = t
	if ce := s.resp.Header.Get("Content-Encoding"); ce != "deflate" {
		t.Fatalf("Content-Encoding %q, want deflate", ce)
	}
	plain := openStream(t, url, testToken(t, "hal", time.Hour, "staff"))
	plain.t = t
	ws := dial(t, "ws"+strings.TrimPrefix(url, "http"), tok)
	ws.t = t
	for _, c := range []interface{ readType(string) serverMsg }{s, plain, ws} {
		c.readType("welcome")
	}
	big := map[string]string{"text": strings.Repeat("compressible ", 400)}
	ctx := context.Background()
	for _, data := range []any{big, 1, json.RawMessage("[\n1,\n2]"), big} {
		if err := h.Publish(ctx, "staff", "x", data); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{`{"text":"compressible`, "1", "[\n1,\n2]", `{"text":"compressible`}
	for _, c := range []interface{ readType(string) serverMsg }{s, plain, ws} {
		for i, w := range want {
			if ev := c.readType("event"); !strings.HasPrefix(string(ev.Data), w) {
				t.Fatalf("%T: event %d = %.40s, want %.40s", c, i, ev.Data, w)
			}
		}
	}
	if r := s.cmd("", "ping", nil); !r.OK {
		t.Fatalf("ping: %+v", r)
	}
	st := h.Stats()
	// The plain stream took 2 big events as they are; the compressed one
	// (and the WebSocket, if it negotiated permessage-deflate) far less.
	if st.EventWireBytes*4 > st.EventBytes*3 {
		t.Errorf("%d event bytes took %d on the wire: the big ones were not compressed for the compressed stream", st.EventBytes, st.EventWireBytes)
	}
}

func TestHTTPStream_Resume(t *testing.T) {
	t.Parallel()
	h, url := streamHub(t, nil)
	tok := testToken(t, "bob", time.Hour, "staff")
	s := openStream(t, url, tok)
	s.t = t
	s.read() // welcome
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := h.Publish(ctx, "staff", "n", i); err != nil {
			t.Fatal(err)
		}
	}
	s.readType("event")
	s.readType("event")
	ev, err := s.event() // the third, raw: its position
	if err != nil {
		t.Fatal(err)
	}
	var pos StreamPosition
	if err := json.Unmarshal([]byte(ev.data), &pos); err != nil || pos.Offset == 0 {
		t.Fatalf("event %q: %v", ev.data, err)
	}
	s.resp.Body.Close()
	for i := 4; i <= 5; i++ {
		if err := h.Publish(ctx, "staff", "n", i); err != nil {
			t.Fatal(err)
		}
	}
	since, _ := json.Marshal(map[string]any{"staff": pos})
	s2 := openStream(t, url, tok, "Last-Event-ID", base64.RawURLEncoding.EncodeToString(since))
	s2.t = t
	if w := s2.read(); w.Type != "welcome" {
		t.Fatalf("welcome = %+v", w)
	}
	for _, want := range []string{"4", "5"} {
		if e := s2.readType("event"); string(e.Data) != want {
			t.Fatalf("replayed %s, want %s", e.Data, want)
		}
	}
}

func TestHTTPStream_Refusals(t *testing.T) {
	t.Parallel()
	_, url := streamHub(t, func(o *Options) { o.HTTPStream.MaxQueuedCommands = 2; o.HTTPStream.MaxPostBytes = 512 })
	tok := testToken(t, "cy", time.Hour, "staff")
	s := openStream(t, url, tok)
	s.t = t
	s.read()
	other := openStream(t, url, testToken(t, "dee", time.Hour, "staff"))
	other.t = t
	if _, st, _ := openStreamErr(url, "garbage"); st != http.StatusUnauthorized {
		t.Errorf("stream with a bad token: %d, want 401", st)
	}
	if _, st, _ := openStreamErr(url, tok, "Last-Event-ID", "!!"); st != http.StatusBadRequest {
		t.Errorf("stream with a bad Last-Event-ID: %d, want 400", st)
	}
	for _, tc := range []struct {
		name    string
		token   string
		session string
		body    string
		want    int
	}{
		{"ok", tok, s.session, `{"op":"ping"}`, http.StatusAccepted},
		{"noSession", tok, "", `{"op":"ping"}`, http.StatusBadRequest},
		{"malformedSession", tok, "abc", `{"op":"ping"}`, http.StatusBadRequest},
		{"badToken", "x", s.session, `{"op":"ping"}`, http.StatusUnauthorized},
		{"wrongSecret", tok, strings.Split(s.session, ".")[0] + ".nope", `{"op":"ping"}`, http.StatusNotFound},
		{"otherUsersStream", tok, other.session, `{"op":"ping"}`, http.StatusNotFound},
		{"goneNode", tok, "0000000000ff-1.secret", `{"op":"ping"}`, http.StatusNotFound},
		{"empty", tok, s.session, "\n\n", http.StatusBadRequest},
		{"tooMany", tok, s.session, "{}\n{}\n{}", http.StatusTooManyRequests},
		{"tooBig", tok, s.session, strings.Repeat(" ", 600) + "{}", http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &streamClient{t: t, token: tc.token, session: tc.session}
			if st := c.post(url, tc.body); st != tc.want {
				t.Errorf("status %d, want %d", st, tc.want)
			}
		})
	}
	// A bad command is answered on the stream, as on a WebSocket.
	if st := s.post(url, `{"id":5,"op":"nope"}`); st != http.StatusAccepted {
		t.Fatalf("post: %d", st)
	}
	if r := s.readType("reply"); r.ID != 5 || r.OK || r.Error.Code != "unknown_op" {
		t.Fatalf("reply = %+v", r)
	}
}

// TestHTTPStream_PostRate: a user's POSTs past 4 × Limits.Commands (burst
// CommandBurst) are refused before their body is read or relayed.
func TestHTTPStream_PostRate(t *testing.T) {
	t.Parallel()
	_, url := streamHub(t, func(o *Options) { o.Limits.Commands = 0.25; o.Limits.CommandBurst = 3 })
	s := openStream(t, url, testToken(t, "jo", time.Hour, "staff"))
	s.t = t
	var got []int
	for range 5 {
		got = append(got, s.post(url, `{"op":"ping"}`))
	}
	if fmt.Sprint(got) != "[202 202 202 429 429]" {
		t.Fatalf("statuses %v, want 3 accepted then 429", got)
	}
}

func TestHTTPStream_Disabled(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, nil)
	if _, st, _ := openStreamErr("http"+strings.TrimPrefix(url, "ws"), testToken(t, "ann", time.Hour, "staff")); st != http.StatusBadRequest {
		t.Fatalf("stream on a hub without HTTPStream: %d, want 400 (not a WebSocket handshake)", st)
	}
}

// TestHTTPStream_RelayedPost: the stream is on node A, its POSTs reach node
// B (a round-robin balancer), which relays them through the broker.
func TestHTTPStream_RelayedPost(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	peer := mb.Peer()
	ha, urlA := streamHub(t, func(o *Options) { o.Broker = mb })
	hb, urlB := streamHub(t, func(o *Options) { o.Broker = peer })
	s := openStream(t, urlA, testToken(t, "eve", time.Hour, "staff"))
	s.t = t
	s.read()
	for i := range 20 { // in order, each on the other node
		if r := s.cmd(urlB, "join", map[string]any{"room": fmt.Sprintf("device:%d", i)}); !r.OK {
			t.Fatalf("join %d through node B: %+v", i, r)
		}
	}
	if n := hb.Stats().RelayedPosts; n != 20 {
		t.Errorf("node B relayed %d POSTs, want 20", n)
	}
	if err := ha.Publish(context.Background(), "device:19", "x", 1); err != nil {
		t.Fatal(err)
	}
	if ev := s.readType("event"); ev.Room != "device:19" {
		t.Fatalf("event = %+v", ev)
	}
	// Node A gone: B answers 404, so the client reconnects.
	ha.Close()
	if st := s.post(urlB, `{"op":"ping"}`); st != http.StatusNotFound {
		t.Fatalf("post for a closed node: %d, want 404", st)
	}
}

// wrappedBroker hides the broker's optional interfaces but has Unwrap, as
// otelrthub's tracing wrapper does.
type wrappedBroker struct{ Broker }

func (w wrappedBroker) Unwrap() Broker { return w.Broker }

func TestHTTPStream_RelayThroughWrapper(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, urlA := streamHub(t, func(o *Options) { o.Broker = wrappedBroker{mb} })
	_, urlB := streamHub(t, func(o *Options) { o.Broker = wrappedBroker{mb.Peer()} })
	s := openStream(t, urlA, testToken(t, "ivy", time.Hour, "staff"))
	s.t = t
	s.read()
	if r := s.cmd(urlB, "ping", nil); !r.OK {
		t.Fatalf("ping through node B: %+v", r)
	}
}

// TestHTTPStream_SlowConsumer: a stream whose client does not read is
// closed like a WebSocket's, and its teardown frees everything.
func TestHTTPStream_SlowConsumer(t *testing.T) {
	t.Parallel()
	h, url := streamHub(t, func(o *Options) {
		o.SendQueueMessages = 8
		o.WriteTimeout = 500 * time.Millisecond
	})
	s := openStream(t, url, testToken(t, "fay", time.Hour, "staff"))
	s.t = t
	big := json.RawMessage(`"` + strings.Repeat("x", 64<<10) + `"`)
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().Connections > 0 && time.Now().Before(deadline) {
		_ = h.Publish(context.Background(), "staff", "big", big)
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.Stats().Connections; n != 0 {
		t.Fatalf("%d connections left, want the slow stream closed", n)
	}
}

func TestSplitCommands(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		want int
		err  error
	}{
		{`{"op":"ping"}`, 1, nil},
		{"{}\r\n\n  {}  \n", 2, nil},
		{"", 0, ErrBadRequest},
		{"{}\n{}\n{}\n{}\n{}", 0, ErrRateLimited},
		{strings.Repeat("x", 101), 0, ErrMessageTooBig},
	} {
		got, err := splitCommands([]byte(tc.body), 100, 4)
		if len(got) != tc.want || (tc.err == nil) != (err == nil) || tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("splitCommands(%q) = %d, %v; want %d, %v", tc.body, len(got), err, tc.want, tc.err)
		}
	}
}

func FuzzSplitCommands(f *testing.F) {
	for _, s := range []string{`{"op":"ping"}`, "{}\n{}", "\r\n", strings.Repeat("{}\n", 70)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cmds, err := splitCommands(body, 64, 8)
		if err != nil {
			return
		}
		if len(cmds) == 0 || len(cmds) > 8 {
			t.Fatalf("%d commands", len(cmds))
		}
		for _, c := range cmds {
			if len(c) == 0 || len(c) > 64 || strings.ContainsAny(string(c), "\n") {
				t.Fatalf("command %q", c)
			}
		}
	})
}

func FuzzParseSession(f *testing.F) {
	for _, s := range []string{"0123456789ab-1.c2VjcmV0", "a-1.b", "-1.x", "a-.x", "a-1.", strings.Repeat("a", 200)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		node, connID, secret, err := parseSession(s)
		if err != nil {
			return
		}
		if connID+"."+secret != s || !strings.HasPrefix(connID, node+"-") || len(s) > maxSessionLen {
			t.Fatalf("parseSession(%q) = %q %q %q", s, node, connID, secret)
		}
	})
}

func FuzzParseRelayed(f *testing.F) {
	f.Add([]byte(appendRelayed(nil, relayed{session: "ab-1.x", subject: "ann", body: []byte(`{"op":"ping"}`)})))
	f.Add([]byte("r1 3 3\nabcdef"))
	f.Add([]byte("r1 99999999 1\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		m, err := parseRelayed(msg)
		if err != nil {
			return
		}
		if again, err := parseRelayed(appendRelayed(nil, m)); err != nil || again.session != m.session ||
			again.subject != m.subject || string(again.body) != string(m.body) {
			t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
		}
	})
}

func FuzzEncodeStream(f *testing.F) {
	f.Add([]byte(`{"type":"event"}`), uint16(1000), "bye", false)
	f.Add([]byte("{\r\n}\n"), uint16(4000), "", true)
	f.Add([]byte(strings.Repeat("ab", 40000)), uint16(1001), "x", true)
	comp := newCompressor(1)
	f.Fuzz(func(t *testing.T, payload []byte, code uint16, reason string, deflate bool) {
		s := httpStream{deflate: deflate}
		c := &conn{}
		frames := [][]byte{textFrame(payload)}
		if deflate {
			p := preparedMessage{payload: payload, comp: comp}
			frames = append(frames, p.frame(true)) // compressed unless it holds line breaks
		}
		frames = append(frames, pingFrame, closeFrame(CloseCode(code), reason))
		var b bytes.Buffer
		if deflate {
			b.Write([]byte{0x78, 0x01})
		}
		for _, p := range s.encode(c, frames) {
			b.Write(p)
		}
		var r io.Reader = &b
		if deflate {
			zr, err := zlib.NewReader(&b)
			if err != nil {
				t.Fatal(err)
			}
			r = zr // no final block: it ends with io.ErrUnexpectedEOF, after the events
		}
		// Every line is a data, event or comment line, and the text frame's
		// payload comes back when its data lines are joined.
		sc := &streamClient{br: bufio.NewReader(r)}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(payload))
		for range len(frames) - 2 {
			ev, err := sc.event()
			if err != nil {
				t.Fatalf("no event: %v", err)
			}
			if ev.name != "" || ev.data != want {
				t.Fatalf("event %.60q from payload %.60q", ev.data, payload)
			}
		}
		ev, err := sc.event()
		if err != nil || ev.name != "close" || !json.Valid([]byte(ev.data)) {
			t.Fatalf("close event %+v, %v", ev, err)
		}
	})
}

// FuzzParseSince: the since parameter and Last-Event-ID header (the same
// value) never panic, stay within maxRooms, and name only valid rooms.
func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"", "e30", base64.RawURLEncoding.EncodeToString([]byte(`{"staff":{"offset":3,"epoch":"e"}}`)), "!!", "eyJhIjp7fX0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m, err := parseSince(v, 4)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("parseSince(%q): %v, not ErrBadRequest", v, err)
			}
			return
		}
		if len(m) > 4 {
			t.Fatalf("%d rooms", len(m))
		}
		for room := range m {
			if ValidRoom(room) != nil {
				t.Fatalf("room %q", room)
			}
		}
	})
}

// TestHTTPStream_Revoked: a revoked token closes its stream with 4102, and
// is refused for a new stream and for POSTs, even to a live stream of the
// same user opened with another token (the WebSocket handshake's checks
// and the stream's are one function: handshakeIdentity).
func TestHTTPStream_Revoked(t *testing.T) {
	t.Parallel()
	h, url := streamHub(t, nil)
	iat := time.Now().Add(-time.Minute)
	revoked, kept := issued(t, "mallory", iat, "m1", "staff"), issued(t, "mallory", iat, "m2", "staff")
	gone := openStream(t, url, revoked)
	gone.t = t
	gone.readType("welcome")
	live := openStream(t, url, kept)
	live.t = t
	live.readType("welcome")
	res, err := h.Revoke(t.Context(), Revocation{TokenID: "m1"})
	if err != nil || res.Connections != 1 {
		t.Fatalf("Revoke = %+v, %v; want 1 connection", res, err)
	}
	for {
		ev, err := gone.event()
		if err != nil {
			t.Fatalf("the revoked stream ended without a close event: %v", err)
		}
		if ev.name == "close" {
			if !strings.Contains(ev.data, `"code":4102`) {
				t.Fatalf("close event %s, want code 4102", ev.data)
			}
			break
		}
	}
	if _, st, _ := openStreamErr(url, revoked); st != http.StatusUnauthorized {
		t.Errorf("new stream with the revoked token: %d, want 401", st)
	}
	c := &streamClient{t: t, token: revoked, session: live.session}
	if st := c.post(url, `{"op":"ping"}`); st != http.StatusUnauthorized {
		t.Errorf("POST with the revoked token to the user's live stream: %d, want 401", st)
	}
	if st := live.post(url, `{"op":"ping"}`); st != http.StatusAccepted {
		t.Errorf("POST with the kept token: %d, want 202", st)
	}
}

// TestHTTPStream_RelayedPostRefused: commands relayed to a stream whose
// inbox is full are answered rate_limited on the stream (their POST was
// answered 202 by the node that relayed them, so the client is told
// there), and the stream goes on.
func TestHTTPStream_RelayedPostRefused(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	block := func(o *Options) {
		blockingHub(o, entered, release)
		o.HTTPStream.MaxQueuedCommands = 2
	}
	_, urlA := streamHub(t, func(o *Options) { o.Broker = mb; block(o) })
	_, urlB := streamHub(t, func(o *Options) { o.Broker = mb.Peer(); block(o) })
	s := openStream(t, urlA, testToken(t, "eve", time.Hour, "staff"))
	s.t = t
	s.read()
	// The stream's commands wait behind a handler that blocks.
	if st := s.post(urlA, `{"id":1,"op":"emit","event":"test:block","room":"staff","data":{"text":"x"}}`); st != http.StatusAccepted {
		t.Fatalf("post = %d", st)
	}
	<-entered
	// Through node B: two fill the inbox, the third does not fit.
	if st := s.post(urlB, "{\"id\":2,\"op\":\"ping\"}\n{\"id\":3,\"op\":\"ping\"}"); st != http.StatusAccepted {
		t.Fatalf("post through B = %d", st)
	}
	if st := s.post(urlB, `{"id":4,"op":"ping"}`); st != http.StatusAccepted {
		t.Fatalf("post through B = %d (B cannot know the inbox is full)", st)
	}
	// A reply that never comes fails the test instead of hanging it.
	stop := time.AfterFunc(20*time.Second, func() { s.resp.Body.Close() })
	defer stop.Stop()
	if m := s.readType("reply"); m.ID != 4 || m.OK || m.Error == nil || m.Error.Code != "rate_limited" {
		t.Fatalf("the refused relayed command's reply: %+v", m)
	}
	close(release)
	for _, id := range []uint64{1, 2, 3} {
		if m := s.readType("reply"); m.ID != id || !m.OK {
			t.Fatalf("reply %d after the release: %+v", id, m)
		}
	}
}
