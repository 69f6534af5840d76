package rthub

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file holds the HTTP stream transport (docs/protocol.md §6), the
// fallback for clients whose WebSocket does not get through: server messages
// go down one long GET response as Server-Sent Events, commands go up as
// POSTs. A stream connection is a conn like any other (same queue, rooms,
// policy, overflow, resume); only its write side differs: the frames queued
// to it are WebSocket frames, which encode turns into events as they are
// written, so nothing on the way from a publish to the queue knows about the
// transport.

// HTTPStreamOptions configures the HTTP stream transport, served by
// [Hub.ServeHTTP] on the same URL as WebSocket connections.
//
// POSTs are limited per user and node to 4 × Limits.Commands per second
// (burst Limits.CommandBurst), checked after the token and before anything
// else (reading the body, relaying): past it a POST is refused with 429 and
// the code rate_limited. Each command is then limited on its connection, as
// a WebSocket's.
type HTTPStreamOptions struct {
	// Enabled makes ServeHTTP answer a GET that asks for text/event-stream
	// (and is no WebSocket upgrade) with a stream, and a POST with the
	// commands of a stream (docs/protocol.md §6), and the CORS preflights
	// (OPTIONS) of pages on other origins that Options.Origin allows (§6.2):
	// a router in front of the hub must pass it all three methods. Default
	// off: the hub serves WebSocket only.
	Enabled bool
	// MaxQueuedCommands bounds the commands of one stream connection waiting
	// to be handled (they are handled one at a time, in order, like a
	// WebSocket connection's); a POST that does not fit is refused with 429
	// and the code rate_limited. It also bounds the commands of one POST.
	// Default 64.
	MaxQueuedCommands int
	// MaxPostBytes bounds a POST's body; larger ones are refused with 413.
	// Default 4 × Options.MaxMessageSize, at most [MaxRelayBytes] - 8192.
	MaxPostBytes int64
}

func (o *HTTPStreamOptions) setDefaults(maxMessage int64) error {
	var errs []error
	if o.MaxQueuedCommands == 0 {
		o.MaxQueuedCommands = 64
	} else if o.MaxQueuedCommands < 0 {
		errs = append(errs, errors.New("rthub: HTTPStream.MaxQueuedCommands is negative"))
	}
	if o.MaxPostBytes == 0 {
		o.MaxPostBytes = min(4*maxMessage, MaxRelayBytes-8192)
	} else if o.MaxPostBytes < 0 || o.MaxPostBytes > MaxRelayBytes-8192 {
		errs = append(errs, fmt.Errorf("rthub: HTTPStream.MaxPostBytes %d outside 1..%d", o.MaxPostBytes, MaxRelayBytes-8192))
	}
	return errors.Join(errs...)
}

// httpStream is the state of a stream connection (conn.hs; nil for
// WebSocket connections). inbox and running are guarded by the conn's mu.
type httpStream struct {
	secret  string   // the session's secret part
	inbox   [][]byte // commands waiting for the runner, bounded by MaxQueuedCommands
	running bool     // a runner goroutine drains inbox
	out     net.Buffers
	// deflate: the response is Content-Encoding: deflate (a zlib stream):
	// events of compressed frames go out as their shared compressed bytes,
	// everything else in stored (uncompressed) deflate blocks.
	deflate bool
}

// SessionHeader is the request header carrying a stream's session in the
// POSTs of its commands (docs/protocol.md §6).
const SessionHeader = "Rthub-Session"

// maxSessionLen bounds a session: a connection ID (node, "-", sequence),
// ".", and the secret.
const maxSessionLen = 128

// isStreamRequest reports whether r is for the HTTP stream transport: a POST,
// or a GET that asks for text/event-stream and is no WebSocket upgrade.
func isStreamRequest(r *http.Request) bool {
	switch r.Method {
	case http.MethodPost:
		return true
	case http.MethodGet:
		return !headerHasToken(r.Header, "Upgrade", "websocket") && strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	}
	return false
}

// serveHTTPStream serves a request of the HTTP stream transport. A request
// from an origin the hub allows gets the CORS headers that let a page of
// that origin read the answer, refusals included (cors.go); one from
// another origin is refused (403 forbidden_origin) after the checks that
// come first as for a WebSocket handshake.
func (h *Hub) serveHTTPStream(w http.ResponseWriter, r *http.Request) {
	allowed := h.opts.Origin.allowed(r)
	origin := ""
	if allowed {
		origin = corsOrigin(r)
		setCORS(w.Header(), origin)
	}
	if r.Method == http.MethodPost {
		h.servePost(w, r, allowed)
		return
	}
	h.serveStream(w, r, allowed, origin)
}

// serveStream authenticates a stream request the way ServeHTTP does a
// WebSocket handshake, takes over its connection and serves the stream.
// allowed is the origin policy's verdict; origin, if not empty, goes in the
// stream's CORS headers.
func (h *Hub) serveStream(w http.ResponseWriter, r *http.Request, allowed bool, origin string) {
	ip := h.limits.clientIP(r)
	refuse := h.refuser(w, r, "handshake", ip)
	if !h.serving(w, refuse) {
		return
	}
	if !allowed {
		refuse(http.StatusForbidden, errForbiddenOrigin, "")
		return
	}
	now := time.Now()
	id := h.handshakeIdentity(w, r, ip, now, refuse, func(err error) { refuse(http.StatusUnauthorized, err, "") })
	if id == nil {
		return
	}
	// Resume: the since parameter, or the same value in Last-Event-ID.
	sinceArg := r.URL.Query().Get("since")
	if sinceArg == "" {
		sinceArg = r.Header.Get("Last-Event-ID")
	}
	since, ok := h.admitSince(w, ip, id, sinceArg, refuse)
	if !ok {
		return
	}
	admitted := true
	defer func() {
		if admitted {
			h.limits.release(ip, id.Subject)
		}
	}()
	var sb [16]byte
	_, _ = rand.Read(sb[:])
	deflate := h.opts.Compression.Mode == CompressionAuto && acceptsDeflate(r.Header)
	c := &conn{
		hub:        h,
		id:         h.nodeID + "-" + strconv.FormatUint(h.connSeq.Add(1), 10),
		remoteAddr: r.RemoteAddr,
		ip:         ip,
		deflate:    deflate,
		hs:         &httpStream{secret: base64.RawURLEncoding.EncodeToString(sb[:]), deflate: deflate},
		writing:    true, // held until setupConn, as for a WebSocket
	}
	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2, or a middleware's ResponseWriter that cannot hijack:
		// a deployment error (docs/protocol.md §6).
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "rthub: HTTP stream needs an HTTP/1.1 connection it can take over", slog.String("err", err.Error()))
		refuse(http.StatusHTTPVersionNotSupported, fmt.Errorf("%w: the HTTP stream needs HTTP/1.1", ErrInternal), id.Subject)
		return
	}
	// Bytes the client sent after its request (it should send none: the
	// response says Connection: close) are dropped with net/http's reader.
	_ = nc.SetDeadline(now.Add(h.opts.HandshakeTimeout))
	admitted = false // from here the connection owns the slot; teardown releases it
	c.nc, c.raw, c.pre = nc, syscallConn(nc), nil
	c.initContextFrom(h.ctx)
	c.expiry = deadline{idx: -1, fn: c.expiryDue}
	c.ident.Store(id)
	c.lastIn.Store(time.Now().UnixNano())
	if !h.register(c) {
		_, _ = nc.Write(append(streamHead(c.id+"."+c.hs.secret, deflate, origin), c.hs.stored(nil, streamClose(CloseGoingAway, "server shutting down"))...))
		_ = nc.Close()
		h.limits.release(ip, id.Subject)
		return
	}
	// The session goes out once the connection is registered, so that a
	// POST sent as soon as it arrives finds the stream. Nothing else is
	// written before setupConn (c.writing is held). A failed write ends the
	// connection through its read loop, like any broken stream.
	if _, err := nc.Write(streamHead(c.id+"."+c.hs.secret, deflate, origin)); err != nil {
		c.closeSocket()
	}
	_ = nc.SetDeadline(time.Time{})
	h.setupConn(c, since)
	go func() { // a fresh goroutine, as for a WebSocket (see ServeHTTP)
		defer h.wg.Done() // Add is in register
		c.streamReadLoop()
	}()
}

// streamHead is the response head of a stream and its first event, which
// names the session the client's POSTs carry. With deflate the body is a
// zlib stream (RFC 1950) that never ends: it starts with the zlib header.
// A non-empty origin (one corsOrigin returned) is named in the CORS headers
// that let a page of that origin read the stream.
func streamHead(session string, deflate bool, origin string) []byte {
	b := []byte("HTTP/1.1 200 OK\r\n" +
		"Content-Type: text/event-stream; charset=utf-8\r\n" +
		"Cache-Control: no-store\r\n" +
		"X-Accel-Buffering: no\r\n" + // nginx: pass each event on at once
		"Connection: close\r\n")
	if origin != "" {
		b = append(b, "Access-Control-Allow-Origin: "+origin+"\r\nAccess-Control-Expose-Headers: "+corsExposeHeaders+"\r\nVary: Origin\r\n"...)
	}
	ev := []byte("event: session\ndata: " + session + "\n\n")
	if !deflate {
		return append(append(b, "\r\n"...), ev...)
	}
	b = append(b, "Content-Encoding: deflate\r\nVary: Accept-Encoding\r\n\r\n"...)
	b = append(b, 0x78, 0x01) // zlib: deflate, 32 KiB window, no dictionary
	return append(appendStored(b, ev), storedFlush...)
}

// acceptsDeflate reports whether Accept-Encoding lists deflate (with a
// non-zero q).
func acceptsDeflate(hd http.Header) bool {
	for _, v := range hd.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(name), "deflate") {
				q := strings.ReplaceAll(params, " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}

// appendStored appends p as stored (uncompressed) deflate blocks, none final.
func appendStored(dst, p []byte) []byte {
	for {
		n := min(len(p), 0xFFFF)
		dst = append(dst, 0, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		dst = append(dst, p[:n]...)
		p = p[n:]
		if len(p) == 0 {
			return dst
		}
	}
}

// stored returns p as is, or as stored deflate blocks on a compressed
// stream; dst is reused if it has room.
func (s *httpStream) stored(dst, p []byte) []byte {
	if !s.deflate {
		return p
	}
	return appendStored(dst[:0], p)
}

// streamReadLoop is a stream connection's owning goroutine: the client sends
// nothing on the stream, so it only waits for the connection to end (the
// client went away, or the server closed it), then tears it down.
func (c *conn) streamReadLoop() {
	defer c.teardown()
	var buf [64]byte
	for {
		if c.raw != nil {
			waitReadable(c.raw) // idle streams park here, on a small stack
		}
		if _, err := c.nc.Read(buf[:]); err != nil {
			c.readErr = err
			c.mu.Lock()
			if !c.closing {
				c.closing = true
				c.code = CloseGoingAway // the client closed its stream
				if !errors.Is(err, io.EOF) {
					c.code = CloseAbnormal
				}
			}
			c.dropCloseLocked()
			c.dropQueueLocked()
			c.mu.Unlock()
			return
		}
		// Whatever the client sends on the stream is ignored.
	}
}

// streamClosed runs after the close event went out: the stream ends (FIN),
// and the client gets CloseTimeout to close its side, which ends the read
// loop.
func (c *conn) streamClosed() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.hub.opts.CloseTimeout))
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.nc.Close()
}

// Pieces of events shared by every stream.
var (
	sseData      = []byte("data: ")
	sseEnd       = []byte("\n\n")
	sseKeepalive = []byte(":\n\n")
	// The same as stored deflate blocks, for compressed streams.
	storedData      = appendStored(nil, sseData)
	storedEnd       = appendStored(nil, sseEnd)
	storedKeepalive = appendStored(nil, sseKeepalive)
	// storedFlush is an empty stored block, which ends each write on a
	// compressed stream: decoders that output only at a sync point (Go's
	// compress/flate does) pass on everything written so far.
	storedFlush = []byte{0, 0, 0, 0xff, 0xff}
)

// encode turns WebSocket frames, as the queue holds them, into the pieces of
// their events (docs/protocol.md §6): a text frame's payload becomes one
// "data:" event (split into several data lines if it holds line breaks),
// the keepalive ping a comment line, the close frame a "close" event. The
// pieces share the frames' bytes: on a compressed stream, a compressed
// frame's payload (compressed once for every connection, RFC 7692 with no
// context takeover) is a run of deflate blocks that goes out as is, between
// stored blocks holding "data: " and the end of the event. The returned
// slice is reused by the next call.
func (s *httpStream) encode(c *conn, frames net.Buffers) net.Buffers {
	out := s.out[:0]
	if cap(out) > 256 {
		out = nil // not kept after a burst
	}
	for _, f := range frames {
		op, payload := frameParts(f)
		switch op {
		case opText:
			switch {
			case s.deflate && f[0]&bitRsv1 != 0:
				out = append(out, storedData, payload, deflateTail, storedEnd)
			case bytes.ContainsAny(payload, "\r\n"):
				out = append(out, s.stored(nil, splitLines(payload)))
			case s.deflate:
				if len(payload) > 0xFFFF-len(sseData)-len(sseEnd) {
					out = append(out, appendStored(nil, slices.Concat(sseData, payload, sseEnd)))
					continue
				}
				n := len(sseData) + len(payload) + len(sseEnd)
				hdr := []byte{0, byte(n), byte(n >> 8), ^byte(n), ^byte(n >> 8)}
				out = append(out, hdr, sseData, payload, sseEnd)
			default:
				out = append(out, sseData, payload, sseEnd)
			}
		case opPing:
			if s.deflate {
				out = append(out, storedKeepalive)
			} else {
				out = append(out, sseKeepalive)
			}
			// The stream has no pong: a keepalive written counts as one
			// (a peer that stopped reading fills the socket, and then the
			// keepalive is not written).
			c.lastIn.Store(time.Now().UnixNano())
		case opClose:
			code, reason := CloseCode(1005), ""
			if len(payload) >= 2 {
				code, reason = CloseCode(binary.BigEndian.Uint16(payload)), string(payload[2:])
			}
			// On a compressed stream, no final block follows: the stream
			// ends with the connection, after the close event (docs/protocol.md §6).
			out = append(out, s.stored(nil, streamClose(code, reason)))
		}
	}
	if s.deflate && len(out) > 0 {
		out = append(out, storedFlush)
	}
	s.out = out
	return out
}

// splitLines is the event of a payload holding line breaks: each line
// its own data line (the client joins them with "\n", which JSON reads as
// the whitespace it was).
func splitLines(payload []byte) []byte {
	b := make([]byte, 0, len(payload)+32)
	b = append(b, sseData...)
	for i, ch := range payload {
		if ch == '\r' || ch == '\n' {
			if ch == '\n' && i > 0 && payload[i-1] == '\r' {
				continue
			}
			b = append(b, "\ndata: "...)
			continue
		}
		b = append(b, ch)
	}
	return append(b, sseEnd...)
}

// streamClose is the close event: {"type":"close","code":N,"reason":"…"}.
func streamClose(code CloseCode, reason string) []byte {
	b := append(make([]byte, 0, 64+len(reason)), "event: close\ndata: {\"type\":\"close\",\"code\":"...)
	b = strconv.AppendUint(b, uint64(code), 10)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, reason)
	return append(b, "}\n\n"...)
}

// frameParts returns the opcode and payload of an unmasked server frame as
// appendFrame built it.
func frameParts(f []byte) (op byte, payload []byte) {
	if len(f) < 2 {
		return 0, nil
	}
	op = f[0] & 0x0F
	switch n := f[1] & 0x7F; n {
	case 126:
		return op, f[4:]
	case 127:
		return op, f[10:]
	default:
		return op, f[2:]
	}
}

// servePost handles a POST of commands: the stream's session in the
// Rthub-Session header, the token as for the stream, one or more commands
// (JSON objects, one per line) in the body. Commands are queued to the stream
// connection, here or on the node that holds it (through the broker's
// NodeRelay), and answered on the stream; the POST is answered 202 once
// they are queued.
//
// allowed is the origin policy's verdict.
func (h *Hub) servePost(w http.ResponseWriter, r *http.Request, allowed bool) {
	ip := h.limits.clientIP(r)
	refuse := h.refuser(w, r, "post", ip)
	if h.closing.Load() {
		w.Header().Set("Retry-After", "1")
		refuse(http.StatusServiceUnavailable, ErrHubClosed, "")
		return
	}
	if !allowed {
		refuse(http.StatusForbidden, errForbiddenOrigin, "")
		return
	}
	id, err := h.requestIdentity(r, time.Now())
	if err != nil {
		refuse(http.StatusUnauthorized, err, "")
		return
	}
	if ok, wait := h.limits.allowPost("post:"+id.Subject, time.Now()); !ok {
		// Before reading the body or relaying anything: a flood of POSTs
		// costs a token check each, nothing more.
		w.Header().Set("Retry-After", retryAfter(wait))
		refuse(http.StatusTooManyRequests, ErrRateLimited, id.Subject)
		return
	}
	session := r.Header.Get(SessionHeader)
	node, _, _, err := parseSession(session)
	if err != nil {
		refuse(http.StatusBadRequest, err, id.Subject)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.HTTPStream.MaxPostBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			refuse(http.StatusRequestEntityTooLarge, fmt.Errorf("%w: body over %d bytes", ErrMessageTooBig, h.opts.HTTPStream.MaxPostBytes), id.Subject)
			return
		}
		refuse(http.StatusBadRequest, fmt.Errorf("%w: reading the body", ErrBadRequest), id.Subject)
		return
	}
	cmds, err := splitCommands(body, h.opts.MaxMessageSize, h.opts.HTTPStream.MaxQueuedCommands)
	switch {
	case errors.Is(err, ErrRateLimited):
		refuse(http.StatusTooManyRequests, err, id.Subject)
		return
	case errors.Is(err, ErrMessageTooBig):
		refuse(http.StatusRequestEntityTooLarge, err, id.Subject)
		return
	case err != nil:
		refuse(http.StatusBadRequest, err, id.Subject)
		return
	}
	switch {
	case node == h.nodeID:
		_, err = h.queueCommands(session, id.Subject, cmds)
	case h.relay == nil:
		err = fmt.Errorf("%w: the stream is on another node, and the broker relays nothing", ErrNotFound)
	default:
		ctx, cancel := context.WithTimeout(r.Context(), h.opts.BrokerTimeout)
		err = h.relay.Relay(ctx, node, appendRelayed(make([]byte, 0, 64+len(session)+len(id.Subject)+len(body)),
			relayed{session: session, subject: id.Subject, body: body}))
		cancel()
		if err == nil {
			h.stats.relayedPosts.Add(1)
		} else if errors.Is(err, ErrNoNode) {
			err = fmt.Errorf("%w: the stream's node is gone", ErrNotFound)
		} else if err != nil {
			h.stats.brokerErrors.Add(1)
			h.log.LogAttrs(r.Context(), slog.LevelWarn, "rthub: relaying commands", slog.Any("err", err))
			w.Header().Set("Retry-After", "1")
			refuse(http.StatusServiceUnavailable, fmt.Errorf("%w: relaying the commands", ErrInternal), id.Subject)
			return
		}
	}
	switch {
	case err == nil:
		w.WriteHeader(http.StatusAccepted)
	case errors.Is(err, ErrRateLimited):
		w.Header().Set("Retry-After", "1")
		refuse(http.StatusTooManyRequests, err, id.Subject)
	default:
		refuse(http.StatusNotFound, err, id.Subject)
	}
}

// allowPost takes one POST from the bucket of key (a user): the rate is 4 ×
// Limits.Commands (a user may have several streams; each command is also
// limited on its connection), the burst Limits.CommandBurst. Buckets share
// the handshake table, its bound and its pruning.
func (l *limiter) allowPost(key string, now time.Time) (bool, time.Duration) {
	return l.allowBucket(key, 4*l.cfg.Commands, max(l.cfg.CommandBurst, 1), now)
}

// parseSession splits a session, "<node>-<seq>.<secret>", into the node
// holding the stream, the connection ID and the secret.
func parseSession(s string) (node, connID, secret string, err error) {
	bad := fmt.Errorf("%w: missing or malformed %s header", ErrBadRequest, SessionHeader)
	if len(s) == 0 || len(s) > maxSessionLen {
		return "", "", "", bad
	}
	connID, secret, ok := strings.Cut(s, ".")
	if !ok || secret == "" {
		return "", "", "", bad
	}
	node, seq, ok := strings.Cut(connID, "-")
	if !ok || node == "" || seq == "" {
		return "", "", "", bad
	}
	if _, err := strconv.ParseUint(seq, 10, 64); err != nil {
		return "", "", "", bad
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return "", "", "", bad
		}
	}
	return node, connID, secret, nil
}

// splitCommands splits a POST's body into its commands: JSON messages, one
// per line (blank lines are skipped). It refuses more than maxCmds
// commands and a command over maxSize bytes; the commands themselves are
// checked by handleMessage, as a WebSocket message is. The commands share
// body.
func splitCommands(body []byte, maxSize int64, maxCmds int) ([][]byte, error) {
	var cmds [][]byte
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if int64(len(line)) > maxSize {
			return nil, fmt.Errorf("%w: a command is over %d bytes", ErrMessageTooBig, maxSize)
		}
		if len(cmds) == maxCmds {
			return nil, fmt.Errorf("%w: more than %d commands", ErrRateLimited, maxCmds)
		}
		cmds = append(cmds, line)
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("%w: no command", ErrBadRequest)
	}
	return cmds, nil
}

// queueCommands queues cmds to the stream connection of session on this
// node, for a user with subject. They are refused as a whole with
// ErrRateLimited when they do not fit the connection's bounded inbox, and
// with ErrNotFound for a session that is not (or no longer) here. The
// connection is returned when it was found, refused or not.
func (h *Hub) queueCommands(session, subject string, cmds [][]byte) (*conn, error) {
	_, connID, secret, err := parseSession(session)
	if err != nil {
		return nil, err
	}
	notFound := fmt.Errorf("%w: no such stream", ErrNotFound)
	h.mu.RLock()
	c := h.conns[connID]
	h.mu.RUnlock()
	if c == nil || c.hs == nil || subtle.ConstantTimeCompare([]byte(secret), []byte(c.hs.secret)) != 1 ||
		c.ident.Load().Subject != subject {
		return nil, notFound
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, notFound
	}
	if len(c.hs.inbox)+len(cmds) > h.opts.HTTPStream.MaxQueuedCommands {
		c.mu.Unlock()
		return c, fmt.Errorf("%w: %d commands queued", ErrRateLimited, len(c.hs.inbox))
	}
	c.hs.inbox = append(c.hs.inbox, cmds...)
	start := !c.hs.running
	if start {
		c.hs.running = true
		// Not closed (closing is set first): the read loop still holds its
		// count in the WaitGroup, so this Add cannot race a Wait at zero.
		h.wg.Add(1)
	}
	c.mu.Unlock()
	if start {
		go func() { // owner: the hub (wg); ends when the inbox is empty
			defer h.wg.Done()
			c.runCommands()
		}()
	}
	return c, nil
}

// runCommands handles a stream connection's queued commands one at a time,
// in order, through the same dispatch as a WebSocket connection's messages
// (handleMessage), until the inbox is empty. At most one runs per
// connection, so what the read loop owns on a WebSocket connection, it owns
// here.
func (c *conn) runCommands() {
	for {
		c.mu.Lock()
		if len(c.hs.inbox) == 0 || c.closing {
			c.hs.inbox, c.hs.running = nil, false
			c.mu.Unlock()
			return
		}
		msg := c.hs.inbox[0]
		c.hs.inbox[0] = nil
		c.hs.inbox = c.hs.inbox[1:]
		c.mu.Unlock()
		c.hub.stats.messagesIn.Add(1)
		c.hub.stats.bytesIn.Add(uint64(len(msg)))
		c.waitQueue()
		c.hub.handleMessage(c, msg)
	}
}
