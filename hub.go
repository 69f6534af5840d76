package rthub

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Options configures a [Hub]. Zero fields take the documented defaults; [New]
// copies the Options and never writes to the caller's value.
type Options struct {
	// Auth configures token verification. At least one key is required.
	Auth AuthOptions
	// Policy says which roles may join and emit to which rooms. The zero Policy
	// lets clients join nothing; the server-side API ([Hub.JoinConn],
	// [Hub.JoinUser]) is not subject to it.
	Policy Policy
	// Handlers receive events emitted by clients, one per event name (see
	// [Event.Handle] and [Event.Relay]). An emit of any other event is answered
	// with the error code unknown_event.
	Handlers []Handler
	// Compression configures permessage-deflate; by default it is negotiated
	// when the client offers it.
	Compression CompressionOptions
	// Origin says which browser origins may connect; by default only the
	// hub's own (same-origin). See [OriginOptions].
	Origin OriginOptions
	// Limits bounds commands per connection, connections per user and IP, and
	// handshake rates; see [Limits] for the defaults.
	Limits Limits
	// Presence configures the presence events and lists of the rooms
	// Policy.Presence enables; see [PresenceOptions].
	Presence PresenceOptions
	// Broker carries publications between the hubs of a cluster and keeps
	// each room's recent history, from which a reconnecting client resumes
	// (docs/protocol.md §5). Nil means a [MemoryBroker] with the default
	// history (100 events per room for 5 minutes): a single node that still
	// resumes clients. The hub starts the broker in New and closes it when
	// the hub stops; give each hub its own Broker value.
	Broker Broker
	// BrokerTimeout bounds each broker call the hub makes on its own:
	// subscribing a room, reading history for a resume or a gap. Default 5 s.
	BrokerTimeout time.Duration

	// MaxMessageSize bounds an inbound message, in bytes, after reassembly and
	// decompression. Larger messages close the connection with 1009. Default 64 KiB.
	MaxMessageSize int64
	// MaxRoomsPerConn bounds the rooms one connection may be in; a join past it
	// is answered with too_many_rooms. Default 100.
	MaxRoomsPerConn int
	// SendQueueMessages and SendQueueBytes bound each connection's outbound
	// queue. A client whose queue overflows does not read fast enough: it is
	// closed with 4000 (slow consumer) and the publisher never waits for it.
	// Defaults 1024 messages and 4 MiB.
	SendQueueMessages int
	SendQueueBytes    int
	// WriteTimeout bounds one write to a connection's socket. Default 10 s.
	WriteTimeout time.Duration
	// WriteDelay, when positive, holds the writes of a room's event for up
	// to this long when the room's previous event came less than WriteDelay
	// before, so that the events of a busy room go out several per system
	// call (coalescing). The first event after a quiet spell is written at
	// once, so slow rooms keep their latency; busy rooms trade up to
	// WriteDelay of latency for CPU. Replies and pings are never delayed.
	// Default 0: write at once (frames still coalesce whenever they queue
	// up behind a write in progress). 5–20 ms suits dashboards.
	WriteDelay time.Duration
	// PingInterval is how often the hub pings every connection. Default 25 s.
	PingInterval time.Duration
	// PongTimeout closes (4001) a connection from which nothing was read for
	// this long. Default 2 × PingInterval.
	PongTimeout time.Duration
	// HandshakeTimeout bounds writing the upgrade response. Reading the request
	// headers is bounded by your http.Server's ReadHeaderTimeout: set it (10 s is
	// reasonable), or slow clients can hold connections open. Default 10 s.
	HandshakeTimeout time.Duration
	// CloseTimeout is how long the hub waits for a client to answer a close
	// frame before dropping the TCP connection. Default 3 s.
	CloseTimeout time.Duration
	// DrainWindow spreads the closes of [Hub.Shutdown] over this long, so that
	// clients do not all reconnect in the same second. Default 5 s; the window
	// shrinks to fit Shutdown's context deadline.
	DrainWindow time.Duration

	// OnConnect, if set, is called after a connection is established and its
	// auto-join rooms joined. It runs on the connection's goroutine before any
	// command is read: it must not block for long. ctx is the connection's:
	// it is cancelled when the connection ends (and by Close), so work the
	// hook starts for the connection can stop with it.
	OnConnect func(ctx context.Context, c ConnInfo)
	// OnDisconnect, if set, is called once when a connection ends, with the
	// close code it ended with (a [CloseError]). Same constraints as
	// OnConnect. ctx is the connection's, cancelled right after the hook
	// returns.
	OnDisconnect func(ctx context.Context, c ConnInfo, err error)
	// OnRefused, if set, is called for every refused handshake, join, emit,
	// presence query and refresh, and for connections closed for abuse (see
	// [Refusal]) — an audit trail of forbidden attempts. Commands dropped by
	// the rate limit are only counted ([Stats].RateLimited), not reported
	// one by one. It runs synchronously on the refusing goroutine: keep it
	// fast, hand slow work off.
	OnRefused func(ctx context.Context, r Refusal)
	// Logger receives the hub's logs; nil discards them. Tokens are never logged.
	Logger *slog.Logger

	testMaxIov int // tests only: frames per writev (1 = no coalescing)
}

func (o *Options) setDefaults() error {
	var errs []error
	def := func(d *time.Duration, v time.Duration, name string) {
		if *d == 0 {
			*d = v
		} else if *d < 0 {
			errs = append(errs, fmt.Errorf("rthub: %s is negative", name))
		}
	}
	defInt := func(p *int, v int, name string) {
		if *p == 0 {
			*p = v
		} else if *p < 0 {
			errs = append(errs, fmt.Errorf("rthub: %s is negative", name))
		}
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 64 << 10
	} else if o.MaxMessageSize < 0 {
		errs = append(errs, errors.New("rthub: MaxMessageSize is negative"))
	}
	defInt(&o.MaxRoomsPerConn, 100, "MaxRoomsPerConn")
	defInt(&o.SendQueueMessages, 1024, "SendQueueMessages")
	defInt(&o.SendQueueBytes, 4<<20, "SendQueueBytes")
	def(&o.WriteTimeout, 10*time.Second, "WriteTimeout")
	if o.WriteDelay < 0 {
		errs = append(errs, errors.New("rthub: WriteDelay is negative"))
	} else if o.WriteDelay > time.Second {
		errs = append(errs, fmt.Errorf("rthub: WriteDelay %v is over 1 s", o.WriteDelay))
	}
	def(&o.PingInterval, 25*time.Second, "PingInterval")
	def(&o.PongTimeout, 2*o.PingInterval, "PongTimeout")
	def(&o.HandshakeTimeout, 10*time.Second, "HandshakeTimeout")
	def(&o.CloseTimeout, 3*time.Second, "CloseTimeout")
	def(&o.DrainWindow, 5*time.Second, "DrainWindow")
	def(&o.BrokerTimeout, 5*time.Second, "BrokerTimeout")
	if o.PongTimeout > 0 && o.PingInterval > 0 && o.PongTimeout <= o.PingInterval {
		errs = append(errs, fmt.Errorf("rthub: PongTimeout (%v) must be longer than PingInterval (%v)", o.PongTimeout, o.PingInterval))
	}
	if err := o.Compression.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Origin.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Limits.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Presence.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

// Hub serves WebSocket connections, keeps their rooms and delivers published
// events. Create one with [New]; serve it as an [http.Handler]; stop it with
// [Hub.Shutdown] or [Hub.Close]. All methods are safe for concurrent use.
type Hub struct {
	opts     Options
	auth     *authenticator
	policy   *policy
	limits   *limiter
	broker   Broker
	pstore   PresenceStore    // the broker's, when it keeps cluster-wide presence and Policy.Presence is set
	resyncCh chan resyncRetry // rooms whose resync read failed, for the resyncer
	handlers map[string]Handler
	comp     *compressor
	log      *slog.Logger
	nodeID   string
	connSeq  atomic.Uint64

	ctx    context.Context // cancelled by Close; hooks receive it
	cancel context.CancelFunc

	mu      sync.RWMutex
	conns   map[string]*conn
	users   map[string][]*conn // by subject; a user has few connections
	rooms   map[string]*room   // subscribing or live
	leaving map[string]*room   // closed, being unsubscribed (see room)

	syncMu   sync.Mutex
	syncQ    []*room       // rooms waiting for a sync worker; each at most once
	syncKick chan struct{} // wakes a sync worker

	closing   atomic.Bool   // no new connections
	stop      chan struct{} // closed once to stop background goroutines
	stopOnce  sync.Once
	flushCh   chan flushJob
	workers   int
	delayMu   sync.Mutex
	delayed   []*flushList  // publishes waiting out WriteDelay
	delayKick chan struct{} // wakes the delayer
	clock     *deadlines
	wg        sync.WaitGroup // connections' read loops and overflow flushers
	bg        sync.WaitGroup // pinger, clock, flush workers
	closeOnce sync.Once

	stats   hubStats
	latency latencyHist // broadcast: queued to members → last member's frame written

	// testHookFlushed, if set before traffic starts, is called after each
	// vectored write with the number of frames written (benchmarks use it to
	// wait for delivery without spinning).
	testHookFlushed func(frames int)
}

// New validates opts and returns a running Hub. Every problem in opts is
// reported in the returned error, which wraps [ErrInvalidOptions] and each
// problem (joined with [errors.Join]).
func New(opts Options) (*Hub, error) {
	var errs []error
	if err := opts.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	auth, err := newAuthenticator(opts.Auth)
	if err != nil {
		errs = append(errs, err)
	}
	pol, err := compilePolicy(opts.Policy)
	if err != nil {
		errs = append(errs, err)
	}
	handlers := make(map[string]Handler, len(opts.Handlers))
	for _, hd := range opts.Handlers {
		if hd == nil {
			errs = append(errs, errors.New("rthub: nil Handler"))
			continue
		}
		name := hd.eventName()
		if _, dup := handlers[name]; dup {
			errs = append(errs, fmt.Errorf("rthub: two handlers for event %q", name))
		}
		handlers[name] = hd
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w:\n%w", ErrInvalidOptions, errors.Join(errs...))
	}
	if opts.Broker == nil {
		mb, err := NewMemoryBroker(MemoryBrokerOptions{})
		if err != nil {
			return nil, err
		}
		opts.Broker = mb
	}
	var idb [6]byte
	_, _ = rand.Read(idb[:])
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{
		opts:     opts,
		auth:     auth,
		policy:   pol,
		limits:   newLimiter(opts.Limits),
		broker:   opts.Broker,
		resyncCh: make(chan resyncRetry, 4096),
		syncKick: make(chan struct{}, 1),
		handlers: handlers,
		comp:     newCompressor(opts.Compression.Level),
		log:      opts.Logger,
		nodeID:   hex.EncodeToString(idb[:]),
		ctx:      ctx,
		cancel:   cancel,
		conns:    make(map[string]*conn),
		users:    make(map[string][]*conn),
		rooms:    make(map[string]*room),
		leaving:  make(map[string]*room),
		stop:     make(chan struct{}),
		flushCh:  make(chan flushJob, 1<<14),
		clock:    newDeadlines(),
	}
	sctx, scancel := context.WithTimeout(ctx, opts.BrokerTimeout)
	err = h.broker.Start(sctx, brokerHandler{h})
	scancel()
	if err != nil {
		cancel()
		return nil, fmt.Errorf("rthub: starting the broker: %w", err)
	}
	h.bg.Go(h.resyncer)
	for range syncWorkers {
		h.bg.Go(h.syncWorker)
	}
	if ps, ok := h.broker.(PresenceStore); ok && len(pol.presence) > 0 {
		h.pstore = ps
		h.bg.Go(h.presenceKeeper)
	}
	h.workers = max(8, 4*runtime.GOMAXPROCS(0))
	for range h.workers {
		h.bg.Go(h.flushWorker)
	}
	h.bg.Go(func() { h.clock.run(h.stop) })
	if opts.WriteDelay > 0 {
		h.delayKick = make(chan struct{}, 1)
		h.bg.Go(h.delayer)
	}
	h.bg.Go(h.pinger)
	return h, nil
}

// flushJob is one unit of work for a flush worker: one connection, or a
// chunk of a broadcast's connections.
type flushJob struct {
	one  *conn
	list *flushList
	lo   int
	hi   int
}

// flushList holds the connections one publish queued frames to; its chunks
// go to several workers, and the last one to finish recycles it.
type flushList struct {
	conns []*conn
	left  atomic.Int32
	born  int64 // unix nanoseconds when the broadcast was queued; 0: not measured
	hold  bool  // its room is busy: dispatch after Options.WriteDelay
}

var flushLists = sync.Pool{New: func() any { return new(flushList) }}

// flushChunk is the smallest number of connections worth a job of its own.
const flushChunk = 64

// schedule hands a connection with queued frames to a flush worker. It never
// blocks: when every worker is busy and the hand-off queue is full, the flush
// runs on a goroutine of its own.
func (h *Hub) schedule(c *conn) {
	h.submit(flushJob{one: c})
}

// dispatch flushes the connections of one broadcast, at once or after
// Options.WriteDelay.
func (h *Hub) dispatch(l *flushList) {
	if h.delayKick == nil || len(l.conns) == 0 || !l.hold {
		h.dispatchNow(l)
		return
	}
	h.delayMu.Lock()
	h.delayed = append(h.delayed, l)
	h.delayMu.Unlock()
	select {
	case h.delayKick <- struct{}{}:
	default:
	}
}

// delayer dispatches delayed publishes WriteDelay after the first of them
// arrived. Their connections stay marked as writing meanwhile, so later
// frames join their queues instead of being written separately.
func (h *Hub) delayer() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		// The hub stops only after every connection is gone, so what is
		// still delayed then has nobody to go to.
		select {
		case <-h.stop:
			return
		case <-h.delayKick:
		}
		t.Reset(h.opts.WriteDelay)
		select {
		case <-h.stop:
			t.Stop()
			return
		case <-t.C:
		}
		h.dispatchDelayed()
	}
}

func (h *Hub) dispatchDelayed() {
	h.delayMu.Lock()
	ls := h.delayed
	h.delayed = nil
	h.delayMu.Unlock()
	for _, l := range ls {
		h.dispatchNow(l)
	}
}

// dispatchNow flushes the connections of one broadcast, split into chunks so
// that every worker (and core) takes a share. Writes never block a worker on
// a slow peer (see conn.flush), so a chunk is written in one pass.
func (h *Hub) dispatchNow(l *flushList) {
	n := len(l.conns)
	if n == 0 {
		l.born, l.hold = 0, false
		flushLists.Put(l)
		return
	}
	chunks := min(h.workers, (n+flushChunk-1)/flushChunk)
	l.left.Store(int32(chunks))
	for i := range chunks {
		h.submit(flushJob{list: l, lo: i * n / chunks, hi: (i + 1) * n / chunks})
	}
}

func (h *Hub) submit(j flushJob) {
	select {
	case h.flushCh <- j:
	default:
		h.wg.Go(func() {
			h.runJob(j, newWritev(h.opts.testMaxIov))
		})
	}
}

func (h *Hub) runJob(j flushJob, w *writev) {
	if j.one != nil {
		j.one.flush(w)
		return
	}
	for _, c := range j.list.conns[j.lo:j.hi] {
		c.flush(w)
	}
	if j.list.left.Add(-1) == 0 {
		if j.list.born != 0 {
			h.latency.observe(time.Duration(time.Now().UnixNano() - j.list.born))
			j.list.born = 0
		}
		clear(j.list.conns)
		j.list.conns = j.list.conns[:0]
		j.list.hold = false
		flushLists.Put(j.list)
	}
}

// flushWorker writes queued frames of scheduled connections. Several workers
// spread the writes of a broadcast over all cores.
func (h *Hub) flushWorker() {
	w := newWritev(h.opts.testMaxIov)
	for {
		select {
		case j := <-h.flushCh:
			h.runJob(j, w)
		case <-h.stop:
			// Drain what is left so no connection stays marked as writing.
			for {
				select {
				case j := <-h.flushCh:
					h.runJob(j, w)
				default:
					return
				}
			}
		}
	}
}

// pinger pings every connection each PingInterval and closes the ones that
// have been silent for PongTimeout: one goroutine and one ticker for the hub,
// no timer per connection.
//
// Each connection has its own slot in the interval (a hash of it, so stable
// for its life): the slots are pingSlot apart, and each tick pings only the
// connections of one slot. Pinging every connection at the same instant sent
// 10,000 pings and woke 10,000 readers for the pongs at once, every
// PingInterval, and the broadcasts caught in that burst waited for it (the
// 10,000-subscriber p99 doubled from then on).
func (h *Hub) pinger() {
	slots := max(int(h.opts.PingInterval/pingSlot), 1)
	step := h.opts.PingInterval / time.Duration(slots)
	start := time.Now() // before the ticker: tick k comes k steps after it or later
	t := time.NewTicker(step)
	defer t.Stop()
	seed := maphash.MakeSeed()
	var done int64 // ticks handled so far
	var batch []*conn
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			// A Ticker drops ticks when this goroutine is late: catch up
			// from the clock, so that no slot is skipped (its connections
			// would go two intervals without a ping), but at most one round.
			due := int64(now.Sub(start) / step)
			from := max(done, due-int64(slots))
			done = due
			if from >= due {
				continue
			}
			batch = h.snapshotConns(batch[:0])
			limit := now.Add(-h.opts.PongTimeout).UnixNano()
			for tick := from; tick < due; tick++ {
				slot := uint64(tick % int64(slots))
				if slot == 0 {
					h.limits.prune(now)
				}
				for _, c := range batch {
					if slots > 1 && maphash.Comparable(seed, c)%uint64(slots) != slot {
						continue
					}
					if c.lastIn.Load() < limit {
						if c.closeWith(ClosePingTimeout, "ping timeout") {
							h.stats.pingTimeouts.Add(1)
						}
						continue
					}
					c.sendPing()
				}
			}
			clear(batch)
		}
	}
}

// pingSlot is the spacing of the pinger's slots (see pinger): a 25 s
// PingInterval has 100 of them, each pinging about 1 % of the connections.
const pingSlot = 250 * time.Millisecond

func (h *Hub) snapshotConns(dst []*conn) []*conn {
	h.mu.RLock()
	for _, c := range h.conns {
		dst = append(dst, c)
	}
	h.mu.RUnlock()
	return dst
}

// ServeHTTP authenticates the request and upgrades it to a WebSocket
// connection. Refusals happen before the upgrade, as HTTP errors with a JSON
// body carrying a code (docs/protocol.md §1): 401 for token problems, 400 for
// a bad handshake, 503 while shutting down.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ip := h.limits.clientIP(r)
	refuse := func(status int, err error, sub string) {
		h.refused(r.Context(), Refusal{Op: "handshake", Code: ErrorCode(err), Status: status,
			Subject: sub, ClientIP: ip, RemoteAddr: r.RemoteAddr, Origin: truncate(r.Header.Get("Origin"), 128)})
		writeHTTPError(w, status, err)
	}
	if h.closing.Load() {
		w.Header().Set("Retry-After", "1")
		refuse(http.StatusServiceUnavailable, ErrHubClosed, "")
		return
	}
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") || !validWebSocketKey(r.Header.Get("Sec-WebSocket-Key")) {
		refuse(http.StatusBadRequest, errBadHandshake, "")
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		// RFC 6455 §4.4: tell the client which version we speak.
		w.Header().Set("Sec-WebSocket-Version", "13")
		refuse(http.StatusUpgradeRequired, errBadHandshake, "")
		return
	}
	if !h.opts.Origin.allowed(r) {
		refuse(http.StatusForbidden, errForbiddenOrigin, "")
		return
	}
	if !offersV1(r.Header) {
		refuse(http.StatusBadRequest, errUnsupportedProtocol, "")
		return
	}
	now := time.Now()
	// The per-IP rate comes before the token check, so a flood costs no
	// signature verification.
	if ip.IsValid() {
		if ok, wait := h.limits.allowHandshake("ip:"+ipKey(ip).String(), h.opts.Limits.HandshakesPerIP, now); !ok {
			w.Header().Set("Retry-After", retryAfter(wait))
			refuse(http.StatusTooManyRequests, ErrRateLimited, "")
			return
		}
	}
	tok, err := h.auth.tokenFromRequest(r)
	var id *Identity
	if err == nil {
		id, err = h.auth.verify(tok, now)
	}
	if err != nil {
		if !h.opts.Auth.HTTPRefusalsForBrowsers && r.Header.Get("Origin") != "" && offersSubprotocol(r.Header) {
			h.refused(r.Context(), Refusal{Op: "handshake", Code: ErrorCode(err), Status: http.StatusUnauthorized,
				ClientIP: ip, RemoteAddr: r.RemoteAddr, Origin: truncate(r.Header.Get("Origin"), 128)})
			h.refuseInBand(w, r, err)
			return
		}
		refuse(http.StatusUnauthorized, err, "")
		return
	}
	if ok, wait := h.limits.allowHandshake("user:"+id.Subject, h.opts.Limits.HandshakesPerUser, now); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		refuse(http.StatusTooManyRequests, ErrRateLimited, id.Subject)
		return
	}
	since, err := parseSince(r.URL.Query().Get("since"), h.opts.MaxRoomsPerConn)
	if err != nil {
		refuse(http.StatusBadRequest, err, id.Subject)
		return
	}
	if len(since) > 0 {
		h.stats.reconnects.Add(1)
	}
	if err := h.limits.admit(ip, id.Subject); err != nil {
		w.Header().Set("Retry-After", "10")
		refuse(http.StatusTooManyRequests, err, id.Subject)
		return
	}
	admitted := true
	defer func() {
		if admitted { // the upgrade failed: give the slot back
			h.limits.release(ip, id.Subject)
		}
	}()

	neg := &negotiator{}
	up := ws.HTTPUpgrader{
		Timeout: h.opts.HandshakeTimeout,
		Protocol: func(p string) bool {
			return p == Subprotocol
		},
	}
	if h.opts.Compression.Mode == CompressionAuto {
		up.Negotiate = neg.negotiate
	}
	nc, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		// Past the checks above: a middleware's ResponseWriter that cannot
		// hijack (500; a deployment error, so a warning), an HTTP/1.0
		// request (400), or a client that went away or did not take the
		// response within HandshakeTimeout (no status: nobody saw one).
		status := 0
		if rej, ok := errors.AsType[*ws.ConnectionRejectedError](err); ok {
			status = rej.StatusCode()
		}
		h.refused(r.Context(), Refusal{Op: "handshake", Code: codeUpgradeFailed, Status: status, Subject: id.Subject,
			ClientIP: ip, RemoteAddr: r.RemoteAddr, Origin: truncate(r.Header.Get("Origin"), 128)})
		level := slog.LevelDebug
		if errors.Is(err, ws.ErrNotHijacker) {
			level = slog.LevelWarn
		}
		h.log.LogAttrs(r.Context(), level, "rthub: upgrade failed", slog.String("err", err.Error()))
		return
	}
	admitted = false // from here the connection owns the slot; teardown releases it
	_ = nc.SetDeadline(time.Time{})
	c := &conn{
		hub:        h,
		nc:         nc,
		raw:        syscallConn(nc),
		rd:         nc,
		id:         h.nodeID + "-" + fmt.Sprint(h.connSeq.Add(1)),
		remoteAddr: r.RemoteAddr,
		ip:         ip,
		deflate:    neg.accepted(),
		writing:    true, // held until setupConn: the welcome goes first, after the auto-joins
	}
	c.ctx, c.cancel = context.WithCancel(h.ctx)
	c.expiry = deadline{idx: -1, fn: c.expiryDue}
	// Keep bytes the client sent right after its request (pipelined frames)
	// but not net/http's 4 KiB reader.
	if n := rw.Reader.Buffered(); n > 0 {
		pre := make([]byte, n)
		_, _ = io.ReadFull(rw.Reader, pre)
		c.rd = io.MultiReader(bytes.NewReader(pre), nc)
	}
	c.ident.Store(id)
	c.lastIn.Store(time.Now().UnixNano())
	if !h.register(c) {
		_, _ = nc.Write(closeFrame(CloseGoingAway, "server shutting down"))
		_ = nc.Close()
		h.limits.release(ip, id.Subject)
		return
	}
	h.setupConn(c, since)
	// A fresh goroutine for the connection's life: the handshake and setup
	// grew this one's stack, and net/http's per-request state is released when
	// we return. The read loop parks with a small stack.
	go func() {
		defer h.wg.Done() // Add is in register
		c.readLoop()
	}()
}

// refuseInBand answers a browser whose token was refused: it upgrades, sends
// a close frame with a code the page can read (see
// AuthOptions.HTTPRefusalsForBrowsers), waits briefly for the browser's
// close, and drops the connection.
func (h *Hub) refuseInBand(w http.ResponseWriter, r *http.Request, err error) {
	up := ws.HTTPUpgrader{Timeout: h.opts.HandshakeTimeout, Protocol: func(p string) bool { return p == Subprotocol }}
	nc, _, _, uerr := up.Upgrade(r, w)
	if uerr != nil {
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	defer nc.Close()
	code := CloseUnauthorized
	if errors.Is(err, ErrTokenExpired) {
		code = CloseTokenExpired
	}
	_ = nc.SetDeadline(time.Now().Add(h.opts.CloseTimeout))
	if _, werr := nc.Write(closeFrame(code, ErrorCode(err))); werr != nil {
		return
	}
	var buf [256]byte
	for { // until the browser's close frame and FIN, or the deadline
		if _, rerr := nc.Read(buf[:]); rerr != nil {
			return
		}
	}
}

// offersSubprotocol reports whether the handshake explicitly offers rthub.v1.
func offersSubprotocol(hd http.Header) bool {
	v1, _ := protocolOffer(hd)
	return v1
}

// setupConn starts a new connection after register: auto-join (resuming
// from the client's since positions), the welcome put first in the queue,
// the write side released, expiry timers, OnConnect. It runs before the read
// loop, so before any command is read.
func (h *Hub) setupConn(c *conn, since map[string]StreamPosition) {
	id := c.ident.Load()
	w := welcomeMsg{Type: "welcome", Version: ProtocolVersion, Conn: c.id, User: id.Subject,
		Roles: nonNil(id.Roles), Rooms: []string{}, Expires: unixOrZero(id.ExpiresAt),
		Ping: int64((h.opts.PingInterval + time.Second - 1) / time.Second)}
	for _, rm := range h.policy.autoJoin(id) {
		if h.policy.authorize(c.ctx, id, ActionJoin, rm, "") != nil {
			continue
		}
		var from *StreamPosition
		if p, ok := since[rm]; ok {
			from = &p
		}
		res, err := h.joinAt(c.ctx, c, rm, false, from)
		if err != nil {
			h.log.LogAttrs(c.ctx, slog.LevelWarn, "rthub: auto-join failed", slog.String("conn", c.id),
				slog.String("room", rm), slog.Any("err", err))
			continue
		}
		w.Rooms = append(w.Rooms, rm)
		if w.Streams == nil {
			w.Streams = make(map[string]streamInfo)
		}
		w.Streams[rm] = res.info()
	}
	// The welcome goes before the replays and live events queued meanwhile:
	// the write side is still held, so the client reads it first, and it
	// lists only rooms the connection is in.
	if b, err := json.Marshal(w); err == nil {
		c.prepend(textFrame(b))
	}
	h.schedule(c)
	h.scheduleExpiry(c, id)
	if h.opts.OnConnect != nil {
		h.callHook(c, func() { h.opts.OnConnect(c.ctx, c.info()) })
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// callHook runs a user callback, turning a panic into a close with 1011.
func (h *Hub) callHook(c *conn, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("rthub: hook panicked", slog.String("conn", c.id), slog.Any("panic", p))
			c.closeWith(CloseInternalError, "internal error")
		}
	}()
	fn()
}

// scheduleExpiry arranges the expiring warning and the close at exp for the
// identity the connection holds now (after a refresh too), or cancels them
// when it has no exp. The connection has one entry in the hub's clock, moved
// here and removed at teardown (see deadlines).
func (h *Hub) scheduleExpiry(c *conn, id *Identity) {
	if id.ExpiresAt.IsZero() {
		h.clock.cancel(&c.expiry)
		return
	}
	at := id.ExpiresAt
	if c.warnedExp.Load() != at.Unix() {
		at = at.Add(-h.auth.expiryWarning()) // at once if that is past
	}
	h.clock.schedule(&c.expiry, at)
}

// expiryDue runs on the clock when the connection's entry is due: it warns
// that the token is expiring (once per token) and moves the entry to exp, or
// closes the connection at exp.
func (c *conn) expiryDue() {
	h := c.hub
	id := c.ident.Load()
	exp := id.ExpiresAt
	if exp.IsZero() {
		return
	}
	now := time.Now()
	if !now.Before(exp) {
		if c.closeWith(CloseTokenExpired, "token expired") {
			h.stats.tokenExpired.Add(1)
		}
		return
	}
	if c.warnedExp.Swap(exp.Unix()) != exp.Unix() {
		c.sendJSON(expiringMsg{Type: "expiring", Expires: exp.Unix()})
	}
	// Under c.mu: teardown marks the connection closed under it before it
	// cancels the entry, so the entry is never scheduled again after that.
	c.mu.Lock()
	if !c.closed {
		h.clock.schedule(&c.expiry, exp)
	}
	c.mu.Unlock()
}

// sendJSON queues one control message of the protocol.
func (c *conn) sendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.hub.log.Error("rthub: encoding message", slog.Any("err", err))
		return
	}
	c.send(textFrame(b))
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

// validWebSocketKey reports whether k is base64 of 16 bytes (RFC 6455 §4.1).
func validWebSocketKey(k string) bool {
	if len(k) != 24 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) == 16
}

// offersV1 reports whether the client's subprotocols allow version 1: it
// offers rthub.v1, or offers no rthub.vN at all (plain tools like wscat).
func offersV1(hd http.Header) bool {
	v1, other := protocolOffer(hd)
	return v1 || !other
}

// protocolOffer reads the offered subprotocols: v1 reports rthub.v1, other
// another rthub.vN.
func protocolOffer(hd http.Header) (v1, other bool) {
	for _, v := range hd.Values("Sec-WebSocket-Protocol") {
		for part := range strings.SplitSeq(v, ",") {
			switch p := strings.TrimSpace(part); {
			case p == Subprotocol:
				return true, other
			case strings.HasPrefix(p, "rthub.v"):
				other = true
			}
		}
	}
	return false, other
}

var (
	errBadHandshake        = &ReplyError{Code: "bad_handshake", Message: "not a WebSocket handshake"}
	errUnsupportedProtocol = &ReplyError{Code: "unsupported_protocol", Message: "unsupported protocol version"}
)

// register adds c to the hub; false once the hub is closing.
func (h *Hub) register(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing.Load() {
		return false
	}
	h.conns[c.id] = c
	sub := c.ident.Load().Subject
	h.users[sub] = append(h.users[sub], c)
	h.stats.accepted.Add(1)
	// Add under h.mu, before Close (which sets closing under h.mu) can Wait.
	h.wg.Add(1)
	return true
}

// unregister removes c and its room memberships; c is already marked closed,
// so no join can add it back.
func (h *Hub) unregister(c *conn) {
	c.mu.Lock()
	names := make([]string, len(c.rooms))
	for i, rr := range c.rooms {
		names[i] = rr.name
	}
	c.mu.Unlock()
	ctx := context.WithoutCancel(c.ctx) // presence removals and unsubscriptions still go out
	for _, name := range names {
		h.leave(ctx, c, name)
	}
	h.mu.Lock()
	delete(h.conns, c.id)
	sub := c.ident.Load().Subject
	h.limits.release(c.ip, sub)
	if cs := slices.DeleteFunc(h.users[sub], func(x *conn) bool { return x == c }); len(cs) == 0 {
		delete(h.users, sub)
	} else {
		h.users[sub] = cs
	}
	h.mu.Unlock()
}

func (h *Hub) disconnected(c *conn, ce CloseError, readErr error) {
	if h.opts.OnDisconnect != nil {
		func() {
			defer func() { _ = recover() }()
			h.opts.OnDisconnect(c.ctx, c.info(), ce)
		}()
	}
	h.log.LogAttrs(h.ctx, slog.LevelDebug, "rthub: disconnected", slog.String("conn", c.id),
		slog.String("user", c.ident.Load().Subject), slog.Int("code", int(ce.Code)), slog.Any("read_err", readErr))
}

// PublishOption adjusts one publish.
type PublishOption func(*publishConfig)

type publishConfig struct {
	except string
	cid    string
}

// WithExcept leaves out the connection with this ID (typically the sender of
// a relayed event).
func WithExcept(connID string) PublishOption {
	return func(p *publishConfig) { p.except = connID }
}

// WithCorrelationID tags the event with id, which clients receive as the
// event's "cid" field and the hub logs (at debug level) with the publish, so
// one reading can be followed from its origin (an MQTT message, an HTTP
// request) to the frame a client receives. id is at most 128 bytes of
// printable ASCII; anything else is ignored.
func WithCorrelationID(id string) PublishOption {
	return func(p *publishConfig) {
		if validCorrelationID(id) {
			p.cid = id
		}
	}
}

func validCorrelationID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// Publish sends event with data to every connection in room. data is encoded
// with encoding/json, except a json.RawMessage, which must be valid JSON and
// is sent as is. The event is encoded (and compressed) once, whatever the
// number of recipients; it returns once the event is queued to every member,
// never waiting for a slow client. Errors: [ErrHubClosed], [ErrBadRoom], [ErrBadEvent],
// [ErrBadPayload], or ctx's error.
func (h *Hub) Publish(ctx context.Context, room, event string, data any, opts ...PublishOption) error {
	var raw []byte
	switch d := data.(type) {
	case json.RawMessage:
		if !json.Valid(d) {
			return fmt.Errorf("%w: data is not valid JSON", ErrBadPayload)
		}
		raw = d
	default:
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		raw = b
	}
	return h.publish(ctx, room, event, raw, opts...)
}

// publish delivers valid JSON data to the local members of room.
func (h *Hub) publish(ctx context.Context, room, event string, data []byte, opts ...PublishOption) error {
	if h.closing.Load() {
		return ErrHubClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidRoom(room); err != nil {
		return err
	}
	if err := validEventName(event); err != nil {
		return err
	}
	var cfg publishConfig
	for _, o := range opts {
		o(&cfg)
	}
	h.stats.published.Add(1)
	h.stats.events.of(event).published.Add(1)
	payload := appendEventCID(make([]byte, 0, 64+len(event)+len(room)+len(cfg.cid)+len(data)), cfg.cid, event, room, data)
	if cfg.cid != "" && h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.LogAttrs(ctx, slog.LevelDebug, "rthub: publish", slog.String("room", room),
			slog.String("event", event), slog.String("cid", cfg.cid), slog.Int("bytes", len(data)))
	}
	if _, err := h.broker.Publish(ctx, room, Message{Data: payload, Except: cfg.except}); err != nil {
		h.stats.brokerErrors.Add(1)
		return fmt.Errorf("rthub: publish to %q: %w", room, err)
	}
	return nil
}

// preparedMessage holds one encoded message and builds each wire form of it at
// most once: the plain frame, and the compressed frame for connections that
// negotiated permessage-deflate.
type preparedMessage struct {
	payload   []byte
	comp      *compressor
	threshold int
	plain     []byte
	deflated  []byte
	triedDefl bool
}

func (p *preparedMessage) frame(deflate bool) []byte {
	if deflate && len(p.payload) >= p.threshold {
		if !p.triedDefl {
			p.triedDefl = true
			body, err := p.comp.compress(make([]byte, 0, len(p.payload)/2+16), p.payload)
			if err == nil && len(body) < len(p.payload) {
				p.deflated = appendFrame(make([]byte, 0, frameHeaderLen(len(body))+len(body)), opText, true, body)
			}
		}
		if p.deflated != nil {
			return p.deflated
		}
	}
	if p.plain == nil {
		p.plain = textFrame(p.payload)
	}
	return p.plain
}

// JoinConn puts the connection with this ID into room, bypassing the policy,
// and tells the client with a "joined" message. A token refresh does not
// re-evaluate rooms joined this way. ctx is checked first and bounds the
// broker calls of the join (subscribing a new room), each also bounded by
// BrokerTimeout. Errors: [ErrNotFound], [ErrBadRoom], [ErrTooManyRooms], or
// ctx's error (nothing was done when ctx had ended before the call).
func (h *Hub) JoinConn(ctx context.Context, connID, room string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidRoom(room); err != nil {
		return err
	}
	c := h.connByID(connID)
	if c == nil {
		return fmt.Errorf("%w: connection %q", ErrNotFound, connID)
	}
	return h.serverJoin(ctx, c, room)
}

// LeaveConn takes the connection with this ID out of room and tells the client
// with a "left" message. ctx is checked first and bounds the broker calls
// (a cluster presence update, unsubscribing an emptied room). Errors:
// [ErrNotFound], [ErrBadRoom], or ctx's error.
func (h *Hub) LeaveConn(ctx context.Context, connID, room string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidRoom(room); err != nil {
		return err
	}
	c := h.connByID(connID)
	if c == nil {
		return fmt.Errorf("%w: connection %q", ErrNotFound, connID)
	}
	h.serverLeave(ctx, c, room)
	return nil
}

// serverJoin joins c to room for the server-side API and tells the client.
func (h *Hub) serverJoin(ctx context.Context, c *conn, room string) error {
	if err := h.join(ctx, c, room, true); err != nil {
		return err
	}
	c.sendJSON(roomMsg{Type: "joined", Room: room})
	return nil
}

// serverLeave takes c out of room for the server-side API and tells the client.
func (h *Hub) serverLeave(ctx context.Context, c *conn, room string) {
	if h.leave(ctx, c, room) {
		c.sendJSON(roomMsg{Type: "left", Room: room, Reason: "server"})
	}
}

// JoinUser puts every connection of the user with this subject into room, as
// [Hub.JoinConn] does. ctx is checked before each connection; when it ends
// part way, the connections done so far stay joined and ctx's error is
// returned. Errors: [ErrNotFound] if the user has no connection on this hub,
// [ErrBadRoom], the first [ErrTooManyRooms], or ctx's error.
func (h *Hub) JoinUser(ctx context.Context, subject, room string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidRoom(room); err != nil {
		return err
	}
	conns := h.userConns(subject)
	if len(conns) == 0 {
		return fmt.Errorf("%w: user %q", ErrNotFound, subject)
	}
	var first error
	for _, c := range conns {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := h.serverJoin(ctx, c, room); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// LeaveUser takes every connection of the user out of room, with ctx as in
// [Hub.JoinUser]. Errors: [ErrNotFound], [ErrBadRoom], or ctx's error.
func (h *Hub) LeaveUser(ctx context.Context, subject, room string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidRoom(room); err != nil {
		return err
	}
	conns := h.userConns(subject)
	if len(conns) == 0 {
		return fmt.Errorf("%w: user %q", ErrNotFound, subject)
	}
	for _, c := range conns {
		if err := ctx.Err(); err != nil {
			return err
		}
		h.serverLeave(ctx, c, room)
	}
	return nil
}

// DisconnectUser closes every connection of the user with close code 4101
// (disconnected: the client does not reconnect). It returns how many
// connections it closed; [ErrNotFound] if none; ctx's error, having closed
// none, when ctx had ended before the call.
func (h *Hub) DisconnectUser(ctx context.Context, subject, reason string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	conns := h.userConns(subject)
	if len(conns) == 0 {
		return 0, fmt.Errorf("%w: user %q", ErrNotFound, subject)
	}
	if reason == "" {
		reason = "disconnected by server"
	}
	for _, c := range conns {
		c.closeWith(CloseDisconnected, reason)
	}
	return len(conns), nil
}

func (h *Hub) connByID(id string) *conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.conns[id]
}

func (h *Hub) userConns(subject string) []*conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Clone(h.users[subject])
}

// Rooms returns the names of the rooms with at least one local member, sorted.
func (h *Hub) Rooms() []string {
	h.mu.RLock()
	out := make([]string, 0, len(h.rooms))
	for name := range h.rooms {
		out = append(out, name)
	}
	h.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Shutdown drains the hub, the way [http.Server.Shutdown] drains a server:
// new upgrades are refused with 503 at once; every connection is closed with
// 1001 (going away: reconnect), the closes spread over Options.DrainWindow (or
// less, to fit ctx's deadline) so clients come back gradually; then it waits
// for every goroutine of the hub. If ctx ends first, the remaining connections
// are dropped and ctx's error returned. Shutdown is idempotent; a hub cannot be
// reused afterwards.
//
// net/http neither closes nor waits for hijacked connections: call
// hub.Shutdown before srv.Shutdown, or register it with
// srv.RegisterOnShutdown.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing.Store(true)
	h.mu.Unlock()
	conns := h.snapshotConns(nil)
	window := h.opts.DrainWindow
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) / 2; left < window {
			window = max(left, 0)
		}
	}
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	var err error
	for i, c := range conns {
		if n := len(conns); n > 1 && window > 0 {
			at := start.Add(window * time.Duration(i) / time.Duration(n))
			if d := time.Until(at); d > 0 {
				t.Reset(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
		}
		if err != nil {
			break
		}
		c.closeWith(CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	if err == nil {
		select {
		case <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		h.Close()
		<-done
		return err
	}
	h.stopBackground()
	return nil
}

// Close stops the hub at once: it refuses new upgrades, drops every connection
// without a closing handshake, and waits for the hub's goroutines. Clients see
// an abnormal closure (1006) and reconnect. Use [Hub.Shutdown] for a graceful
// stop. Close is idempotent and returns nil.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closing.Store(true)
	h.mu.Unlock()
	for _, c := range h.snapshotConns(nil) {
		c.mu.Lock()
		if c.code == 0 {
			c.code = CloseAbnormal
		}
		c.mu.Unlock()
		_ = c.nc.Close()
	}
	h.wg.Wait()
	h.stopBackground()
	return nil
}

func (h *Hub) stopBackground() {
	h.stopOnce.Do(func() {
		close(h.stop)
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.BrokerTimeout)
		if err := h.broker.Close(ctx); err != nil {
			h.log.Warn("rthub: closing the broker", slog.Any("err", err))
		}
		cancel()
		h.cancel()
	})
	h.bg.Wait()
}

// Stats is a snapshot of a hub's counters. Counters only grow; gauges
// (Connections, Users, Rooms) are current values.
type Stats struct {
	Connections int // open connections
	Users       int // distinct subjects connected
	Rooms       int // rooms with at least one local member

	Accepted       uint64 // connections upgraded
	Unauthorized   uint64 // handshakes refused with 401
	Refused        uint64 // handshakes refused otherwise (400, 503, upgrade failures)
	Published      uint64 // Publish calls handed to the broker (with or without local members)
	Delivered      uint64 // event frames queued to connections
	FramesSent     uint64 // frames written to sockets (events, replies, control)
	Writes         uint64 // write system calls that carried them (FramesSent/Writes = coalescing)
	BytesSent      uint64 // bytes written to sockets
	MessagesIn     uint64 // client messages read
	SlowConsumers  uint64 // connections closed because their queue overflowed
	PingTimeouts   uint64 // connections closed as silent
	TokenExpired   uint64 // connections closed at token expiry
	ProtocolErrs   uint64 // connections closed for protocol violations
	Throttled      uint64 // handshakes refused with 429 (rate or connection limits); also in Refused
	Forbidden      uint64 // joins, emits, presence queries refused by the policy
	RateLimited    uint64 // client commands dropped by the command rate limit
	AbuseCloses    uint64 // connections closed (1008) for hammering past the limit
	Resumes        uint64 // joins with a since position (resume attempts)
	Unrecovered    uint64 // resumes and live gaps that could not be filled from history (clients told to reload)
	GapsRecovered  uint64 // live gaps (missed publications) filled from history
	BrokerErrors   uint64 // failed broker calls (publish, subscribe, history)
	Reconnects     uint64 // handshakes that carried since positions: clients coming back
	BytesReceived  uint64 // message bytes read from clients (after inflating)
	EventBytes     uint64 // event messages queued to connections, uncompressed bytes
	EventWireBytes uint64 // the same events as frames on the wire (compressed when negotiated): EventWireBytes/EventBytes is the compression ratio
	DroppedFrames  uint64 // frames never written: refused by a closing connection or a full send queue, or discarded from the queue of one that closed

	// HistoryBytes and HistoryEvictions are the in-memory broker's (see
	// [MemoryBrokerStats]); 0 with another broker, whose history lives
	// outside the process.
	HistoryBytes     int64
	HistoryEvictions uint64

	QueuedFrames int // frames waiting in connections' send queues now
	QueuedBytes  int // their bytes

	// Events counts publications, deliveries and drops by event name (at
	// most MaxEventNames names; see OtherEvents). Nil before the first
	// publication.
	Events map[string]EventCounts

	// ReplyErrors counts error replies to client commands by error code
	// ("forbidden", "rate_limited", ...; docs/protocol.md §2.4). Nil when
	// there were none.
	ReplyErrors map[string]uint64

	// BroadcastLatency is the time from a publication reaching this hub (from
	// its broker) to the write of its frame to the last member's socket,
	// one observation per publication that started at least one socket
	// write (one whose members were all mid-write rides on those writes and
	// is not observed). It
	// includes WriteDelay and time spent waiting for a flush worker; it does
	// not include the broker's own transit (see the broker's stats).
	BroadcastLatency LatencyHistogram
}

type hubStats struct {
	accepted, unauthorized, refused    atomic.Uint64
	published, delivered               atomic.Uint64
	framesSent, bytesSent, messagesIn  atomic.Uint64
	slowConsumers, pingTimeouts        atomic.Uint64
	tokenExpired, protocolErrors       atomic.Uint64
	brokerErrors, resumes, unrecovered atomic.Uint64
	gapsRecovered                      atomic.Uint64
	reconnects, bytesIn                atomic.Uint64
	replyErrors                        [maxReplyCodes]atomic.Uint64 // by replyErrorIndex
	eventBytes, eventWire              atomic.Uint64
	writes                             atomic.Uint64
	throttled, forbidden               atomic.Uint64
	rateLimited, abuseCloses           atomic.Uint64
	droppedFrames                      atomic.Uint64
	events                             eventCounters
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	s := Stats{Connections: len(h.conns), Users: len(h.users), Rooms: len(h.rooms)}
	for _, c := range h.conns {
		c.mu.Lock()
		if c.queue != nil {
			s.QueuedFrames += len(c.queue.bufs)
		}
		s.QueuedBytes += c.queued
		c.mu.Unlock()
	}
	h.mu.RUnlock()
	st := &h.stats
	for i := range st.replyErrors {
		if n := st.replyErrors[i].Load(); n > 0 {
			if s.ReplyErrors == nil {
				s.ReplyErrors = make(map[string]uint64)
			}
			s.ReplyErrors[replyErrorCode(i)] = n
		}
	}
	s.Accepted = st.accepted.Load()
	s.Unauthorized = st.unauthorized.Load()
	s.Refused = st.refused.Load()
	s.Published = st.published.Load()
	s.Delivered = st.delivered.Load()
	s.FramesSent = st.framesSent.Load()
	s.Writes = st.writes.Load()
	s.BytesSent = st.bytesSent.Load()
	s.MessagesIn = st.messagesIn.Load()
	s.SlowConsumers = st.slowConsumers.Load()
	s.PingTimeouts = st.pingTimeouts.Load()
	s.TokenExpired = st.tokenExpired.Load()
	s.ProtocolErrs = st.protocolErrors.Load()
	s.Throttled = st.throttled.Load()
	s.Forbidden = st.forbidden.Load()
	s.RateLimited = st.rateLimited.Load()
	s.AbuseCloses = st.abuseCloses.Load()
	s.Resumes = st.resumes.Load()
	s.Unrecovered = st.unrecovered.Load()
	s.GapsRecovered = st.gapsRecovered.Load()
	s.BrokerErrors = st.brokerErrors.Load()
	s.Reconnects = st.reconnects.Load()
	s.BytesReceived = st.bytesIn.Load()
	s.EventBytes = st.eventBytes.Load()
	s.EventWireBytes = st.eventWire.Load()
	s.DroppedFrames = st.droppedFrames.Load()
	s.Events = st.events.snapshot()
	if mb, ok := h.broker.(interface{ Stats() MemoryBrokerStats }); ok {
		ms := mb.Stats()
		s.HistoryBytes, s.HistoryEvictions = ms.HistoryBytes, ms.HistoryEvictions
	}
	s.BroadcastLatency = h.latency.snapshot()
	return s
}

var _ http.Handler = (*Hub)(nil)
