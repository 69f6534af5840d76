package client

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
)

// testSecret is the HMAC key of the test hubs.
var testSecret = []byte("rthub-test-secret-0123456789abcdef")

// testPolicy is the example policy of the rthub tests: staff and admin.
var testPolicy = rthub.Policy{
	Roles: map[string]rthub.RoleRules{
		"staff": {
			Join:     []string{"staff", "device:*"},
			AutoJoin: []string{"staff", "user:{sub}"},
			Emit:     []rthub.EmitRule{{Events: []string{"chat:message"}, Rooms: []string{"staff"}}},
		},
		"admin": {
			Join:     []string{"staff", "admin", "device:**"},
			AutoJoin: []string{"staff", "admin", "user:{sub}"},
			Emit:     []rthub.EmitRule{{Events: []string{"chat:message"}, Rooms: []string{"staff", "admin"}}},
		},
	},
}

type chatMessage struct {
	Text string `json:"text"`
}

var testChat = rthub.NewEvent[chatMessage]("chat:message")

// fastBackoff keeps reconnection tests quick.
var fastBackoff = Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}

// testServer is a hub behind an httptest server on a fixed address, which
// restart can bring back after the hub was killed.
type testServer struct {
	t    testing.TB
	mod  func(*rthub.Options)
	addr string
	url  string

	mu   sync.Mutex
	hub  *rthub.Hub
	srv  *httptest.Server
	down bool
}

// startHub starts a hub with the test policy and the chat relay; mod may
// change its options. The server is stopped at the end of the test.
func startHub(t testing.TB, mod func(*rthub.Options)) *testServer {
	t.Helper()
	ts := &testServer{t: t, mod: mod}
	ts.serve("127.0.0.1:0")
	ts.url = "ws://" + ts.addr + "/ws"
	t.Cleanup(ts.kill)
	return ts
}

func (ts *testServer) serve(addr string) {
	ts.t.Helper()
	opts := rthub.Options{
		Auth:     rthub.AuthOptions{Keys: map[string]any{"": testSecret}},
		Policy:   testPolicy,
		Handlers: []rthub.Handler{testChat.Relay()},
	}
	if ts.mod != nil {
		ts.mod(&opts)
	}
	h, err := rthub.New(opts)
	if err != nil {
		ts.t.Fatalf("rthub.New: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		h.Close()
		ts.t.Fatalf("listen %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	ts.mu.Lock()
	ts.hub, ts.srv, ts.addr, ts.down = h, srv, ln.Addr().String(), false
	ts.mu.Unlock()
}

// Hub returns the running hub.
func (ts *testServer) Hub() *rthub.Hub {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.hub
}

// kill drops every connection (clients see 1006) and stops listening.
func (ts *testServer) kill() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.down {
		return
	}
	ts.down = true
	ts.hub.Close()
	ts.srv.Close()
}

// restart serves a new hub on the same address.
func (ts *testServer) restart() {
	ts.t.Helper()
	ts.kill()
	ts.serve(ts.addr)
}

// testToken signs an HS256 token for sub with roles, expiring at exp (none if zero).
func testToken(t testing.TB, sub string, exp time.Time, roles ...string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "roles": roles}
	if !exp.IsZero() {
		claims["exp"] = exp.Unix()
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hourToken(t testing.TB, sub string, roles ...string) string {
	return testToken(t, sub, time.Now().Add(time.Hour), roles...)
}

// dialTest dials with a 10 s limit and closes the client at the end of the test.
func dialTest(t testing.TB, url string, opts Options) *Client {
	t.Helper()
	c, err := dialTestErr(t, url, opts, nil)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return c
}

func dialTestErr(t testing.TB, url string, opts Options, setup func(*Client)) (*Client, error) {
	t.Helper()
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = fastBackoff
	}
	ctx, cancel := context.WithTimeout(t.Context(), testWait)
	defer cancel()
	c, err := dial(ctx, url, opts, setup)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// stateChange is one call of Options.OnState.
type stateChange struct {
	s   State
	err error
}

// stateRecorder collects state changes for Options.OnState.
type stateRecorder struct {
	ch chan stateChange
}

func newStateRecorder() *stateRecorder { return &stateRecorder{ch: make(chan stateChange, 1000)} }

func (r *stateRecorder) record(s State, err error) {
	select {
	case r.ch <- stateChange{s, err}:
	default:
		panic("stateRecorder full")
	}
}

// wait returns the next change to want, failing on timeout or on Closed
// when it waits for something else.
func (r *stateRecorder) wait(t testing.TB, want State) stateChange {
	t.Helper()
	timeout := time.After(testWait)
	for {
		select {
		case sc := <-r.ch:
			if sc.s == want {
				return sc
			}
			if sc.s == Closed {
				t.Fatalf("waiting for %v: client closed: %v", want, sc.err)
			}
		case <-timeout:
			t.Fatalf("no %v state in %v", want, testWait)
		}
	}
}

// drain returns the changes recorded so far.
func (r *stateRecorder) drain() []State {
	var out []State
	for {
		select {
		case sc := <-r.ch:
			out = append(out, sc.s)
		default:
			return out
		}
	}
}

// testWait bounds every wait of these tests. It is a failure bound, not a
// timing assertion: generous, because CI runs every package's tests at once
// under the race detector on two cores.
const testWait = 30 * time.Second

// within fails the test unless ch yields a value within testWait.
func within[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testWait):
		t.Fatalf("timeout waiting for %s", what)
		panic("unreachable")
	}
}

// waitDone waits up to testWait for the client to stop.
func waitDone(t testing.TB, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(testWait):
		t.Fatal("client did not stop in time")
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for captured logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func bufferLogger() (*slog.Logger, *syncBuffer) {
	b := &syncBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func errorIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("err = %v, want errors.Is %v", err, target)
	}
}

func equalRooms(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}
