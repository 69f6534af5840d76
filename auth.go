package rthub

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Identity is who a connection belongs to, taken from its verified token.
// The hub never modifies an Identity after handing it out; treat it as read-only.
type Identity struct {
	// Subject is the token's sub claim: the user (or device) ID. Never empty.
	Subject string
	// Name is the token's name claim, if any, for display (presence lists).
	Name string
	// Roles are the roles from the token's role claim (AuthOptions.RolesClaim).
	Roles []string
	// ExpiresAt is the token's exp claim; zero if the token has none.
	ExpiresAt time.Time
	// IssuedAt is the token's iat claim; zero if the token has none (a
	// revocation by subject then counts it as issued before any instant:
	// see [Revocation]).
	IssuedAt time.Time
	// TokenID is the token's jti claim, "" if none; [Hub.Revoke] can revoke
	// the token by it.
	TokenID string
	// Claims holds the token's other claims, as decoded JSON: everything but
	// the registered claims (iss, sub, aud, exp, nbf, iat, jti) and the roles
	// and name claims, which have their own fields. It is nil when there are
	// none, so an identity costs little memory per connection.
	Claims map[string]any
}

// HasRole reports whether id has the given role.
func (id *Identity) HasRole(role string) bool {
	for _, r := range id.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// Defaults of [AuthOptions].
const (
	defaultRolesClaim    = "roles"
	defaultNameClaim     = "name"
	defaultExpiryWarning = 30 * time.Second
	defaultLeeway        = 5 * time.Second

	// minHMACKeyBytes is the shortest HMAC secret newAuthenticator accepts
	// (RFC 7518 §3.2: at least the size of the SHA-256 output).
	minHMACKeyBytes = 32
	// minRSAKeyBits is the smallest RSA modulus newAuthenticator accepts.
	minRSAKeyBits = 2048

	// maxAuthBytes bounds the work done on untrusted input: a token longer than
	// this is refused as malformed, and a request header (all its values together)
	// or query string longer than this is ignored when looking for a token.
	maxAuthBytes = 8 << 10
)

// AuthOptions configures how the hub verifies the JWT a client presents when it
// connects (docs/protocol.md §1) and when it refreshes its token (§2.2).
//
// The hub copies AuthOptions (including the Keys map and HMAC secrets) when it is
// created; changing the value afterwards has no effect. Rotate keys by creating
// a new hub or by configuring both the old and the new key under different kids.
type AuthOptions struct {
	// Keys maps a key ID (the JWT header "kid") to a verification key. The entry
	// with key "" is used for tokens that carry no kid (or an empty kid). A token
	// whose kid is not in Keys is refused with [ErrTokenUnknownKey]; there is no
	// fallback to the "" entry when the token names a kid.
	//
	// Accepted key types, and the algorithms each one verifies:
	//   - []byte: an HMAC secret of at least 32 bytes (HS256, HS384, HS512).
	//     A PEM block given as []byte is refused: parse it and pass the key.
	//   - *rsa.PublicKey of at least 2048 bits (RS256/384/512, PS256/384/512).
	//   - *ecdsa.PublicKey on P-256, P-384 or P-521 (ES256, ES384, ES512
	//     respectively: the curve must match the alg).
	//   - ed25519.PublicKey (EdDSA).
	//
	// Private keys (*rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey) are
	// refused so that signing material is not handed to the hub by mistake: pass
	// the public half instead. A token's alg must fit the type of the key its kid
	// selects; anything else is refused with [ErrTokenAlgorithm], which defeats
	// algorithm-confusion attacks (an HS256 token "signed" with an RSA public key).
	//
	// Required: at least one key.
	Keys map[string]any

	// Algorithms, if not empty, restricts the accepted algs further (for example
	// []string{"ES256"}). Names are case-sensitive JWA names: HS256, HS384, HS512,
	// RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA.
	// Default (nil): every alg compatible with the selected key's type. "none" is
	// never accepted, and listing it is a configuration error.
	Algorithms []string

	// Issuer, if not empty, must equal the token's iss claim; otherwise the token
	// is refused with [ErrTokenClaims]. Default "": iss is not checked.
	Issuer string

	// Audience, if not empty, must be the token's aud claim or one of its
	// entries; otherwise the token is refused with [ErrTokenClaims].
	// Default "": aud is not checked.
	Audience string

	// RolesClaim names the claim holding the connection's roles ([Identity.Roles]).
	// Its value may be a string (one role) or an array of strings; empty strings
	// are dropped, and any other type is refused with [ErrTokenClaims].
	// Default "roles"; with the default, a token without "roles" has its roles
	// read from "role" instead (same rules). A custom RolesClaim has no fallback.
	RolesClaim string

	// NameClaim names the claim holding the display name ([Identity.Name]). It is
	// optional in tokens; if present it must be a string, else the token is
	// refused with [ErrTokenClaims]. Default "name".
	NameClaim string

	// Leeway is the clock skew tolerated between the token's issuer and the
	// hub when checking exp, nbf and iat: a token is accepted up to Leeway
	// after its exp and from Leeway before its nbf or iat, and a connection is
	// closed (4002) at exp + Leeway. Default (0) is 5s; negative means no
	// tolerance at all.
	Leeway time.Duration

	// RequireExpiry, if true, refuses a token that has no exp claim (or exp 0)
	// with [ErrTokenClaims]. Default false: tokens without exp never expire.
	RequireExpiry bool

	// AllowQueryToken, if true, also accepts the token from a "token" query
	// parameter, after the Authorization header and the Sec-WebSocket-Protocol
	// entry. Default false, because query strings end up in access logs.
	AllowQueryToken bool

	// HTTPRefusalsForBrowsers, if true, refuses browsers' bad tokens with an
	// HTTP 401 like everyone else's. By default a browser handshake (one with
	// an Origin header that offers the rthub.v1 subprotocol) whose token is
	// refused is upgraded and at once closed with a code the page can read —
	// 4002 for an expired token (get a new one and reconnect), 4100 for any
	// other (the reason is the error code, e.g. "token_signature_invalid") —
	// because a browser's WebSocket API hides the HTTP status of a failed
	// handshake and reports every refusal as 1006, like a dead server.
	HTTPRefusalsForBrowsers bool

	// ExpiryWarning is how long before a token's exp the hub sends the client an
	// "expiring" message, asking it to refresh. Default (0) is 30s. Must not be
	// negative.
	ExpiryWarning time.Duration
}

// jwaAlgs lists the algorithms rthub knows, in a fixed order, by key family.
var (
	hmacAlgs  = []string{"HS256", "HS384", "HS512"}
	rsaAlgs   = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecdsaAlgs = []string{"ES256", "ES384", "ES512"}
	edAlgs    = []string{"EdDSA"}
)

// knownAlg reports whether alg is one of the algorithms rthub can verify.
func knownAlg(alg string) bool {
	return slices.Contains(hmacAlgs, alg) || slices.Contains(rsaAlgs, alg) ||
		slices.Contains(ecdsaAlgs, alg) || slices.Contains(edAlgs, alg)
}

// verifyKey is one compiled entry of AuthOptions.Keys.
type verifyKey struct {
	key  any      // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	algs []string // algs accepted with this key; never empty, never "none"
}

// authenticator verifies tokens. It is built once by newAuthenticator, never
// modified afterwards, and safe for concurrent use.
type authenticator struct {
	keys          map[string]*verifyKey
	issuer        string
	audience      string
	rolesClaim    string
	roleFallback  bool // also read "role" when rolesClaim is absent
	nameClaim     string
	leeway        time.Duration
	requireExpiry bool
	allowQuery    bool
	warning       time.Duration
}

// newAuthenticator checks o and compiles it. It reports every problem at once,
// joined with [errors.Join], each prefixed "rthub: auth: ".
func newAuthenticator(o AuthOptions) (*authenticator, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("rthub: auth: "+format, args...))
	}

	var restrict []string
	for _, alg := range o.Algorithms {
		switch {
		case strings.EqualFold(alg, "none"):
			bad("algorithm %q is never accepted", alg)
		case !knownAlg(alg):
			bad("unknown algorithm %q", alg)
		default:
			restrict = append(restrict, alg)
		}
	}

	if len(o.Keys) == 0 {
		bad("no verification keys configured (AuthOptions.Keys is empty)")
	}
	kids := make([]string, 0, len(o.Keys))
	for kid := range o.Keys {
		kids = append(kids, kid)
	}
	sort.Strings(kids) // deterministic error order
	keys := make(map[string]*verifyKey, len(o.Keys))
	for _, kid := range kids {
		k, err := compileKey(o.Keys[kid])
		if err != nil {
			bad("key %q: %v", kid, err)
			continue
		}
		if len(o.Algorithms) > 0 {
			k.algs = slices.DeleteFunc(k.algs, func(a string) bool { return !slices.Contains(restrict, a) })
			if len(k.algs) == 0 {
				bad("key %q: none of AuthOptions.Algorithms fits this key's type", kid)
				continue
			}
		}
		keys[kid] = k
	}

	if o.ExpiryWarning < 0 {
		bad("ExpiryWarning must not be negative")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	a := &authenticator{
		keys:          keys,
		issuer:        o.Issuer,
		audience:      o.Audience,
		rolesClaim:    o.RolesClaim,
		nameClaim:     o.NameClaim,
		leeway:        max(o.Leeway, 0),
		requireExpiry: o.RequireExpiry,
		allowQuery:    o.AllowQueryToken,
		warning:       o.ExpiryWarning,
	}
	if o.Leeway == 0 {
		a.leeway = defaultLeeway
	}
	if a.rolesClaim == "" {
		a.rolesClaim = defaultRolesClaim
		a.roleFallback = true
	}
	if a.nameClaim == "" {
		a.nameClaim = defaultNameClaim
	}
	if a.warning == 0 {
		a.warning = defaultExpiryWarning
	}
	return a, nil
}

// compileKey checks one configured key and returns it with the algorithms its
// type can verify. HMAC secrets, Ed25519 keys and RSA moduli are copied, so the
// caller changing its slices or big.Int afterwards has no effect.
func compileKey(key any) (*verifyKey, error) {
	switch k := key.(type) {
	case nil:
		return nil, errors.New("key is nil")
	case []byte:
		if bytes.HasPrefix(bytes.TrimSpace(k), []byte("-----BEGIN")) {
			return nil, errors.New("[]byte looks like a PEM block; parse it (for example with jwt.ParseRSAPublicKeyFromPEM) and pass the public key")
		}
		if len(k) < minHMACKeyBytes {
			return nil, fmt.Errorf("HMAC key is %d bytes, want at least %d", len(k), minHMACKeyBytes)
		}
		return &verifyKey{key: bytes.Clone(k), algs: slices.Clone(hmacAlgs)}, nil
	case string:
		return nil, errors.New("unsupported key type string (pass an HMAC secret as []byte)")
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return nil, errors.New("RSA public key is nil")
		}
		if bits := k.N.BitLen(); bits < minRSAKeyBits {
			return nil, fmt.Errorf("RSA key is %d bits, want at least %d", bits, minRSAKeyBits)
		}
		c := rsa.PublicKey{N: new(big.Int).Set(k.N), E: k.E}
		return &verifyKey{key: &c, algs: slices.Clone(rsaAlgs)}, nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return nil, errors.New("ECDSA public key is nil")
		}
		var alg string
		switch k.Curve {
		case elliptic.P256():
			alg = "ES256"
		case elliptic.P384():
			alg = "ES384"
		case elliptic.P521():
			alg = "ES512"
		default:
			return nil, errors.New("ECDSA key is on an unsupported curve (want P-256, P-384 or P-521)")
		}
		if _, err := k.ECDH(); err != nil {
			return nil, errors.New("ECDSA public key is not a valid curve point")
		}
		c := *k
		return &verifyKey{key: &c, algs: []string{alg}}, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("ed25519 public key is %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return &verifyKey{key: ed25519.PublicKey(bytes.Clone(k)), algs: slices.Clone(edAlgs)}, nil
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey, *ed25519.PrivateKey:
		return nil, fmt.Errorf("got private key %T: pass its public key instead", key)
	case rsa.PublicKey, ecdsa.PublicKey:
		return nil, fmt.Errorf("got %T: pass a pointer (*%T)", key, key)
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
}

// expiryWarning returns AuthOptions.ExpiryWarning, or its default.
func (a *authenticator) expiryWarning() time.Duration { return a.warning }

// tokenFromRequest finds the token in r, looking in this order (docs/protocol.md §1):
//
//  1. the Authorization header with the Bearer scheme (case-insensitive);
//  2. a Sec-WebSocket-Protocol entry "rthub.bearer.<jwt>" (the header may be
//     repeated, each value a comma-separated list);
//  3. the "token" query parameter, only if AuthOptions.AllowQueryToken is set.
//
// A place that is empty (e.g. "Bearer" with no token) is skipped. A header
// whose values together exceed 8 KiB, or a query string over 8 KiB, is ignored.
// The result is trimmed of surrounding spaces but not otherwise checked; verify
// does that. If no place holds a token, the error is [ErrTokenMissing].
func (a *authenticator) tokenFromRequest(r *http.Request) (string, error) {
	if r == nil {
		return "", ErrTokenMissing
	}
	if vals := r.Header.Values("Authorization"); totalLen(vals) <= maxAuthBytes {
		for _, v := range vals {
			if tok, ok := bearerToken(v); ok {
				return tok, nil
			}
		}
	}
	if vals := r.Header.Values("Sec-WebSocket-Protocol"); totalLen(vals) <= maxAuthBytes {
		for _, v := range vals {
			for entry := range strings.SplitSeq(v, ",") {
				entry = strings.TrimSpace(entry)
				if tok, ok := strings.CutPrefix(entry, tokenProtocolPrefix); ok {
					if tok = strings.TrimSpace(tok); tok != "" {
						return tok, nil
					}
				}
			}
		}
	}
	if a.allowQuery && r.URL != nil && len(r.URL.RawQuery) <= maxAuthBytes {
		if tok := strings.TrimSpace(r.URL.Query().Get("token")); tok != "" {
			return tok, nil
		}
	}
	return "", ErrTokenMissing
}

// bearerToken returns the credentials of an Authorization header value using
// the Bearer scheme (RFC 6750 §2.1), or false if it uses another scheme or
// carries no credentials.
func bearerToken(v string) (string, bool) {
	v = strings.TrimSpace(v)
	i := strings.IndexAny(v, " \t")
	if i < 0 || !strings.EqualFold(v[:i], "Bearer") {
		return "", false
	}
	tok := strings.TrimSpace(v[i:])
	return tok, tok != ""
}

func totalLen(vals []string) int {
	n := 0
	for _, v := range vals {
		n += len(v)
	}
	return n
}

// segmentEncoding is how JWT segments are encoded: base64url without padding.
// Strict decoding refuses non-canonical encodings (non-zero trailing bits).
var segmentEncoding = base64.RawURLEncoding.Strict()

// verify checks token completely (structure, alg, key, signature, time and
// claims) as of now and returns the identity it carries.
//
// The error wraps exactly one of the token sentinels of errors.go; its message
// is short and never includes the token, its claims or key material. When a
// token fails several claim checks, the order of precedence is [ErrTokenClaims],
// then [ErrTokenExpired], then [ErrTokenNotValidYet]. An empty token is
// [ErrTokenMissing]; one longer than 8 KiB is [ErrTokenMalformed].
func (a *authenticator) verify(token string, now time.Time) (*Identity, error) {
	if token == "" {
		return nil, ErrTokenMissing
	}
	if len(token) > maxAuthBytes {
		return nil, fmt.Errorf("%w: token too long", ErrTokenMalformed)
	}

	// Read the header ourselves to select the key, and check the alg against
	// it, before the library verifies anything: the library reports a refused
	// alg as a bad signature, and we want ErrTokenAlgorithm.
	hdrSeg, rest, ok := strings.Cut(token, ".")
	if !ok || strings.Count(rest, ".") != 1 {
		return nil, fmt.Errorf("%w: want three dot-separated segments", ErrTokenMalformed)
	}
	hdrJSON, err := segmentEncoding.DecodeString(hdrSeg)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url", ErrTokenMalformed)
	}
	var hdr map[string]any // the same decoding the jwt library does
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil || hdr == nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrTokenMalformed)
	}
	if _, ok := hdr["crit"]; ok {
		// RFC 7515 §4.1.11: extensions listed in crit must be understood; we
		// understand none.
		return nil, fmt.Errorf("%w: unsupported crit header", ErrTokenMalformed)
	}
	alg, ok := hdr["alg"].(string)
	if !ok {
		return nil, fmt.Errorf("%w: header has no alg", ErrTokenMalformed)
	}
	if strings.EqualFold(alg, "none") {
		return nil, fmt.Errorf("%w: alg none is never accepted", ErrTokenAlgorithm)
	}
	if !knownAlg(alg) {
		return nil, fmt.Errorf("%w: unsupported alg", ErrTokenAlgorithm)
	}
	kid := ""
	if v, ok := hdr["kid"]; ok {
		if kid, ok = v.(string); !ok {
			return nil, fmt.Errorf("%w: kid is not a string", ErrTokenMalformed)
		}
	}
	key, ok := a.keys[kid]
	if !ok {
		if kid == "" {
			return nil, fmt.Errorf("%w: token has no kid and no default key is configured", ErrTokenUnknownKey)
		}
		return nil, fmt.Errorf("%w: kid not configured", ErrTokenUnknownKey)
	}
	if !slices.Contains(key.algs, alg) {
		return nil, fmt.Errorf("%w: alg %s not accepted for this key", ErrTokenAlgorithm, alg)
	}

	opts := []jwt.ParserOption{
		jwt.WithValidMethods(key.algs), // defence in depth: checked above too
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(a.leeway),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}
	if a.issuer != "" {
		opts = append(opts, jwt.WithIssuer(a.issuer))
	}
	if a.audience != "" {
		opts = append(opts, jwt.WithAudience(a.audience))
	}
	if a.requireExpiry {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	claims := jwt.MapClaims{}
	_, err = jwt.NewParser(opts...).ParseWithClaims(token, claims, func(*jwt.Token) (any, error) {
		return key.key, nil
	})
	if err != nil {
		return nil, mapJWTError(err)
	}

	id := &Identity{}
	sub, err := claims.GetSubject()
	if err != nil {
		return nil, fmt.Errorf("%w: sub is not a string", ErrTokenClaims)
	}
	if sub == "" {
		return nil, fmt.Errorf("%w: sub is missing", ErrTokenClaims)
	}
	id.Subject = sub

	if v, ok := claims[a.nameClaim]; ok && v != nil {
		name, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%w: name claim is not a string", ErrTokenClaims)
		}
		id.Name = name
	}

	rolesVal, ok := claims[a.rolesClaim]
	if !ok && a.roleFallback {
		rolesVal = claims["role"]
	}
	if id.Roles, ok = claimStrings(rolesVal); !ok {
		return nil, fmt.Errorf("%w: roles claim is not a string or an array of strings", ErrTokenClaims)
	}

	exp, err := claims.GetExpirationTime()
	if err == nil && exp != nil {
		id.ExpiresAt = exp.Time
	}
	if iat, err := claims.GetIssuedAt(); err == nil && iat != nil {
		id.IssuedAt = iat.Time
	}
	if jti, ok := claims["jti"].(string); ok { // RFC 7519 §4.1.7; another type is ignored, as before
		id.TokenID = jti
	}
	for k, v := range claims {
		switch k {
		case "iss", "sub", "aud", "exp", "nbf", "iat", "jti", a.rolesClaim, a.nameClaim:
			continue
		case "role":
			if a.roleFallback {
				continue
			}
		}
		if id.Claims == nil {
			id.Claims = make(map[string]any, len(claims))
		}
		id.Claims[k] = v
	}
	return id, nil
}

// claimStrings reads a claim that holds a string or an array of strings,
// dropping empty strings. A missing (nil) claim is an empty list.
func claimStrings(v any) ([]string, bool) {
	switch v := v.(type) {
	case nil:
		return nil, true
	case string:
		if v == "" {
			return nil, true
		}
		return []string{v}, true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			if s != "" {
				out = append(out, s)
			}
		}
		return out, true
	default:
		return nil, false
	}
}

// mapJWTError turns an error of jwt.Parser into one wrapping exactly one token
// sentinel, with a fixed message (jwt's messages can quote token bytes).
func mapJWTError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: token is not a well-formed JWT", ErrTokenMalformed)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if errors.Is(err, jwt.ErrInvalidKeyType) {
			// Unreachable while verify checks the alg against the key first.
			return fmt.Errorf("%w: alg does not fit the key type", ErrTokenAlgorithm)
		}
		return fmt.Errorf("%w: signature does not verify", ErrTokenSignature)
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		switch {
		case errors.Is(err, jwt.ErrInvalidType):
			return fmt.Errorf("%w: a registered claim has the wrong type", ErrTokenClaims)
		case errors.Is(err, jwt.ErrTokenInvalidIssuer):
			return fmt.Errorf("%w: wrong issuer", ErrTokenClaims)
		case errors.Is(err, jwt.ErrTokenInvalidAudience):
			return fmt.Errorf("%w: wrong audience", ErrTokenClaims)
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return fmt.Errorf("%w: a required claim is missing", ErrTokenClaims)
		case errors.Is(err, jwt.ErrTokenExpired):
			return fmt.Errorf("%w: exp is in the past", ErrTokenExpired)
		case errors.Is(err, jwt.ErrTokenNotValidYet):
			return fmt.Errorf("%w: nbf is in the future", ErrTokenNotValidYet)
		case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return fmt.Errorf("%w: iat is in the future", ErrTokenNotValidYet)
		default:
			return fmt.Errorf("%w: claims are invalid", ErrTokenClaims)
		}
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// Unreachable while verify checks the alg first and the keyfunc never fails.
		return fmt.Errorf("%w: token cannot be verified", ErrTokenAlgorithm)
	default:
		return fmt.Errorf("%w: token refused", ErrTokenMalformed)
	}
}

// httpErrorMessages are the fixed, human-readable texts sent with each code in a
// refusal before the upgrade. They never depend on the request.
var httpErrorMessages = map[string]string{
	"token_missing":           "no token in any accepted place",
	"token_malformed":         "token is not a well-formed JWT",
	"token_expired":           "token is expired",
	"token_not_valid_yet":     "token is not valid yet",
	"token_signature_invalid": "token signature is invalid",
	"token_algorithm":         "token algorithm is not accepted",
	"token_unknown_key":       "token key is unknown",
	"token_claims":            "token claims are invalid",
	"token_revoked":           "token was revoked",
	"bad_handshake":           "not a valid WebSocket upgrade request",
	"unsupported_protocol":    "no supported subprotocol offered",
	"shutting_down":           "server is shutting down, retry later",
	"forbidden":               "forbidden",
	"forbidden_origin":        "origin not allowed",
	"rate_limited":            "too many requests",
	"too_many_connections":    "too many connections",
	"bad_request":             "bad request",
	"not_found":               "not found",
	"internal":                "internal server error",
}

// writeHTTPError answers a request refused before the WebSocket upgrade
// (docs/protocol.md §1) with status and the body
//
//	{"error":{"code":"<code>","message":"<message>"}}
//
// The code is ErrorCode(err) ("internal" for nil); the message is a fixed text
// for that code (a generic one for codes it does not know), never err.Error(),
// so nothing of the request, token or key leaks. Headers: Content-Type
// application/json, Cache-Control no-store, X-Content-Type-Options nosniff; for
// 401 also WWW-Authenticate: Bearer, with error="invalid_token" unless the
// token was missing (RFC 6750 §3.1). A status outside 400–599 is sent as 500.
func writeHTTPError(w http.ResponseWriter, status int, err error) {
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	code := ErrorCode(err)
	if code == "" {
		code = "internal"
	}
	msg, ok := httpErrorMessages[code]
	if !ok {
		msg = "request refused"
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code = code
	body.Error.Message = msg
	b, merr := json.Marshal(body)
	if merr != nil { // cannot happen: two strings
		b = []byte(`{"error":{"code":"internal","message":"internal server error"}}`)
	}

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	if status == http.StatusUnauthorized {
		if errors.Is(err, ErrTokenMissing) {
			h.Set("WWW-Authenticate", "Bearer")
		} else {
			h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
