package rthub

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
)

// TestHub_BrowserRefusals: a browser (Origin + subprotocol) with a bad token
// gets a close code it can read; other clients keep getting HTTP 401.
func TestHub_BrowserRefusals(t *testing.T) {
	t.Parallel()
	var refusals refusalLog
	_, url := testHub(t, func(o *Options) { o.OnRefused = refusals.add })
	browser := func(url, tok string) (int, string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		// Same-origin, as a page served by the hub's host would send.
		hdr := http.Header{"Origin": {"http" + url[len("ws"):]}}
		c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr,
			Subprotocols: []string{Subprotocol, tokenProtocolPrefix + tok}})
		if err != nil {
			return 0, "", statusOf(resp)
		}
		defer c.CloseNow()
		_, _, err = c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read: %v, want a close frame", err)
		}
		return int(ce.Code), ce.Reason, 101
	}
	tests := []struct {
		name, tok string
		code      int
		reason    string
	}{
		{"expired", testToken(t, "a", -time.Minute, "staff"), int(CloseTokenExpired), "token_expired"},
		{"bad signature", testToken(t, "a", time.Hour, "staff") + "x", int(CloseUnauthorized), "token_signature_invalid"},
		{"malformed", "not.a.jwt", int(CloseUnauthorized), "token_malformed"},
	}
	for _, tt := range tests {
		code, reason, status := browser(url, tt.tok)
		if status != 101 || code != tt.code || reason != tt.reason {
			t.Errorf("%s: status %d, close %d %q; want 101 then %d %q", tt.name, status, code, reason, tt.code, tt.reason)
		}
	}
	if _, ok := refusals.find("handshake", "token_expired"); !ok {
		t.Error("in-band refusal not reported to OnRefused")
	}
	// Not a browser (no Origin): HTTP 401 as before.
	if st, _, _ := upgradeResponse(t, url, http.Header{"Authorization": {"Bearer junk"}}); st != 401 {
		t.Errorf("non-browser: %d, want 401", st)
	}
	// A foreign origin is still refused before any upgrade.
	st, _, _ := upgradeResponse(t, url, http.Header{"Origin": {"https://evil.example"},
		"Sec-Websocket-Protocol": {Subprotocol + ", " + tokenProtocolPrefix + "junk"}})
	if st != 403 {
		t.Errorf("foreign origin: %d, want 403", st)
	}
	// Opting out: browsers get the 401 too.
	_, url2 := testHub(t, func(o *Options) { o.Auth.HTTPRefusalsForBrowsers = true })
	if _, _, status := browser(url2, "not.a.jwt"); status != 401 {
		t.Errorf("HTTPRefusalsForBrowsers: status %d, want 401", status)
	}
}

// hidingWriter is a middleware's ResponseWriter that hides http.Hijacker
// (and has no Unwrap): the mistake that makes every upgrade fail.
type hidingWriter struct{ w http.ResponseWriter }

func (h hidingWriter) Header() http.Header         { return h.w.Header() }
func (h hidingWriter) Write(b []byte) (int, error) { return h.w.Write(b) }
func (h hidingWriter) WriteHeader(code int)        { h.w.WriteHeader(code) }

// TestHub_UpgradeFailedReported: an upgrade that fails after every check
// passed (here: a middleware hides the hijacker) reaches OnRefused with
// code upgrade_failed and the status the client got, and is counted.
func TestHub_UpgradeFailedReported(t *testing.T) {
	t.Parallel()
	var refusals refusalLog
	h, err := New(Options{Auth: AuthOptions{Keys: map[string]any{"": testSecret}}, Policy: testPolicy,
		Handlers: []Handler{testChat.Relay()}, OnRefused: refusals.add})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(hidingWriter{w}, r)
	}))
	t.Cleanup(func() { h.Close(); srv.Close() })
	_, resp, err := dialErr("ws"+strings.TrimPrefix(srv.URL, "http"), testToken(t, "alice", time.Hour, "staff"))
	if err == nil || resp == nil || resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("dial through a hiding middleware: %v, %v; want a 500", err, resp)
	}
	r, ok := refusals.find("handshake", "upgrade_failed")
	if !ok {
		t.Fatal("failed upgrade not reported to OnRefused")
	}
	if r.Status != http.StatusInternalServerError || r.Subject != "alice" {
		t.Errorf("refusal %+v, want status 500 for alice", r)
	}
	if s := h.Stats(); s.Refused != 1 || s.Accepted != 0 || s.Connections != 0 {
		t.Errorf("stats: refused %d, accepted %d, connections %d", s.Refused, s.Accepted, s.Connections)
	}
}

// TestHub_BrowserRefusalClosesFirst: after the browser answers the refusal's
// close frame, the hub closes TCP at once (RFC 6455 §7.1.1) instead of
// waiting for the browser to, which browsers do not: the page saw the close
// code only when Chromium gave up, about 2 s later.
func TestHub_BrowserRefusalClosesFirst(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, func(o *Options) { o.CloseTimeout = time.Minute })
	hdr := http.Header{"Origin": {"http" + url[len("ws"):]}}
	rc := dialRaw(t, url, rawOpts{hdr: hdr, protocols: []string{Subprotocol, tokenProtocolPrefix + "not.a.jwt"}})
	code, _ := rc.expectClose()
	if code != ws.StatusCode(CloseUnauthorized) {
		t.Fatalf("close code %d, want %d", code, CloseUnauthorized)
	}
	rc.write(cframe(true, 0, opClose, closeBody(uint16(CloseUnauthorized), "")))
	if took := rc.expectEOF(20 * time.Second); took > 10*time.Second {
		t.Fatalf("TCP closed after %v, want at once after the close frame (CloseTimeout 1 min)", took)
	}
}
