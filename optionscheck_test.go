package rthub

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Options that are each valid but cannot work together fail at New, with one
// readable line per problem and no repeated "rthub:" prefixes.
func TestNew_MisconfigurationFailsEarly(t *testing.T) {
	t.Parallel()
	key := map[string]any{"": testSecret}
	for _, tc := range []struct {
		name string
		opts Options
		want []string // lines of the error, after the first
		is   error
	}{
		{name: "empty policy", opts: Options{Auth: AuthOptions{Keys: key}},
			want: []string{`  - Policy: no role may join or auto-join any room`}},
		{name: "roles without rooms", opts: Options{Auth: AuthOptions{Keys: key},
			Policy: Policy{Roles: map[string]RoleRules{"staff": {}}}},
			want: []string{`  - Policy: no role may join or auto-join any room`}},
		{name: "emit rule without handler", opts: Options{Auth: AuthOptions{Keys: key}, Policy: testPolicy},
			want: []string{
				`  - Policy: role "admin": Emit[0]: no handler in Options.Handlers handles event "chat:message"`,
				`  - Policy: role "staff": Emit[0]: no handler in Options.Handlers handles event "chat:message"`,
			}},
		{name: "emit pattern matching no handler", opts: Options{Auth: AuthOptions{Keys: key},
			Handlers: []Handler{testChat.Relay()},
			Policy: Policy{Roles: map[string]RoleRules{"staff": {AutoJoin: []string{"staff"},
				Emit: []EmitRule{{Events: []string{"chat:*", "alarm:*"}, Rooms: []string{"staff"}}}}}}},
			want: []string{`  - Policy: role "staff": Emit[0]: no handler in Options.Handlers handles event "alarm:*"`}},
		{name: "bad pattern: no stutter", opts: Options{Auth: AuthOptions{Keys: key},
			Policy: Policy{Roles: map[string]RoleRules{"staff": {Join: []string{"bad room"}}}}},
			want: []string{`  - policy: role "staff": Join[0]: bad room name: `}, is: ErrBadRoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("New: %v, want ErrInvalidOptions", err)
			}
			var oe *OptionsError
			if !errors.As(err, &oe) {
				t.Fatalf("New: %T, want *OptionsError", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(err, %v) = false", tc.is)
			}
			lines := strings.Split(err.Error(), "\n")
			if lines[0] != "rthub: invalid options:" {
				t.Errorf("first line %q", lines[0])
			}
			if len(lines)-1 != len(tc.want) {
				t.Fatalf("error:\n%v\nwant %d problem lines", err, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(lines[i+1], w) {
					t.Errorf("line %d = %q, want prefix %q", i+1, lines[i+1], w)
				}
			}
			if n := strings.Count(err.Error(), "rthub:"); n != 1 {
				t.Errorf("%q repeats the rthub: prefix (%d times)", err, n)
			}
		})
	}
}

// A publish-only hub needs no policy, publishes through its broker, and
// refuses handshakes.
func TestNew_PublishOnly(t *testing.T) {
	t.Parallel()
	mb, err := NewMemoryBroker(MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, url := testHub(t, func(o *Options) { o.Broker = mb.Peer() })
	pub, err := New(Options{Auth: AuthOptions{Keys: map[string]any{"": testSecret}}, Broker: mb.Peer(), PublishOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	joinSince(t, c, "device:7", nil)
	if err := pub.Publish(t.Context(), "device:7", "sensor:data", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	checkSeq(t, c.roomEvents("device:7", 1), 1)
	_ = h
	srv := httptest.NewServer(pub)
	defer srv.Close()
	st, _, body := upgradeResponse(t, "ws"+strings.TrimPrefix(srv.URL, "http"), bearerHeader(testToken(t, "alice", time.Hour, "staff")))
	if st != http.StatusNotFound || !strings.Contains(string(body), "not_found") {
		t.Fatalf("handshake to a publish-only hub: %d %s", st, body)
	}
}
