package rthub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// testSecret is the HMAC key of the test hubs.
var testSecret = []byte("rthub-test-secret-0123456789abcdef")

// testPolicy is the product's example policy: staff and admin, devices.
var testPolicy = Policy{
	Roles: map[string]RoleRules{
		"staff": {
			Join:     []string{"staff", "device:*"},
			AutoJoin: []string{"staff", "user:{sub}"},
			Emit:     []EmitRule{{Events: []string{"chat:message"}, Rooms: []string{"staff"}}},
		},
		"admin": {
			Join:     []string{"staff", "admin", "device:**"},
			AutoJoin: []string{"staff", "admin", "user:{sub}"},
			Emit:     []EmitRule{{Events: []string{"chat:message"}, Rooms: []string{"staff", "admin"}}},
		},
	},
}

// chatMessage is the payload of the test chat event.
type chatMessage struct {
	Text string `json:"text"`
}

var testChat = NewEvent[chatMessage]("chat:message")

// testHub starts a hub behind an httptest server. mod may adjust the options.
func testHub(t testing.TB, mod func(*Options)) (*Hub, string) {
	t.Helper()
	opts := Options{
		Auth:     AuthOptions{Keys: map[string]any{"": testSecret}},
		Policy:   testPolicy,
		Handlers: []Handler{testChat.Relay()},
	}
	if os.Getenv("RTHUB_TEST_READMODE") == "goroutine" {
		// The whole suite on the goroutine read path (the default is
		// the epoll path on Linux); tests that set ReadMode keep theirs.
		opts.ReadMode = ReadGoroutine
	}
	if mod != nil {
		mod(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// testToken signs an HS256 token for sub with roles, valid for ttl (no exp if 0).
func testToken(t testing.TB, sub string, ttl time.Duration, roles ...string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": sub, "roles": roles, "name": strings.ToUpper(sub)}
	if ttl != 0 {
		claims["exp"] = time.Now().Add(ttl).Unix()
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wsClient is a test client on a real socket, using coder/websocket.
type wsClient struct {
	t      testing.TB
	c      *websocket.Conn
	nextID uint64
	stash  [][]byte // messages read while waiting for a reply, for nextRaw
}

type serverMsg struct {
	Type    string          `json:"type"`
	ID      uint64          `json:"id"`
	OK      bool            `json:"ok"`
	Event   string          `json:"event"`
	Room    string          `json:"room"`
	Reason  string          `json:"reason"`
	Data    json.RawMessage `json:"data"`
	Error   *ReplyError     `json:"error"`
	Rooms   []string        `json:"rooms"`
	User    string          `json:"user"`
	Conn    string          `json:"conn"`
	Expires int64           `json:"expires"`
}

func dial(t testing.TB, url, token string) *wsClient {
	t.Helper()
	c, resp, err := dialErr(url, token)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, code)
	}
	wc := &wsClient{t: t, c: c}
	t.Cleanup(func() { c.CloseNow() })
	return wc
}

func dialErr(url, token string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPHeader:   hdr,
		Subprotocols: []string{Subprotocol},
	})
	if err == nil {
		c.SetReadLimit(1 << 20)
	}
	return c, resp, err
}

// read returns the next server message (30 s limit: a failure bound, CI is loaded).
func (w *wsClient) read() serverMsg {
	w.t.Helper()
	m, err := w.readErr(30 * time.Second)
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return m
}

func (w *wsClient) readErr(d time.Duration) (serverMsg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var m serverMsg
	typ, b, err := w.c.Read(ctx)
	if err != nil {
		return m, err
	}
	if typ != websocket.MessageText {
		return m, fmt.Errorf("got %v message", typ)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("bad JSON %q: %v", b, err)
	}
	return m, nil
}

// readType reads until a message of type typ arrives (skipping others).
func (w *wsClient) readType(typ string) serverMsg {
	w.t.Helper()
	for {
		m := w.read()
		if m.Type == typ {
			return m
		}
	}
}

func (w *wsClient) write(v any) {
	w.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("write: %v", err)
	}
}

// cmd sends a command and returns its reply (events arriving meanwhile are skipped).
func (w *wsClient) cmd(op string, fields map[string]any) serverMsg {
	w.t.Helper()
	w.nextID++
	m := map[string]any{"id": w.nextID, "op": op}
	for k, v := range fields {
		m[k] = v
	}
	w.write(m)
	for {
		r := w.read()
		if r.Type == "reply" && r.ID == w.nextID {
			return r
		}
	}
}

// closeCode reads until the connection ends and returns the close code.
func (w *wsClient) closeCode() int {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		_, _, err := w.c.Read(ctx)
		if err != nil {
			return int(websocket.CloseStatus(err))
		}
	}
}
