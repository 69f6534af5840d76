package rthub

import (
	"net/http"
)

// This file holds CORS for the HTTP stream transport (docs/protocol.md §6.2):
// a page on another origin than the hub's reads the stream with fetch and
// POSTs its commands, both carrying an Authorization header, so the browser
// asks first (a preflight) and then reads a response only if it names the
// page's origin. The hub answers by its origin policy (OriginOptions), the
// same rule as a WebSocket handshake's: the fallback works from every page
// the WebSocket works from, and from no other. WebSocket handshakes need no
// CORS: the browser sends their Origin and leaves the decision to the server.

// CORS answers: the methods and request headers the stream transport uses
// (the browser client sends Authorization, Rthub-Session and Content-Type;
// Last-Event-ID is the optional resume header of §6.1), the response headers
// a page may read (Retry-After of a 429 or 503), and how long a browser may
// cache a preflight's answer.
const (
	corsAllowMethods  = "GET, POST"
	corsAllowHeaders  = "Authorization, Rthub-Session, Content-Type, Last-Event-ID"
	corsExposeHeaders = "Retry-After"
	corsMaxAge        = "600"
)

// isPreflight reports whether r is a CORS preflight: an OPTIONS request
// with an Origin and an Access-Control-Request-Method. Any other OPTIONS is
// not for the hub, and refused as a bad handshake as before.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// corsOrigin returns the Origin of a request the hub's origin policy
// allowed, to name in Access-Control-Allow-Origin; "" when there is none
// (a request from no browser) or it cannot be written back as a header
// value. It never returns "*": a response names the one origin it is for.
func corsOrigin(r *http.Request) string {
	origin := r.Header.Get("Origin")
	if len(origin) > 256 {
		return ""
	}
	for i := 0; i < len(origin); i++ {
		if origin[i] < ' ' || origin[i] > '~' {
			return ""
		}
	}
	return origin
}

// setCORS adds to the header of a response to an allowed stream request
// (the stream, a POST, or their refusals) what lets a page of another
// origin read it. No Access-Control-Allow-Credentials: the token travels in
// the Authorization header, which is no credential for CORS (cookies are),
// and the client sends no cookies across origins.
func setCORS(h http.Header, origin string) {
	if origin == "" {
		return
	}
	allowOrigin(h, origin)
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
}

// allowOrigin names origin as the one a response is for.
func allowOrigin(h http.Header, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
}

// servePreflight answers a CORS preflight for the stream or its POSTs: 204
// with the allowed methods and headers for an origin the hub's
// OriginOptions allow, 403 forbidden_origin with no CORS header for
// another. It is a cheap path, outside the handshake rate limit: no token,
// no body, nothing kept, a fixed answer of a few hundred bytes (about the
// request's size: no amplification), like the 400 a malformed handshake
// gets. Rate limiting it per IP would charge a cross-origin client two
// handshakes per reconnect (the stream's URL changes with its resume
// positions, so browsers cannot reuse a cached preflight for it). Refusals
// are recorded as the request's would be: Op "post" for a POST's
// preflight, "handshake" otherwise.
func (h *Hub) servePreflight(w http.ResponseWriter, r *http.Request) {
	op := "handshake"
	if r.Header.Get("Access-Control-Request-Method") == http.MethodPost {
		op = "post"
	}
	refuse := h.refuser(w, r, op, h.limits.clientIP(r))
	if !h.serving(w, refuse) {
		return
	}
	origin := corsOrigin(r)
	if origin == "" || !h.opts.Origin.allowed(r) {
		refuse(http.StatusForbidden, errForbiddenOrigin, "")
		return
	}
	hd := w.Header()
	allowOrigin(hd, origin)
	hd.Set("Access-Control-Allow-Methods", corsAllowMethods)
	hd.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	hd.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
}
