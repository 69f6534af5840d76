package socketio

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub"
)

// Server serves the Engine.IO v4 and Socket.IO v5 protocols for a hub:
// socket.io-client v4 connects to it unchanged. Mount it where the clients
// look, "/socket.io/" by default:
//
//	http.Handle("/socket.io/", sio)
//
// Each Socket.IO connection drives one connection of the hub (see
// docs/socketio.md): token checks, room policy, emit authorization,
// validation, rate limits, presence and resume are the hub's. Create a
// Server with [New]; stop it with [Server.Close] after the hub's Shutdown.
// All methods are safe for concurrent use.
type Server struct {
	hub  *rthub.Hub
	opts Options
	rec  *recoveryStore // nil without Options.Recovery

	mu       sync.Mutex
	sessions map[string]*session
	live     map[string]*socket // connected sockets by pid (with recovery)
	closed   bool

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup // janitor, hub readers, WebSocket writers and readers, handshakes

	stats struct {
		handshakes, upgrades, connects, refused, recovered, overflows, packets atomic.Uint64
	}
}

// New returns a running Server for hub. It fails, with an error wrapping
// [ErrInvalidOptions], for a nil hub or a negative option.
func New(hub *rthub.Hub, opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if hub == nil {
		return nil, fmt.Errorf("%w: nil hub", ErrInvalidOptions)
	}
	s := &Server{hub: hub, opts: opts, sessions: make(map[string]*session), live: make(map[string]*socket), stop: make(chan struct{})}
	if opts.Recovery.Window > 0 {
		s.rec = newRecoveryStore(opts.Recovery.MaxSessions)
	}
	s.wg.Go(s.janitor)
	return s, nil
}

// Stats is a snapshot of a [Server]'s counters.
type Stats struct {
	Sessions   int    // Engine.IO sessions open now
	Sockets    int    // of them, with a Socket.IO connection (a hub connection)
	Polling    int    // of them, on HTTP long-polling (the others are on WebSocket)
	Handshakes uint64 // Engine.IO sessions opened
	Upgrades   uint64 // sessions upgraded from polling to WebSocket
	Connects   uint64 // Socket.IO connects the hub accepted
	Refused    uint64 // Socket.IO connects refused (connect_error)
	Recovered  uint64 // connects that recovered a session's state
	Overflows  uint64 // sessions closed because their queue overflowed
	Packets    uint64 // Engine.IO packets written to clients (polls and WebSocket messages)
	Recoveries int    // session states kept for recovery now
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := Stats{Handshakes: s.stats.handshakes.Load(), Upgrades: s.stats.upgrades.Load(),
		Connects: s.stats.connects.Load(), Refused: s.stats.refused.Load(),
		Recovered: s.stats.recovered.Load(), Overflows: s.stats.overflows.Load(), Packets: s.stats.packets.Load()}
	s.mu.Lock()
	list := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	st.Sessions = len(list)
	for _, ss := range list {
		ss.mu.Lock()
		if ss.sock != nil {
			st.Sockets++
		}
		if ss.transport == transportPolling {
			st.Polling++
		}
		ss.mu.Unlock()
	}
	if s.rec != nil {
		st.Recoveries = s.rec.len()
	}
	return st
}

// Close closes every session (their clients see the transport close and
// reconnect, to another node or later), refuses new ones with 503, and
// waits for the server's goroutines. Call it after the hub's Shutdown
// (whose drain then reaches Socket.IO clients as a transport close they
// reconnect from) and before the http.Server's. Close is idempotent and
// returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	list := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	for _, ss := range list {
		ss.close(closeServer)
	}
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
	return nil
}

// Engine.IO error codes of HTTP error responses.
const (
	eioUnknownTransport = 0
	eioUnknownSID       = 1
	eioBadMethod        = 2
	eioBadRequest       = 3
	eioForbidden        = 4
	eioBadVersion       = 5
)

var eioMessages = [...]string{"Transport unknown", "Session ID unknown", "Bad handshake method", "Bad request", "Forbidden", "Unsupported protocol version"}

func eioError(w http.ResponseWriter, status, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, eioMessages[code]})
	_, _ = w.Write(b)
}

// ServeHTTP serves Engine.IO requests: handshakes (polling or WebSocket),
// polls, posts and upgrades. Refusals are Engine.IO's HTTP errors: 400
// with {"code":N,"message":…}; 503 when the server is closed or full.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		eioError(w, http.StatusBadRequest, eioBadVersion)
		return
	}
	transport := q.Get("transport")
	if transport != "polling" && transport != "websocket" {
		eioError(w, http.StatusBadRequest, eioUnknownTransport)
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		if r.Method != http.MethodGet {
			eioError(w, http.StatusBadRequest, eioBadMethod)
			return
		}
		if transport == "websocket" {
			s.serveWebSocket(w, r, nil)
			return
		}
		ss, ok := s.newSession(r, transportPolling)
		if !ok {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "socket.io server full or closed", http.StatusServiceUnavailable)
			return
		}
		writePayload(w, [][]byte{ss.openPacket(true)}, s.opts.WriteTimeout)
		return
	}
	s.mu.Lock()
	ss := s.sessions[sid]
	s.mu.Unlock()
	if ss == nil {
		eioError(w, http.StatusBadRequest, eioUnknownSID)
		return
	}
	switch {
	case transport == "websocket":
		s.serveWebSocket(w, r, ss)
	case r.Method == http.MethodGet:
		ss.poll(w, r)
	case r.Method == http.MethodPost:
		ss.post(w, r)
	default:
		eioError(w, http.StatusBadRequest, eioBadMethod)
	}
}

// newSession registers a session for a handshake request; false when the
// server is closed or has MaxSessions sessions.
func (s *Server) newSession(r *http.Request, t transportKind) (*session, bool) {
	ss := &session{
		srv:       s,
		id:        randomID(15),
		transport: t,
		remote:    r.RemoteAddr,
		host:      r.Host,
		origin:    r.Header.Get("Origin"),
		forwarded: r.Header.Values("X-Forwarded-For"),
		userAgent: r.Header.Get("User-Agent"),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		inLock:    make(chan struct{}, 1),
	}
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	now := time.Now()
	ss.nextPing = now.Add(s.opts.PingInterval).UnixNano()
	ss.connectBy = now.Add(s.opts.ConnectTimeout).UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.sessions) >= s.opts.MaxSessions {
		ss.cancel()
		return nil, false
	}
	s.sessions[ss.id] = ss
	s.stats.handshakes.Add(1)
	return ss, true
}

// spawn runs f on a goroutine the server waits for in Close; false (f not
// run) once Close has begun, so no goroutine starts while Close waits.
func (s *Server) spawn(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Go(f)
	return true
}

func (s *Server) remove(ss *session) {
	s.mu.Lock()
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
	}
	s.mu.Unlock()
}

// janitor pings sessions, closes those whose client stopped answering or
// never connected, and forgets expired recovery states. One goroutine for
// the server; it scans the sessions every tick (at most 1 s, less for short
// intervals), so no timer exists per session.
func (s *Server) janitor() {
	tick := min(s.opts.PingInterval, s.opts.PingTimeout, s.opts.ConnectTimeout) / 4
	tick = min(max(tick, 5*time.Millisecond), time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	var list []*session
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		list = list[:0]
		s.mu.Lock()
		for _, ss := range s.sessions {
			list = append(list, ss)
		}
		s.mu.Unlock()
		for _, ss := range list {
			ss.tick(now)
		}
		clear(list)
		if s.rec != nil {
			s.rec.expire(now)
		}
	}
}

// randomID returns n random bytes in base64url (n a multiple of 3).
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// writePayload answers a poll with packets separated by 0x1e.
func (s *Server) writePayload(w http.ResponseWriter, packets [][]byte) error {
	s.stats.packets.Add(uint64(len(packets)))
	return writePayload(w, packets, s.opts.WriteTimeout)
}

func writePayload(w http.ResponseWriter, packets [][]byte, timeout time.Duration) error {
	n := 0
	for _, p := range packets {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range packets {
		if i > 0 {
			b = append(b, recordSep)
		}
		b = append(b, p...)
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout))
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", "no-store")
	_, err := w.Write(b)
	return err
}
