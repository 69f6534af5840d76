package rthub

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// OriginOptions guards against cross-site WebSocket hijacking: a page on
// another site opening a WebSocket to the hub with the victim's browser (a
// token in a cookie-like place, or a subprotocol the attacker learned, would
// otherwise be accepted). Browsers always send an Origin header on WebSocket
// handshakes; other clients (Go, wscat, devices) usually send none and are not
// affected.
//
// By default only same-origin browser handshakes are accepted: the Origin's
// host must equal the request's Host. A refused handshake gets 403 with the
// code "forbidden_origin", before the upgrade and before the token is read.
//
// The same rule governs the HTTP stream transport ([HTTPStreamOptions]): its
// requests from an allowed origin get the CORS headers that let a page of
// that origin read them, its CORS preflights from an allowed origin are
// answered 204, and those from another origin are refused like a handshake
// (docs/protocol.md §6.2).
type OriginOptions struct {
	// Patterns are extra allowed origin hosts, matched with [path.Match]
	// against the Origin's host (and port, if it has one), case-insensitively:
	// "dashboard.example.com", "*.example.com", "localhost:*".
	Patterns []string
	// Check, if set, replaces the built-in check entirely: it reports whether
	// the handshake's Origin (r.Header.Get("Origin"), possibly empty) is
	// allowed. It must not block. With the HTTP stream transport it also
	// sees the stream's requests and their CORS preflights (method
	// OPTIONS, no token).
	Check func(r *http.Request) bool
	// AllowAll accepts every origin. Only for development: it disables the
	// protection against cross-site WebSocket hijacking.
	AllowAll bool
}

func (o *OriginOptions) validate() error {
	var errs []error
	for _, p := range o.Patterns {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("rthub: origin pattern %q: %v", p, err))
		}
	}
	return errors.Join(errs...)
}

// errForbiddenOrigin answers a cross-origin handshake.
var errForbiddenOrigin = &ReplyError{Code: "forbidden_origin", Message: "origin not allowed"}

// originAllowed applies OriginOptions to a handshake.
func (o *OriginOptions) allowed(r *http.Request) bool {
	if o.AllowAll {
		return true
	}
	if o.Check != nil {
		return o.Check(r)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false // "null" (sandboxed frames, file://) and garbage
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	host := strings.ToLower(u.Host)
	for _, p := range o.Patterns {
		if ok, _ := path.Match(strings.ToLower(p), host); ok {
			return true
		}
	}
	return false
}
