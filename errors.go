package rthub

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test them with [errors.Is]; the wire code a client sees
// for each is given by [ErrorCode].
var (
	// ErrInvalidOptions is wrapped by every error [New] returns: the options
	// it was given are wrong (each problem is listed in the error's text).
	ErrInvalidOptions = errors.New("rthub: invalid options")

	// ErrHubClosed is returned by calls made after [Hub.Shutdown] or [Hub.Close].
	ErrHubClosed = errors.New("rthub: hub closed")

	// ErrForbidden means the role policy, or the Authorize hook, refused a join or emit.
	ErrForbidden = errors.New("rthub: forbidden")
	// ErrBadRoom means a room name is empty, too long or has illegal characters.
	ErrBadRoom = errors.New("rthub: bad room name")
	// ErrBadEvent means an event name given to a server-side call (Publish,
	// NewEvent, the presence options) is not a legal name: names follow the
	// rules of room names ([ValidRoom]).
	ErrBadEvent = errors.New("rthub: bad event name")
	// ErrTooManyRooms means a join would exceed Options.MaxRoomsPerConn.
	ErrTooManyRooms = errors.New("rthub: too many rooms")
	// ErrUnknownEvent means a client emitted an event the hub has no handler for.
	ErrUnknownEvent = errors.New("rthub: unknown event")
	// ErrBadPayload means an event's data did not decode into the event's type.
	ErrBadPayload = errors.New("rthub: bad payload")
	// ErrBadRequest means a client command was not a well-formed JSON object.
	ErrBadRequest = errors.New("rthub: bad request")
	// ErrUnknownOp means a client command named an operation the protocol lacks.
	ErrUnknownOp = errors.New("rthub: unknown op")
	// ErrRateLimited means a client sent commands faster than its limit allows.
	ErrRateLimited = errors.New("rthub: rate limited")
	// ErrMessageTooBig means an inbound message exceeded Options.MaxMessageSize.
	ErrMessageTooBig = errors.New("rthub: message too big")
	// ErrNotFound means a connection or user named in a server-side call is not
	// connected to this hub.
	ErrNotFound = errors.New("rthub: not found")
	// ErrUnknownRPC means a client called an RPC the hub has no handler for.
	ErrUnknownRPC = errors.New("rthub: unknown rpc")
	// ErrTimeout means a call's handler did not finish before the call's
	// deadline (the RPC's [RPCTimeout] or the client's, the earlier).
	ErrTimeout = errors.New("rthub: timeout")
	// ErrCanceled means the client cancelled a call before its handler
	// finished.
	ErrCanceled = errors.New("rthub: canceled")
	// ErrInternal stands for any failure whose details must not reach a client.
	ErrInternal = errors.New("rthub: internal error")

	// ErrTokenMissing means the request carried no token in any accepted place.
	ErrTokenMissing = errors.New("rthub: token missing")
	// ErrTokenMalformed means the token is not a well-formed JWT.
	ErrTokenMalformed = errors.New("rthub: token malformed")
	// ErrTokenExpired means the token's exp claim is in the past.
	ErrTokenExpired = errors.New("rthub: token expired")
	// ErrTokenNotValidYet means the token's nbf (or iat) claim is in the future.
	ErrTokenNotValidYet = errors.New("rthub: token not valid yet")
	// ErrTokenSignature means the token's signature does not verify.
	ErrTokenSignature = errors.New("rthub: token signature invalid")
	// ErrTokenAlgorithm means the token's alg is none or not accepted for its key.
	ErrTokenAlgorithm = errors.New("rthub: token algorithm not accepted")
	// ErrTokenUnknownKey means the token's kid names no configured key.
	ErrTokenUnknownKey = errors.New("rthub: token key unknown")
	// ErrTokenClaims means a claim check failed: issuer, audience, subject, roles.
	ErrTokenClaims = errors.New("rthub: token claims invalid")
	// ErrTokenRevoked means the token was revoked ([Hub.Revoke]): do not
	// retry with it.
	ErrTokenRevoked = errors.New("rthub: token revoked")
)

// errorCodes maps each sentinel to its wire code (docs/protocol.md §1 and §2.3).
var errorCodes = []struct {
	err  error
	code string
}{
	{ErrHubClosed, "shutting_down"},
	{ErrForbidden, "forbidden"},
	{ErrBadRoom, "bad_room"},
	{ErrTooManyRooms, "too_many_rooms"},
	{ErrUnknownEvent, "unknown_event"},
	{ErrBadPayload, "bad_payload"},
	{ErrBadRequest, "bad_request"},
	{ErrUnknownOp, "unknown_op"},
	{ErrRateLimited, "rate_limited"},
	{ErrMessageTooBig, "message_too_big"},
	{ErrNotFound, "not_found"},
	{ErrUnknownRPC, "unknown_rpc"},
	{ErrTimeout, "timeout"},
	{ErrCanceled, "canceled"},
	{ErrTokenMissing, "token_missing"},
	{ErrTokenMalformed, "token_malformed"},
	{ErrTokenExpired, "token_expired"},
	{ErrTokenNotValidYet, "token_not_valid_yet"},
	{ErrTokenSignature, "token_signature_invalid"},
	{ErrTokenAlgorithm, "token_algorithm"},
	{ErrTokenUnknownKey, "token_unknown_key"},
	{ErrTokenClaims, "token_claims"},
	{ErrTokenRevoked, "token_revoked"},
	{ErrInternal, "internal"},
}

// ErrorCode returns the protocol's machine-readable code for err ("forbidden",
// "token_expired", ...), or "internal" for an error that wraps no rthub sentinel.
// A *[ReplyError] reports its own code.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var re *ReplyError
	if errors.As(err, &re) {
		return re.Code
	}
	for _, ec := range errorCodes {
		if errors.Is(err, ec.err) {
			return ec.code
		}
	}
	return "internal"
}

// maxReplyCodes sizes the per-code reply error counters: every code of
// errorCodes, and one slot for the application's own codes.
const maxReplyCodes = 32

func init() {
	if len(errorCodes) >= maxReplyCodes {
		panic("rthub: raise maxReplyCodes")
	}
}

// replyErrorIndex is code's index in errorCodes, or the last slot for a code
// of the application's own (a *ReplyError with another code).
func replyErrorIndex(code string) int {
	for i, ec := range errorCodes {
		if ec.code == code {
			return i
		}
	}
	return maxReplyCodes - 1
}

// replyErrorCode is the inverse of replyErrorIndex ("other" for the last slot).
func replyErrorCode(i int) string {
	if i < len(errorCodes) {
		return errorCodes[i].code
	}
	return "other"
}

// sentinelForCode is the inverse of [ErrorCode]; nil for an unknown code.
func sentinelForCode(code string) error {
	for _, ec := range errorCodes {
		if ec.code == code {
			return ec.err
		}
	}
	return nil
}

// ReplyError is an error as a client receives it in a reply: a code from the
// protocol and a short message. Handlers may return one to choose the code a client
// sees; [errors.Is] matches it against the sentinel of the same code, so a client
// can test errors.Is(err, rthub.ErrForbidden).
type ReplyError struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	// Field, for bad_payload, is a JSON Pointer (RFC 6901) into the emit's
	// data at the value at fault, e.g. "/values/temp"; empty when the whole
	// payload is at fault or the hub cannot tell (docs/protocol.md §2.4).
	Field string `json:"field,omitempty"`
}

// Error implements error.
func (e *ReplyError) Error() string {
	if e.Message == "" {
		return "rthub: " + e.Code
	}
	return fmt.Sprintf("rthub: %s: %s", e.Code, e.Message)
}

// Is reports whether target is the sentinel for e's code.
func (e *ReplyError) Is(target error) bool {
	s := sentinelForCode(e.Code)
	return s != nil && s == target
}

// CloseCode is a WebSocket close status code. The ranges are part of the protocol:
// see [CloseCode.Reconnect].
type CloseCode uint16

// Close codes sent by the hub (docs/protocol.md §3).
const (
	CloseNormal          CloseCode = 1000 // normal closure; do not reconnect
	CloseGoingAway       CloseCode = 1001 // hub draining; reconnect
	CloseProtocolError   CloseCode = 1002 // broken framing; do not reconnect
	CloseUnsupportedData CloseCode = 1003 // binary message; do not reconnect
	CloseAbnormal        CloseCode = 1006 // connection dropped (never sent on the wire); reconnect
	CloseInvalidPayload  CloseCode = 1007 // invalid UTF-8; do not reconnect
	ClosePolicyViolation CloseCode = 1008 // hostile client; do not reconnect
	CloseMessageTooBig   CloseCode = 1009 // inbound message too big; do not reconnect
	CloseInternalError   CloseCode = 1011 // server failure; reconnect

	CloseSlowConsumer  CloseCode = 4000 // outbound queue overflowed; reconnect
	ClosePingTimeout   CloseCode = 4001 // client silent too long; reconnect
	CloseTokenExpired  CloseCode = 4002 // token expired without refresh; reconnect with a new token
	CloseServerRestart CloseCode = 4003 // node restart without drain; reconnect

	CloseUnauthorized CloseCode = 4100 // identity refused mid-connection; do not reconnect
	CloseDisconnected CloseCode = 4101 // the server disconnected this user; do not reconnect
	CloseTokenRevoked CloseCode = 4102 // the token was revoked; do not reconnect with it
)

// Reconnect reports whether a client that saw this close code should reconnect:
// true for 1001, 1006, 1011, 1012, 1013, 1014 and the 4000–4099 range; false for
// everything else, including 1000 and the 4100–4199 range.
func (c CloseCode) Reconnect() bool {
	switch c {
	case CloseGoingAway, CloseAbnormal, CloseInternalError, 1012, 1013, 1014:
		return true
	}
	return c >= 4000 && c <= 4099
}

// CloseError is the error a connection ends with: the close code and reason that
// were sent to (or received from) the peer. Use [CloseStatus] to read the code
// from any error.
type CloseError struct {
	Code   CloseCode
	Reason string
}

// Error implements error.
func (e CloseError) Error() string {
	return fmt.Sprintf("rthub: connection closed: %d %s", e.Code, e.Reason)
}

// CloseStatus returns the close code carried by err (a [CloseError] anywhere in its
// chain), or 0 if there is none (0 is never a close code on the wire).
func CloseStatus(err error) CloseCode {
	var ce CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}
