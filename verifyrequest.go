package rthub

import (
	"net/http"
	"time"
)

// VerifyRequest verifies the token of an HTTP request to an API served
// beside the hub (such as an admin API), with the same keys, algorithms and
// claim checks as a WebSocket handshake ([AuthOptions]), and returns the
// identity it carries. Only the Authorization header with the Bearer scheme
// is read: never a query parameter or cookie, so the token stays out of
// URLs, logs and ambient browser credentials. A header whose values together
// exceed 8 KiB is ignored.
//
// A token revoked with [Hub.Revoke] is refused as at a handshake (as far as
// this node knows: its replica of the revocations). It does no I/O and
// takes no lock but the replica's. It does not apply the handshake rate
// limits nor record a [Refusal]. Errors wrap one of the token sentinels
// ([ErrTokenMissing], [ErrTokenExpired], [ErrTokenSignature],
// [ErrTokenRevoked], ...; test
// with [errors.Is]); their text never holds the token.
func (h *Hub) VerifyRequest(r *http.Request) (*Identity, error) {
	if r == nil {
		return nil, ErrTokenMissing
	}
	vals := r.Header.Values("Authorization")
	if totalLen(vals) > maxAuthBytes {
		return nil, ErrTokenMissing
	}
	for _, v := range vals {
		if tok, ok := bearerToken(v); ok {
			now := time.Now()
			id, err := h.auth.verify(tok, now)
			if err == nil {
				err = h.checkRevoked(id, now)
			}
			if err != nil {
				return nil, err
			}
			return id, nil
		}
	}
	return nil, ErrTokenMissing
}
