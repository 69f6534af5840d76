package js_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/token"
)

// AlertAck is the payload of alert:ack, the event the node tests emit.
type AlertAck struct {
	ID   int    `json:"id"`
	Note string `json:"note,omitempty"`
}

// alertAck is handled by every test hub (handleAck). sensor:data is only
// published (Hub.Publish takes any JSON), so it needs no declaration.
var alertAck = rthub.NewEvent[AlertAck]("alert:ack")

// testPolicy is the policy of every test hub: staff join staff (auto) and
// device rooms and may emit alert:ack to staff; admins also join admin.
// staff has presence.
var testPolicy = rthub.Policy{
	Roles: map[string]rthub.RoleRules{
		"staff": {
			Join:     []string{"staff", "device:*"},
			AutoJoin: []string{"staff"},
			Emit:     []rthub.EmitRule{{Events: []string{"alert:ack", "flap:emit"}, Rooms: []string{"staff"}}},
			Call:     []string{"flap:call", "test:*"},
		},
		"admin": {
			Join:     []string{"staff", "admin", "device:*"},
			AutoJoin: []string{"staff", "admin"},
			Emit:     []rthub.EmitRule{{Events: []string{"alert:ack"}, Rooms: []string{"staff", "admin"}}},
		},
	},
	Presence: []string{"staff"},
	// device:lossy conflates by key when a connection's queue is full (and
	// sends a gap); every other room keeps the default, close.
	Overflow: []rthub.OverflowRule{{Rooms: []string{"device:lossy"}, Mode: rthub.OverflowConflate}},
}

// maxHubs bounds the hubs a test server holds at once.
const maxHubs = 64

// testServer serves any number of independent test hubs to the node tests
// on two loopback listeners: the hubs' WebSocket endpoints (/ws/{id}) on
// one, and on the other a control API the tests call to create a hub, mint
// tokens, publish, disconnect a user, drop or freeze connections and
// restart a hub (keeping or losing its history). Each node test gets its
// own hub, so tests that restart theirs do not disturb the others.
type testServer struct {
	secret []byte
	wsURL  string // http://127.0.0.1:port of the WebSocket listener
	ctlURL string

	mu     sync.Mutex
	hubs   map[string]*testHub
	nextID int

	ws, ctl *http.Server
	served  sync.WaitGroup
}

// testHub is one hub of the server, restartable: its conns are the TCP
// connections of its WebSocket handshakes.
type testHub struct {
	srv   *testServer
	cur   atomic.Pointer[rthub.Hub] // nil while restarting: handshakes get 503
	store *rthub.MemoryBroker       // never started: each hub instance gets a Peer

	mu    sync.Mutex
	conns map[*trackedConn]struct{}

	joins joinCounter // the client joins of all its instances (react_test.go)
	runs  runCounter  // the RPC and keyed-emit handler runs of all its instances (rpc.test.mjs)

	// slowPosts makes its HTTP stream POSTs few: Limits.Commands 1/12 (so
	// 4 × 1/12 = one POST every 3 s per user), CommandBurst 8; the 429s
	// then say Retry-After: 3 (fallback.test.mjs).
	slowPosts bool
}

// trackedConn is a TCP connection of the WebSocket listener. Frozen, it
// goes silent both ways (writes are swallowed, reads discarded) like a
// connection through a dead NAT: only the client's own liveness check
// can notice.
type trackedConn struct {
	net.Conn
	frozen atomic.Bool
	closed atomic.Bool

	// stalled, when set, is a channel that writes wait on until it is closed
	// (by thaw or Close): the server's writer blocks as on a peer that does
	// not read, and its send queue fills.
	stallMu sync.Mutex
	stalled chan struct{}
}

func (c *trackedConn) Close() error {
	c.closed.Store(true)
	c.thaw()
	return c.Conn.Close()
}

// stall makes writes wait until thaw; it reports whether c was not stalled.
func (c *trackedConn) stall() bool {
	c.stallMu.Lock()
	defer c.stallMu.Unlock()
	if c.stalled != nil || c.closed.Load() {
		return false
	}
	c.stalled = make(chan struct{})
	return true
}

// thaw lets waiting and later writes through.
func (c *trackedConn) thaw() {
	c.stallMu.Lock()
	defer c.stallMu.Unlock()
	if c.stalled != nil {
		close(c.stalled)
		c.stalled = nil
	}
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if c.frozen.Load() {
		return len(p), nil
	}
	c.stallMu.Lock()
	gate := c.stalled
	c.stallMu.Unlock()
	if gate != nil {
		<-gate
	}
	return c.Conn.Write(p)
}

func (c *trackedConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !c.frozen.Load() {
			return n, err
		}
	}
}

type trackingListener struct{ net.Listener }

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &trackedConn{Conn: c}, nil
}

type connKey struct{}

// startServer starts a test server; it is stopped (every hub closed) when
// the test ends.
func startServer(t *testing.T) *testServer {
	t.Helper()
	s := &testServer{secret: []byte("js-client-test-secret-0123456789abcdef"), hubs: make(map[string]*testHub)}
	wsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctlLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.wsURL = "http://" + wsLn.Addr().String()
	s.ctlURL = "http://" + ctlLn.Addr().String()
	s.ws = &http.Server{
		Handler:           http.HandlerFunc(s.serveWS),
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	s.ctl = &http.Server{Handler: s.ctlMux(), ReadHeaderTimeout: 5 * time.Second}
	s.served.Add(2)
	go func() { defer s.served.Done(); _ = s.ws.Serve(trackingListener{wsLn}) }() // owner: s; ended by Close below
	go func() { defer s.served.Done(); _ = s.ctl.Serve(ctlLn) }()                 // owner: s; ended by Close below
	t.Cleanup(func() {
		_ = s.ctl.Close()
		_ = s.ws.Close()
		s.served.Wait()
		s.mu.Lock()
		hubs := s.hubs
		s.hubs = nil
		s.mu.Unlock()
		for _, h := range hubs {
			h.close()
		}
	})
	return s
}

// newHubInstance starts a hub on h's store.
func (h *testHub) newHubInstance() (*rthub.Hub, error) {
	limits := rthub.Limits{
		Commands: 1000, CommandBurst: 1000, // the tests' fast heartbeats ping often
		HandshakesPerIP: 1000, HandshakesPerUser: 1000, HandshakeBurst: 1000,
	}
	if h.slowPosts {
		limits.Commands, limits.CommandBurst = 1.0/12, 8
	}
	return rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{
			Keys:          map[string]any{"": h.srv.secret},
			Leeway:        -1, // 4002 right at exp: the refresh tests wait less
			ExpiryWarning: 3 * time.Second,
		},
		Policy:       h.joins.policy(testPolicy),
		Handlers:     []rthub.Handler{alertAck.Handle(handleAck), h.runs.emitHandler()},
		RPCs:         h.runs.rpcHandlers(),
		Origin:       rthub.OriginOptions{Patterns: []string{"127.0.0.1:*"}},
		Limits:       limits,
		Broker:       h.store.Peer(),
		HTTPStream:   rthub.HTTPStreamOptions{Enabled: true}, // test/fallback.test.mjs
		DrainWindow:  50 * time.Millisecond,
		CloseTimeout: 500 * time.Millisecond,
	})
}

// handleAck answers alert:ack: ids must be positive; a refusal is a reply
// error the client sees.
func handleAck(_ context.Context, in rthub.Incoming[AlertAck]) error {
	if in.Data.ID <= 0 {
		return &rthub.ReplyError{Code: "bad_request", Message: "id must be positive"}
	}
	return nil
}

func (h *testHub) close() {
	if hub := h.cur.Swap(nil); hub != nil {
		_ = hub.Close()
	}
}

// restart shuts the hub down (clients see 1001), optionally replaces its
// store by a new one (the history is lost: a new epoch), starts a new hub
// instance, publishes pubs on it before it accepts a connection (events the
// clients can only get by resuming), and serves it.
func (h *testHub) restart(ctx context.Context, keepHistory bool, pubs []publication) error {
	if old := h.cur.Swap(nil); old != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := old.Shutdown(sctx)
		cancel()
		if err != nil {
			_ = old.Close()
		}
	}
	if !keepHistory {
		b, err := rthub.NewMemoryBroker(stateOptions)
		if err != nil {
			return err
		}
		h.store = b
	}
	hub, err := h.newHubInstance()
	if err != nil {
		return err
	}
	for _, p := range pubs {
		if err := hub.Publish(ctx, p.Room, p.Event, p.Data, rthub.WithKey(p.Key)); err != nil {
			_ = hub.Close()
			return err
		}
	}
	h.cur.Store(hub)
	return nil
}

type publication struct {
	Room  string          `json:"room"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	Key   string          `json:"key"` // the state key, "" for none
}

// stateOptions is every test store's broker options: staff and device rooms keep
// keyed latest state (joins with state); device:state1 keeps a history of 5 so that a
// restart past it is not recoverable.
var stateOptions = rthub.MemoryBrokerOptions{
	State:   rthub.StatePolicy{Rules: []rthub.StateRule{{Pattern: "device:*"}, {Pattern: "staff"}}},
	History: rthub.HistoryPolicy{Rules: []rthub.HistoryRule{{Pattern: "device:state1", HistoryLimits: rthub.HistoryLimits{Size: 5}}}},
}

// trackedConns returns the hub's TCP connections still open.
func (h *testHub) trackedConns() []*trackedConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*trackedConn, 0, len(h.conns))
	for c := range h.conns {
		out = append(out, c)
	}
	return out
}

func (s *testServer) hub(id string) *testHub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hubs[id]
}

// serveWS serves /ws/{id}: the handshake goes to hub id, and its TCP
// connection is tracked for /drop and /freeze.
func (s *testServer) serveWS(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/ws/")
	th := s.hub(id)
	if !ok || th == nil {
		http.Error(w, "no such hub", http.StatusNotFound)
		return
	}
	hub := th.cur.Load()
	if hub == nil {
		http.Error(w, `{"error":{"code":"shutting_down"}}`, http.StatusServiceUnavailable)
		return
	}
	if c, ok := r.Context().Value(connKey{}).(*trackedConn); ok {
		th.mu.Lock()
		for tc := range th.conns { // forget the closed ones: the set stays bounded by the open ones
			if tc.closed.Load() {
				delete(th.conns, tc)
			}
		}
		th.conns[c] = struct{}{}
		th.mu.Unlock()
	}
	hub.ServeHTTP(w, r)
}

// ctlMux is the control API (all POST, answers text or JSON):
//
//	/hub?slowposts=1             → {"id","url"}: a new hub (slowposts: see testHub.slowPosts)
//	/hub/{id}/token?sub=&roles=a,b&name=&ttl=4s&bad=1 → a JWT (bad=1: signed with another key)
//	/hub/{id}/publish            body {"room","event","data","key"} (key: the state key, optional)
//	/hub/{id}/disconnect?sub=&reason=  → DisconnectUser (4101)
//	/hub/{id}/revoke?sub=&reason=      → Revoke of sub's tokens issued until now (4102)
//	/hub/{id}/drop               → closes every TCP connection (clients see 1006)
//	/hub/{id}/freeze             → silences every connection open now
//	/hub/{id}/restart?history=keep|lose  body [publication...] published before serving
//	/hub/{id}/runs               → {"runs":{key:n},"canceled":n,"replayed":n,"joined":n} (rpc_test.go)
//	/hub/{id}/close
func (s *testServer) ctlMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hub", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.hubs == nil || len(s.hubs) >= maxHubs {
			s.mu.Unlock()
			http.Error(w, "too many hubs", http.StatusTooManyRequests)
			return
		}
		s.nextID++
		id := strconv.Itoa(s.nextID)
		store, err := rthub.NewMemoryBroker(stateOptions)
		if err != nil {
			s.mu.Unlock()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		th := &testHub{srv: s, store: store, conns: make(map[*trackedConn]struct{}), slowPosts: r.URL.Query().Get("slowposts") == "1"}
		s.hubs[id] = th
		s.mu.Unlock()
		if err := th.restart(r.Context(), true, nil); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]string{"id": id, "url": strings.Replace(s.wsURL, "http", "ws", 1) + "/ws/" + id})
	})
	with := func(fn func(w http.ResponseWriter, r *http.Request, th *testHub)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			th := s.hub(r.PathValue("id"))
			if th == nil {
				http.Error(w, "no such hub", http.StatusNotFound)
				return
			}
			fn(w, r, th)
		}
	}
	mux.HandleFunc("POST /hub/{id}/token", with(func(w http.ResponseWriter, r *http.Request, _ *testHub) {
		q := r.URL.Query()
		ttl, _ := time.ParseDuration(q.Get("ttl"))
		key := s.secret
		if q.Get("bad") == "1" {
			key = []byte("not-the-hub-secret-0123456789abcdef!")
		}
		var roles []string
		if q.Get("roles") != "" {
			roles = strings.Split(q.Get("roles"), ",")
		}
		tok, err := token.Sign(key, token.Claims{Subject: q.Get("sub"), Roles: roles, Name: q.Get("name"), TTL: ttl})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, tok)
	}))
	mux.HandleFunc("POST /hub/{id}/publish", with(func(w http.ResponseWriter, r *http.Request, th *testHub) {
		var p publication
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		hub := th.cur.Load()
		if hub == nil {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		if err := hub.Publish(r.Context(), p.Room, p.Event, p.Data, rthub.WithKey(p.Key)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	mux.HandleFunc("POST /hub/{id}/disconnect", with(func(w http.ResponseWriter, r *http.Request, th *testHub) {
		hub := th.cur.Load()
		if hub == nil {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		n, err := hub.DisconnectUser(r.Context(), r.URL.Query().Get("sub"), r.URL.Query().Get("reason"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		_, _ = fmt.Fprint(w, n)
	}))
	mux.HandleFunc("POST /hub/{id}/revoke", with(func(w http.ResponseWriter, r *http.Request, th *testHub) {
		hub := th.cur.Load()
		if hub == nil {
			http.Error(w, "restarting", http.StatusServiceUnavailable)
			return
		}
		res, err := hub.Revoke(r.Context(), rthub.Revocation{Subject: r.URL.Query().Get("sub"), Reason: r.URL.Query().Get("reason")})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = fmt.Fprint(w, res.Connections)
	}))
	mux.HandleFunc("POST /hub/{id}/drop", with(func(w http.ResponseWriter, _ *http.Request, th *testHub) {
		n := 0
		for _, c := range th.trackedConns() {
			if c.Close() == nil {
				n++
			}
		}
		_, _ = fmt.Fprint(w, n)
	}))
	mux.HandleFunc("POST /hub/{id}/freeze", with(func(w http.ResponseWriter, _ *http.Request, th *testHub) {
		n := 0
		for _, c := range th.trackedConns() {
			if !c.frozen.Swap(true) {
				n++
			}
		}
		_, _ = fmt.Fprint(w, n)
	}))
	mux.HandleFunc("POST /hub/{id}/stall", with(func(w http.ResponseWriter, _ *http.Request, th *testHub) {
		n := 0
		for _, c := range th.trackedConns() {
			if c.stall() {
				n++
			}
		}
		_, _ = fmt.Fprint(w, n)
	}))
	mux.HandleFunc("POST /hub/{id}/thaw", with(func(w http.ResponseWriter, _ *http.Request, th *testHub) {
		for _, c := range th.trackedConns() {
			c.thaw()
		}
		_, _ = io.WriteString(w, "ok")
	}))
	mux.HandleFunc("POST /hub/{id}/restart", with(func(w http.ResponseWriter, r *http.Request, th *testHub) {
		var pubs []publication
		if r.ContentLength != 0 {
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&pubs); err != nil && !errors.Is(err, io.EOF) {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		if err := th.restart(r.Context(), r.URL.Query().Get("history") != "lose", pubs); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	mux.HandleFunc("POST /hub/{id}/runs", with(func(w http.ResponseWriter, _ *http.Request, th *testHub) {
		writeJSON(w, th.runs.report(th.cur.Load()))
	}))
	mux.HandleFunc("POST /hub/{id}/close", with(func(w http.ResponseWriter, r *http.Request, th *testHub) {
		s.mu.Lock()
		delete(s.hubs, r.PathValue("id"))
		s.mu.Unlock()
		th.close()
		for _, c := range th.trackedConns() {
			_ = c.Close()
		}
		_, _ = io.WriteString(w, "ok")
	}))
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
