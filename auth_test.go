package rthub

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testNow is the fixed "now" of every verification in these tests.
var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "rthub"
)

// testKeys are generated once per test binary: RSA generation is slow.
type testKeys struct {
	hmac  []byte
	rsa   *rsa.PrivateKey
	rsa2  *rsa.PrivateKey
	ec    *ecdsa.PrivateKey // P-256
	ec384 *ecdsa.PrivateKey // P-384
	ed    ed25519.PrivateKey
}

var getTestKeys = sync.OnceValue(func() *testKeys {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	k := &testKeys{hmac: make([]byte, 48)}
	_, err := rand.Read(k.hmac)
	must(err)
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return k
})

// testOptions is the configuration most cases verify against: an HMAC default
// key and one key of each asymmetric family, each under its own kid.
func testOptions(k *testKeys) AuthOptions {
	return AuthOptions{
		Keys: map[string]any{
			"":    k.hmac,
			"rsa": &k.rsa.PublicKey,
			"ec":  &k.ec.PublicKey,
			"ed":  k.ed.Public(),
		},
		Issuer:   testIssuer,
		Audience: testAudience,
		Leeway:   -1, // exact times; the default leeway has its own cases
	}
}

func newTestAuthenticator(t testing.TB, o AuthOptions) *authenticator {
	t.Helper()
	a, err := newAuthenticator(o)
	if err != nil {
		t.Fatalf("newAuthenticator: %v", err)
	}
	return a
}

// claims returns valid claims for testOptions, changed by mods.
func claims(mods ...func(jwt.MapClaims)) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub":   "alice",
		"name":  "Alice",
		"roles": []any{"staff", "admin"},
		"iss":   testIssuer,
		"aud":   testAudience,
		"iat":   testNow.Add(-time.Minute).Unix(),
		"exp":   testNow.Add(time.Hour).Unix(),
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

func set(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
func del(k string) func(jwt.MapClaims)        { return func(c jwt.MapClaims) { delete(c, k) } }

func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// replaceSegment returns tok with its i-th dot-separated segment replaced.
func replaceSegment(tok string, i int, seg string) string {
	parts := strings.Split(tok, ".")
	parts[i] = seg
	return strings.Join(parts, ".")
}

// flipMiddle changes one character in the middle of a base64url segment, which
// changes the decoded bytes (unlike the last character, which may only hold
// padding bits).
func flipMiddle(seg string) string {
	i := len(seg) / 2
	c := byte('A')
	if seg[i] == 'A' {
		c = 'B'
	}
	return seg[:i] + string(c) + seg[i+1:]
}

var tokenSentinels = []error{
	ErrTokenMissing, ErrTokenMalformed, ErrTokenExpired, ErrTokenNotValidYet,
	ErrTokenSignature, ErrTokenAlgorithm, ErrTokenUnknownKey, ErrTokenClaims,
}

// countTokenSentinels returns how many token sentinels err wraps.
func countTokenSentinels(err error) int {
	n := 0
	for _, s := range tokenSentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	return n
}

type verifyCase struct {
	name     string
	opts     func(*AuthOptions) // changes testOptions; nil for none
	token    string
	wantErr  error // nil: the token must verify
	wantCode string
	want     *Identity // Subject, Name, Roles, ExpiresAt are compared
}

func verifyCases(t testing.TB, k *testKeys) []verifyCase {
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, k.hmac, "", c) }
	valid := hs(claims())
	validRS := sign(t, jwt.SigningMethodRS256, k.rsa, "rsa", claims())
	hdrHS := b64(`{"alg":"HS256","typ":"JWT"}`)
	payload := b64JSON(t, claims())
	sigHS := strings.Split(valid, ".")[2]

	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	alice := func(mods ...func(*Identity)) *Identity {
		id := &Identity{Subject: "alice", Name: "Alice", Roles: []string{"staff", "admin"}, ExpiresAt: time.Unix(testNow.Add(time.Hour).Unix(), 0)}
		for _, m := range mods {
			m(id)
		}
		return id
	}
	onlyKey := func(kid string, key any) func(*AuthOptions) {
		return func(o *AuthOptions) { o.Keys = map[string]any{kid: key} }
	}

	return []verifyCase{
		// Valid tokens, one per algorithm family.
		{name: "valid HS256", token: valid, want: alice()},
		{name: "valid HS384", token: sign(t, jwt.SigningMethodHS384, k.hmac, "", claims()), want: alice()},
		{name: "valid HS512", token: sign(t, jwt.SigningMethodHS512, k.hmac, "", claims()), want: alice()},
		{name: "valid RS256", token: validRS, want: alice()},
		{name: "valid RS512", token: sign(t, jwt.SigningMethodRS512, k.rsa, "rsa", claims()), want: alice()},
		{name: "valid PS256", token: sign(t, jwt.SigningMethodPS256, k.rsa, "rsa", claims()), want: alice()},
		{name: "valid ES256", token: sign(t, jwt.SigningMethodES256, k.ec, "ec", claims()), want: alice()},
		{name: "valid EdDSA", token: sign(t, jwt.SigningMethodEdDSA, k.ed, "ed", claims()), want: alice()},

		// Identity fields.
		{name: "role from string claim", token: hs(claims(del("roles"), set("role", "operator"))),
			want: alice(func(id *Identity) { id.Roles = []string{"operator"} })},
		{name: "roles as a single string", token: hs(claims(set("roles", "staff"))),
			want: alice(func(id *Identity) { id.Roles = []string{"staff"} })},
		{name: "roles win over role", token: hs(claims(set("role", "operator"))), want: alice()},
		{name: "empty roles dropped", token: hs(claims(set("roles", []any{"", "staff", ""}))),
			want: alice(func(id *Identity) { id.Roles = []string{"staff"} })},
		{name: "no roles, no name", token: hs(claims(del("roles"), del("name"))),
			want: alice(func(id *Identity) { id.Roles, id.Name = nil, "" })},
		{name: "custom roles and name claims",
			opts:  func(o *AuthOptions) { o.RolesClaim, o.NameClaim = "perms", "display" },
			token: hs(claims(set("perms", []any{"ops"}), set("display", "Al"))),
			want:  alice(func(id *Identity) { id.Roles, id.Name = []string{"ops"}, "Al" })},
		{name: "custom roles claim has no role fallback",
			opts:  func(o *AuthOptions) { o.RolesClaim = "perms" },
			token: hs(claims(del("roles"), set("role", "operator"))),
			want:  alice(func(id *Identity) { id.Roles = nil })},
		{name: "no exp", token: hs(claims(del("exp"))),
			want: alice(func(id *Identity) { id.ExpiresAt = time.Time{} })},
		{name: "aud array containing audience", token: hs(claims(set("aud", []any{"other", testAudience}))), want: alice()},
		{name: "no issuer or audience configured",
			opts:  func(o *AuthOptions) { o.Issuer, o.Audience = "", "" },
			token: hs(claims(del("iss"), del("aud"))), want: alice()},

		// Missing and malformed.
		{name: "empty token", token: "", wantErr: ErrTokenMissing, wantCode: "token_missing"},
		{name: "garbage", token: "not-a-jwt", wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "two segments", token: hdrHS + "." + payload, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "four segments", token: valid + ".x", wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "bad base64 header", token: "!!!." + payload + "." + sigHS, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "padded base64 header", token: base64.URLEncoding.EncodeToString([]byte(`{"alg":"HS256","x":12}`)) + "." + payload + "." + sigHS,
			wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "bad base64 payload", token: hdrHS + ".@@@." + sigHS, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "bad base64 signature", token: hdrHS + "." + payload + ".***", wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "bad JSON header", token: b64(`{"alg":`) + "." + payload + "." + sigHS, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "header is a JSON array", token: b64(`["HS256"]`) + "." + payload + "." + sigHS, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "header is JSON null", token: b64(`null`) + "." + payload + "." + sigHS, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "bad JSON payload", token: hdrHS + "." + b64(`{"sub":"alice"`) + "." + sigHS, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "header without alg", token: b64(`{"typ":"JWT"}`) + "." + payload + "." + sigHS, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "kid not a string", token: b64(`{"alg":"HS256","kid":7}`) + "." + payload + "." + sigHS, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "crit header", token: b64(`{"alg":"HS256","crit":["exp"]}`) + "." + payload + "." + sigHS, wantErr: ErrTokenMalformed, wantCode: "token_malformed"},
		{name: "token over 8 KiB", token: hs(claims(set("pad", strings.Repeat("x", 8<<10)))), wantErr: ErrTokenMalformed, wantCode: "token_malformed"},

		// Time.
		{name: "expired", token: hs(claims(set("exp", testNow.Add(-time.Minute).Unix()))), wantErr: ErrTokenExpired, wantCode: "token_expired"},
		{name: "expires exactly now", token: hs(claims(set("exp", testNow.Unix()))), wantErr: ErrTokenExpired, wantCode: "token_expired"},
		{name: "expired within leeway accepted",
			opts:  func(o *AuthOptions) { o.Leeway = 2 * time.Minute },
			token: hs(claims(set("exp", testNow.Add(-time.Minute).Unix()))),
			want:  alice(func(id *Identity) { id.ExpiresAt = testNow.Add(-time.Minute) })},
		{name: "expired beyond leeway",
			opts:    func(o *AuthOptions) { o.Leeway = 2 * time.Minute },
			token:   hs(claims(set("exp", testNow.Add(-3*time.Minute).Unix()))),
			wantErr: ErrTokenExpired, wantCode: "token_expired"},
		{name: "default leeway: expired 4 s ago accepted",
			opts:  func(o *AuthOptions) { o.Leeway = 0 },
			token: hs(claims(set("exp", testNow.Add(-4*time.Second).Unix()))),
			want:  alice(func(id *Identity) { id.ExpiresAt = testNow.Add(-4 * time.Second) })},
		{name: "default leeway: expired 6 s ago",
			opts:    func(o *AuthOptions) { o.Leeway = 0 },
			token:   hs(claims(set("exp", testNow.Add(-6*time.Second).Unix()))),
			wantErr: ErrTokenExpired, wantCode: "token_expired"},
		{name: "default leeway: iat 4 s ahead (issuer's clock fast) accepted",
			opts:  func(o *AuthOptions) { o.Leeway = 0 },
			token: hs(claims(set("iat", testNow.Add(4*time.Second).Unix()))), want: alice()},
		{name: "nbf in the future", token: hs(claims(set("nbf", testNow.Add(time.Minute).Unix()))), wantErr: ErrTokenNotValidYet, wantCode: "token_not_valid_yet"},
		{name: "nbf within leeway accepted",
			opts:  func(o *AuthOptions) { o.Leeway = 2 * time.Minute },
			token: hs(claims(set("nbf", testNow.Add(time.Minute).Unix()))), want: alice()},
		{name: "iat in the future", token: hs(claims(set("iat", testNow.Add(time.Minute).Unix()))), wantErr: ErrTokenNotValidYet, wantCode: "token_not_valid_yet"},
		{name: "RequireExpiry without exp",
			opts:    func(o *AuthOptions) { o.RequireExpiry = true },
			token:   hs(claims(del("exp"))),
			wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "RequireExpiry with exp",
			opts:  func(o *AuthOptions) { o.RequireExpiry = true },
			token: valid, want: alice()},
		{name: "exp of wrong type", token: hs(claims(set("exp", "tomorrow"))), wantErr: ErrTokenClaims, wantCode: "token_claims"},

		// Signature.
		{name: "tampered payload HS256", token: replaceSegment(valid, 1, b64JSON(t, claims(set("sub", "mallory")))),
			wantErr: ErrTokenSignature, wantCode: "token_signature_invalid"},
		{name: "tampered payload RS256", token: replaceSegment(validRS, 1, b64JSON(t, claims(set("roles", []any{"admin"})))),
			wantErr: ErrTokenSignature, wantCode: "token_signature_invalid"},
		{name: "tampered signature", token: replaceSegment(valid, 2, flipMiddle(sigHS)),
			wantErr: ErrTokenSignature, wantCode: "token_signature_invalid"},
		{name: "empty signature", token: replaceSegment(valid, 2, ""),
			wantErr: ErrTokenSignature, wantCode: "token_signature_invalid"},
		{name: "signed by another RSA key", token: sign(t, jwt.SigningMethodRS256, k.rsa2, "rsa", claims()),
			wantErr: ErrTokenSignature, wantCode: "token_signature_invalid"},

		// Algorithm.
		{name: "alg none", token: b64(`{"alg":"none","typ":"JWT"}`) + "." + payload + ".",
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},
		{name: "alg None", token: b64(`{"alg":"None","typ":"JWT"}`) + "." + payload + ".",
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},
		{name: "alg unknown", token: b64(`{"alg":"HS1024"}`) + "." + payload + "." + sigHS,
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},
		{name: "HS256 with RSA public key PEM as secret (algorithm confusion)",
			opts:    onlyKey("", &k.rsa.PublicKey),
			token:   sign(t, jwt.SigningMethodHS256, pubPEM, "", claims()),
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},
		{name: "HS256 with RSA public key DER as secret (algorithm confusion)",
			opts:    onlyKey("", &k.rsa.PublicKey),
			token:   sign(t, jwt.SigningMethodHS256, pubDER, "", claims()),
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},
		{name: "RS256 when Algorithms is ES256",
			opts:    func(o *AuthOptions) { o.Keys = map[string]any{"": &k.ec.PublicKey}; o.Algorithms = []string{"ES256"} },
			token:   sign(t, jwt.SigningMethodRS256, k.rsa, "", claims()),
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},
		{name: "PS256 when Algorithms is RS256",
			opts: func(o *AuthOptions) {
				o.Keys = map[string]any{"rsa": &k.rsa.PublicKey}
				o.Algorithms = []string{"RS256"}
			},
			token:   sign(t, jwt.SigningMethodPS256, k.rsa, "rsa", claims()),
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},
		{name: "ES384 token for a P-256 key", token: sign(t, jwt.SigningMethodES384, k.ec384, "ec", claims()),
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},
		{name: "ES256 token for an Ed25519 key", token: sign(t, jwt.SigningMethodES256, k.ec, "ed", claims()),
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},
		{name: "RS256 token for the HMAC key", token: sign(t, jwt.SigningMethodRS256, k.rsa, "", claims()),
			wantErr: ErrTokenAlgorithm, wantCode: "token_algorithm"},

		// Key selection.
		{name: "unknown kid", token: sign(t, jwt.SigningMethodRS256, k.rsa, "nope", claims()),
			wantErr: ErrTokenUnknownKey, wantCode: "token_unknown_key"},
		{name: "kid given, only a default key: no fallback",
			opts:    onlyKey("", k.hmac),
			token:   sign(t, jwt.SigningMethodHS256, k.hmac, "k1", claims()),
			wantErr: ErrTokenUnknownKey, wantCode: "token_unknown_key"},
		{name: "no kid and no default key",
			opts:    onlyKey("rsa", &k.rsa.PublicKey),
			token:   sign(t, jwt.SigningMethodRS256, k.rsa, "", claims()),
			wantErr: ErrTokenUnknownKey, wantCode: "token_unknown_key"},

		// Claims.
		{name: "wrong issuer", token: hs(claims(set("iss", "https://evil.test"))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "missing issuer", token: hs(claims(del("iss"))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "wrong audience", token: hs(claims(set("aud", "other"))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "missing audience", token: hs(claims(del("aud"))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "missing sub", token: hs(claims(del("sub"))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "empty sub", token: hs(claims(set("sub", ""))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "sub is a number", token: hs(claims(set("sub", 42))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "roles is a number", token: hs(claims(set("roles", 7))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "roles array holds a number", token: hs(claims(set("roles", []any{"staff", 7}))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "role fallback is a number", token: hs(claims(del("roles"), set("role", 7))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "name is an object", token: hs(claims(set("name", map[string]any{"first": "A"}))), wantErr: ErrTokenClaims, wantCode: "token_claims"},
		{name: "expired and wrong issuer: claims win", token: hs(claims(set("iss", "x"), set("exp", testNow.Add(-time.Hour).Unix()))),
			wantErr: ErrTokenClaims, wantCode: "token_claims"},
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	k := getTestKeys()
	for _, tc := range verifyCases(t, k) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := testOptions(k)
			if tc.opts != nil {
				tc.opts(&o)
			}
			a := newTestAuthenticator(t, o)
			got, err := a.verify(tc.token, testNow)

			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("verify: got err %v, want %v", err, tc.wantErr)
				}
				if n := countTokenSentinels(err); n != 1 {
					t.Errorf("verify: err %v wraps %d token sentinels, want 1", err, n)
				}
				if code := ErrorCode(err); code != tc.wantCode {
					t.Errorf("ErrorCode: got %q, want %q", code, tc.wantCode)
				}
				if got != nil {
					t.Errorf("verify: got identity %+v with error", got)
				}
				if len(tc.token) > 8 && strings.Contains(err.Error(), tc.token) {
					t.Errorf("verify: error message %q contains the token", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("verify: got err %v, want nil", err)
			}
			if got.Subject != tc.want.Subject {
				t.Errorf("Subject: got %q, want %q", got.Subject, tc.want.Subject)
			}
			if got.Name != tc.want.Name {
				t.Errorf("Name: got %q, want %q", got.Name, tc.want.Name)
			}
			if !slices.Equal(got.Roles, tc.want.Roles) {
				t.Errorf("Roles: got %q, want %q", got.Roles, tc.want.Roles)
			}
			if !got.ExpiresAt.Equal(tc.want.ExpiresAt) {
				t.Errorf("ExpiresAt: got %v, want %v", got.ExpiresAt, tc.want.ExpiresAt)
			}
			if _, ok := got.Claims["sub"]; ok {
				t.Errorf("Claims holds sub (%v); registered claims have their own fields", got.Claims["sub"])
			}
		})
	}
}

func TestVerifyKidRotation(t *testing.T) {
	t.Parallel()
	k := getTestKeys()
	tokOld := sign(t, jwt.SigningMethodRS256, k.rsa, "2025", claims())
	tokNew := sign(t, jwt.SigningMethodRS256, k.rsa2, "2026", claims())
	// A token naming the new kid but signed with the old key must not verify.
	tokMixed := sign(t, jwt.SigningMethodRS256, k.rsa, "2026", claims())

	both := newTestAuthenticator(t, AuthOptions{Keys: map[string]any{"2025": &k.rsa.PublicKey, "2026": &k.rsa2.PublicKey}})
	for _, tok := range []string{tokOld, tokNew} {
		if _, err := both.verify(tok, testNow); err != nil {
			t.Errorf("both keys: verify: got err %v, want nil", err)
		}
	}
	if _, err := both.verify(tokMixed, testNow); !errors.Is(err, ErrTokenSignature) {
		t.Errorf("both keys, mixed token: got err %v, want %v", err, ErrTokenSignature)
	}

	rotated := newTestAuthenticator(t, AuthOptions{Keys: map[string]any{"2026": &k.rsa2.PublicKey}})
	if _, err := rotated.verify(tokNew, testNow); err != nil {
		t.Errorf("after rotation, new kid: got err %v, want nil", err)
	}
	_, err := rotated.verify(tokOld, testNow)
	if !errors.Is(err, ErrTokenUnknownKey) {
		t.Errorf("after rotation, old kid: got err %v, want %v", err, ErrTokenUnknownKey)
	}
	if code := ErrorCode(err); code != "token_unknown_key" {
		t.Errorf("after rotation, old kid: ErrorCode got %q, want %q", code, "token_unknown_key")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	t.Parallel()
	k := getTestKeys()
	a := newTestAuthenticator(t, testOptions(k))
	good := sign(t, jwt.SigningMethodES256, k.ec, "ec", claims())
	bad := sign(t, jwt.SigningMethodHS256, k.hmac, "", claims(set("iss", "x")))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := a.verify(good, testNow); err != nil {
					t.Errorf("verify good: got err %v, want nil", err)
				}
				if _, err := a.verify(bad, testNow); !errors.Is(err, ErrTokenClaims) {
					t.Errorf("verify bad: got err %v, want %v", err, ErrTokenClaims)
				}
			}
		})
	}
	wg.Wait()
}

// The authenticator keeps its own copy of the options and HMAC secrets.
func TestNewAuthenticatorCopiesOptions(t *testing.T) {
	t.Parallel()
	k := getTestKeys()
	secret := slices.Clone(k.hmac)
	o := AuthOptions{Keys: map[string]any{"": secret}}
	a := newTestAuthenticator(t, o)
	tok := sign(t, jwt.SigningMethodHS256, k.hmac, "", claims())

	secret[0] ^= 0xff
	o.Keys[""] = []byte("changed-changed-changed-changed-changed")
	o.Keys["new"] = k.hmac
	if _, err := a.verify(tok, testNow); err != nil {
		t.Errorf("verify after changing options: got err %v, want nil", err)
	}
	if _, err := a.verify(sign(t, jwt.SigningMethodHS256, k.hmac, "new", claims()), testNow); !errors.Is(err, ErrTokenUnknownKey) {
		t.Errorf("kid added after construction: got err %v, want %v", err, ErrTokenUnknownKey)
	}
}

func TestNewAuthenticatorDefaults(t *testing.T) {
	t.Parallel()
	k := getTestKeys()
	tests := []struct {
		name                         string
		opts                         AuthOptions
		wantRoles, wantName          string
		wantWarn                     time.Duration
		wantAllowQuery, wantFallback bool
	}{
		{name: "defaults", opts: AuthOptions{Keys: map[string]any{"": k.hmac}},
			wantRoles: "roles", wantName: "name", wantWarn: 30 * time.Second, wantFallback: true},
		{name: "set", opts: AuthOptions{Keys: map[string]any{"": k.hmac}, RolesClaim: "r", NameClaim: "n",
			ExpiryWarning: time.Minute, AllowQueryToken: true},
			wantRoles: "r", wantName: "n", wantWarn: time.Minute, wantAllowQuery: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newTestAuthenticator(t, tc.opts)
			if a.rolesClaim != tc.wantRoles || a.roleFallback != tc.wantFallback {
				t.Errorf("roles claim: got %q (fallback %v), want %q (fallback %v)", a.rolesClaim, a.roleFallback, tc.wantRoles, tc.wantFallback)
			}
			if a.nameClaim != tc.wantName {
				t.Errorf("name claim: got %q, want %q", a.nameClaim, tc.wantName)
			}
			if got := a.expiryWarning(); got != tc.wantWarn {
				t.Errorf("expiryWarning: got %v, want %v", got, tc.wantWarn)
			}
			if a.allowQuery != tc.wantAllowQuery {
				t.Errorf("allowQuery: got %v, want %v", a.allowQuery, tc.wantAllowQuery)
			}
		})
	}
}

func TestNewAuthenticatorErrors(t *testing.T) {
	t.Parallel()
	k := getTestKeys()
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	small := &rsa.PublicKey{N: new(big.Int).Lsh(big.NewInt(1), 1023), E: 65537}

	tests := []struct {
		name string
		opts AuthOptions
		want []string // substrings, one per expected problem
	}{
		{name: "nil keys", opts: AuthOptions{}, want: []string{"no verification keys"}},
		{name: "empty keys", opts: AuthOptions{Keys: map[string]any{}}, want: []string{"no verification keys"}},
		{name: "short HMAC key", opts: AuthOptions{Keys: map[string]any{"": []byte("0123456789abcdef")}},
			want: []string{`key "": HMAC key is 16 bytes, want at least 32`}},
		{name: "string key", opts: AuthOptions{Keys: map[string]any{"k": string(k.hmac)}},
			want: []string{`key "k": unsupported key type string`}},
		{name: "int key", opts: AuthOptions{Keys: map[string]any{"k": 42}},
			want: []string{`key "k": unsupported key type int`}},
		{name: "nil key", opts: AuthOptions{Keys: map[string]any{"k": nil}}, want: []string{`key "k": key is nil`}},
		{name: "nil RSA key", opts: AuthOptions{Keys: map[string]any{"k": (*rsa.PublicKey)(nil)}}, want: []string{"RSA public key is nil"}},
		{name: "RSA key by value", opts: AuthOptions{Keys: map[string]any{"k": k.rsa.PublicKey}}, want: []string{"pass a pointer (*rsa.PublicKey)"}},
		{name: "small RSA key", opts: AuthOptions{Keys: map[string]any{"k": small}}, want: []string{"RSA key is 1024 bits, want at least 2048"}},
		{name: "RSA private key", opts: AuthOptions{Keys: map[string]any{"k": k.rsa}}, want: []string{"pass its public key"}},
		{name: "ECDSA private key", opts: AuthOptions{Keys: map[string]any{"k": k.ec}}, want: []string{"pass its public key"}},
		{name: "Ed25519 private key", opts: AuthOptions{Keys: map[string]any{"k": k.ed}}, want: []string{"pass its public key"}},
		{name: "short Ed25519 key", opts: AuthOptions{Keys: map[string]any{"k": ed25519.PublicKey{1, 2, 3}}}, want: []string{"ed25519 public key is 3 bytes"}},
		{name: "P-224 key", opts: AuthOptions{Keys: map[string]any{"k": &p224.PublicKey}}, want: []string{"unsupported curve"}},
		{name: "PEM bytes as HMAC key", opts: AuthOptions{Keys: map[string]any{"k": pubPEM}}, want: []string{"looks like a PEM block"}},
		{name: "unknown alg", opts: AuthOptions{Keys: map[string]any{"": k.hmac}, Algorithms: []string{"HS256", "HS999"}},
			want: []string{`unknown algorithm "HS999"`}},
		{name: "lower-case alg", opts: AuthOptions{Keys: map[string]any{"": k.hmac}, Algorithms: []string{"hs256"}},
			want: []string{`unknown algorithm "hs256"`, "none of AuthOptions.Algorithms fits"}},
		{name: "alg none", opts: AuthOptions{Keys: map[string]any{"": k.hmac}, Algorithms: []string{"HS256", "none"}},
			want: []string{`algorithm "none" is never accepted`}},
		{name: "Algorithms fit no key", opts: AuthOptions{Keys: map[string]any{"": k.hmac}, Algorithms: []string{"RS256"}},
			want: []string{`key "": none of AuthOptions.Algorithms fits`}},
		{name: "negative durations", opts: AuthOptions{Keys: map[string]any{"": k.hmac}, ExpiryWarning: -1},
			want: []string{"ExpiryWarning must not be negative"}},
		{name: "every problem reported",
			opts: AuthOptions{Keys: map[string]any{"a": []byte("short"), "b": "str", "c": &k.rsa.PublicKey}, Algorithms: []string{"XX"}},
			want: []string{`unknown algorithm "XX"`, `key "a": HMAC key is 5 bytes`, `key "b": unsupported key type string`,
				`key "c": none of AuthOptions.Algorithms fits`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := newAuthenticator(tc.opts)
			if err == nil {
				t.Fatalf("newAuthenticator: got %+v, nil error; want error", a)
			}
			if a != nil {
				t.Errorf("newAuthenticator: got non-nil authenticator with error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("got %d problems %q, want %d", len(lines), lines, len(tc.want))
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, "rthub: auth: ") {
					t.Errorf("problem %q: want prefix %q", l, "rthub: auth: ")
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), string(k.hmac)) {
				t.Errorf("error %q contains key material", err)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	k := getTestKeys()
	for _, tc := range verifyCases(f, k) {
		f.Add(tc.token)
	}
	a, err := newAuthenticator(testOptions(k))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := a.verify(token, testNow)
		if err != nil {
			if id != nil {
				t.Fatalf("got identity %+v with error %v", id, err)
			}
			if n := countTokenSentinels(err); n != 1 {
				t.Fatalf("error %v wraps %d token sentinels, want 1", err, n)
			}
			if code := ErrorCode(err); !strings.HasPrefix(code, "token_") {
				t.Fatalf("ErrorCode(%v) = %q, want a token_ code", err, code)
			}
			// Messages are fixed texts without dots, so a token-like input
			// can never appear in one by chance.
			if strings.Contains(token, ".") && len(token) >= 8 && strings.Contains(err.Error(), token) {
				t.Fatalf("error %q contains the token", err)
			}
			return
		}
		if id == nil || id.Subject == "" {
			t.Fatalf("got identity %+v, nil error; want a subject", id)
		}
	})
}

// FuzzVerifyClaims fuzzes the claims of correctly signed tokens, which
// FuzzVerify rarely reaches: claim types, times, roles and names.
func FuzzVerifyClaims(f *testing.F) {
	k := getTestKeys()
	for _, c := range []jwt.MapClaims{
		claims(),
		claims(del("exp")),
		claims(del("roles"), set("role", "operator")),
		claims(set("roles", 7)),
		claims(set("roles", []any{"a", 7})),
		claims(set("sub", 42)),
		claims(set("exp", "x")),
		claims(set("exp", 1e300)),
		claims(set("nbf", -1e300)),
		claims(set("aud", []any{1})),
		claims(set("name", nil)),
	} {
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"sub":"a","exp":0}`))

	a, err := newAuthenticator(testOptions(k))
	if err != nil {
		f.Fatal(err)
	}
	header := b64(`{"alg":"HS256","typ":"JWT"}`)
	f.Fuzz(func(t *testing.T, payload []byte) {
		input := header + "." + base64.RawURLEncoding.EncodeToString(payload)
		sig, err := jwt.SigningMethodHS256.Sign(input, k.hmac)
		if err != nil {
			t.Fatal(err)
		}
		id, err := a.verify(input+"."+base64.RawURLEncoding.EncodeToString(sig), testNow)
		if err != nil {
			if id != nil {
				t.Fatalf("got identity %+v with error %v", id, err)
			}
			if n := countTokenSentinels(err); n != 1 {
				t.Fatalf("error %v wraps %d token sentinels, want 1", err, n)
			}
			if errors.Is(err, ErrTokenSignature) || errors.Is(err, ErrTokenAlgorithm) || errors.Is(err, ErrTokenUnknownKey) {
				t.Fatalf("correctly signed token refused with %v", err)
			}
			return
		}
		if id == nil || id.Subject == "" {
			t.Fatalf("got identity %+v, nil error; want a subject", id)
		}
		if !id.ExpiresAt.IsZero() && !testNow.Before(id.ExpiresAt) {
			t.Fatalf("accepted a token that expired at %v (now %v)", id.ExpiresAt, testNow)
		}
		if slices.Contains(id.Roles, "") {
			t.Fatalf("roles %q contain an empty string", id.Roles)
		}
	})
}

func TestVerifyKeepsCustomClaims(t *testing.T) {
	t.Parallel()
	a, err := newAuthenticator(AuthOptions{Keys: map[string]any{"": []byte("0123456789abcdef0123456789abcdef")}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "roles": []string{"staff"}, "name": "Alice", "devices": []string{"7", "9"}, "tenant": "acme",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}).SignedString([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.verify(tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(id.Claims) != 2 || id.Claims["tenant"] != "acme" || len(id.Claims["devices"].([]any)) != 2 {
		t.Fatalf("Claims = %v, want only devices and tenant", id.Claims)
	}
	plain, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "bob", "roles": []string{"staff"}}).
		SignedString([]byte("0123456789abcdef0123456789abcdef"))
	if id, err := a.verify(plain, time.Now()); err != nil || id.Claims != nil {
		t.Fatalf("verify(plain) = %v, %v; want nil Claims", id, err)
	}
}
