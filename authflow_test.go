package rthub

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestHub_HandshakeRefusals: every token problem is refused before the
// upgrade with 401 and a JSON body carrying the documented code.
func TestHub_HandshakeRefusals(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, nil)
	httpURL := "http" + strings.TrimPrefix(url, "ws")
	sign := func(m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := testToken(t, "alice", time.Hour, "staff")
	parts := strings.Split(valid, ".")
	none := sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "alice"})
	tests := []struct {
		name, token, code string
	}{
		{"missing", "", "token_missing"},
		{"garbage", "not-a-jwt", "token_malformed"},
		{"expired", testToken(t, "alice", -time.Minute, "staff"), "token_expired"},
		{"notYetValid", sign(jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "a", "nbf": time.Now().Add(time.Hour).Unix()}), "token_not_valid_yet"},
		{"tamperedPayload", parts[0] + "." + strings.TrimRight(jwtSegment(`{"sub":"root","roles":["admin"]}`), "=") + "." + parts[2], "token_signature_invalid"},
		{"tamperedSignature", parts[0] + "." + parts[1] + "." + flipLast(parts[2]), "token_signature_invalid"},
		{"wrongKey", sign(jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), jwt.MapClaims{"sub": "a"}), "token_signature_invalid"},
		{"algNone", none, "token_algorithm"},
		{"unknownKid", signKid(t, "k9"), "token_unknown_key"},
		{"noSubject", sign(jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"roles": []string{"staff"}}), "token_claims"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest("GET", httpURL, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401 (body %s)", resp.StatusCode, body)
			}
			if want := `{"error":{"code":"` + tc.code + `"`; !strings.HasPrefix(string(body), want) {
				t.Fatalf("body = %s, want prefix %s", body, want)
			}
			if tc.token != "" && strings.Contains(string(body), tc.token) {
				t.Fatal("body echoes the token")
			}
		})
	}
}

func jwtSegment(s string) string {
	return strings.TrimRight(b64url(s), "=")
}

func b64url(s string) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out []byte
	b := []byte(s)
	for i := 0; i < len(b); i += 3 {
		var n uint32
		k := min(3, len(b)-i)
		for j := range 3 {
			n <<= 8
			if j < k {
				n |= uint32(b[i+j])
			}
		}
		for j := range k + 1 {
			out = append(out, enc[(n>>(18-6*j))&63])
		}
	}
	return string(out)
}

func flipLast(s string) string {
	c := s[len(s)-2]
	if c == 'A' {
		c = 'B'
	} else {
		c = 'A'
	}
	return s[:len(s)-2] + string(c) + s[len(s)-1:]
}

func signKid(t *testing.T, kid string) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "a"})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHub_Refresh: a refresh moves the expiry; a demotion leaves the admin
// room at once; a token for another subject closes with 4100; a bad token is
// refused with its code and the connection stays.
func TestHub_Refresh(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, nil)
	c := dial(t, url, testToken(t, "ann", time.Hour, "admin"))
	w := c.read()
	if !slices.Contains(w.Rooms, "admin") {
		t.Fatalf("admin not auto-joined: %v", w.Rooms)
	}
	if r := c.cmd("join", map[string]any{"room": "device:7:temp"}); !r.OK {
		t.Fatalf("admin join device:7:temp: %+v", r.Error)
	}

	// A refused refresh changes nothing.
	r := c.cmd("refresh", map[string]any{"token": testToken(t, "ann", -time.Minute, "staff")})
	if r.Error == nil || r.Error.Code != "token_expired" {
		t.Fatalf("expired refresh = %+v", r)
	}

	// Demotion: admin → staff. The "left" pushes come before the reply.
	c.write(map[string]any{"id": 100, "op": "refresh", "token": testToken(t, "ann", 2*time.Hour, "staff")})
	var left []string
	for {
		m := c.read()
		if m.Type == "left" {
			left = append(left, m.Room+"/"+m.Reason)
		}
		if m.Type == "reply" && m.ID == 100 {
			if !m.OK {
				t.Fatalf("refresh: %+v", m.Error)
			}
			if m.Expires == 0 && !strings.Contains(string(m.Data), "expires") {
				t.Fatalf("refresh reply without expires: %s", m.Data)
			}
			break
		}
	}
	slices.Sort(left)
	if want := []string{"admin/forbidden", "device:7:temp/forbidden"}; !slices.Equal(left, want) {
		t.Fatalf("left = %v, want %v", left, want)
	}
	// The demoted connection may not rejoin; staff rooms still work.
	if r := c.cmd("join", map[string]any{"room": "admin"}); r.Error == nil || r.Error.Code != "forbidden" {
		t.Fatalf("demoted join admin = %+v", r)
	}
	if r := c.cmd("join", map[string]any{"room": "device:7"}); !r.OK {
		t.Fatalf("demoted join device:7 = %+v", r.Error)
	}

	// Another subject: closed with 4100.
	c.write(map[string]any{"id": 200, "op": "refresh", "token": testToken(t, "mallory", time.Hour, "admin")})
	if code := c.closeCode(); code != int(CloseUnauthorized) {
		t.Fatalf("close code = %d, want %d", code, CloseUnauthorized)
	}
}

// TestHub_TokenExpiry: the client is warned before exp, and without a refresh
// the connection closes at exp with 4002; with one, it stays.
func TestHub_TokenExpiry(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, func(o *Options) { o.Auth.ExpiryWarning = time.Second })
	expiring := dial(t, url, testToken(t, "eve", 2*time.Second, "staff"))
	refreshed := dial(t, url, testToken(t, "rob", 4*time.Second, "staff"))

	m := expiring.readType("expiring")
	if m.Expires == 0 {
		t.Fatalf("expiring without expires: %+v", m)
	}
	start := time.Now()
	if code := expiring.closeCode(); code != int(CloseTokenExpired) {
		t.Fatalf("close code = %d, want %d", code, CloseTokenExpired)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed %v after the warning, want about 1 s", d)
	}

	refreshed.readType("expiring")
	if r := refreshed.cmd("refresh", map[string]any{"token": testToken(t, "rob", time.Hour, "staff")}); !r.OK {
		t.Fatalf("refresh: %+v", r.Error)
	}
	time.Sleep(2 * time.Second) // past the first token's exp (4 s)
	if r := refreshed.cmd("ping", nil); !r.OK {
		t.Fatalf("ping after the old exp: %+v", r)
	}
}
