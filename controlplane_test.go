package rthub

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// claimToken signs an HS256 token with exactly these claims.
func claimToken(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// issued signs a token for sub with roles, issued at iat, with jti if not
// empty, valid for an hour.
func issued(t testing.TB, sub string, iat time.Time, jti string, roles ...string) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "roles": roles, "iat": iat.Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	if jti != "" {
		c["jti"] = jti
	}
	return claimToken(t, c)
}

// expectRefused dials with token and checks that the handshake is refused
// with 401 and the code.
func expectRefused(t *testing.T, url, token, code string) {
	t.Helper()
	c, resp, err := dialErr(url, token)
	if err == nil {
		c.CloseNow()
		t.Fatalf("dial succeeded, want refusal %s", code)
	}
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dial: %v, want HTTP 401", err)
	}
	if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, "invalid_token") {
		t.Errorf("WWW-Authenticate = %q", got)
	}
}

// connRooms returns c's rooms, sorted.
func connRooms(c *conn) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, rr := range c.rooms {
		out = append(out, rr.name)
	}
	slices.Sort(out)
	return out
}

func TestControlUser(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, nil)
	alice := []*wsClient{dial(t, url, testToken(t, "alice", time.Hour, "staff")), dial(t, url, testToken(t, "alice", time.Hour, "staff"))}
	bob := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	for _, c := range append(alice, bob) {
		c.readType("welcome")
	}
	ctx := t.Context()

	tests := []struct {
		name    string
		subject string
		action  UserAction
		want    int
		wantErr error
		check   func(t *testing.T)
	}{
		{"join", "alice", UserAction{Kind: UserJoin, Room: "device:7"}, 2, nil, func(t *testing.T) {
			for _, c := range alice {
				if m := c.readType("joined"); m.Room != "device:7" {
					t.Errorf("joined %q", m.Room)
				}
			}
		}},
		{"join again counts members", "alice", UserAction{Kind: UserJoin, Room: "device:7"}, 2, nil, func(t *testing.T) {
			for _, c := range alice {
				c.readType("joined")
			}
		}},
		{"leave", "alice", UserAction{Kind: UserLeave, Room: "device:7"}, 2, nil, func(t *testing.T) {
			for _, c := range alice {
				if m := c.readType("left"); m.Room != "device:7" || m.Reason != "server" {
					t.Errorf("left %q reason %q", m.Room, m.Reason)
				}
			}
		}},
		{"leave a room not in", "alice", UserAction{Kind: UserLeave, Room: "device:7"}, 0, nil, nil},
		{"recheck keeps allowed rooms", "alice", UserAction{Kind: UserRecheck}, 2, nil, nil},
		{"unknown user", "carol", UserAction{Kind: UserDisconnect}, 0, ErrNotFound, nil},
		{"bad room", "alice", UserAction{Kind: UserJoin, Room: "a b"}, 0, ErrBadRoom, nil},
		{"bad kind", "alice", UserAction{Kind: 99}, 0, ErrBadRequest, nil},
		{"empty subject", "", UserAction{Kind: UserRecheck}, 0, ErrBadRequest, nil},
		{"disconnect", "bob", UserAction{Kind: UserDisconnect, Reason: "bye"}, 1, nil, func(t *testing.T) {
			if code := bob.closeCode(); code != int(CloseDisconnected) {
				t.Errorf("close code %d", code)
			}
		}},
	}
	for _, tc := range tests {
		res, err := h.ControlUser(ctx, tc.subject, tc.action)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
		if res.Connections != tc.want {
			t.Errorf("%s: Connections = %d, want %d", tc.name, res.Connections, tc.want)
		}
		if err == nil && (res.Nodes != 1 || !res.Complete()) {
			t.Errorf("%s: result %+v, want one node, complete", tc.name, res)
		}
		if tc.check != nil {
			tc.check(t)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.ControlUser(cctx, "alice", UserAction{Kind: UserDisconnect}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if n, err := h.DisconnectUser(ctx, "alice", ""); n != 2 || err != nil {
		t.Fatalf("DisconnectUser = %d, %v", n, err)
	}
	if st := h.Stats(); st.ControlCalls != 8 { // the calls refused before sending are not counted
		t.Errorf("ControlCalls = %d", st.ControlCalls)
	}
}

// UserRecheck with Options.Roles: a demoted admin leaves admin (reason
// "recheck") and keeps the rooms staff may join; a server-joined room
// stays; a later join of admin is refused.
func TestControlUser_Recheck(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	roles := map[string][]string{"ann": {"admin"}}
	h, url := testHub(t, func(o *Options) {
		o.Roles = func(ctx context.Context, id *Identity) ([]string, error) {
			mu.Lock()
			defer mu.Unlock()
			r, ok := roles[id.Subject]
			if !ok {
				return nil, errors.New("no such user")
			}
			return r, nil
		}
	})
	ann := dial(t, url, testToken(t, "ann", time.Hour, "admin"))
	w := ann.readType("welcome")
	_ = w
	if err := h.JoinConn(t.Context(), h.userConns("ann")[0].id, "ops"); err != nil {
		t.Fatal(err)
	}
	ann.readType("joined")
	mu.Lock()
	roles["ann"] = []string{"staff"}
	mu.Unlock()
	res, err := h.ControlUser(t.Context(), "ann", UserAction{Kind: UserRecheck, Reason: "demoted"})
	if err != nil || res.Connections != 1 {
		t.Fatalf("recheck = %+v, %v", res, err)
	}
	if m := ann.readType("left"); m.Room != "admin" || m.Reason != "recheck" {
		t.Fatalf("left %q reason %q, want admin, recheck", m.Room, m.Reason)
	}
	if got := connRooms(h.userConns("ann")[0]); strings.Join(got, ",") != "ops,staff,user:ann" {
		t.Errorf("rooms after recheck = %v", got)
	}
	if r := ann.cmd("join", map[string]any{"room": "admin"}); r.OK || r.Error.Code != "forbidden" {
		t.Errorf("join admin after demotion: %+v", r)
	}

	// A failing Roles leaves the connections as they were.
	mu.Lock()
	delete(roles, "ann")
	mu.Unlock()
	if _, err := h.ControlUser(t.Context(), "ann", UserAction{Kind: UserRecheck}); !errors.Is(err, ErrInternal) {
		t.Fatalf("recheck with failing Roles: %v, want ErrInternal", err)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	now := time.Now()
	old, later := now.Add(-20*time.Second), now.Add(-5*time.Second)
	cut := now.Add(-10 * time.Second)
	tests := []struct {
		name      string
		rev       Revocation
		revoked   []string // tokens closed and refused
		untouched []string // tokens that stay and connect
	}{
		{"subject, issued before", Revocation{Subject: "mallory", IssuedBefore: cut, Reason: "stolen laptop"},
			[]string{issued(t, "mallory", old, "m1", "staff"), issued(t, "mallory", old, "", "staff")},
			[]string{issued(t, "mallory", later, "m2", "staff"), issued(t, "bob", old, "b1", "staff")}},
		{"subject, no iat is revoked", Revocation{Subject: "mallory", IssuedBefore: cut},
			[]string{claimToken(t, jwt.MapClaims{"sub": "mallory", "roles": "staff"})},
			[]string{issued(t, "bob", old, "", "staff")}},
		{"token ID", Revocation{TokenID: "m1"},
			[]string{issued(t, "mallory", later, "m1", "staff")},
			[]string{issued(t, "mallory", later, "m2", "staff"), issued(t, "mallory", old, "", "staff")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, url := testHub(t, nil)
			var gone, stay []*wsClient
			for _, tok := range tc.revoked {
				c := dial(t, url, tok)
				c.readType("welcome")
				gone = append(gone, c)
			}
			for _, tok := range tc.untouched {
				c := dial(t, url, tok)
				c.readType("welcome")
				stay = append(stay, c)
			}
			res, err := h.Revoke(t.Context(), tc.rev)
			if err != nil || res.Connections != len(gone) || res.Nodes != 1 || !res.Complete() {
				t.Fatalf("Revoke = %+v, %v; want %d connections", res, err, len(gone))
			}
			for _, c := range gone {
				if code := c.closeCode(); code != int(CloseTokenRevoked) {
					t.Errorf("close code %d, want %d", code, CloseTokenRevoked)
				}
			}
			for _, tok := range tc.revoked {
				expectRefused(t, url, tok, "token_revoked")
			}
			for _, c := range stay {
				if r := c.cmd("ping", nil); !r.OK {
					t.Errorf("untouched connection: %+v", r)
				}
			}
			for _, tok := range tc.untouched {
				dial(t, url, tok).readType("welcome")
			}
			st := h.Stats()
			if st.Revocations != 1 || st.RevokedConns != uint64(len(gone)) || st.RevokedRefused != uint64(len(tc.revoked)) || st.RevocationsKept != 1 {
				t.Errorf("stats: Revocations %d RevokedConns %d RevokedRefused %d RevocationsKept %d",
					st.Revocations, st.RevokedConns, st.RevokedRefused, st.RevocationsKept)
			}
		})
	}
}

// A refresh with a revoked token is refused and closes the connection with
// 4102; a browser handshake with one is closed in band with 4102.
func TestRevoke_RefreshAndBrowser(t *testing.T) {
	t.Parallel()
	h, url := testHub(t, func(o *Options) { o.Origin.Patterns = []string{"*"} })
	c := dial(t, url, issued(t, "eve", time.Now(), "e1", "staff"))
	c.readType("welcome")
	if _, err := h.Revoke(t.Context(), Revocation{TokenID: "e2"}); err != nil {
		t.Fatal(err)
	}
	if r := c.cmd("refresh", map[string]any{"token": issued(t, "eve", time.Now(), "e2", "staff")}); r.OK || r.Error.Code != "token_revoked" {
		t.Fatalf("refresh with a revoked token: %+v", r)
	}
	if code := c.closeCode(); code != int(CloseTokenRevoked) {
		t.Fatalf("close code %d", code)
	}

	rc := dialRaw(t, url, rawOpts{token: issued(t, "eve", time.Now(), "e2", "staff"), hdr: http.Header{"Origin": {"https://example.com"}}})
	if code, reason := rc.expectClose(); int(code) != int(CloseTokenRevoked) || reason != "token_revoked" {
		t.Fatalf("browser close %d %q", code, reason)
	}
}

func TestRevoke_Errors(t *testing.T) {
	t.Parallel()
	h, _ := testHub(t, func(o *Options) { o.Revocation.MaxEntries = 2 })
	ctx := t.Context()
	tests := []struct {
		name string
		rev  Revocation
		want error
	}{
		{"neither", Revocation{}, ErrBadRequest},
		{"both", Revocation{TokenID: "x", Subject: "y"}, ErrBadRequest},
		{"first", Revocation{TokenID: "a"}, nil},
		{"second", Revocation{Subject: "u"}, nil},
		{"same subject merges", Revocation{Subject: "u"}, nil},
		{"full", Revocation{TokenID: "b"}, ErrTooManyRevocations},
	}
	for _, tc := range tests {
		_, err := h.Revoke(ctx, tc.rev)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if n := h.Stats().RevocationsKept; n != 2 {
		t.Errorf("RevocationsKept = %d", n)
	}
}

// Entries expire after Revocation.TTL and make room.
func TestRevocationSet_Expiry(t *testing.T) {
	t.Parallel()
	s := newRevocationSet(1)
	now := time.Now()
	if !s.add(revocationRec{TokenID: "a", Expires: now.Add(time.Second).UnixNano()}, now) {
		t.Fatal("first add refused")
	}
	if s.add(revocationRec{TokenID: "b", Expires: now.Add(time.Hour).UnixNano()}, now) {
		t.Fatal("add past the bound accepted")
	}
	later := now.Add(2 * time.Second)
	if s.revoked(&Identity{Subject: "x", TokenID: "a"}, later) {
		t.Error("expired entry still revokes")
	}
	if !s.add(revocationRec{TokenID: "b", Expires: now.Add(time.Hour).UnixNano()}, later) {
		t.Error("add after expiry refused")
	}
	if !s.revoked(&Identity{Subject: "x", TokenID: "b"}, later) {
		t.Error("b not revoked")
	}
}

func TestIncompleteError(t *testing.T) {
	t.Parallel()
	err := error(&IncompleteError{Result: ControlResult{Connections: 3, Nodes: 2, Missing: 1}, Err: &ReplyError{Code: "too_many_rooms"}})
	if !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrTooManyRooms) {
		t.Fatalf("errors.Is fails on %v", err)
	}
	var ie *IncompleteError
	if !errors.As(err, &ie) || ie.Result.Complete() || ie.Result.Connections != 3 {
		t.Fatalf("errors.As: %+v", ie)
	}
}

// FuzzHandleControl: a control message from the broker (another node, or
// anything on the control channel) never panics the hub, and the answer is
// always one the caller decodes.
func FuzzHandleControl(f *testing.F) {
	for _, s := range []string{
		`{"op":"user","sub":"alice","kind":"disconnect","reason":"bye"}`,
		`{"op":"user","sub":"alice","kind":"join","room":"device:1"}`,
		`{"op":"user","sub":"alice","kind":"leave","room":"a b"}`,
		`{"op":"user","sub":"alice","kind":"recheck"}`,
		`{"op":"user","sub":"alice","kind":"nope"}`,
		`{"op":"revoke","rev":{"sub":"mallory","before":1,"exp":9999999999999999999}}`,
		`{"op":"revoke","rev":{"jti":"j","exp":1}}`,
		`{"op":"revoke"}`,
		`{"op":"x"}`,
		`[]`, `null`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	h, url := testHub(f, nil)
	c := dial(f, url, testToken(f, "alice", time.Hour, "staff"))
	c.readType("welcome")
	ch := controlHandler{h}
	f.Fuzz(func(t *testing.T, msg []byte) {
		out := ch.HandleControl(t.Context(), msg)
		var a controlAnswer
		if err := json.Unmarshal(out, &a); err != nil {
			t.Fatalf("answer %q does not decode: %v", out, err)
		}
		if a.N < 0 || a.Found < 0 {
			t.Fatalf("answer %+v", a)
		}
	})
}
