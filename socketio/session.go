package socketio

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// transportKind is a session's current transport.
type transportKind uint8

const (
	transportPolling transportKind = iota
	transportWebSocket
)

// closeReason says why a session ended; it decides whether its state is
// kept for recovery (only when the client may come back for it).
type closeReason uint8

const (
	closeTransport  closeReason = iota // the transport failed or closed: recoverable
	closePingTimout                    // the client stopped answering: recoverable
	closeOverflow                      // the outbound queue overflowed: recoverable
	closeHub                           // the hub closed the connection with a reconnect code: recoverable
	closeClient                        // the client closed the session or disconnected
	closeProtocol                      // the client broke the protocol
	closeServer                        // Server.Close
	closeTimeout                       // no Socket.IO connect within ConnectTimeout
)

func (r closeReason) recoverable() bool { return r <= closeHub }

// session is one Engine.IO session: its outbound queue (drained by the
// client's polls, or by the WebSocket writer after an upgrade), its
// heartbeat, and its Socket.IO connection on namespace "/" (sock).
type session struct {
	srv *Server
	id  string
	// From the handshake request, for the hub handshake of a connect
	// (origin may be set by a later POST: under mu).
	remote, host, origin, userAgent string
	forwarded                       []string

	mu        sync.Mutex
	out       [][]byte // queued Engine.IO packets, oldest first
	outBytes  int
	closed    bool
	draining  bool        // close once the queue is written (after the hub closed the connection)
	drainWhy  closeReason // the reason to close with then
	transport transportKind
	upgrading bool     // a WebSocket probe succeeded; polls answer noop until the upgrade
	polling   bool     // a poll is waiting
	ws        net.Conn // the WebSocket after an upgrade (or from the start)
	pong      []byte   // a WebSocket ping's payload to answer (the writer does)
	pingSent  int64    // unix ns of the unanswered ping; 0 when none
	nextPing  int64    // unix ns
	connectBy int64    // unix ns by which a Socket.IO connect must succeed; 0 when connected
	sock      *socket  // the Socket.IO connection; nil before connect and after disconnect
	reason    closeReason

	ctx    context.Context // cancelled when the session closes: bounds the WebSocket reader's calls
	cancel context.CancelFunc
	wake   chan struct{} // cap 1: packets were queued, or the session closed
	done   chan struct{} // closed when the session closes
	// inLock serializes the client's inbound packets (POSTs, the WebSocket
	// reader): cap 1, taken with lockIn, which gives up when the request's
	// context ends or the session closes. It is held while a packet's
	// command is written to the hub (bounded by WriteTimeout) or a connect
	// is made (HandshakeTimeout), never while waiting on the client.
	inLock chan struct{}
}

// openPacket is the Engine.IO handshake: 0{"sid":…,"upgrades":…,…}.
func (ss *session) openPacket(upgrades bool) []byte {
	o := ss.srv.opts
	up := []string{}
	if upgrades {
		up = []string{"websocket"}
	}
	b, _ := json.Marshal(struct {
		SID          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int64    `json:"pingInterval"`
		PingTimeout  int64    `json:"pingTimeout"`
		MaxPayload   int      `json:"maxPayload"`
	}{ss.id, up, o.PingInterval.Milliseconds(), o.PingTimeout.Milliseconds(), o.MaxPayload})
	return append([]byte{eioOpen}, b...)
}

// enqueue queues packets for the client. It never blocks: a session whose
// queue would overflow is closed (its client reconnects) and enqueue
// returns false, as it does once the session is closed.
func (ss *session) enqueue(packets ...[]byte) bool {
	n := 0
	for _, p := range packets {
		n += len(p)
	}
	o := ss.srv.opts
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return false
	}
	if len(ss.out)+len(packets) > o.QueuePackets || ss.outBytes+n > o.QueueBytes {
		ss.mu.Unlock()
		ss.srv.stats.overflows.Add(1)
		ss.srv.opts.Logger.Debug("socketio: session queue overflow", slog.String("sid", ss.id))
		ss.close(closeOverflow)
		return false
	}
	ss.out = append(ss.out, packets...)
	ss.outBytes += n
	ss.mu.Unlock()
	ss.kick()
	return true
}

func (ss *session) kick() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

// take empties the queue.
func (ss *session) take() [][]byte {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := ss.out
	ss.out, ss.outBytes = nil, 0
	return out
}

// close ends the session once: its transport, its hub connection, its
// place in the server. The Socket.IO state is kept for recovery when
// reason says the client may come back for it.
func (ss *session) close(reason closeReason) {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	ss.closed = true
	ss.reason = reason
	sock, ws := ss.sock, ss.ws
	ss.sock = nil
	ss.mu.Unlock()
	close(ss.done)
	ss.cancel()
	ss.srv.remove(ss)
	if ws != nil {
		_ = ws.Close()
	}
	if sock != nil {
		sock.close(reason.recoverable())
	}
}

// drainWith closes the session with reason once its queue has been
// written.
func (ss *session) drainWith(reason closeReason) {
	ss.mu.Lock()
	ss.draining, ss.drainWhy = true, reason
	ss.mu.Unlock()
	ss.kick()
}

func (ss *session) isDrained() bool {
	d, _ := ss.drained()
	return d
}

// drained reports whether the session is draining and its queue is empty,
// and the reason to close it with.
func (ss *session) drained() (bool, closeReason) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.draining && len(ss.out) == 0, ss.drainWhy
}

// tick runs the session's timers (from the server's janitor).
func (ss *session) tick(now time.Time) {
	o := ss.srv.opts
	ns := now.UnixNano()
	ss.mu.Lock()
	var reason closeReason
	expired, ping := false, false
	switch {
	case ss.connectBy != 0 && ns > ss.connectBy:
		expired, reason = true, closeTimeout
	case ss.pingSent != 0 && ns-ss.pingSent > int64(o.PingTimeout):
		expired, reason = true, closePingTimout
	case ss.pingSent == 0 && ns >= ss.nextPing:
		ss.pingSent = ns
		ping = true
	}
	ss.mu.Unlock()
	if expired {
		ss.close(reason)
		return
	}
	if ping {
		ss.enqueue([]byte{eioPing})
	}
}

// lockIn takes the inbound lock, or gives up when ctx ends or the session
// closes.
func (ss *session) lockIn(ctx context.Context) bool {
	select {
	case ss.inLock <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	case <-ss.done:
		return false
	}
}

func (ss *session) unlockIn() { <-ss.inLock }

// poll answers a polling GET with the queued packets, waiting up to
// PollTimeout for some.
func (ss *session) poll(w http.ResponseWriter, r *http.Request) {
	ss.mu.Lock()
	if ss.transport != transportPolling || ss.closed {
		ss.mu.Unlock()
		eioError(w, http.StatusBadRequest, eioBadRequest)
		return
	}
	if ss.polling { // two polls at once: Engine.IO closes the session
		ss.mu.Unlock()
		eioError(w, http.StatusBadRequest, eioBadRequest)
		ss.close(closeProtocol)
		return
	}
	ss.polling = true
	ss.mu.Unlock()
	defer func() {
		ss.mu.Lock()
		ss.polling = false
		ss.mu.Unlock()
	}()
	t := time.NewTimer(ss.srv.opts.PollTimeout)
	defer t.Stop()
	for {
		ss.mu.Lock()
		n, closed, upgrading := len(ss.out), ss.closed, ss.upgrading
		upgraded := ss.transport != transportPolling
		ss.mu.Unlock()
		switch {
		case upgraded: // the packets are the WebSocket's now
			_ = writePayload(w, [][]byte{{eioNoop}}, ss.srv.opts.WriteTimeout)
			return
		case n > 0:
			// A draining session's close goes in the next poll, not after
			// these packets: socket.io-client dispatches a payload's
			// packets a microtask later, and a close in the same payload
			// would overtake them.
			_ = ss.srv.writePayload(w, ss.take())
			return
		case closed:
			_ = writePayload(w, [][]byte{{eioClose}}, ss.srv.opts.WriteTimeout)
			return
		case ss.isDrained():
			_, why := ss.drained()
			ss.close(why)
			_ = writePayload(w, [][]byte{{eioClose}}, ss.srv.opts.WriteTimeout)
			return
		case upgrading:
			_ = writePayload(w, [][]byte{{eioNoop}}, ss.srv.opts.WriteTimeout)
			return
		}
		select {
		case <-ss.wake:
		case <-ss.done:
		case <-t.C:
			_ = writePayload(w, [][]byte{{eioNoop}}, ss.srv.opts.WriteTimeout)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// post handles a polling POST: a payload of packets from the client.
func (ss *session) post(w http.ResponseWriter, r *http.Request) {
	max := ss.srv.opts.MaxPayload
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
	if err != nil {
		eioError(w, http.StatusBadRequest, eioBadRequest)
		return
	}
	if len(body) > max {
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		ss.close(closeProtocol)
		return
	}
	packets, err := splitPayload(body)
	if err != nil {
		eioError(w, http.StatusBadRequest, eioBadRequest)
		ss.close(closeProtocol)
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		// Browsers send no Origin on a same-origin GET (the handshake) but
		// do on a POST: the hub's origin check gets it.
		ss.mu.Lock()
		if ss.origin == "" {
			ss.origin = o
		}
		ss.mu.Unlock()
	}
	if !ss.lockIn(r.Context()) {
		eioError(w, http.StatusBadRequest, eioUnknownSID)
		return
	}
	for _, p := range packets {
		if !ss.handlePacket(r.Context(), p, false) {
			break
		}
	}
	ss.unlockIn()
	w.Header().Set("Content-Type", "text/html")
	_, _ = io.WriteString(w, "ok")
}

// handlePacket handles one Engine.IO packet from the client (binary: a
// WebSocket binary message). The caller holds the inbound lock. It returns
// false once the session is closed.
func (ss *session) handlePacket(ctx context.Context, p []byte, binary bool) bool {
	if binary || p[0] == 'b' {
		return true // a binary attachment: refused with its packet (see handleSIO)
	}
	switch p[0] {
	case eioPong:
		ss.mu.Lock()
		ss.pingSent = 0
		ss.nextPing = time.Now().Add(ss.srv.opts.PingInterval).UnixNano()
		ss.mu.Unlock()
	case eioPing: // v4 clients ping only to probe; answer anyway
		ss.enqueue(append([]byte{eioPong}, p[1:]...))
	case eioMessage:
		return ss.handleSIO(ctx, p[1:])
	case eioClose:
		// Recoverable, as in Socket.IO: a client that means to leave sends
		// DISCONNECT (41) first; engine.io-client also sends close when its
		// polling transport fails.
		ss.close(closeTransport)
		return false
	case eioNoop:
	default:
		ss.close(closeProtocol)
		return false
	}
	return true
}

// handleSIO handles one Socket.IO packet from the client.
func (ss *session) handleSIO(ctx context.Context, b []byte) bool {
	p, err := parseSIO(b)
	if err != nil {
		ss.srv.opts.Logger.Debug("socketio: malformed packet", slog.String("sid", ss.id))
		ss.close(closeProtocol)
		return false
	}
	if p.nsp != "/" {
		if p.typ == sioConnect {
			ss.enqueue(connectErrorPacket(p.nsp, "Invalid namespace", nil))
		}
		return true
	}
	ss.mu.Lock()
	sock := ss.sock
	ss.mu.Unlock()
	switch p.typ {
	case sioConnect:
		if sock == nil {
			ss.connect(ctx, p.data)
		}
	case sioDisconnect:
		if sock != nil {
			ss.mu.Lock()
			if ss.sock == sock {
				ss.sock = nil
				ss.connectBy = time.Now().Add(ss.srv.opts.ConnectTimeout).UnixNano()
			}
			ss.mu.Unlock()
			sock.close(false)
		}
	case sioEvent:
		if sock != nil {
			sock.event(ctx, p.id, p.data)
		}
	case sioBinaryEvent:
		if sock != nil && p.id >= 0 {
			ss.enqueue(appendAck(nil, p.id, errorAck("bad_request", "binary attachments are not supported")))
		}
	case sioAck, sioBinaryAck:
		// The server never asks for acknowledgements.
	}
	return true
}

// errorAck is an acknowledgement's argument for a refused event:
// {"ok":false,"error":{"code":…,"message":…}}, the shape of a hub reply.
func errorAck(code, message string) []byte {
	b, _ := json.Marshal(struct {
		OK    bool     `json:"ok"`
		Error ackError `json:"error"`
	}{false, ackError{code, message}})
	return b
}

type ackError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
