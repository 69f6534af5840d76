package rthub

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// corsResult is what a test request got: its status, its CORS headers and
// the error code of a refusal.
type corsResult struct {
	status  int
	header  http.Header
	code    string // error.code of a JSON refusal
	session bool   // a stream whose first event is its session
}

// corsDo sends a request of method to url with the given headers
// (name, value pairs) and body, and reads what corsResult needs: a
// stream's first line, a refusal's JSON body.
func corsDo(t *testing.T, method, url, body string, hdr ...string) corsResult {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	res := corsResult{status: resp.StatusCode, header: resp.Header}
	switch {
	case strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"):
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		res.session = line == "event: session\n"
	case strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"):
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&e)
		res.code = e.Error.Code
	}
	return res
}

// TestHTTPStream_CORS: the stream transport answers CORS by the hub's origin
// policy, the WebSocket handshake's: a preflight from an allowed origin gets
// 204 with the methods and headers the clients send, and the stream, the
// POSTs and their refusals name that origin; a preflight or request from
// another origin gets 403 forbidden_origin and no CORS header; requests with
// no Origin (no browser) get no CORS header, as before.
func TestHTTPStream_CORS(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var refusals []Refusal
	_, url := streamHub(t, func(o *Options) {
		o.Origin.Patterns = []string{"app.example.com"}
		o.OnRefused = func(_ context.Context, r Refusal) {
			mu.Lock()
			refusals = append(refusals, r)
			mu.Unlock()
		}
	})
	self := url // the hub's own origin: same-origin
	tok := testToken(t, "ann", time.Hour, "staff")
	stream := openStream(t, url, tok)
	const (
		allowed = "http://app.example.com"
		other   = "http://evil.example.com"
	)
	type want struct {
		status  int
		acao    string // Access-Control-Allow-Origin; "" for none
		code    string // refusal code
		session bool
	}
	for _, tc := range []struct {
		name   string
		method string
		hdr    []string
		body   string
		want   want
	}{
		// Preflights.
		{"preflightGetAllowed", http.MethodOptions, []string{"Origin", allowed, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "authorization"}, "", want{status: 204, acao: allowed}},
		{"preflightPostAllowed", http.MethodOptions, []string{"Origin", allowed, "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization,content-type,rthub-session"}, "", want{status: 204, acao: allowed}},
		{"preflightSameOrigin", http.MethodOptions, []string{"Origin", self, "Access-Control-Request-Method", "GET"}, "",
			want{status: 204, acao: self}},
		{"preflightOtherOrigin", http.MethodOptions, []string{"Origin", other, "Access-Control-Request-Method", "GET"}, "",
			want{status: 403, code: "forbidden_origin"}},
		{"preflightNullOrigin", http.MethodOptions, []string{"Origin", "null", "Access-Control-Request-Method", "POST"}, "",
			want{status: 403, code: "forbidden_origin"}},
		{"optionsNoOrigin", http.MethodOptions, []string{"Access-Control-Request-Method", "GET"}, "",
			want{status: 400, code: "bad_handshake"}}, // no preflight: a bad handshake, as before
		// The stream.
		{"streamAllowed", http.MethodGet, []string{"Origin", allowed, "Accept", "text/event-stream", "Authorization", "Bearer " + tok}, "",
			want{status: 200, acao: allowed, session: true}},
		{"streamSameOrigin", http.MethodGet, []string{"Origin", self, "Accept", "text/event-stream", "Authorization", "Bearer " + tok}, "",
			want{status: 200, acao: self, session: true}},
		{"streamNoOrigin", http.MethodGet, []string{"Accept", "text/event-stream", "Authorization", "Bearer " + tok}, "",
			want{status: 200, session: true}},
		{"streamOtherOrigin", http.MethodGet, []string{"Origin", other, "Accept", "text/event-stream", "Authorization", "Bearer " + tok}, "",
			want{status: 403, code: "forbidden_origin"}},
		{"streamAllowedBadToken", http.MethodGet, []string{"Origin", allowed, "Accept", "text/event-stream", "Authorization", "Bearer x"}, "",
			want{status: 401, acao: allowed, code: "token_malformed"}}, // the page reads the code
		// POSTs.
		{"postAllowed", http.MethodPost, []string{"Origin", allowed, "Authorization", "Bearer " + tok, SessionHeader, stream.session,
			"Content-Type", "text/plain"}, `{"id":7,"op":"ping"}`, want{status: 202, acao: allowed}},
		{"postNoOrigin", http.MethodPost, []string{"Authorization", "Bearer " + tok, SessionHeader, stream.session}, `{"id":8,"op":"ping"}`,
			want{status: 202}},
		{"postOtherOrigin", http.MethodPost, []string{"Origin", other, "Authorization", "Bearer " + tok, SessionHeader, stream.session},
			`{"op":"ping"}`, want{status: 403, code: "forbidden_origin"}},
		{"postAllowedNoSession", http.MethodPost, []string{"Origin", allowed, "Authorization", "Bearer " + tok}, `{"op":"ping"}`,
			want{status: 400, acao: allowed, code: "bad_request"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := corsDo(t, tc.method, url, tc.body, tc.hdr...)
			if got.status != tc.want.status || got.code != tc.want.code || got.session != tc.want.session {
				t.Errorf("status %d code %q session %v, want %d %q %v", got.status, got.code, got.session,
					tc.want.status, tc.want.code, tc.want.session)
			}
			if v := got.header.Values("Access-Control-Allow-Origin"); strings.Join(v, ",") != tc.want.acao {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", v, tc.want.acao)
			}
			if got.header.Get("Access-Control-Allow-Credentials") != "" {
				t.Error("Access-Control-Allow-Credentials set: the token is no cookie")
			}
			hasVary := slices.ContainsFunc(got.header.Values("Vary"), func(v string) bool { return strings.Contains(v, "Origin") })
			if hasVary != (tc.want.acao != "") {
				t.Errorf("Vary %q, want Origin in it: %v", got.header.Values("Vary"), tc.want.acao != "")
			}
			preflight := tc.method == http.MethodOptions && tc.want.acao != ""
			for h, v := range map[string]string{
				"Access-Control-Allow-Methods":  "GET, POST",
				"Access-Control-Allow-Headers":  "Authorization, Rthub-Session, Content-Type, Last-Event-ID",
				"Access-Control-Max-Age":        "600",
				"Access-Control-Expose-Headers": "Retry-After",
			} {
				wantV := ""
				if h == "Access-Control-Expose-Headers" {
					if tc.want.acao != "" && !preflight {
						wantV = v
					}
				} else if preflight {
					wantV = v
				}
				if got := got.header.Get(h); got != wantV {
					t.Errorf("%s %q, want %q", h, got, wantV)
				}
			}
		})
	}
	// The POSTs' pings were answered on the stream, in order.
	stream.t = t
	for _, id := range []uint64{7, 8} {
		if r := stream.readType("reply"); r.ID != id || !r.OK {
			t.Fatalf("reply %+v, want ping %d's", r, id)
		}
	}
	// Refused preflights are recorded as the requests they stand for.
	mu.Lock()
	defer mu.Unlock()
	var ops []string
	for _, r := range refusals {
		if r.Code == "forbidden_origin" {
			ops = append(ops, r.Op+" "+r.Origin)
		}
	}
	slices.Sort(ops)
	if w := []string{"handshake " + other, "handshake " + other, "post " + other, "post null"}; !slices.Equal(ops, w) {
		t.Errorf("forbidden_origin refusals %q, want %q", ops, w)
	}
}

// TestHTTPStream_CORSCompressed: a compressed stream to an allowed origin
// varies on both Origin and Accept-Encoding.
func TestHTTPStream_CORSCompressed(t *testing.T) {
	t.Parallel()
	_, url := streamHub(t, func(o *Options) { o.Origin.Patterns = []string{"*.example.com"} })
	got := corsDo(t, http.MethodGet, url, "", "Origin", "https://app.example.com", "Accept", "text/event-stream",
		"Accept-Encoding", "gzip, deflate", "Authorization", "Bearer "+testToken(t, "ann", time.Hour, "staff"))
	if got.status != 200 || got.header.Get("Content-Encoding") != "deflate" || got.header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("status %d, headers %v", got.status, got.header)
	}
	if v := strings.Join(got.header.Values("Vary"), ", "); !strings.Contains(v, "Origin") || !strings.Contains(v, "Accept-Encoding") {
		t.Fatalf("Vary %q, want Origin and Accept-Encoding", v)
	}
}

// TestHTTPStream_CORSDisabled: without the stream transport the hub answers
// no preflight (a WebSocket needs none): it is a bad handshake, as before.
func TestHTTPStream_CORSDisabled(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, func(o *Options) { o.Origin.AllowAll = true })
	got := corsDo(t, http.MethodOptions, "http"+strings.TrimPrefix(url, "ws"), "",
		"Origin", "http://app.example.com", "Access-Control-Request-Method", "GET")
	if got.status != 400 || got.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("status %d, headers %v; want 400 and no CORS", got.status, got.header)
	}
}
