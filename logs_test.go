package rthub

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogs_NoTokens runs a full session with every way a token travels (the
// Authorization header, the browser subprotocol, the query string, refresh
// commands; good, expired, tampered and foreign tokens) with the hub logging at
// debug level, then checks that no token, and no signature of one, is in the logs.
func TestLogs_NoTokens(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	h, url := testHub(t, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Auth.AllowQueryToken = true
		o.Auth.ExpiryWarning = 500 * time.Millisecond
		o.Policy.Presence = []string{"staff"}
		o.Limits = Limits{Commands: 5, CommandBurst: 5, AbuseThreshold: 2}
	})
	var tokens []string
	tok := func(sub string, ttl time.Duration, roles ...string) string {
		s := testToken(t, sub, ttl, roles...)
		tokens = append(tokens, s)
		return s
	}

	// Header token, refresh (good, expired, other subject → closed).
	c := dial(t, url, tok("alice", time.Hour, "staff"))
	c.readType("welcome")
	c.cmd("join", map[string]any{"room": "admin"}) // forbidden
	c.cmd("refresh", map[string]any{"token": tok("alice", 2*time.Hour, "staff")})
	c.cmd("refresh", map[string]any{"token": tok("alice", -time.Minute, "staff")})
	bad := tok("alice", time.Hour, "staff")
	bad = bad[:len(bad)-6] + "AAAAAA"
	tokens = append(tokens, bad)
	c.cmd("refresh", map[string]any{"token": bad})
	c.write(map[string]any{"id": 99, "op": "refresh", "token": tok("mallory", time.Hour, "admin")})
	if code := c.closeCode(); code != int(CloseUnauthorized) {
		t.Fatalf("close %d, want 4100", code)
	}

	// Browser subprotocol token, a command flood closed as abuse.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	bc, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		Subprotocols: []string{Subprotocol, tokenProtocolPrefix + tok("bob", time.Hour, "staff")}})
	if err != nil {
		t.Fatal(err)
	}
	b := &wsClient{t: t, c: bc}
	b.readType("welcome")
	for range 10 {
		b.write(map[string]any{"op": "ping"})
	}
	if code := b.closeCode(); code != int(ClosePolicyViolation) {
		t.Fatalf("close %d, want 1008", code)
	}

	// Query token, then a token that expires while connected.
	qc, _, err := websocket.Dial(ctx, url+"?token="+tok("carol", time.Hour, "staff"), nil)
	if err != nil {
		t.Fatal(err)
	}
	qc.CloseNow()
	short := dial(t, url, tok("dave", 1200*time.Millisecond, "staff"))
	if code := short.closeCode(); code != int(CloseTokenExpired) {
		t.Fatalf("close %d, want 4002", code)
	}

	// Refused handshakes: expired, tampered, foreign origin.
	for _, hdr := range []http.Header{
		{"Authorization": {"Bearer " + tok("erin", -time.Hour, "staff")}},
		{"Authorization": {"Bearer " + bad}},
		{"Authorization": {"Bearer " + tok("frank", time.Hour, "staff")}, "Origin": {"https://evil.example"}},
		{"Sec-Websocket-Protocol": {Subprotocol + ", " + tokenProtocolPrefix + tok("gina", time.Hour, "nobody") + "x"}},
	} {
		if st, _, body := upgradeResponse(t, url, hdr); st < 400 {
			t.Fatalf("handshake accepted (%d %s)", st, body)
		}
	}
	h.Close()

	out := logs.String()
	for _, want := range []string{`"op":"join"`, `"code":"forbidden"`, `"code":"token_expired"`, `"op":"abuse"`, `"code":"forbidden_origin"`, `"user":"alice"`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s — the test would not see a token either:\n%s", want, out)
		}
	}
	for _, s := range tokens {
		parts := strings.Split(s, ".")
		for _, needle := range []string{s, parts[1], parts[2]} {
			if strings.Contains(out, needle) {
				t.Fatalf("token material %q… in the logs:\n%s", needle[:min(20, len(needle))], out)
			}
		}
	}
	t.Logf("%d log lines, %d tokens checked", strings.Count(out, "\n"), len(tokens))
}
