// Package token mints the JSON Web Tokens an rthub hub accepts: for tests,
// examples and load tools, and for a login endpoint that issues tokens
// itself. The hub reads these claims (see [rthub.AuthOptions]):
//
//   - sub (required): the user; presence and per-user limits count by it;
//   - roles (or role): the roles the hub's Policy maps to rooms and events;
//   - name (optional): the display name presence shows;
//   - exp: when the connection is closed with 4002 (after an "expiring"
//     warning, so the client can refresh). A token without exp never expires
//     unless AuthOptions.RequireExpiry is set; always set one in production;
//   - nbf, iat (optional): checked with AuthOptions.Leeway (default 5 s) for
//     clock skew between the issuer and the hub;
//   - iss, aud: checked when AuthOptions.Issuer or Audience is set;
//   - the header's kid selects the verification key (AuthOptions.Keys).
//
// Other claims are kept in [rthub.Identity].Claims for the application.
package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of a token to mint.
type Claims struct {
	// Subject is the sub claim. Required.
	Subject string
	// Roles is the roles claim (an array; omitted when empty).
	Roles []string
	// Name is the name claim (omitted when empty).
	Name string
	// TTL sets exp to now + TTL. Zero means no exp (a token that never
	// expires: only for tests and demos); negative gives an expired token.
	TTL time.Duration
	// NotBefore sets nbf when not zero.
	NotBefore time.Time
	// Issuer and Audience set iss and aud when not empty.
	Issuer, Audience string
	// KeyID sets the header's kid when not empty.
	KeyID string
	// Extra holds further claims; it must not repeat the ones above.
	Extra map[string]any
}

// ErrBadKey is returned for a key Sign cannot sign with.
var ErrBadKey = errors.New("token: unsupported or too weak signing key")

// Sign mints a token with c, signed with key: an HMAC secret of at least 32
// bytes ([]byte: HS256), an *rsa.PrivateKey of at least 2048 bits (RS256),
// an *ecdsa.PrivateKey (ES256, ES384 or ES512 by its curve) or an
// ed25519.PrivateKey (EdDSA) — the key types and sizes the hub accepts. iat
// is set to now.
func Sign(key any, c Claims) (string, error) {
	if c.Subject == "" {
		return "", errors.New("token: Claims.Subject is required")
	}
	var m jwt.SigningMethod
	switch k := key.(type) {
	case []byte:
		if len(k) < 32 {
			return "", fmt.Errorf("%w: HMAC secret of %d bytes (the hub requires at least 32)", ErrBadKey, len(k))
		}
		m = jwt.SigningMethodHS256
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("%w: RSA key of %d bits (the hub requires at least 2048)", ErrBadKey, k.N.BitLen())
		}
		m = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			m = jwt.SigningMethodES256
		case elliptic.P384():
			m = jwt.SigningMethodES384
		case elliptic.P521():
			m = jwt.SigningMethodES512
		default:
			return "", fmt.Errorf("%w: ECDSA curve %s", ErrBadKey, k.Curve.Params().Name)
		}
	case ed25519.PrivateKey:
		m = jwt.SigningMethodEdDSA
	default:
		return "", fmt.Errorf("%w: %T", ErrBadKey, key)
	}
	now := time.Now()
	mc := jwt.MapClaims{"sub": c.Subject, "iat": now.Unix()}
	for k, v := range c.Extra {
		if _, dup := mc[k]; dup {
			return "", fmt.Errorf("token: Claims.Extra repeats %q", k)
		}
		mc[k] = v
	}
	set := func(k string, v any) error {
		if _, dup := c.Extra[k]; dup {
			return fmt.Errorf("token: Claims.Extra repeats %q", k)
		}
		mc[k] = v
		return nil
	}
	var err error
	if len(c.Roles) > 0 {
		err = errors.Join(err, set("roles", c.Roles))
	}
	if c.Name != "" {
		err = errors.Join(err, set("name", c.Name))
	}
	if c.TTL != 0 {
		err = errors.Join(err, set("exp", now.Add(c.TTL).Unix()))
	}
	if !c.NotBefore.IsZero() {
		err = errors.Join(err, set("nbf", c.NotBefore.Unix()))
	}
	if c.Issuer != "" {
		err = errors.Join(err, set("iss", c.Issuer))
	}
	if c.Audience != "" {
		err = errors.Join(err, set("aud", c.Audience))
	}
	if err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(m, mc)
	if c.KeyID != "" {
		t.Header["kid"] = c.KeyID
	}
	return t.SignedString(key)
}
