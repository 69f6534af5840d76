package rthub

import (
	"context"
	"log/slog"
	"net/netip"
)

// Refusal describes something the hub refused: a handshake, a join, an emit,
// a presence query, a token refresh, or a connection closed for abuse. It is
// what [Options.OnRefused] receives, for audit logs and metrics. It never
// holds a token.
type Refusal struct {
	// Op is what was refused: "handshake" (of a WebSocket or an HTTP
	// stream, or the CORS preflight of a stream), "post" (the commands
	// POSTed to an HTTP stream, refused as a whole, or the CORS preflight
	// of a POST), "join", "emit", "call" (an RPC; Event is its name),
	// "presence", "refresh", or "abuse" (a
	// connection closed for hammering past its command limit).
	Op string
	// Code is the error code the client received ("forbidden",
	// "token_expired", "rate_limited", "too_many_connections", ...; see
	// docs/protocol.md). A handshake that passed every check but whose
	// upgrade then failed has Code "upgrade_failed": Status 500 when the
	// http.ResponseWriter cannot be hijacked (a middleware that hides
	// http.Hijacker and has no Unwrap method), 400 for an HTTP/1.0 request,
	// 0 when the client went away or did not read the response within
	// HandshakeTimeout (nobody saw a status).
	Code string
	// Status is the HTTP status of a refused handshake; 0 otherwise.
	Status int
	// Subject is the user, when known (an authenticated connection, or a
	// handshake refused after its token was verified).
	Subject string
	// ConnID is the connection, when there is one.
	ConnID string
	// Room and Event are what a join, emit or presence query named.
	Room, Event string
	// ClientIP is the client's address (see [Limits.TrustedProxies]); the
	// zero Addr when unknown.
	ClientIP netip.Addr
	// RemoteAddr is the TCP peer as net/http saw it.
	RemoteAddr string
	// Origin is a refused handshake's Origin header (truncated), if any.
	Origin string
}

// codeUpgradeFailed is the Refusal code of a failed upgrade.
const codeUpgradeFailed = "upgrade_failed"

// refused records a refusal: a log line (no token, short fields only), the
// counters, and Options.OnRefused.
func (h *Hub) refused(ctx context.Context, r Refusal) {
	switch {
	case r.Op == "handshake" && r.Status == 401:
		h.stats.unauthorized.Add(1)
	case r.Op == "handshake" && r.Status == 429:
		h.stats.throttled.Add(1)
		h.stats.refused.Add(1)
	case r.Op == "handshake":
		h.stats.refused.Add(1)
	case r.Code == "forbidden":
		h.stats.forbidden.Add(1)
	case r.Op == "abuse":
		h.stats.abuseCloses.Add(1)
	}
	attrs := []slog.Attr{slog.String("op", r.Op), slog.String("code", r.Code)}
	if r.Status != 0 {
		attrs = append(attrs, slog.Int("status", r.Status))
	}
	if r.Subject != "" {
		attrs = append(attrs, slog.String("user", truncate(r.Subject, 128)))
	}
	if r.ConnID != "" {
		attrs = append(attrs, slog.String("conn", r.ConnID))
	}
	if r.Room != "" {
		attrs = append(attrs, slog.String("room", truncate(r.Room, 128)))
	}
	if r.Event != "" {
		attrs = append(attrs, slog.String("event", truncate(r.Event, 64)))
	}
	if r.Origin != "" {
		attrs = append(attrs, slog.String("origin", r.Origin))
	}
	if r.ClientIP.IsValid() {
		attrs = append(attrs, slog.String("ip", r.ClientIP.String()))
	}
	level := slog.LevelInfo
	if r.Op == "abuse" {
		level = slog.LevelWarn
	}
	h.log.LogAttrs(ctx, level, "rthub: refused", attrs...)
	if fn := h.opts.OnRefused; fn != nil {
		func() {
			defer func() {
				if p := recover(); p != nil {
					h.log.Error("rthub: OnRefused panicked", slog.Any("panic", p))
				}
			}()
			fn(ctx, r)
		}()
	}
}

// refusal starts a Refusal for an established connection.
func (c *conn) refusal(op, code string) Refusal {
	return Refusal{Op: op, Code: code, Subject: c.ident.Load().Subject, ConnID: c.id,
		ClientIP: c.ip, RemoteAddr: c.remoteAddr}
}
