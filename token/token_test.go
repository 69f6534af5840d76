package token_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/token"
)

var secret = []byte("token-test-secret-0123456789abcdef")

// verify checks tok against a hub configured with key (public half) the way
// a server would: through the handshake's token check.
func verify(t *testing.T, keys map[string]any, tok string, opts func(*rthub.AuthOptions)) (*rthub.Identity, error) {
	t.Helper()
	ao := rthub.AuthOptions{Keys: keys}
	if opts != nil {
		opts(&ao)
	}
	connected := make(chan *rthub.Identity, 1)
	refused := make(chan error, 1)
	hub, err := rthub.New(rthub.Options{
		Auth:      ao,
		Policy:    rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"staff"}}}},
		OnConnect: func(_ context.Context, c rthub.ConnInfo) { connected <- c.Identity },
		OnRefused: func(_ context.Context, r rthub.Refusal) { refused <- errors.New(r.Code) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	srv := httptest.NewServer(hub)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		select {
		case err := <-refused:
			return nil, fmt.Errorf("status %d: %w", resp.StatusCode, err)
		case <-time.After(5 * time.Second):
			return nil, fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	select {
	case id := <-connected:
		return id, nil
	case <-time.After(5 * time.Second):
		return nil, errors.New("upgraded but OnConnect not called")
	}
}

func TestSign_acceptedByTheHub(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name      string
		sign, pub any
	}{
		{"HS256", secret, secret},
		{"RS256", rsaKey, &rsaKey.PublicKey},
		{"ES384", ecKey, &ecKey.PublicKey},
		{"EdDSA", edKey, edKey.Public()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := token.Sign(tc.sign, token.Claims{Subject: "alice", Roles: []string{"staff"}, Name: "Alice",
				TTL: time.Hour, KeyID: "k1", Issuer: "me", Audience: "hub", Extra: map[string]any{"tenant": "t1"}})
			if err != nil {
				t.Fatal(err)
			}
			id, err := verify(t, map[string]any{"k1": tc.pub}, tok, func(o *rthub.AuthOptions) { o.Issuer, o.Audience = "me", "hub" })
			if err != nil {
				t.Fatal(err)
			}
			if id.Subject != "alice" || id.Name != "Alice" || !slices.Equal(id.Roles, []string{"staff"}) ||
				id.Claims["tenant"] != "t1" || time.Until(id.ExpiresAt) < 59*time.Minute {
				t.Errorf("identity %+v", id)
			}
		})
	}
}

func TestSign_expired(t *testing.T) {
	tok, err := token.Sign(secret, token.Claims{Subject: "alice", TTL: -time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verify(t, map[string]any{"": secret}, tok, nil); err == nil {
		t.Fatal("expired token accepted")
	}
}

func TestSign_errors(t *testing.T) {
	smallRSA, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for name, tc := range map[string]struct {
		key any
		c   token.Claims
		bad bool // ErrBadKey
	}{
		"no subject":    {secret, token.Claims{}, false},
		"short secret":  {[]byte("short"), token.Claims{Subject: "a"}, true},
		"small RSA":     {smallRSA, token.Claims{Subject: "a"}, true},
		"P-224":         {p224, token.Claims{Subject: "a"}, true},
		"public key":    {&smallRSA.PublicKey, token.Claims{Subject: "a"}, true},
		"extra repeats": {secret, token.Claims{Subject: "a", Name: "n", Extra: map[string]any{"name": "x"}}, false},
		"extra sub":     {secret, token.Claims{Subject: "a", Extra: map[string]any{"sub": "b"}}, false},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := token.Sign(tc.key, tc.c)
			if err == nil || errors.Is(err, token.ErrBadKey) != tc.bad {
				t.Fatalf("err = %v, want an error (ErrBadKey: %v)", err, tc.bad)
			}
		})
	}
}

func ExampleSign() {
	secret := []byte("a-secret-of-at-least-32-bytes-0123456789")
	tok, err := token.Sign(secret, token.Claims{Subject: "alice", Roles: []string{"staff"}, TTL: time.Hour})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(tok) > 0)
	// Output: true
}
