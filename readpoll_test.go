package rthub

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

// readModes are the read paths the tests below run on: the default (epoll on
// Linux) and the goroutine per connection.
var readModes = []struct {
	name string
	mode ReadMode
}{
	{"auto", ReadAuto},
	{"goroutine", ReadGoroutine},
}

// epollOn reports whether mode reads through the epoll path here.
func epollOn(mode ReadMode) bool { return mode == ReadAuto && runtime.GOOS == "linux" }

// readerGoroutines counts the goroutines reading a connection of any hub of
// the process: read loops and epoll readers. The tests that use it are not
// parallel, so the hubs of parallel tests are not running yet.
func readerGoroutines() int {
	buf := make([]byte, 8<<20)
	s := string(buf[:runtime.Stack(buf, true)])
	return strings.Count(s, "rthub.(*conn).readLoop(") + strings.Count(s, "rthub.(*conn).serveReady(")
}

// waitFor polls cond until it holds or 20 s pass (a failure bound: CI is
// loaded), and returns whether it held.
func waitFor(cond func() bool) bool {
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestReadPoll_IdleThenActive: idle connections have no reader goroutine on
// the epoll path (one each on the goroutine path), and each still answers a
// command when it becomes active, then goes back to none.
func TestReadPoll_IdleThenActive(t *testing.T) {
	for _, tc := range readModes {
		t.Run(tc.name, func(t *testing.T) {
			h, url := testHub(t, func(o *Options) { o.ReadMode = tc.mode })
			const n = 40
			base := readerGoroutines()
			cs := make([]*wsClient, n)
			for i := range cs {
				cs[i] = dial(t, url, testToken(t, fmt.Sprint("u", i), time.Hour, "staff"))
				cs[i].readType("welcome")
			}
			want := base + n
			if epollOn(tc.mode) {
				want = base
			}
			if !waitFor(func() bool { return readerGoroutines() == want }) {
				t.Fatalf("reader goroutines with %d idle connections: %d, want %d", n, readerGoroutines(), want)
			}
			for round := range 3 {
				for i, c := range cs {
					if r := c.cmd("join", map[string]any{"room": fmt.Sprintf("device:%d-%d", i, round)}); !r.OK {
						t.Fatalf("conn %d round %d: join refused: %+v", i, round, r.Error)
					}
				}
				if !waitFor(func() bool { return readerGoroutines() == want }) {
					t.Fatalf("round %d: reader goroutines after the commands: %d, want %d", round, readerGoroutines(), want)
				}
			}
			if got := h.Stats().Connections; got != n {
				t.Fatalf("connections: %d, want %d", got, n)
			}
		})
	}
}

// TestReadPoll_Interleaved: many connections send pipelined commands at the
// same time; every reply comes, in the order the commands were sent.
func TestReadPoll_Interleaved(t *testing.T) {
	for _, tc := range readModes {
		t.Run(tc.name, func(t *testing.T) {
			_, url := testHub(t, func(o *Options) {
				o.ReadMode = tc.mode
			})
			const conns, msgs = 20, 30
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			for i := range conns {
				c := dial(t, url, testToken(t, fmt.Sprint("u", i), time.Hour, "staff"))
				c.readType("welcome")
				wg.Go(func() {
					for k := 1; k <= msgs; k++ { // pipelined: all written before any reply is read
						b, _ := json.Marshal(map[string]any{"id": k, "op": "join", "room": fmt.Sprintf("device:%d-%d", i, k)})
						ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
						err := c.c.Write(ctx, 1, b)
						cancel()
						if err != nil {
							errs <- err
							return
						}
					}
					next := uint64(1)
					for next <= msgs {
						m, err := c.readErr(20 * time.Second)
						if err != nil {
							errs <- fmt.Errorf("conn %d: waiting for reply %d: %w", i, next, err)
							return
						}
						if m.Type != "reply" {
							continue
						}
						if m.ID != next || !m.OK {
							errs <- fmt.Errorf("conn %d: reply %d (ok %v), want %d", i, m.ID, m.OK, next)
							return
						}
						next++
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestReadPoll_HalfClose: a client that shuts its side down (FIN) after a
// command, its connection idle, is torn down by the hub.
func TestReadPoll_HalfClose(t *testing.T) {
	for _, tc := range readModes {
		t.Run(tc.name, func(t *testing.T) {
			h, url := testHub(t, func(o *Options) { o.ReadMode = tc.mode })
			rc := dialRaw(t, url, rawOpts{token: testToken(t, "half", time.Hour, "staff")})
			rc.write(maskedText(`{"id":1,"op":"join","room":"device:1"}`))
			for {
				hd, p, err := rc.readFrame(20 * time.Second)
				if err != nil {
					t.Fatalf("waiting for the reply: %v", err)
				}
				if hd.OpCode == 1 && strings.Contains(string(p), `"type":"reply"`) {
					break
				}
			}
			if err := rc.nc.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			for {
				if _, _, err := rc.readFrame(20 * time.Second); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("the hub did not close the half-closed connection")
					}
					break // the server closed TCP
				}
			}
			if !waitFor(func() bool { return h.Stats().Connections == 0 }) {
				t.Fatalf("connections after the client's FIN: %d, want 0", h.Stats().Connections)
			}
		})
	}
}

// maskedText is a masked, final text frame.
func maskedText(s string) []byte { return frameBytes(0x81, true, []byte(s)) }

// TestReadPoll_FdReuse closes and opens connections rapidly, so that the
// kernel hands the numbers of closed sockets to new ones, while a few
// long-lived connections keep working: a stale epoll registration or event
// of a closed connection would silence the connection that reuses its
// number, or read one connection from two goroutines (-race).
func TestReadPoll_FdReuse(t *testing.T) {
	for _, tc := range readModes {
		t.Run(tc.name, func(t *testing.T) {
			h, url := testHub(t, func(o *Options) {
				o.ReadMode = tc.mode
			})
			keep := make([]*wsClient, 5)
			for i := range keep {
				keep[i] = dial(t, url, testToken(t, fmt.Sprint("keep", i), time.Hour, "staff"))
				keep[i].readType("welcome")
			}
			const rounds, per = 30, 8
			for r := range rounds {
				var wg sync.WaitGroup
				for j := range per {
					wg.Go(func() {
						rc, err := dialRawErr(url, rawOpts{token: testToken(t, fmt.Sprint("churn", r, "-", j), time.Hour, "staff")})
						if err != nil {
							t.Errorf("round %d: dial: %v", r, err)
							return
						}
						defer rc.nc.Close()
						switch j % 3 {
						case 0: // abrupt close, nothing sent
						case 1: // a command, then close without reading
							rc.t = t
							rc.write(maskedText(`{"id":1,"op":"join","room":"device:x"}`))
						case 2: // reset
							_ = rc.nc.(*net.TCPConn).SetLinger(0)
						}
					})
				}
				wg.Wait()
				for i, c := range keep {
					if m := c.cmd("join", map[string]any{"room": fmt.Sprintf("device:k%d-%d", i, r)}); !m.OK {
						t.Fatalf("round %d: keeper %d: %+v", r, i, m.Error)
					}
				}
			}
			if !waitFor(func() bool { return h.Stats().Connections == len(keep) }) {
				t.Fatalf("connections: %d, want %d", h.Stats().Connections, len(keep))
			}
			fresh := dial(t, url, testToken(t, "fresh", time.Hour, "staff"))
			fresh.readType("welcome")
			if m := fresh.cmd("join", map[string]any{"room": "device:fresh"}); !m.OK {
				t.Fatalf("fresh connection: %+v", m.Error)
			}
		})
	}
}

// testBlock is the event of TestReadPoll_BlockedHandler.
var testBlock = NewEvent[chatMessage]("test:block")

// blockingHub sets up a hub whose staff may emit test:block in staff, with
// a handler that reports on entered and holds its connection's commands
// until release is closed (or the connection ends).
func blockingHub(o *Options, entered chan<- struct{}, release <-chan struct{}) {
	pol := testPolicy
	pol.Roles = map[string]RoleRules{"staff": {
		Join:     []string{"staff", "device:*"},
		AutoJoin: []string{"staff"},
		Emit:     []EmitRule{{Events: []string{"test:block"}, Rooms: []string{"staff"}}},
	}}
	o.Policy = pol
	o.Handlers = []Handler{testBlock.Handle(func(ctx context.Context, in Incoming[chatMessage]) error {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})}
}

// TestReadPoll_BlockedHandler: a handler that blocks holds up its own
// connection only.
func TestReadPoll_BlockedHandler(t *testing.T) {
	for _, tc := range readModes {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			entered := make(chan struct{}, 1)
			_, url := testHub(t, func(o *Options) {
				o.ReadMode = tc.mode
				blockingHub(o, entered, release)
			})
			a := dial(t, url, testToken(t, "a", time.Hour, "staff"))
			b := dial(t, url, testToken(t, "b", time.Hour, "staff"))
			a.readType("welcome")
			b.readType("welcome")
			a.write(map[string]any{"id": 1, "op": "emit", "event": "test:block", "room": "staff", "data": map[string]string{"text": "x"}})
			select {
			case <-entered:
			case <-time.After(20 * time.Second):
				t.Fatal("the handler was not called")
			}
			for k := range 5 {
				if m := b.cmd("join", map[string]any{"room": fmt.Sprint("device:b", k)}); !m.OK {
					t.Fatalf("b's join %d: %+v", k, m.Error)
				}
			}
			close(release)
			if m := a.readType("reply"); m.ID != 1 || !m.OK {
				t.Fatalf("a's reply after the release: %+v", m)
			}
		})
	}
}

// TestReadPoll_ServerCloses: connections parked in the epoll set end when
// the server closes them (Disconnect, the closing handshake's deadline) and
// when the hub stops; then the sets' goroutines are gone.
func TestReadPoll_ServerCloses(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tc := range readModes {
		t.Run(tc.name, func(t *testing.T) {
			h, err := New(Options{
				Auth:         AuthOptions{Keys: map[string]any{"": testSecret}},
				Policy:       testPolicy,
				Handlers:     []Handler{testChat.Relay()},
				ReadMode:     tc.mode,
				CloseTimeout: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			url := "ws" + strings.TrimPrefix(srv.URL, "http")
			// A client that never answers the close frame: the hub drops
			// it after CloseTimeout, though nothing is read from it.
			mute := dialRaw(t, url, rawOpts{token: testToken(t, "mute", time.Hour, "staff")})
			talk := dial(t, url, testToken(t, "talk", time.Hour, "staff"))
			talk.readType("welcome")
			if !waitFor(func() bool { return h.Stats().Connections == 2 }) {
				t.Fatal("not connected")
			}
			if n, err := h.DisconnectUser(context.Background(), "mute", "bye"); n != 1 || err != nil {
				t.Fatalf("DisconnectUser: %d, %v", n, err)
			}
			if !waitFor(func() bool { return h.Stats().Connections == 1 }) {
				t.Fatalf("the mute connection was not dropped after CloseTimeout: %d connections", h.Stats().Connections)
			}
			_ = mute.nc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := h.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if code := talk.closeCode(); code != int(CloseGoingAway) {
				t.Errorf("close code at Shutdown: %d, want %d", code, CloseGoingAway)
			}
			if n := strings.Count(goroutineDump(), "rthub.(*epollSet).run("); n != 0 {
				t.Errorf("%d epoll set goroutines after Shutdown", n)
			}
		})
	}
}

func goroutineDump() string {
	buf := make([]byte, 8<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// TestReadPoll_CloseDropsParked: Close drops connections parked in the epoll
// set at once.
func TestReadPoll_CloseDropsParked(t *testing.T) {
	for _, tc := range readModes {
		t.Run(tc.name, func(t *testing.T) {
			h, url := testHub(t, func(o *Options) { o.ReadMode = tc.mode })
			cs := make([]*wsClient, 10)
			for i := range cs {
				cs[i] = dial(t, url, testToken(t, fmt.Sprint("u", i), time.Hour, "staff"))
				cs[i].readType("welcome")
			}
			done := make(chan struct{})
			go func() {
				h.Close()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Close did not return")
			}
			for i, c := range cs {
				if _, err := c.readErr(20 * time.Second); err == nil {
					t.Errorf("conn %d: still open after Close", i)
				}
			}
		})
	}
}

// TestReadMode_Validate: an unknown mode is refused by New.
func TestReadMode_Validate(t *testing.T) {
	_, err := New(Options{Auth: AuthOptions{Keys: map[string]any{"": testSecret}}, Policy: testPolicy, ReadMode: 7})
	if err == nil || !strings.Contains(err.Error(), "ReadMode") {
		t.Fatalf("New with ReadMode 7: %v", err)
	}
	for _, m := range []ReadMode{ReadAuto, ReadGoroutine, 7} {
		if m.String() == "" {
			t.Errorf("ReadMode(%d) has no name", m)
		}
	}
}

// TestReadPoll_CloseDuringSetup: a connection closed before its reader
// started (here by OnConnect) still finishes its closing handshake and is
// torn down once: the close found no reader to wake, so startReading wakes
// one.
func TestReadPoll_CloseDuringSetup(t *testing.T) {
	for _, tc := range readModes {
		t.Run(tc.name, func(t *testing.T) {
			var hp atomic.Pointer[Hub]
			h, url := testHub(t, func(o *Options) {
				o.ReadMode = tc.mode
				o.CloseTimeout = 300 * time.Millisecond
				o.OnConnect = func(ctx context.Context, c ConnInfo) {
					if c.Identity.Subject != "kicked" {
						return
					}
					_, _ = hp.Load().DisconnectUser(ctx, "kicked", "not today")
					time.Sleep(50 * time.Millisecond) // let a flush worker write the close frame first
				}
			})
			hp.Store(h)
			for i := range 5 {
				// A client that answers the close (coder/websocket) and one
				// that never does (raw).
				c := dial(t, url, testToken(t, "kicked", time.Hour, "staff"))
				if code := c.closeCode(); code != int(CloseDisconnected) {
					t.Fatalf("round %d: close code %d, want %d", i, code, CloseDisconnected)
				}
				dialRaw(t, url, rawOpts{token: testToken(t, "kicked", time.Hour, "staff")})
			}
			if !waitFor(func() bool { return h.Stats().Connections == 0 }) {
				t.Fatalf("connections: %d, want 0", h.Stats().Connections)
			}
		})
	}
}

// TestReadPoll_TLSFallsBack: a TLS connection (terminated by the
// http.Server: no raw socket to poll) is read by a goroutine of its own
// with the default ReadAuto, and works.
func TestReadPoll_TLSFallsBack(t *testing.T) {
	h, err := New(Options{
		Auth:     AuthOptions{Keys: map[string]any{"": testSecret}},
		Policy:   testPolicy,
		Handlers: []Handler{testChat.Relay()},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	defer h.Close()
	base := readerGoroutines()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(srv.URL, "https"), &websocket.DialOptions{
		HTTPClient:   srv.Client(),
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + testToken(t, "tls", time.Hour, "staff")}},
		Subprotocols: []string{Subprotocol},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	wc := &wsClient{t: t, c: c}
	wc.readType("welcome")
	if m := wc.cmd("join", map[string]any{"room": "device:tls"}); !m.OK {
		t.Fatalf("join over TLS: %+v", m.Error)
	}
	if !waitFor(func() bool { return readerGoroutines() == base+1 }) {
		t.Fatalf("reader goroutines: %d, want %d (one read loop for the TLS connection)", readerGoroutines(), base+1)
	}
}
