package rthub

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bounds what one client may cost the hub: inbound commands per
// connection, connections per user and per IP, and handshakes per user and
// per IP. Zero fields take the documented defaults; a negative value turns
// that limit off.
//
// Limiting costs no goroutine and no timer per connection. A connection's
// command bucket is allocated on its first command, so idle connections carry
// only a nil pointer; per-IP and per-user handshake buckets live in a table
// the hub prunes on its ping tick.
type Limits struct {
	// Commands is the sustained rate of client commands per connection, per
	// second. Default 100 per minute (rate.Every(600 * time.Millisecond)).
	// A command over the limit is dropped and answered with the error code
	// rate_limited (a command without id gets no answer). Auto-joins and
	// everything the server does on its own are free.
	Commands rate.Limit
	// CommandBurst is how many commands a connection may send at once before
	// the rate applies. Default 100, so that a reconnecting client can rejoin
	// up to MaxRoomsPerConn rooms at once.
	CommandBurst int
	// EventCosts overrides the cost, in commands, of emitting an event (by
	// event name); other commands cost 1. A cost of 0 makes an event free; a
	// cost above CommandBurst can never be paid and is refused at New.
	EventCosts map[string]int
	// RPCCosts overrides the cost, in commands, of calling an RPC (by RPC
	// name); other calls cost 1. The rules of EventCosts apply.
	RPCCosts map[string]int
	// AbuseThreshold is how many rate-limited commands a connection may send
	// within AbuseWindow before it is closed with 1008 (policy violation):
	// a client that keeps hammering after being told to slow down is hostile.
	// Default 50.
	AbuseThreshold int
	// AbuseWindow is the window AbuseThreshold counts over. Default 1 minute.
	AbuseWindow time.Duration

	// ControlFrames is the sustained rate of control frames (pings and
	// pongs) a client may send per connection, per second; ControlBurst is
	// how many it may send at once. Defaults 4 per second and 16: a client
	// answers the hub's pings and may ping now and then. A control frame over
	// the limit is ignored (a ping gets no pong) and counts as a rate-limited
	// command toward AbuseThreshold, so a client that floods pings or pongs is
	// closed with 1008 like one that floods commands. Checking costs no
	// allocation: the state is one integer per connection.
	ControlFrames rate.Limit
	ControlBurst  int

	// MaxConnsPerUser bounds the concurrent connections of one subject on
	// this hub (tabs, devices). A handshake past it is refused with 429 and
	// the code too_many_connections. Default 100.
	MaxConnsPerUser int
	// MaxConnsPerIP bounds the concurrent connections from one client IP (an
	// IPv6 client counts by its /64). Default: no limit, because many users
	// may share an address behind NAT; set it when you know your clients.
	MaxConnsPerIP int
	// HandshakesPerIP limits handshakes per client IP per second, checked
	// before the token is verified (so a flood costs no signature checks);
	// past it the handshake is refused with 429, code rate_limited, and a
	// Retry-After header. Default: no limit (NAT again).
	HandshakesPerIP rate.Limit
	// HandshakesPerUser limits handshakes per subject per second, checked
	// after the token is verified: a leaked token cannot be used to open
	// connections in a loop. Default 2 per second.
	HandshakesPerUser rate.Limit
	// HandshakeBurst is the burst of both handshake limits. Default 20, so a
	// user's tabs reconnecting together after a deploy are not refused.
	HandshakeBurst int

	// TrustedProxies lists the addresses or CIDR prefixes (e.g. "10.0.0.0/8")
	// of reverse proxies whose X-Forwarded-For header is believed. The client
	// IP is the rightmost X-Forwarded-For entry that is not a trusted proxy.
	// Requests from anywhere else are identified by their TCP peer address,
	// whatever headers they carry. Default: none.
	TrustedProxies []string
}

// Limit defaults. The per-IP ones are off by default.
const (
	defaultCommandBurst   = 100
	defaultAbuseThreshold = 50
	defaultMaxConnsUser   = 100
	defaultHandshakeBurst = 20
	defaultControlFrames  = 4
	defaultControlBurst   = 16
	maxTrackedKeys        = 100_000 // handshake buckets kept; see limiter.allowHandshake
)

var defaultCommandRate = rate.Every(600 * time.Millisecond) // 100 per minute

func (l *Limits) setDefaults() error {
	var errs []error
	if l.Commands == 0 {
		l.Commands = defaultCommandRate
	}
	defInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defInt(&l.CommandBurst, defaultCommandBurst)
	defInt(&l.AbuseThreshold, defaultAbuseThreshold)
	defInt(&l.MaxConnsPerUser, defaultMaxConnsUser)
	defInt(&l.HandshakeBurst, defaultHandshakeBurst)
	defInt(&l.ControlBurst, defaultControlBurst)
	if l.ControlFrames == 0 {
		l.ControlFrames = defaultControlFrames
	}
	if l.ControlBurst < 0 && l.ControlFrames > 0 {
		errs = append(errs, errors.New("rthub: Limits.ControlBurst is negative while ControlFrames is limited"))
	}
	if l.AbuseWindow == 0 {
		l.AbuseWindow = time.Minute
	} else if l.AbuseWindow < 0 {
		errs = append(errs, errors.New("rthub: Limits.AbuseWindow is negative"))
	}
	if l.HandshakesPerUser == 0 {
		l.HandshakesPerUser = 2
	}
	if l.CommandBurst < 0 && l.Commands > 0 {
		errs = append(errs, errors.New("rthub: Limits.CommandBurst is negative while Commands is limited"))
	}
	for ev, cost := range l.EventCosts {
		switch {
		case cost < 0:
			errs = append(errs, fmt.Errorf("rthub: Limits.EventCosts[%q] is negative", ev))
		case l.Commands > 0 && l.CommandBurst > 0 && cost > l.CommandBurst:
			errs = append(errs, fmt.Errorf("rthub: Limits.EventCosts[%q] = %d exceeds CommandBurst %d: it could never be paid", ev, cost, l.CommandBurst))
		}
	}
	for _, p := range l.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			errs = append(errs, fmt.Errorf("rthub: Limits.TrustedProxies: %w", err))
		}
	}
	return errors.Join(errs...)
}

// parsePrefix parses "10.0.0.0/8" or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// limiter holds the hub-wide limit state: connection counts and handshake
// buckets by IP and user. Per-connection command state lives in the conn.
type limiter struct {
	cfg     Limits
	proxies []netip.Prefix

	mu         sync.Mutex
	connsIP    map[netip.Addr]int
	connsUser  map[string]int
	handshakes map[string]*rate.Limiter // "ip:<addr>" or "user:<sub>"
}

func newLimiter(cfg Limits) *limiter {
	l := &limiter{
		cfg:        cfg,
		connsIP:    make(map[netip.Addr]int),
		connsUser:  make(map[string]int),
		handshakes: make(map[string]*rate.Limiter),
	}
	for _, p := range cfg.TrustedProxies {
		pf, _ := parsePrefix(p) // validated by setDefaults
		l.proxies = append(l.proxies, pf)
	}
	return l
}

// clientIP returns the address a request comes from: the TCP peer, or, when
// the peer is a trusted proxy, the rightmost untrusted X-Forwarded-For entry.
// It returns the zero Addr when the peer address cannot be parsed.
func (l *limiter) clientIP(r *http.Request) netip.Addr {
	ip := parseHostAddr(r.RemoteAddr)
	if !ip.IsValid() || !l.trusted(ip) {
		return ip
	}
	// Walk the chain right to left: every hop we trust may have appended
	// the address it saw; the first one we don't trust is the client.
	vals := r.Header.Values("X-Forwarded-For")
	for i := len(vals) - 1; i >= 0; i-- {
		parts := strings.Split(vals[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a := parseHostAddr(strings.TrimSpace(parts[j]))
			if !a.IsValid() {
				return ip // garbage in the chain: stop at the last trusted hop
			}
			ip = a
			if !l.trusted(a) {
				return a
			}
		}
	}
	return ip
}

func (l *limiter) trusted(a netip.Addr) bool {
	for _, p := range l.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHostAddr parses "1.2.3.4:5", "[::1]:5", or a bare address.
func parseHostAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// ipKey is what per-IP limits count by: the address for IPv4, the /64 for
// IPv6 (one subscriber usually owns a whole /64).
func ipKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// retryAfter formats a wait for the Retry-After header: whole seconds,
// rounded up, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

// errTooManyConns refuses a handshake past a connection limit.
var errTooManyConns = &ReplyError{Code: "too_many_connections", Message: "too many connections"}

// allowHandshake spends one handshake token for key; it returns how long to
// wait when none is left. Buckets are created on first use; the table is
// bounded: past maxTrackedKeys, full buckets are dropped, and if the table is
// still full the handshake is allowed untracked (memory is not the attacker's
// to grow).
func (l *limiter) allowHandshake(key string, lim rate.Limit, now time.Time) (bool, time.Duration) {
	return l.allowBucket(key, lim, l.cfg.HandshakeBurst, now)
}

// allowBucket spends one token of key's bucket in the handshake table (rate
// lim, burst), as allowHandshake describes; lim <= 0 allows everything.
func (l *limiter) allowBucket(key string, lim rate.Limit, burst int, now time.Time) (bool, time.Duration) {
	if lim <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.handshakes[key]
	if b == nil {
		if len(l.handshakes) >= maxTrackedKeys {
			l.pruneLocked(now)
			if len(l.handshakes) >= maxTrackedKeys {
				return true, 0
			}
		}
		b = rate.NewLimiter(lim, burst)
		l.handshakes[key] = b
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// prune drops handshake buckets that are full again: a client that comes
// back later starts with a full bucket anyway.
func (l *limiter) prune(now time.Time) {
	l.mu.Lock()
	l.pruneLocked(now)
	l.mu.Unlock()
}

func (l *limiter) pruneLocked(now time.Time) {
	for k, b := range l.handshakes {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(l.handshakes, k)
		}
	}
}

// admit reserves a connection slot for ip and subject, or reports which
// limit is reached. release must be called exactly once when the connection
// ends (or the upgrade fails).
func (l *limiter) admit(ip netip.Addr, subject string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if max := l.cfg.MaxConnsPerUser; max > 0 && l.connsUser[subject] >= max {
		return fmt.Errorf("%w: user has %d connections", errTooManyConns, max)
	}
	k := ipKey(ip)
	if max := l.cfg.MaxConnsPerIP; max > 0 && ip.IsValid() && l.connsIP[k] >= max {
		return fmt.Errorf("%w: address has %d connections", errTooManyConns, max)
	}
	l.connsUser[subject]++
	if ip.IsValid() {
		l.connsIP[k]++
	}
	return nil
}

func (l *limiter) release(ip netip.Addr, subject string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.connsUser[subject] - 1; n > 0 {
		l.connsUser[subject] = n
	} else {
		delete(l.connsUser, subject)
	}
	if !ip.IsValid() {
		return
	}
	k := ipKey(ip)
	if n := l.connsIP[k] - 1; n > 0 {
		l.connsIP[k] = n
	} else {
		delete(l.connsIP, k)
	}
}

// cmdLimit is one connection's command limit state, allocated on its first
// command (or first violation). Only the connection's read loop touches it.
type cmdLimit struct {
	bucket      *rate.Limiter // nil until the first command
	violations  int           // rate-limited commands in the current window
	windowStart int64         // unix nanoseconds
}

// cost returns what cmd costs in command tokens.
func (l *Limits) cost(cmd *command) int {
	if cmd.Op == cmdEmit && l.EventCosts != nil {
		if c, ok := l.EventCosts[cmd.Event]; ok {
			return c
		}
	}
	if cmd.Op == cmdCall && l.RPCCosts != nil {
		if c, ok := l.RPCCosts[cmd.RPC]; ok {
			return c
		}
	}
	return 1
}

// allowCommand charges c for cmd. It reports false when the command must be
// dropped, and abusive when the connection is to be closed as hostile.
func (h *Hub) allowCommand(c *conn, cmd *command, now time.Time) (ok, abusive bool) {
	cfg := &h.opts.Limits
	if cfg.Commands < 0 {
		return true, false
	}
	n := cfg.cost(cmd)
	if n == 0 {
		return true, false
	}
	lim := &c.loopState().limit
	if lim.bucket == nil {
		lim.bucket = rate.NewLimiter(cfg.Commands, cfg.CommandBurst)
	}
	if lim.bucket.AllowN(now, n) {
		return true, false
	}
	return false, h.violation(c, now)
}

// violation counts one rate-limited command or control frame of c and
// reports whether c is now abusive (past Limits.AbuseThreshold within
// AbuseWindow). Read loop only.
func (h *Hub) violation(c *conn, now time.Time) (abusive bool) {
	cfg := &h.opts.Limits
	h.stats.rateLimited.Add(1)
	if cfg.AbuseThreshold < 0 {
		return false
	}
	lim := &c.loopState().limit
	if t := now.UnixNano(); t-lim.windowStart > int64(cfg.AbuseWindow) {
		lim.windowStart, lim.violations = t, 0
	}
	lim.violations++
	return lim.violations > cfg.AbuseThreshold
}

// allowControl charges c for one control frame (Limits.ControlFrames) with
// the generic cell rate algorithm: c.ctrlTAT is when the bucket would be
// full again, so the state is one integer and nothing is allocated. It
// reports false when the frame is to be ignored, and abusive when the
// connection is to be closed. Read loop only.
func (h *Hub) allowControl(c *conn, now time.Time) (ok, abusive bool) {
	cfg := &h.opts.Limits
	if cfg.ControlFrames < 0 || cfg.ControlFrames == rate.Inf {
		return true, false
	}
	interval := int64(float64(time.Second) / float64(cfg.ControlFrames))
	t := now.UnixNano()
	tat := max(c.ctrlTAT, t)
	if tat-t > interval*int64(max(cfg.ControlBurst, 1)-1) {
		return false, h.violation(c, now)
	}
	c.ctrlTAT = tat + interval
	return true, false
}
