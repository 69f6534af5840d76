package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// retryWait: the hub's Retry-After within 1 to 30 s.
func TestRetryWait(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    string
		want time.Duration
	}{
		{"", time.Second},
		{"0", time.Second},
		{"-3", time.Second},
		{"1", time.Second},
		{"3", 3 * time.Second},
		{" 12 ", 12 * time.Second},
		{"30", 30 * time.Second},
		{"31", 30 * time.Second},
		{"99999999999999999999", time.Second}, // out of range: no usable header
		{"9223372036", 30 * time.Second},
		{"soon", time.Second},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
		{now.Add(time.Hour).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), time.Second},
	} {
		if got := retryWait(tc.h, now); got != tc.want {
			t.Errorf("retryWait(%q) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

// postRecorder records the POSTs of a client: when each was sent and
// answered, its status, Retry-After and body.
type postRecorder struct {
	mu    sync.Mutex
	posts []recordedPost
}

type recordedPost struct {
	sent, answered time.Time
	status         int
	retryAfter     string
	body           string
}

func (r *postRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost {
		return http.DefaultTransport.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	p := recordedPost{sent: time.Now(), body: string(body)}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		p.answered, p.status, p.retryAfter = time.Now(), resp.StatusCode, resp.Header.Get("Retry-After")
		r.mu.Lock()
		r.posts = append(r.posts, p)
		r.mu.Unlock()
	}
	return resp, err
}

func (r *postRecorder) list() []recordedPost {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.posts)
}

// Over the HTTP stream, a command whose POST is refused with 429 is sent
// again after the hub's Retry-After, here longer than the write timeout
// (the connection stays up), and the next command's POST waits for it.
func TestHTTPStreamRetryAfter(t *testing.T) {
	t.Parallel()
	// 4 × 1/44 = one POST every 11 s per user (burst 8): past it, 429 with
	// Retry-After: 11.
	ts := startHub(t, func(o *rthub.Options) {
		o.HTTPStream.Enabled = true
		o.Limits.Commands, o.Limits.CommandBurst = 1.0/44, 8
	})
	rec := &postRecorder{}
	states := newStateRecorder()
	token := hourToken(t, "alice", "staff")
	c := dialTest(t, ts.url, Options{Token: token, Transport: TransportHTTPStream,
		HTTPClient: &http.Client{Transport: rec}, OnState: states.record})
	// The user's other POSTs (no session: 400 once allowed) spend the
	// bucket until the hub refuses one.
	refused := false
	for i := 0; i < 20 && !refused; i++ {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http"+strings.TrimPrefix(ts.url, "ws"), strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		refused = resp.StatusCode == http.StatusTooManyRequests
	}
	if !refused {
		t.Fatal("the hub never refused a POST")
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- c.Join(ctx, "device:1") }()
	// The second command only once the first was refused.
	for deadline := time.Now().Add(testWait); len(rec.list()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first command was never POSTed")
		}
	}
	go func() { errs <- c.Join(ctx, "device:2") }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Join: %v", err)
		}
	}
	if rooms := c.Rooms(); !equalRooms(rooms, "device:1", "device:2", "staff", "user:alice") {
		t.Fatalf("rooms %v", rooms)
	}

	// The POSTs: the first command refused, sent again after its
	// Retry-After, accepted; then the second, refused and sent again alike.
	// A reply on the stream can come before its POST's 202 is recorded:
	// wait for the second accepted POST.
	accepted := func() int {
		n := 0
		for _, p := range rec.list() {
			if p.status == http.StatusAccepted {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(testWait); accepted() < 2 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	var bodies []string
	posts := rec.list()
	for i, p := range posts {
		t.Logf("POST %d: %d Retry-After %q after %v: %s", i, p.status, p.retryAfter, p.sent.Sub(posts[0].sent).Round(time.Millisecond), p.body)
		if p.status == http.StatusAccepted {
			bodies = append(bodies, p.body)
		}
		if i > 0 && p.sent.Before(posts[i-1].answered) {
			t.Errorf("POST %d sent before POST %d was answered", i, i-1)
		}
		if p.status != http.StatusTooManyRequests {
			continue
		}
		secs, err := strconv.Atoi(p.retryAfter)
		if err != nil || time.Duration(secs)*time.Second <= writeTimeout {
			t.Fatalf("POST %d: Retry-After %q: not past the write timeout %v", i, p.retryAfter, writeTimeout)
		}
		if i+1 == len(posts) {
			t.Fatalf("POST %d refused, and not sent again", i)
		}
		next := posts[i+1]
		if waited := next.sent.Sub(p.answered); waited < time.Duration(secs)*time.Second-50*time.Millisecond || waited > time.Duration(secs)*time.Second+time.Second {
			t.Errorf("POST %d sent %v after a Retry-After of %d s", i+1, waited, secs)
		}
		if next.body != p.body {
			t.Errorf("POST %d is %q, not the refused %q", i+1, next.body, p.body)
		}
	}
	if len(bodies) != 2 || !strings.Contains(bodies[0], `"device:1"`) || !strings.Contains(bodies[1], `"device:2"`) {
		t.Fatalf("accepted POSTs %q, want device:1's then device:2's", bodies)
	}
	if posts[0].status != http.StatusTooManyRequests {
		t.Fatalf("the first POST was answered %d, not 429", posts[0].status)
	}
	// One connection throughout: the waits did not end it.
	if got := states.drain(); slices.Contains(got, Reconnecting) {
		t.Fatalf("states %v: the connection ended", got)
	}
}
