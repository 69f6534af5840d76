package rthub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gobwas/ws"
)

// This file holds the handshake: authentication before the upgrade, the
// upgrade itself, and setting up and registering a new connection.

// ServeHTTP authenticates the request and upgrades it to a WebSocket
// connection. Refusals happen before the upgrade, as HTTP errors with a JSON
// body carrying a code (docs/protocol.md §1): 401 for token problems, 400 for
// a bad handshake, 503 while shutting down. With Options.HTTPStream enabled
// it also serves the HTTP stream transport (docs/protocol.md §6): GETs
// asking for text/event-stream, POSTs, and the CORS preflights (OPTIONS) of
// pages on other origins the hub allows (OriginOptions); a mux in front
// must route all three methods to it.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.opts.HTTPStream.Enabled {
		if isStreamRequest(r) {
			h.serveHTTPStream(w, r)
			return
		}
		if isPreflight(r) {
			h.servePreflight(w, r)
			return
		}
	}
	ip := h.limits.clientIP(r)
	refuse := h.refuser(w, r, "handshake", ip)
	if !h.serving(w, refuse) {
		return
	}
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") || !validWebSocketKey(r.Header.Get("Sec-WebSocket-Key")) {
		refuse(http.StatusBadRequest, errBadHandshake, "")
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		// RFC 6455 §4.4: tell the client which version we speak.
		w.Header().Set("Sec-WebSocket-Version", "13")
		refuse(http.StatusUpgradeRequired, errBadHandshake, "")
		return
	}
	if !h.opts.Origin.allowed(r) {
		refuse(http.StatusForbidden, errForbiddenOrigin, "")
		return
	}
	if !offersV1(r.Header) {
		refuse(http.StatusBadRequest, errUnsupportedProtocol, "")
		return
	}
	now := time.Now()
	id := h.handshakeIdentity(w, r, ip, now, refuse, func(err error) {
		if !h.opts.Auth.HTTPRefusalsForBrowsers && r.Header.Get("Origin") != "" && offersSubprotocol(r.Header) {
			h.refused(r.Context(), Refusal{Op: "handshake", Code: ErrorCode(err), Status: http.StatusUnauthorized,
				ClientIP: ip, RemoteAddr: r.RemoteAddr, Origin: truncate(r.Header.Get("Origin"), 128)})
			h.refuseInBand(w, r, err)
			return
		}
		refuse(http.StatusUnauthorized, err, "")
	})
	if id == nil {
		return
	}
	since, ok := h.admitSince(w, ip, id, r.URL.Query().Get("since"), refuse)
	if !ok {
		return
	}
	admitted := true
	defer func() {
		if admitted { // the upgrade failed: give the slot back
			h.limits.release(ip, id.Subject)
		}
	}()

	neg := &negotiator{}
	up := ws.HTTPUpgrader{
		Timeout: h.opts.HandshakeTimeout,
		Protocol: func(p string) bool {
			return p == Subprotocol
		},
	}
	if h.opts.Compression.Mode == CompressionAuto {
		up.Negotiate = neg.negotiate
	}
	nc, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		// Past the checks above: a middleware's ResponseWriter that cannot
		// hijack (500; a deployment error, so a warning), an HTTP/1.0
		// request (400), or a client that went away or did not take the
		// response within HandshakeTimeout (no status: nobody saw one).
		status := 0
		if rej, ok := errors.AsType[*ws.ConnectionRejectedError](err); ok {
			status = rej.StatusCode()
		}
		h.refused(r.Context(), Refusal{Op: "handshake", Code: codeUpgradeFailed, Status: status, Subject: id.Subject,
			ClientIP: ip, RemoteAddr: r.RemoteAddr, Origin: truncate(r.Header.Get("Origin"), 128)})
		level := slog.LevelDebug
		if errors.Is(err, ws.ErrNotHijacker) {
			level = slog.LevelWarn
		}
		h.log.LogAttrs(r.Context(), level, "rthub: upgrade failed", slog.String("err", err.Error()))
		return
	}
	admitted = false // from here the connection owns the slot; teardown releases it
	_ = nc.SetDeadline(time.Time{})
	c := &conn{
		hub:        h,
		nc:         nc,
		raw:        syscallConn(nc),
		id:         h.nodeID + "-" + fmt.Sprint(h.connSeq.Add(1)),
		remoteAddr: r.RemoteAddr,
		ip:         ip,
		deflate:    neg.accepted(),
		writing:    true, // held until setupConn: the welcome goes first, after the auto-joins
	}
	c.initContext()
	c.expiry = deadline{idx: -1, fn: c.expiryDue}
	// Keep bytes the client sent right after its request (pipelined frames)
	// but not net/http's 4 KiB reader.
	if n := rw.Reader.Buffered(); n > 0 {
		pre := make([]byte, n)
		_, _ = io.ReadFull(rw.Reader, pre)
		c.pre = &preReader{nc: nc}
		c.pre.pre.Reset(pre)
	}
	h.attachPoll(c)
	c.ident.Store(id)
	c.lastIn.Store(time.Now().UnixNano())
	if !h.register(c) {
		h.detachPoll(c)
		_, _ = c.nc.Write(closeFrame(CloseGoingAway, "server shutting down"))
		_ = c.nc.Close()
		h.limits.release(ip, id.Subject)
		return
	}
	h.setupConn(c, since)
	h.startReading(c)
}

// refuseInBand answers a browser whose token was refused: it upgrades, sends
// a close frame with a code the page can read (see
// AuthOptions.HTTPRefusalsForBrowsers), waits (at most CloseTimeout) for the
// browser's close frame, and closes the connection.
func (h *Hub) refuseInBand(w http.ResponseWriter, r *http.Request, err error) {
	up := ws.HTTPUpgrader{Timeout: h.opts.HandshakeTimeout, Protocol: func(p string) bool { return p == Subprotocol }}
	nc, _, _, uerr := up.Upgrade(r, w)
	if uerr != nil {
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	defer nc.Close()
	code := CloseUnauthorized
	switch {
	case errors.Is(err, ErrTokenExpired):
		code = CloseTokenExpired
	case errors.Is(err, ErrTokenRevoked):
		code = CloseTokenRevoked
	}
	_ = nc.SetDeadline(time.Now().Add(h.opts.CloseTimeout))
	if _, werr := nc.Write(closeFrame(code, ErrorCode(err))); werr != nil {
		return
	}
	// Until the browser's close frame, then close TCP at once: the server
	// closes first (RFC 6455 §7.1.1), and a browser waits for that before it
	// reports the close to the page (Chromium gives up after about 2 s).
	var hdr [14]byte
	for {
		fh, rerr := readFrameHeader(nc, hdr[:])
		if rerr != nil {
			return
		}
		if _, rerr := io.CopyN(io.Discard, nc, fh.length); rerr != nil {
			return
		}
		if fh.op == opClose {
			// Send our FIN now; what the browser still sends (its own FIN)
			// is read, so that the close is not a reset.
			if cw, ok := nc.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
				_ = nc.SetReadDeadline(time.Now().Add(time.Second))
				_, _ = io.Copy(io.Discard, nc)
			}
			return
		}
	}
}

// offersSubprotocol reports whether the handshake explicitly offers rthub.v1.
func offersSubprotocol(hd http.Header) bool {
	v1, _ := protocolOffer(hd)
	return v1
}

// setupConn starts a new connection after register: auto-join (resuming
// from the client's since positions), the welcome put first in the queue,
// the write side released, expiry timers, OnConnect. It runs before the read
// loop, so before any command is read.
func (h *Hub) setupConn(c *conn, since map[string]StreamPosition) {
	id := c.ident.Load()
	w := welcomeMsg{Type: "welcome", Version: ProtocolVersion, Conn: c.id, User: id.Subject,
		Roles: nonNil(id.Roles), Rooms: []string{}, Expires: unixOrZero(id.ExpiresAt),
		Ping: int64((h.opts.PingInterval + time.Second - 1) / time.Second)}
	for _, rm := range h.policy.autoJoin(id) {
		if h.policy.authorize(c.ctx, id, ActionJoin, rm, "") != nil {
			continue
		}
		var from *StreamPosition
		if p, ok := since[rm]; ok {
			from = &p
		}
		res, err := h.joinAt(c.ctx, c, rm, false, from, false)
		if err != nil {
			h.log.LogAttrs(c.ctx, slog.LevelWarn, "rthub: auto-join failed", slog.String("conn", c.id),
				slog.String("room", rm), slog.Any("err", err))
			continue
		}
		w.Rooms = append(w.Rooms, rm)
		if w.Streams == nil {
			w.Streams = make(map[string]streamInfo)
		}
		w.Streams[rm] = res.info()
	}
	// The welcome goes before the replays and live events queued meanwhile:
	// the write side is still held, so the client reads it first, and it
	// lists only rooms the connection is in.
	if b, err := json.Marshal(w); err == nil {
		c.prepend(textFrame(b))
	}
	h.scheduleExpiry(c, id) // before the welcome goes out: a client that read it has its expiry scheduled
	h.schedule(c)
	if h.opts.OnConnect != nil {
		h.callHook(c, func() { h.opts.OnConnect(c.ctx, c.info()) })
	}
	// A revocation that came while this handshake was verified has closed
	// the connections registered then; the replica has it already. Counted
	// once: the revocation may have closed this connection itself (the
	// client read its welcome before this check ran).
	if h.revs.revoked(id, time.Now()) && c.closeWith(CloseTokenRevoked, "token revoked") {
		h.stats.revokedConns.Add(1)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// callHook runs a user callback, turning a panic into a close with 1011.
func (h *Hub) callHook(c *conn, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("rthub: hook panicked", slog.String("conn", c.id), slog.Any("panic", p))
			c.closeWith(CloseInternalError, "internal error")
		}
	}()
	fn()
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// validWebSocketKey reports whether k is base64 of 16 bytes (RFC 6455 §4.1).
func validWebSocketKey(k string) bool {
	if len(k) != 24 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) == 16
}

// offersV1 reports whether the client's subprotocols allow version 1: it
// offers rthub.v1, or offers no rthub.vN at all (plain tools like wscat).
func offersV1(hd http.Header) bool {
	v1, other := protocolOffer(hd)
	return v1 || !other
}

// protocolOffer reads the offered subprotocols: v1 reports rthub.v1, other
// another rthub.vN.
func protocolOffer(hd http.Header) (v1, other bool) {
	for _, v := range hd.Values("Sec-WebSocket-Protocol") {
		for part := range strings.SplitSeq(v, ",") {
			switch p := strings.TrimSpace(part); {
			case p == Subprotocol:
				return true, other
			case strings.HasPrefix(p, "rthub.v"):
				other = true
			}
		}
	}
	return false, other
}

var (
	errBadHandshake        = &ReplyError{Code: "bad_handshake", Message: "not a WebSocket handshake"}
	errUnsupportedProtocol = &ReplyError{Code: "unsupported_protocol", Message: "unsupported protocol version"}
)

// register adds c to the hub; false once the hub is closing.
func (h *Hub) register(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing.Load() {
		return false
	}
	h.conns[c.id] = c
	sub := c.ident.Load().Subject
	h.users[sub] = append(h.users[sub], c)
	h.stats.accepted.Add(1)
	// Add under h.mu, before Close (which sets closing under h.mu) can Wait.
	h.wg.Add(1)
	return true
}

// unregister removes c and its room memberships; c is already marked closed,
// so no join can add it back.
func (h *Hub) unregister(c *conn) {
	c.mu.Lock()
	names := make([]string, len(c.rooms))
	for i, rr := range c.rooms {
		names[i] = rr.name
	}
	c.mu.Unlock()
	ctx := context.WithoutCancel(c.ctx) // presence removals and unsubscriptions still go out
	for _, name := range names {
		h.leave(ctx, c, name)
	}
	h.mu.Lock()
	delete(h.conns, c.id)
	sub := c.ident.Load().Subject
	h.limits.release(c.ip, sub)
	if cs := slices.DeleteFunc(h.users[sub], func(x *conn) bool { return x == c }); len(cs) == 0 {
		delete(h.users, sub)
	} else {
		h.users[sub] = cs
	}
	h.mu.Unlock()
}

func (h *Hub) disconnected(c *conn, ce CloseError, readErr error) {
	if h.opts.OnDisconnect != nil {
		func() {
			defer func() { _ = recover() }()
			h.opts.OnDisconnect(c.ctx, c.info(), ce)
		}()
	}
	h.log.LogAttrs(h.ctx, slog.LevelDebug, "rthub: disconnected", slog.String("conn", c.id),
		slog.String("user", c.ident.Load().Subject), slog.Int("code", int(ce.Code)), slog.Any("read_err", readErr))
}

// handshakeIdentity runs the checks that every way in (a WebSocket
// handshake, an HTTP stream) makes before it admits a connection, in this
// order: the per-IP handshake rate (before the token, so that a flood costs
// no signature verification), the token, its revocation, the per-user
// handshake rate. On a refusal it has answered the request — authFail for a
// token that is missing, invalid or revoked, refuse for the rest — and
// returns nil. One function, so that the transports cannot drift apart.
func (h *Hub) handshakeIdentity(w http.ResponseWriter, r *http.Request, ip netip.Addr, now time.Time,
	refuse func(status int, err error, sub string), authFail func(err error)) *Identity {
	if ip.IsValid() {
		if ok, wait := h.limits.allowHandshake("ip:"+ipKey(ip).String(), h.opts.Limits.HandshakesPerIP, now); !ok {
			w.Header().Set("Retry-After", retryAfter(wait))
			refuse(http.StatusTooManyRequests, ErrRateLimited, "")
			return nil
		}
	}
	id, err := h.requestIdentity(r, now)
	if err != nil {
		authFail(err)
		return nil
	}
	if ok, wait := h.limits.allowHandshake("user:"+id.Subject, h.opts.Limits.HandshakesPerUser, now); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		refuse(http.StatusTooManyRequests, ErrRateLimited, id.Subject)
		return nil
	}
	return id
}

// requestIdentity verifies the token a request carries (see
// tokenFromRequest) and refuses a revoked one with an error wrapping
// [ErrTokenRevoked].
func (h *Hub) requestIdentity(r *http.Request, now time.Time) (*Identity, error) {
	tok, err := h.auth.tokenFromRequest(r)
	if err != nil {
		return nil, err
	}
	id, err := h.auth.verify(tok, now)
	if err != nil {
		return nil, err
	}
	if err := h.checkRevoked(id, now); err != nil {
		h.stats.revokedRefused.Add(1)
		return nil, err
	}
	return id, nil
}

// refuser returns the function that refuses r: it reports the refusal of
// op ("handshake", "post") to the audit (Options.OnRefusal) and answers
// with status and err's JSON body.
func (h *Hub) refuser(w http.ResponseWriter, r *http.Request, op string, ip netip.Addr) func(status int, err error, sub string) {
	return func(status int, err error, sub string) {
		h.refused(r.Context(), Refusal{Op: op, Code: ErrorCode(err), Status: status,
			Subject: sub, ClientIP: ip, RemoteAddr: r.RemoteAddr, Origin: truncate(r.Header.Get("Origin"), 128)})
		writeHTTPError(w, status, err)
	}
}

// serving reports whether the hub takes connections: not when it only
// publishes (404) or is shutting down (503, Retry-After 1), refused with
// refuse.
func (h *Hub) serving(w http.ResponseWriter, refuse func(status int, err error, sub string)) bool {
	if h.opts.PublishOnly {
		refuse(http.StatusNotFound, fmt.Errorf("%w: this hub only publishes (Options.PublishOnly)", ErrNotFound), "")
		return false
	}
	if h.closing.Load() {
		w.Header().Set("Retry-After", "1")
		refuse(http.StatusServiceUnavailable, ErrHubClosed, "")
		return false
	}
	return true
}

// admitSince parses a connection's resume positions (sinceArg, the since
// parameter) and takes a connection slot for ip and id's subject (released
// by the caller if the connection does not come up). On a refusal it has
// answered the request with refuse and reports false.
func (h *Hub) admitSince(w http.ResponseWriter, ip netip.Addr, id *Identity, sinceArg string,
	refuse func(status int, err error, sub string)) (map[string]StreamPosition, bool) {
	since, err := parseSince(sinceArg, h.opts.MaxRoomsPerConn)
	if err != nil {
		refuse(http.StatusBadRequest, err, id.Subject)
		return nil, false
	}
	if len(since) > 0 {
		h.stats.reconnects.Add(1)
	}
	if err := h.limits.admit(ip, id.Subject); err != nil {
		w.Header().Set("Retry-After", "10")
		refuse(http.StatusTooManyRequests, err, id.Subject)
		return nil, false
	}
	return since, true
}
