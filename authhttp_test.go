package rthub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

type requestCase struct {
	name       string
	auth       []string // Authorization header values
	proto      []string // Sec-WebSocket-Protocol header values
	query      string   // raw query string
	allowQuery bool
	want       string // "" means ErrTokenMissing
}

var requestCases = []requestCase{
	{name: "bearer header", auth: []string{"Bearer tokA"}, want: "tokA"},
	{name: "bearer lower case", auth: []string{"bearer tokA"}, want: "tokA"},
	{name: "bearer upper case", auth: []string{"BEARER tokA"}, want: "tokA"},
	{name: "header with extra spaces", auth: []string{"  Bearer    tokA   "}, want: "tokA"},
	{name: "header with tab", auth: []string{"Bearer\ttokA"}, want: "tokA"},
	{name: "Bearer with empty token", auth: []string{"Bearer"}},
	{name: "Bearer with only spaces", auth: []string{"Bearer    "}},
	{name: "Bearer glued to token", auth: []string{"BearertokA"}},
	{name: "Basic scheme", auth: []string{"Basic dXNlcjpwYXNz"}},
	{name: "second Authorization value", auth: []string{"Basic dXNlcjpwYXNz", "Bearer tokA"}, want: "tokA"},
	{name: "subprotocol offer", proto: []string{"rthub.v1, rthub.bearer.tokB"}, want: "tokB"},
	{name: "subprotocol with spaces", proto: []string{"  rthub.v1 ,   rthub.bearer.tokB  ,x"}, want: "tokB"},
	{name: "multiple subprotocol headers", proto: []string{"rthub.v1", "chat, rthub.bearer.tokB"}, want: "tokB"},
	{name: "empty bearer subprotocol", proto: []string{"rthub.v1, rthub.bearer."}},
	{name: "empty then full bearer subprotocol", proto: []string{"rthub.bearer., rthub.bearer.tokB"}, want: "tokB"},
	{name: "space after bearer prefix trimmed (fuzz regression)", proto: []string{"rthub.bearer. tokB"}, want: "tokB"},
	{name: "subprotocol prefix is case-sensitive", proto: []string{"RTHUB.BEARER.tokB"}},
	{name: "query token refused by default", query: "token=tokQ"},
	{name: "query token allowed", query: "a=1&token=tokQ", allowQuery: true, want: "tokQ"},
	{name: "query token percent-decoded", query: "token=tok%51", allowQuery: true, want: "tokQ"},
	{name: "empty query token", query: "token=", allowQuery: true},
	{name: "header before subprotocol and query", auth: []string{"Bearer tokA"}, proto: []string{"rthub.bearer.tokB"},
		query: "token=tokQ", allowQuery: true, want: "tokA"},
	{name: "subprotocol before query", proto: []string{"rthub.bearer.tokB"}, query: "token=tokQ", allowQuery: true, want: "tokB"},
	{name: "empty Bearer falls through to subprotocol", auth: []string{"Bearer "}, proto: []string{"rthub.bearer.tokB"}, want: "tokB"},
	{name: "Basic falls through to subprotocol", auth: []string{"Basic abc"}, proto: []string{"rthub.bearer.tokB"}, want: "tokB"},
	{name: "nothing"},
	{name: "Authorization over 8 KiB ignored", auth: []string{"Bearer " + strings.Repeat("a", 8<<10)}},
	{name: "Authorization over 8 KiB in total ignored", auth: []string{"Bearer tokA", strings.Repeat("a", 8<<10)},
		proto: []string{"rthub.bearer.tokB"}, want: "tokB"},
	{name: "subprotocol over 8 KiB ignored", proto: []string{"rthub.bearer.tokB", strings.Repeat("x,", 4<<10)}},
	{name: "query over 8 KiB ignored", query: "token=tokQ&pad=" + strings.Repeat("p", 8<<10), allowQuery: true},
}

func newTokenRequest(auth, proto []string, query string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.URL.RawQuery = query
	for _, v := range auth {
		r.Header.Add("Authorization", v)
	}
	for _, v := range proto {
		r.Header.Add("Sec-WebSocket-Protocol", v)
	}
	return r
}

func TestTokenFromRequest(t *testing.T) {
	t.Parallel()
	k := getTestKeys()
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newTestAuthenticator(t, AuthOptions{Keys: map[string]any{"": k.hmac}, AllowQueryToken: tc.allowQuery})
			got, err := a.tokenFromRequest(newTokenRequest(tc.auth, tc.proto, tc.query))
			if tc.want == "" {
				if !errors.Is(err, ErrTokenMissing) {
					t.Fatalf("got %q, %v; want %v", got, err, ErrTokenMissing)
				}
				if code := ErrorCode(err); code != "token_missing" {
					t.Errorf("ErrorCode: got %q, want %q", code, "token_missing")
				}
				if got != "" {
					t.Errorf("got token %q with error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q, nil", got, err, tc.want)
			}
		})
	}
}

func TestTokenFromRequestNil(t *testing.T) {
	t.Parallel()
	a := newTestAuthenticator(t, AuthOptions{Keys: map[string]any{"": getTestKeys().hmac}, AllowQueryToken: true})
	if _, err := a.tokenFromRequest(nil); !errors.Is(err, ErrTokenMissing) {
		t.Errorf("nil request: got %v, want %v", err, ErrTokenMissing)
	}
	r := &http.Request{} // no Header, no URL
	if _, err := a.tokenFromRequest(r); !errors.Is(err, ErrTokenMissing) {
		t.Errorf("empty request: got %v, want %v", err, ErrTokenMissing)
	}
}

// A token taken from a browser-style request verifies end to end.
func TestTokenFromRequestThenVerify(t *testing.T) {
	t.Parallel()
	k := getTestKeys()
	a := newTestAuthenticator(t, testOptions(k))
	tok := sign(t, jwt.SigningMethodEdDSA, k.ed, "ed", claims())
	got, err := a.tokenFromRequest(newTokenRequest(nil, []string{"rthub.v1, rthub.bearer." + tok}, ""))
	if err != nil {
		t.Fatalf("tokenFromRequest: %v", err)
	}
	id, err := a.verify(got, testNow)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if id.Subject != "alice" {
		t.Errorf("Subject: got %q, want %q", id.Subject, "alice")
	}
}

func TestWriteHTTPError(t *testing.T) {
	t.Parallel()
	const secretToken = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZQ"
	tests := []struct {
		name       string
		status     int
		err        error
		wantStatus int
		wantBody   string
		wantAuth   string // WWW-Authenticate; "" means absent
	}{
		{name: "missing token", status: 401, err: ErrTokenMissing, wantStatus: 401,
			wantBody: `{"error":{"code":"token_missing","message":"no token in any accepted place"}}`,
			wantAuth: "Bearer"},
		{name: "expired token", status: 401, err: fmt.Errorf("%w: exp is in the past", ErrTokenExpired), wantStatus: 401,
			wantBody: `{"error":{"code":"token_expired","message":"token is expired"}}`,
			wantAuth: `Bearer error="invalid_token"`},
		{name: "error message quoting the token", status: 401, err: fmt.Errorf("%w: bad token %s", ErrTokenMalformed, secretToken), wantStatus: 401,
			wantBody: `{"error":{"code":"token_malformed","message":"token is not a well-formed JWT"}}`,
			wantAuth: `Bearer error="invalid_token"`},
		{name: "algorithm", status: 401, err: ErrTokenAlgorithm, wantStatus: 401,
			wantBody: `{"error":{"code":"token_algorithm","message":"token algorithm is not accepted"}}`,
			wantAuth: `Bearer error="invalid_token"`},
		{name: "shutting down", status: 503, err: ErrHubClosed, wantStatus: 503,
			wantBody: `{"error":{"code":"shutting_down","message":"server is shutting down, retry later"}}`},
		{name: "bad handshake reply error", status: 400, err: &ReplyError{Code: "bad_handshake", Message: secretToken}, wantStatus: 400,
			wantBody: `{"error":{"code":"bad_handshake","message":"not a valid WebSocket upgrade request"}}`},
		{name: "unknown code", status: 400, err: &ReplyError{Code: "odd\"code"}, wantStatus: 400,
			wantBody: `{"error":{"code":"odd\"code","message":"request refused"}}`},
		{name: "plain error is internal", status: 500, err: errors.New("db password is " + secretToken), wantStatus: 500,
			wantBody: `{"error":{"code":"internal","message":"internal server error"}}`},
		{name: "nil error", status: 500, err: nil, wantStatus: 500,
			wantBody: `{"error":{"code":"internal","message":"internal server error"}}`},
		{name: "non-error status becomes 500", status: 200, err: ErrTokenExpired, wantStatus: 500,
			wantBody: `{"error":{"code":"token_expired","message":"token is expired"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			writeHTTPError(w, tc.status, tc.err)
			res := w.Result()
			if res.StatusCode != tc.wantStatus {
				t.Errorf("status: got %d, want %d", res.StatusCode, tc.wantStatus)
			}
			body := w.Body.String()
			if body != tc.wantBody {
				t.Errorf("body: got %s, want %s", body, tc.wantBody)
			}
			if strings.Contains(body, secretToken) {
				t.Errorf("body %s contains the token", body)
			}
			var shape struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			dec := json.NewDecoder(strings.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&shape); err != nil {
				t.Errorf("body %s does not have the documented shape: %v", body, err)
			}
			if want := ErrorCode(tc.err); tc.err != nil && shape.Error.Code != want {
				t.Errorf("code: got %q, want ErrorCode(err) %q", shape.Error.Code, want)
			}
			for h, want := range map[string]string{
				"Content-Type":     "application/json",
				"Cache-Control":    "no-store",
				"WWW-Authenticate": tc.wantAuth,
			} {
				if got := res.Header.Get(h); got != want {
					t.Errorf("%s: got %q, want %q", h, got, want)
				}
			}
		})
	}
}

// Every token code has its own fixed message.
func TestHTTPErrorMessagesCoverTokenCodes(t *testing.T) {
	t.Parallel()
	for _, s := range tokenSentinels {
		code := ErrorCode(s)
		if _, ok := httpErrorMessages[code]; !ok {
			t.Errorf("no HTTP message for code %q", code)
		}
	}
}

func FuzzTokenFromRequest(f *testing.F) {
	for _, tc := range requestCases {
		at := func(s []string, i int) string {
			if i < len(s) {
				return s[i]
			}
			return ""
		}
		f.Add(at(tc.auth, 0), at(tc.proto, 0), at(tc.proto, 1), tc.query, tc.allowQuery)
	}
	keys := map[string]any{"": []byte("0123456789abcdef0123456789abcdef")}
	withQuery, err := newAuthenticator(AuthOptions{Keys: keys, AllowQueryToken: true})
	if err != nil {
		f.Fatal(err)
	}
	noQuery, err := newAuthenticator(AuthOptions{Keys: keys})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, auth, proto1, proto2, query string, allowQuery bool) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: query}}
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		for _, p := range []string{proto1, proto2} {
			if p != "" {
				r.Header["Sec-Websocket-Protocol"] = append(r.Header["Sec-Websocket-Protocol"], p)
			}
		}
		a := noQuery
		if allowQuery {
			a = withQuery
		}
		tok, err := a.tokenFromRequest(r)
		if err != nil {
			if !errors.Is(err, ErrTokenMissing) || tok != "" {
				t.Fatalf("got %q, %v; want \"\", %v", tok, err, ErrTokenMissing)
			}
			return
		}
		if tok == "" || strings.TrimSpace(tok) != tok {
			t.Fatalf("got token %q: empty or untrimmed", tok)
		}
		inHeaders := strings.Contains(auth, tok) || strings.Contains(proto1, tok) || strings.Contains(proto2, tok)
		inQuery := false
		if allowQuery {
			vals, _ := url.ParseQuery(query)
			for _, v := range vals["token"] {
				inQuery = inQuery || strings.Contains(v, tok)
			}
		}
		if !inHeaders && !inQuery {
			t.Fatalf("token %q is not part of the request (auth %q, protocols %q %q, query %q)", tok, auth, proto1, proto2, query)
		}
	})
}
