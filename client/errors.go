package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/org/rthub"
)

var (
	// ErrClosed is returned by calls made after the client stopped: after
	// [Client.Close], or after a terminal close code or refusal ended it. In
	// the second case the error also wraps the reason ([Client.Err]).
	ErrClosed = errors.New("rthub/client: client closed")

	// ErrDisconnected means the connection was lost while a command was in
	// flight: the server may or may not have executed it. The error also
	// wraps why the connection ended (a [rthub.CloseError]).
	ErrDisconnected = errors.New("rthub/client: disconnected before the reply")

	// ErrOutboxFull is returned by [Client.EmitOnce] and [Call] when
	// Options.Outbox.MaxEntries emits and calls already wait for an answer.
	ErrOutboxFull = errors.New("rthub/client: outbox full")

	// ErrExpired is returned by [Client.EmitOnce] and [Call] when the entry's
	// Options.Outbox.TTL passed before the server answered it: the server
	// may or may not have run it.
	ErrExpired = errors.New("rthub/client: outbox entry expired")

	// ErrNoTokenFunc is returned by [Client.Refresh] when Options.TokenFunc is
	// not set.
	ErrNoTokenFunc = errors.New("rthub/client: Refresh needs Options.TokenFunc")
)

// HandshakeError is the error of a connection attempt the server refused
// before the WebSocket upgrade (docs/protocol.md §1): a 401 for token
// problems, 400 for a bad handshake, 503 while the hub drains. [errors.Is]
// matches it against the rthub sentinel of its code, so
// errors.Is(err, rthub.ErrTokenExpired) reports an expired token.
type HandshakeError struct {
	// Status is the HTTP status code of the refusal.
	Status int
	// Code is the protocol's error code from the JSON body ("token_expired",
	// "shutting_down", ...); empty if the body had none (a proxy answered).
	Code string
	// Message is the server's human-readable message, if any.
	Message string
}

// Error implements error.
func (e *HandshakeError) Error() string {
	s := fmt.Sprintf("rthub/client: handshake refused: %d %s", e.Status, http.StatusText(e.Status))
	if e.Code != "" {
		s += ": " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Is reports whether target is the rthub sentinel of e's code.
func (e *HandshakeError) Is(target error) bool {
	return e.Code != "" && (&rthub.ReplyError{Code: e.Code}).Is(target)
}

// temporary reports whether retrying the handshake later can succeed: server
// errors, 408 and 429. A 401 or 400 needs a change on the client's side.
func (e *HandshakeError) temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
}

// reconnectable reports whether the client should try again after err ended a
// connection or a connection attempt: by close code (see
// [rthub.CloseCode.Reconnect]) or handshake status; any other failure
// (network, TokenFunc, timeouts) is retried.
func reconnectable(err error) bool {
	var he *HandshakeError
	if errors.As(err, &he) {
		return he.temporary()
	}
	var ce rthub.CloseError
	if errors.As(err, &ce) {
		return ce.Code.Reconnect()
	}
	return true
}
