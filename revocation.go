package rthub

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// This file holds token revocation: the [Revocation] a caller asks for, the
// options that bound it, and the hub's local replica of the cluster's
// revocations, which the handshake and token refresh consult without I/O.

// Revocation says which tokens [Hub.Revoke] revokes: the token with TokenID,
// or every token of Subject issued before IssuedBefore. Exactly one of
// TokenID and Subject is set.
//
// A revoked token is refused at the handshake (HTTP 401 with the code
// token_revoked, or for a browser an upgrade closed at once with 4102) and
// at refresh, and the connections that hold one are closed with 4102
// ([CloseTokenRevoked]: do not retry with this token). A revocation is kept
// for [RevocationOptions].TTL, which must be at least the longest lifetime
// of a token the application issues: after it, the token would be expired
// anyway.
type Revocation struct {
	TokenID      string    // revoke the token with this jti, or
	Subject      string    // every token of this user
	IssuedBefore time.Time // issued before this instant (zero: now)
	Reason       string    // for logs and the close reason (at most 64 bytes are sent)
}

// RevocationOptions bounds the revocations a hub keeps (see [Hub.Revoke]).
type RevocationOptions struct {
	// TTL is how long a revocation is kept, in the broker and in every
	// node's replica: set it to the longest lifetime (exp − iat) of the
	// tokens the application issues, so that a revoked token expires before
	// its revocation is forgotten. Every node of a cluster uses the same.
	// Default 24 h.
	TTL time.Duration
	// MaxEntries bounds each node's replica of the revocations (about 150
	// bytes each): a subject's revocations count once, each revoked token ID
	// once. At the bound, [Hub.Revoke] refuses new revocations with
	// [ErrTooManyRevocations] until old ones expire (a refused revocation
	// is not stored, so no node falls behind the others); revoke a user's
	// tokens by Subject instead of one by one. Every node of a cluster
	// uses the same. Default 100 000.
	MaxEntries int
}

// Defaults of [RevocationOptions].
const (
	DefaultRevocationTTL        = 24 * time.Hour
	DefaultRevocationMaxEntries = 100_000
)

func (o *RevocationOptions) setDefaults() error {
	var errs []error
	if o.TTL == 0 {
		o.TTL = DefaultRevocationTTL
	} else if o.TTL < 0 {
		errs = append(errs, errors.New("rthub: Revocation.TTL is negative"))
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultRevocationMaxEntries
	} else if o.MaxEntries < 0 {
		errs = append(errs, errors.New("rthub: Revocation.MaxEntries is negative"))
	}
	return errors.Join(errs...)
}

// ErrTooManyRevocations is returned by [Hub.Revoke] when the node's replica
// of the revocations is at [RevocationOptions].MaxEntries: nothing was
// revoked.
var ErrTooManyRevocations = errors.New("rthub: too many revocations")

// maxRevokeReason bounds the reason sent in a close frame (the frame's
// payload holds at most 123 bytes).
const maxRevokeReason = 64

// check validates r and fills IssuedBefore.
func (r *Revocation) check(now time.Time) error {
	switch {
	case r.TokenID == "" && r.Subject == "":
		return fmt.Errorf("%w: a revocation needs a TokenID or a Subject", ErrBadRequest)
	case r.TokenID != "" && r.Subject != "":
		return fmt.Errorf("%w: a revocation has a TokenID or a Subject, not both", ErrBadRequest)
	case len(r.TokenID) > maxAuthBytes || len(r.Subject) > maxAuthBytes:
		return fmt.Errorf("%w: token ID or subject too long", ErrBadRequest)
	}
	if r.IssuedBefore.IsZero() {
		r.IssuedBefore = now
	}
	return nil
}

// revocationRec is a revocation as it is stored in the broker and sent to
// every node: JSON, with times in unix nanoseconds.
type revocationRec struct {
	TokenID string `json:"jti,omitempty"`
	Subject string `json:"sub,omitempty"`
	Before  int64  `json:"before,omitempty"` // Subject: tokens with iat before this
	Expires int64  `json:"exp"`              // forgotten after this
	Reason  string `json:"reason,omitempty"`
}

// matches reports whether the identity's token is revoked by rec. A token
// without iat counts as issued before any instant: it cannot show otherwise.
func (rec *revocationRec) matches(id *Identity) bool {
	if rec.TokenID != "" {
		return id.TokenID == rec.TokenID
	}
	return id.Subject == rec.Subject && (id.IssuedAt.IsZero() || id.IssuedAt.UnixNano() < rec.Before)
}

// closeReason is the close frame's reason for a connection rec revoked.
func (rec *revocationRec) closeReason() string {
	if rec.Reason == "" {
		return "token revoked"
	}
	return "token revoked: " + truncate(rec.Reason, maxRevokeReason)
}

// revEntry is one entry of the replica.
type revEntry struct {
	before  int64 // subject entries: the latest IssuedBefore
	expires int64
}

// revocationSet is a node's replica of the cluster's revocations, bounded
// by RevocationOptions.MaxEntries. Lookups take a read lock and no I/O.
type revocationSet struct {
	max int

	mu  sync.RWMutex
	jti map[string]revEntry
	sub map[string]revEntry
}

func newRevocationSet(limit int) *revocationSet {
	return &revocationSet{max: limit, jti: make(map[string]revEntry), sub: make(map[string]revEntry)}
}

// len returns the entries kept, expired ones not yet pruned included.
func (s *revocationSet) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.jti) + len(s.sub)
}

// room reports whether rec can be added: it merges into an existing entry,
// or the set is below its bound once expired entries are pruned.
func (s *revocationSet) room(rec revocationRec, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hasLocked(rec) {
		return true
	}
	if len(s.jti)+len(s.sub) >= s.max {
		s.pruneLocked(now.UnixNano())
	}
	return len(s.jti)+len(s.sub) < s.max
}

func (s *revocationSet) hasLocked(rec revocationRec) bool {
	if rec.TokenID != "" {
		_, ok := s.jti[rec.TokenID]
		return ok
	}
	_, ok := s.sub[rec.Subject]
	return ok
}

// add merges rec into the set. At the bound (expired entries pruned first)
// it keeps the set as it is and returns false.
func (s *revocationSet) add(rec revocationRec, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addLocked(rec, now.UnixNano())
}

func (s *revocationSet) addLocked(rec revocationRec, now int64) bool {
	if rec.Expires <= now {
		return true // already forgotten
	}
	m, key := s.sub, rec.Subject
	if rec.TokenID != "" {
		m, key = s.jti, rec.TokenID
	}
	e, ok := m[key]
	if !ok && len(s.jti)+len(s.sub) >= s.max {
		s.pruneLocked(now)
		if len(s.jti)+len(s.sub) >= s.max {
			return false
		}
	}
	e.before = max(e.before, rec.Before)
	e.expires = max(e.expires, rec.Expires)
	m[key] = e
	return true
}

// replace sets the replica to recs (a load from the broker). It returns how
// many did not fit.
func (s *revocationSet) replace(recs []revocationRec, now time.Time) (dropped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jti = make(map[string]revEntry, len(s.jti))
	s.sub = make(map[string]revEntry, len(s.sub))
	for _, rec := range recs {
		if !s.addLocked(rec, now.UnixNano()) {
			dropped++
		}
	}
	return dropped
}

func (s *revocationSet) pruneLocked(now int64) {
	for k, e := range s.jti {
		if e.expires <= now {
			delete(s.jti, k)
		}
	}
	for k, e := range s.sub {
		if e.expires <= now {
			delete(s.sub, k)
		}
	}
}

// revoked reports whether the identity's token is revoked.
func (s *revocationSet) revoked(id *Identity, now time.Time) bool {
	n := now.UnixNano()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if id.TokenID != "" {
		if e, ok := s.jti[id.TokenID]; ok && e.expires > n {
			return true
		}
	}
	e, ok := s.sub[id.Subject]
	return ok && e.expires > n && (id.IssuedAt.IsZero() || id.IssuedAt.UnixNano() < e.before)
}
