package rthub

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHub_Origin: cross-site WebSocket hijacking is refused with 403 before
// the upgrade; same-origin, allowed patterns and non-browser clients pass.
func TestHub_Origin(t *testing.T) {
	t.Parallel()
	tok := testToken(t, "alice", time.Hour, "staff")
	tests := []struct {
		name   string
		opts   OriginOptions
		origin string // "" sends none; "SELF" sends the server's own origin
		status int
	}{
		{"noOrigin", OriginOptions{}, "", 101},
		{"sameOrigin", OriginOptions{}, "SELF", 101},
		{"crossSite", OriginOptions{}, "https://evil.example", 403},
		{"nullOrigin", OriginOptions{}, "null", 403},
		{"garbage", OriginOptions{}, "::not a url", 403},
		{"pattern", OriginOptions{Patterns: []string{"*.example.com"}}, "https://dash.example.com", 101},
		{"patternCase", OriginOptions{Patterns: []string{"*.Example.com"}}, "https://DASH.example.com", 101},
		{"patternMiss", OriginOptions{Patterns: []string{"*.example.com"}}, "https://example.com.evil.net", 403},
		{"patternPort", OriginOptions{Patterns: []string{"localhost:*"}}, "http://localhost:5173", 101},
		{"checkFunc", OriginOptions{Check: func(r *http.Request) bool { return r.Header.Get("Origin") == "https://ok.test" }}, "https://ok.test", 101},
		{"checkFuncRefuses", OriginOptions{Check: func(*http.Request) bool { return false }}, "", 403},
		{"allowAll", OriginOptions{AllowAll: true}, "https://evil.example", 101},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, url := testHub(t, func(o *Options) { o.Origin = tc.opts })
			httpURL := "http" + strings.TrimPrefix(url, "ws")
			req, _ := http.NewRequestWithContext(t.Context(), "GET", httpURL, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			req.Header.Set("Authorization", "Bearer "+tok)
			switch tc.origin {
			case "":
			case "SELF":
				req.Header.Set("Origin", httpURL)
			default:
				req.Header.Set("Origin", tc.origin)
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			var body []byte
			if resp.StatusCode != http.StatusSwitchingProtocols {
				body, _ = io.ReadAll(io.LimitReader(resp.Body, 4096))
			}
			resp.Body.Close() // for 101: the WebSocket connection
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == 403 && !strings.Contains(string(body), `"code":"forbidden_origin"`) {
				t.Fatalf("body = %s, want code forbidden_origin", body)
			}
		})
	}
	if _, err := New(Options{Auth: AuthOptions{Keys: map[string]any{"": testSecret}}, Origin: OriginOptions{Patterns: []string{"[bad"}}}); err == nil {
		t.Error("New accepted a malformed origin pattern")
	}
}
