package rthub

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

func TestConn_Subprotocol(t *testing.T) {
	t.Parallel()
	_, url := conformHub(t, nil)
	jwt := testToken(t, "alice", time.Hour, "staff")
	bearer := "Bearer " + jwt
	tests := []struct {
		name      string
		auth      string   // Authorization header
		protocols []string // Sec-WebSocket-Protocol header lines
		status    int
		protocol  string // selected subprotocol (101)
		code      string // error code (refusal)
	}{
		{name: "browserOffer", protocols: []string{"rthub.v1, rthub.bearer." + jwt}, status: 101, protocol: "rthub.v1"},
		{name: "browserOfferTokenFirst", protocols: []string{"rthub.bearer." + jwt + ", rthub.v1"}, status: 101, protocol: "rthub.v1"},
		{name: "browserOfferTwoLines", protocols: []string{"rthub.bearer." + jwt, "rthub.v1"}, status: 101, protocol: "rthub.v1"},
		{name: "headerAndV1", auth: bearer, protocols: []string{"rthub.v1"}, status: 101, protocol: "rthub.v1"},
		{name: "v9AndV1", auth: bearer, protocols: []string{"rthub.v9, rthub.v1"}, status: 101, protocol: "rthub.v1"},
		{name: "noOffer", auth: bearer, status: 101},
		{name: "otherProtocolsOnly", auth: bearer, protocols: []string{"chat, superchat"}, status: 101},
		{name: "tokenOnly", protocols: []string{"rthub.bearer." + jwt}, status: 101},
		{name: "onlyV9", auth: bearer, protocols: []string{"rthub.v9"}, status: 400, code: "unsupported_protocol"},
		{name: "onlyV9BrowserToken", protocols: []string{"rthub.v9, rthub.bearer." + jwt}, status: 400, code: "unsupported_protocol"},
		{name: "v1NoToken", protocols: []string{"rthub.v1"}, status: 401, code: "token_missing"},
		{name: "emptyBearerEntry", protocols: []string{"rthub.v1, rthub.bearer."}, status: 401, code: "token_missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hdr := http.Header{}
			if tc.auth != "" {
				hdr.Set("Authorization", tc.auth)
			}
			for _, p := range tc.protocols {
				hdr.Add("Sec-WebSocket-Protocol", p)
			}
			status, resp, body := upgradeResponse(t, url, hdr)
			if status != tc.status {
				t.Fatalf("status = %d %s, want %d", status, body, tc.status)
			}
			if got := resp.Values("Sec-WebSocket-Protocol"); strings.Join(got, ",") != tc.protocol {
				t.Errorf("Sec-WebSocket-Protocol = %q, want %q", got, tc.protocol)
			}
			for k, vs := range resp {
				for _, v := range vs {
					if strings.Contains(v, jwt) {
						t.Errorf("response header %s carries the token", k)
					}
				}
			}
			if strings.Contains(string(body), jwt) {
				t.Errorf("response body carries the token")
			}
			if tc.code != "" {
				checkErrorBody(t, resp, body, tc.code)
			}
		})
	}

	// A library client offering the browser form: the handshake completes
	// and the connection works as alice.
	t.Run("library", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{Subprotocol, "rthub.bearer." + jwt}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if got := c.Subprotocol(); got != Subprotocol {
			t.Errorf("Subprotocol() = %q, want %q", got, Subprotocol)
		}
		wc := &wsClient{t: t, c: c}
		if w := wc.read(); w.Type != "welcome" || w.User != "alice" {
			t.Fatalf("welcome = %+v", w)
		}
	})
}

// checkErrorBody checks a refusal's JSON body carries code.
func checkErrorBody(t *testing.T, hdr http.Header, body []byte, code string) {
	t.Helper()
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("body = %s, want code %q and a message", body, code)
	}
}

func TestConn_HandshakeRefusals(t *testing.T) {
	t.Parallel()
	_, url := conformHub(t, nil)
	httpURL := "http" + strings.TrimPrefix(url, "ws")
	otherKey, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "roles": []string{"staff"}}).
		SignedString([]byte("not-the-test-secret-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	good := testToken(t, "alice", time.Hour, "staff")
	// Change one signature character (not the last, whose low bits must be 0).
	i := len(good) - 10
	tampered := good[:i] + map[bool]string{true: "A", false: "B"}[good[i] != 'A'] + good[i+1:]
	tests := []struct {
		name    string
		method  string
		upgrade bool // send the WebSocket upgrade headers
		hdr     http.Header
		status  int
		code    string
	}{
		{name: "plainGET", method: http.MethodGet, hdr: http.Header{"Authorization": {"Bearer " + good}}, status: 400, code: "bad_handshake"},
		{name: "plainGETNoToken", method: http.MethodGet, status: 400, code: "bad_handshake"},
		{name: "POSTUpgrade", method: http.MethodPost, upgrade: true, hdr: http.Header{"Authorization": {"Bearer " + good}}, status: 400, code: "bad_handshake"},
		{name: "upgradeNotWebSocket", method: http.MethodGet, hdr: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"h2c"}, "Authorization": {"Bearer " + good}}, status: 400, code: "bad_handshake"},
		{name: "missingToken", method: http.MethodGet, upgrade: true, status: 401, code: "token_missing"},
		{name: "expiredToken", method: http.MethodGet, upgrade: true, hdr: http.Header{"Authorization": {"Bearer " + testToken(t, "alice", -time.Minute, "staff")}}, status: 401, code: "token_expired"},
		{name: "badSignature", method: http.MethodGet, upgrade: true, hdr: http.Header{"Authorization": {"Bearer " + otherKey}}, status: 401, code: "token_signature_invalid"},
		{name: "tamperedToken", method: http.MethodGet, upgrade: true, hdr: http.Header{"Authorization": {"Bearer " + tampered}}, status: 401, code: "token_signature_invalid"},
		{name: "malformedToken", method: http.MethodGet, upgrade: true, hdr: http.Header{"Authorization": {"Bearer not-a-jwt"}}, status: 401, code: "token_malformed"},
		// Checked by the hub before the token: JSON bodies too.
		{name: "missingKey", method: http.MethodGet, upgrade: true, hdr: http.Header{"Authorization": {"Bearer " + good}, "Sec-Websocket-Key": {""}}, status: 400, code: "bad_handshake"},
		{name: "badKey", method: http.MethodGet, upgrade: true, hdr: http.Header{"Authorization": {"Bearer " + good}, "Sec-Websocket-Key": {"short"}}, status: 400, code: "bad_handshake"},
		{name: "keyNot16Bytes", method: http.MethodGet, upgrade: true, hdr: http.Header{"Authorization": {"Bearer " + good}, "Sec-Websocket-Key": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}, status: 400, code: "bad_handshake"},
		{name: "version12", method: http.MethodGet, upgrade: true, hdr: http.Header{"Authorization": {"Bearer " + good}, "Sec-Websocket-Version": {"12"}}, status: 426, code: "bad_handshake"},
		{name: "badTokenInSubprotocol", method: http.MethodGet, upgrade: true, hdr: http.Header{"Sec-WebSocket-Protocol": {"rthub.v1, rthub.bearer." + otherKey}}, status: 401, code: "token_signature_invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), tc.method, httpURL, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.upgrade {
				req.Header.Set("Connection", "Upgrade")
				req.Header.Set("Upgrade", "websocket")
				req.Header.Set("Sec-WebSocket-Version", "13")
				req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			}
			for k, v := range tc.hdr {
				req.Header[k] = v
			}
			status, hdr, body := doRequest(t, req)
			if status != tc.status {
				t.Fatalf("status = %d %s, want %d", status, body, tc.status)
			}
			if tc.code != "" {
				checkErrorBody(t, hdr, body, tc.code)
			}
			if status == http.StatusUpgradeRequired && hdr.Get("Sec-WebSocket-Version") != "13" {
				t.Errorf("426 without Sec-WebSocket-Version: 13")
			}
			if status == http.StatusUnauthorized && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want Bearer", hdr.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestConn_RefusedAfterShutdown(t *testing.T) {
	t.Parallel()
	h, url := conformHub(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	hdr := http.Header{"Authorization": {"Bearer " + testToken(t, "alice", time.Hour, "staff")}}
	status, resp, body := upgradeResponse(t, url, hdr)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("status = %d %s, want 503", status, body)
	}
	checkErrorBody(t, resp, body, "shutting_down")
	if resp.Get("Retry-After") == "" {
		t.Errorf("no Retry-After header")
	}
}

// doRequest sends req without keeping the connection and returns the status,
// headers and body.
func doRequest(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}
