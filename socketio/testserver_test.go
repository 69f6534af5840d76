package socketio_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/socketio"
	"github.com/org/rthub/token"
)

// AlertAck is the payload of alert:ack, the event clients emit.
type AlertAck struct {
	ID   int    `json:"id"`
	Note string `json:"note,omitempty"`
}

var alertAck = rthub.NewEvent[AlertAck]("alert:ack")

// SumReq and SumResp are math:sum's request and result.
type SumReq struct{ A, B int }
type SumResp struct{ Sum int }

// mathSum is an RPC staff may call: Socket.IO acks map to its results.
var mathSum = rthub.NewRPC[SumReq, SumResp]("math:sum")

// testPolicy: staff auto-join staff and may join device rooms and emit
// alert:ack to staff; admin is for admins only. staff has presence.
var testPolicy = rthub.Policy{
	Roles: map[string]rthub.RoleRules{
		"staff": {
			Join:     []string{"staff", "device:*"},
			AutoJoin: []string{"staff"},
			Emit:     []rthub.EmitRule{{Events: []string{"alert:ack"}, Rooms: []string{"staff"}}},
			Call:     []string{"math:sum"},
		},
		"admin": {
			Join:     []string{"staff", "admin", "device:*"},
			AutoJoin: []string{"staff", "admin"},
			Emit:     []rthub.EmitRule{{Events: []string{"alert:ack"}, Rooms: []string{"staff", "admin"}}},
		},
	},
	Presence: []string{"staff"},
}

// testServer is a hub and its Socket.IO server on one loopback listener
// (/socket.io/), with a control API under /ctl/ for the scripts: tokens,
// publishing, dropping every TCP connection (a network failure).
type testServer struct {
	t      testing.TB
	secret []byte
	hub    *rthub.Hub
	sio    *socketio.Server
	http   *httptest.Server
	mux    *http.ServeMux
	URL    string

	mu    sync.Mutex
	conns map[net.Conn]bool
	down  atomic.Bool // /socket.io/ answers 503: the outage lasts until /ctl/up
}

func newTestServer(t testing.TB, opts socketio.Options, hubOpts func(*rthub.Options)) *testServer {
	t.Helper()
	ts := &testServer{t: t, secret: []byte("socketio-test-secret-0123456789abcdef"), conns: make(map[net.Conn]bool)}
	ho := rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": ts.secret}},
		Policy: testPolicy,
		Handlers: []rthub.Handler{alertAck.Handle(func(ctx context.Context, in rthub.Incoming[AlertAck]) error {
			if in.Data.ID <= 0 {
				return &rthub.ReplyError{Code: "bad_payload", Message: "id must be positive"}
			}
			return alertAck.Publish(ctx, in.Hub(), in.Room, in.Data)
		})},
		RPCs: []rthub.RPCHandler{mathSum.Handle(func(_ context.Context, req rthub.Request[SumReq]) (SumResp, error) {
			if req.Data.A < 0 {
				return SumResp{}, &rthub.ReplyError{Code: "bad_payload", Message: "a must not be negative"}
			}
			return SumResp{Sum: req.Data.A + req.Data.B}, nil
		})},
		// The test clients reconnect often, all from 127.0.0.1.
		Limits: rthub.Limits{HandshakesPerUser: 1000, HandshakeBurst: 1000},
	}
	if hubOpts != nil {
		hubOpts(&ho)
	}
	hub, err := rthub.New(ho)
	if err != nil {
		t.Fatal(err)
	}
	ts.hub = hub
	sio, err := socketio.New(hub, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.sio = sio
	mux := http.NewServeMux()
	ts.mux = mux
	mux.HandleFunc("/socket.io/", func(w http.ResponseWriter, r *http.Request) {
		if ts.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		sio.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /ctl/up", func(http.ResponseWriter, *http.Request) { ts.down.Store(false) })
	mux.HandleFunc("GET /ctl/token", ts.token)
	mux.HandleFunc("POST /ctl/publish", ts.publish)
	mux.HandleFunc("POST /ctl/drop", ts.drop)
	mux.HandleFunc("POST /ctl/disconnect", ts.disconnect)
	mux.HandleFunc("GET /ctl/stats", ts.stats)
	ts.http = httptest.NewUnstartedServer(mux)
	ts.http.Config.ConnState = func(c net.Conn, s http.ConnState) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		switch s {
		case http.StateNew:
			ts.conns[c] = true
		case http.StateClosed, http.StateHijacked:
			if s == http.StateClosed {
				delete(ts.conns, c)
			}
		}
	}
	ts.http.Start()
	ts.URL = ts.http.URL
	t.Cleanup(ts.close)
	return ts
}

func (ts *testServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.hub.Shutdown(ctx); err != nil {
		ts.t.Errorf("hub shutdown: %v", err)
	}
	_ = ts.sio.Close()
	ts.dropAll()
	ts.http.Close()
}

func (ts *testServer) dropAll() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	n := 0
	for c := range ts.conns {
		_ = c.Close()
		delete(ts.conns, c)
		n++
	}
	return n
}

// mint returns a token for sub with roles (comma-separated), valid for ttl
// (negative: expired).
func (ts *testServer) mint(sub, roles string, ttl time.Duration) string {
	tok, err := token.Sign(ts.secret, token.Claims{Subject: sub, Roles: strings.Split(roles, ","), Name: sub, TTL: ttl})
	if err != nil {
		ts.t.Fatal(err)
	}
	return tok
}

func (ts *testServer) token(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ttl := time.Hour
	if q.Get("expired") != "" {
		ttl = -time.Minute
	}
	if ms, err := strconv.Atoi(q.Get("ttl_ms")); err == nil {
		ttl = time.Duration(ms) * time.Millisecond
	}
	roles := q.Get("roles")
	if roles == "" {
		roles = "staff"
	}
	_, _ = w.Write([]byte(ts.mint(q.Get("sub"), roles, ttl)))
}

func (ts *testServer) publish(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Room  string          `json:"room"`
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := ts.hub.Publish(r.Context(), p.Room, p.Event, p.Data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// drop closes every TCP connection of the listener but the caller's: the
// clients' WebSockets and polls fail as in a network outage. With ?hold=1
// the outage lasts (new requests are refused) until /ctl/up.
func (ts *testServer) drop(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("hold") != "" {
		ts.down.Store(true)
	}
	ts.mu.Lock()
	n := 0
	for c := range ts.conns {
		if c.RemoteAddr().String() == r.RemoteAddr {
			continue
		}
		_ = c.Close()
		delete(ts.conns, c)
		n++
	}
	ts.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]int{"dropped": n})
}

func (ts *testServer) disconnect(w http.ResponseWriter, r *http.Request) {
	n, err := ts.hub.DisconnectUser(r.Context(), r.URL.Query().Get("sub"), "test")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]int{"closed": n})
}

func (ts *testServer) stats(w http.ResponseWriter, r *http.Request) {
	st := ts.hub.Stats()
	_ = json.NewEncoder(w).Encode(map[string]any{"hub": map[string]any{"connections": st.Connections, "accepted": st.Accepted}, "sio": ts.sio.Stats(), "rooms": ts.hub.Rooms()})
}

// serve adds a handler (before the first request).
func (ts *testServer) serve(pattern string, h http.Handler) { ts.mux.Handle(pattern, h) }
