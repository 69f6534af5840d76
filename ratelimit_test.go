package rthub

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
)

func TestLimits_Defaults(t *testing.T) {
	var l Limits
	if err := l.setDefaults(); err != nil {
		t.Fatal(err)
	}
	want := Limits{Commands: rate.Every(600 * time.Millisecond), CommandBurst: 100, AbuseThreshold: 50,
		AbuseWindow: time.Minute, MaxConnsPerUser: 100, HandshakesPerUser: 2, HandshakeBurst: 20}
	if l.Commands != want.Commands || l.CommandBurst != want.CommandBurst || l.AbuseThreshold != want.AbuseThreshold ||
		l.AbuseWindow != want.AbuseWindow || l.MaxConnsPerUser != want.MaxConnsPerUser || l.MaxConnsPerIP != 0 ||
		l.HandshakesPerIP != 0 || l.HandshakesPerUser != want.HandshakesPerUser || l.HandshakeBurst != want.HandshakeBurst {
		t.Fatalf("defaults = %+v", l)
	}
	if got := l.Commands * 60; got < 99.99 || got > 100.01 {
		t.Errorf("default command rate = %v/min, want 100", got)
	}

	for _, tt := range []struct {
		name string
		l    Limits
	}{
		{"negative window", Limits{AbuseWindow: -time.Second}},
		{"negative event cost", Limits{EventCosts: map[string]int{"a:b": -1}}},
		{"unpayable event cost", Limits{CommandBurst: 5, EventCosts: map[string]int{"a:b": 6}}},
		{"bad proxy", Limits{TrustedProxies: []string{"10.0.0.0/33"}}},
		{"proxy not an address", Limits{TrustedProxies: []string{"proxy.local"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.l.setDefaults(); err == nil {
				t.Fatal("no error")
			}
			opts := Options{Auth: AuthOptions{Keys: map[string]any{"": testSecret}}, Limits: tt.l}
			if _, err := New(opts); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("New: %v", err)
			}
		})
	}
}

func TestLimiter_ClientIP(t *testing.T) {
	l := newLimiter(Limits{TrustedProxies: []string{"10.0.0.0/8", "::1"}})
	tests := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"direct", "203.0.113.9:5000", nil, "203.0.113.9"},
		{"untrusted peer's header ignored", "203.0.113.9:5000", []string{"1.2.3.4"}, "203.0.113.9"},
		{"trusted proxy", "10.1.2.3:80", []string{"198.51.100.7"}, "198.51.100.7"},
		{"spoofed left entries ignored", "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7"},
		{"two trusted hops", "10.1.2.3:80", []string{"198.51.100.7, 10.9.9.9"}, "198.51.100.7"},
		{"several headers", "10.1.2.3:80", []string{"6.6.6.6", "198.51.100.7"}, "198.51.100.7"},
		{"only proxies", "10.1.2.3:80", []string{"10.5.5.5"}, "10.5.5.5"},
		{"garbage stops the walk", "10.1.2.3:80", []string{"198.51.100.7, junk"}, "10.1.2.3"},
		{"ipv6 trusted", "[::1]:80", []string{"2001:db8::5"}, "2001:db8::5"},
		{"mapped v4", "[::ffff:203.0.113.9]:1", nil, "203.0.113.9"},
		{"no header", "10.1.2.3:80", nil, "10.1.2.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := l.clientIP(r); got.String() != tt.want {
				t.Fatalf("clientIP = %v, want %s", got, tt.want)
			}
		})
	}
	if got := ipKey(netip.MustParseAddr("2001:db8:1:2:3:4:5:6")); got.String() != "2001:db8:1:2::" {
		t.Errorf("ipKey(v6) = %v, want the /64", got)
	}
	if got := (&limiter{}).clientIP(&http.Request{RemoteAddr: "pipe"}); got.IsValid() {
		t.Errorf("unparseable peer = %v, want invalid", got)
	}
}

func TestLimiter_HandshakeBuckets(t *testing.T) {
	l := newLimiter(Limits{HandshakeBurst: 2})
	now := time.Unix(1000, 0)
	lim := rate.Every(10 * time.Second)
	for i := range 2 {
		if ok, _ := l.allowHandshake("ip:a", lim, now); !ok {
			t.Fatalf("handshake %d refused within burst", i)
		}
	}
	ok, wait := l.allowHandshake("ip:a", lim, now)
	if ok || wait <= 0 || wait > 10*time.Second {
		t.Fatalf("third = %v, wait %v; want refused, wait ≤ 10s", ok, wait)
	}
	if ok, _ := l.allowHandshake("ip:b", lim, now); !ok {
		t.Fatal("another key refused")
	}
	if got := retryAfter(wait); got != "10" {
		t.Errorf("Retry-After = %s, want 10", got)
	}
	if got := retryAfter(time.Millisecond); got != "1" {
		t.Errorf("Retry-After(1ms) = %s, want 1", got)
	}
	// Pruning drops only buckets that are full again.
	l.prune(now.Add(5 * time.Second))
	if len(l.handshakes) != 2 {
		t.Fatalf("pruned too early: %d buckets", len(l.handshakes))
	}
	l.prune(now.Add(time.Minute))
	if len(l.handshakes) != 0 {
		t.Fatalf("%d buckets left after they refilled", len(l.handshakes))
	}
	if ok, _ := l.allowHandshake("ip:a", 0, now); !ok {
		t.Fatal("rate 0 (off) refused")
	}
}

func TestLimiter_AdmitRelease(t *testing.T) {
	l := newLimiter(Limits{MaxConnsPerUser: 2, MaxConnsPerIP: 3})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.admit(a, "u1"))
	must(l.admit(a, "u1"))
	if err := l.admit(b, "u1"); ErrorCode(err) != "too_many_connections" {
		t.Fatalf("third conn of u1: %v", err)
	}
	must(l.admit(a, "u2"))
	if err := l.admit(a, "u3"); ErrorCode(err) != "too_many_connections" {
		t.Fatalf("fourth conn from a: %v", err)
	}
	l.release(a, "u1")
	must(l.admit(b, "u1"))
	l.release(a, "u1")
	l.release(b, "u1")
	l.release(a, "u2")
	if len(l.connsUser) != 0 || len(l.connsIP) != 0 {
		t.Fatalf("counts left after release: %v %v", l.connsUser, l.connsIP)
	}
}

// refusalLog collects OnRefused calls.
type refusalLog struct {
	mu sync.Mutex
	rs []Refusal
}

func (l *refusalLog) add(_ context.Context, r Refusal) {
	l.mu.Lock()
	l.rs = append(l.rs, r)
	l.mu.Unlock()
}

func (l *refusalLog) find(op, code string) (Refusal, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.rs {
		if r.Op == op && r.Code == code {
			return r, true
		}
	}
	return Refusal{}, false
}

// Events are declared once per process (NewEvent panics on a duplicate, and
// -count runs a test again in the same process).
var (
	rateFree   = NewEvent[chatMessage]("test:free")
	rateCostly = NewEvent[chatMessage]("test:costly")
)

func TestRateLimit_Commands(t *testing.T) {
	t.Parallel()
	var refusals refusalLog
	free, costly := rateFree, rateCostly
	nop := func(context.Context, Incoming[chatMessage]) error { return nil }
	h, url := testHub(t, func(o *Options) {
		o.Handlers = append(o.Handlers, free.Handle(nop), costly.Handle(nop))
		o.Policy = Policy{Roles: map[string]RoleRules{ // a copy: testPolicy is shared
			"staff": {Join: []string{"staff", "device:*"}, AutoJoin: []string{"staff"},
				Emit: []EmitRule{{Events: []string{"test:*"}, Rooms: []string{"staff"}}}}}}
		o.Limits = Limits{Commands: rate.Every(time.Hour), CommandBurst: 10, AbuseThreshold: 5,
			EventCosts: map[string]int{"test:free": 0, "test:costly": 4}}
		o.OnRefused = refusals.add
	})
	obs := newObserver(t, url)
	c := dial(t, url, testToken(t, "mallory", time.Hour, "staff"))
	c.readType("welcome")

	emit := func(ev string) serverMsg {
		return c.cmd("emit", map[string]any{"event": ev, "room": "staff", "data": map[string]string{"text": "x"}})
	}
	for i := range 20 { // free: never limited
		if r := emit("test:free"); !r.OK {
			t.Fatalf("free emit %d: %+v", i, r.Error)
		}
	}
	if r := emit("test:costly"); !r.OK { // 4 of 10
		t.Fatalf("costly emit: %+v", r.Error)
	}
	for i := range 6 { // 10 of 10
		if r := c.cmd("ping", nil); !r.OK {
			t.Fatalf("ping %d: %+v", i, r.Error)
		}
	}
	for i := range 5 { // 5 violations: answered, still connected
		r := c.cmd("ping", nil)
		if r.OK || r.Error.Code != "rate_limited" {
			t.Fatalf("ping over the limit %d: %+v", i, r)
		}
	}
	checkObserver(t, h, obs) // the limited client slows nobody down
	if s := h.Stats(); s.RateLimited != 5 || s.AbuseCloses != 0 {
		t.Fatalf("stats: RateLimited %d, AbuseCloses %d", s.RateLimited, s.AbuseCloses)
	}
	// The sixth violation in the window is abuse: closed with 1008.
	c.write(map[string]any{"op": "ping"}) // no id: no reply, but it counts
	if code := c.closeCode(); code != int(ClosePolicyViolation) {
		t.Fatalf("close code %d, want 1008", code)
	}
	// The close frame can reach the client before the hub has counted and
	// reported the close (that happens right after it is queued).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, reported := refusals.find("abuse", "rate_limited"); reported && h.Stats().AbuseCloses > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if s := h.Stats(); s.AbuseCloses != 1 {
		t.Fatalf("AbuseCloses = %d", s.AbuseCloses)
	}
	r, ok := refusals.find("abuse", "rate_limited")
	if !ok || r.Subject != "mallory" || r.ConnID == "" {
		refusals.mu.Lock()
		defer refusals.mu.Unlock()
		t.Fatalf("no abuse refusal: %+v", refusals.rs)
	}
	checkObserver(t, h, obs)
}

func TestRateLimit_CommandsOff(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, func(o *Options) {
		o.Limits = Limits{Commands: -1}
	})
	c := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	c.readType("welcome")
	for i := range 300 { // past the default burst of 100
		if r := c.cmd("ping", nil); !r.OK {
			t.Fatalf("ping %d: %+v", i, r.Error)
		}
	}
}

// xffDial connects through a "proxy" (the test's loopback peer, trusted)
// that reports client address ip.
func xffDial(url, token, ip string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	if ip != "" {
		hdr.Set("X-Forwarded-For", ip)
	}
	return websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr, Subprotocols: []string{Subprotocol}})
}

func statusOf(resp *http.Response) int {
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

func TestRateLimit_HandshakesPerIP(t *testing.T) {
	t.Parallel()
	var refusals refusalLog
	h, url := testHub(t, func(o *Options) {
		o.Limits = Limits{HandshakesPerIP: rate.Every(time.Hour), HandshakeBurst: 3, TrustedProxies: []string{"127.0.0.1", "::1"}}
		o.OnRefused = refusals.add
	})
	bad := "not-a-jwt"
	good := testToken(t, "alice", time.Hour, "staff")
	// The bucket is spent by failed handshakes too, and is checked before the
	// token, so a flood of bad tokens costs no signature checks.
	for i := range 3 {
		if _, resp, err := xffDial(url, bad, "198.51.100.1"); err == nil || statusOf(resp) != 401 {
			t.Fatalf("handshake %d: %v %d, want 401", i, err, statusOf(resp))
		}
	}
	unauth := h.Stats().Unauthorized
	_, resp, err := xffDial(url, good, "198.51.100.1")
	if err == nil || statusOf(resp) != http.StatusTooManyRequests {
		t.Fatalf("4th handshake: %v %d, want 429", err, statusOf(resp))
	}
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 {
		t.Errorf("Retry-After = %q", resp.Header.Get("Retry-After"))
	}
	if h.Stats().Unauthorized != unauth || h.Stats().Throttled != 1 {
		t.Errorf("stats %+v: the limited handshake must not reach the token check", h.Stats())
	}
	if r, ok := refusals.find("handshake", "rate_limited"); !ok || r.Status != 429 || r.ClientIP.String() != "198.51.100.1" {
		t.Errorf("refusal %+v", r)
	}
	// Another client IP behind the same proxy has its own bucket.
	c, _, err := xffDial(url, good, "198.51.100.2")
	if err != nil {
		t.Fatalf("other IP: %v", err)
	}
	c.CloseNow()
}

func TestRateLimit_UntrustedForwardedFor(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, func(o *Options) {
		o.Limits = Limits{HandshakesPerIP: rate.Every(time.Hour), HandshakeBurst: 2} // no trusted proxies
	})
	good := testToken(t, "alice", time.Hour, "staff")
	// A client cannot dodge the limit by inventing X-Forwarded-For values.
	for i, ip := range []string{"192.0.2.1", "192.0.2.2"} {
		c, _, err := xffDial(url, good, ip)
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		c.CloseNow()
	}
	if _, resp, err := xffDial(url, good, "192.0.2.3"); err == nil || statusOf(resp) != 429 {
		t.Fatalf("3rd handshake from the same peer: %v %d, want 429", err, statusOf(resp))
	}
}

func TestRateLimit_HandshakesPerUser(t *testing.T) {
	t.Parallel()
	_, url := testHub(t, func(o *Options) {
		o.Limits = Limits{HandshakesPerUser: rate.Every(time.Hour), HandshakeBurst: 2}
	})
	tok := testToken(t, "alice", time.Hour, "staff")
	for i := range 2 {
		c, _, err := xffDial(url, tok, "")
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		c.CloseNow()
	}
	_, resp, err := xffDial(url, tok, "")
	if err == nil || statusOf(resp) != 429 {
		t.Fatalf("3rd handshake of alice: %v %d, want 429", err, statusOf(resp))
	}
	c, _, err := xffDial(url, testToken(t, "bob", time.Hour, "staff"), "")
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	c.CloseNow()
}

func TestRateLimit_ConnectionLimits(t *testing.T) {
	t.Parallel()
	var refusals refusalLog
	h, url := testHub(t, func(o *Options) {
		o.Limits = Limits{MaxConnsPerUser: 2, MaxConnsPerIP: 3, TrustedProxies: []string{"127.0.0.1", "::1"}}
		o.OnRefused = refusals.add
	})
	alice := testToken(t, "alice", time.Hour, "staff")
	var conns []*websocket.Conn
	for i := range 2 {
		c, _, err := xffDial(url, alice, "198.51.100.1")
		if err != nil {
			t.Fatalf("alice %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	upgradeStatus := func(tok, ip string) (int, string) {
		t.Helper()
		hdr := http.Header{"Authorization": {"Bearer " + tok}, "X-Forwarded-For": {ip}}
		status, resp, body := upgradeResponse(t, url, hdr)
		if status == 429 {
			checkErrorBody(t, resp, body, "too_many_connections")
		}
		return status, resp.Get("Retry-After")
	}
	if st, ra := upgradeStatus(alice, "198.51.100.9"); st != 429 || ra == "" {
		t.Fatalf("3rd conn of alice: %d (Retry-After %q), want 429", st, ra)
	}
	// Per IP: bob from the same address gets one more, then none.
	bob := testToken(t, "bob", time.Hour, "staff")
	c, _, err := xffDial(url, bob, "198.51.100.1")
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	conns = append(conns, c)
	if st, _ := upgradeStatus(testToken(t, "carol", time.Hour, "staff"), "198.51.100.1"); st != 429 {
		t.Fatalf("4th conn from the IP: %d, want 429", st)
	}
	if _, ok := refusals.find("handshake", "too_many_connections"); !ok {
		t.Error("no refusal reported")
	}
	// Closing a connection frees its slots.
	conns[0].Close(websocket.StatusNormalClosure, "")
	waitConnCount(t, h, 2)
	c, _, err = xffDial(url, alice, "198.51.100.1")
	if err != nil {
		t.Fatalf("alice after a close: %v", err)
	}
	conns = append(conns, c)
	for _, c := range conns[1:] {
		c.CloseNow()
	}
	waitConnCount(t, h, 0)
	h.limits.mu.Lock()
	n := len(h.limits.connsUser) + len(h.limits.connsIP)
	h.limits.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d counters left after every connection closed", n)
	}
}
