package rthub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub/internal/jsonschema"
)

// Hub serves WebSocket connections, keeps their rooms and delivers published
// events. Create one with [New]; serve it as an [http.Handler]; stop it with
// [Hub.Shutdown] or [Hub.Close]. All methods are safe for concurrent use.
type Hub struct {
	opts     Options
	auth     *authenticator
	policy   *policy
	limits   *limiter
	broker   Broker
	stater   StateBroker      // the broker, when it keeps keyed state; nil if not
	pstore   PresenceStore    // the broker's, when it keeps cluster-wide presence and Policy.Presence is set
	ctl      ControlBroker    // the broker, when it carries the control plane; nil if not
	revs     *revocationSet   // this node's replica of the revocations
	revKick  chan struct{}    // asks the revocation loader to reload (cap 1)
	relay    NodeRelay        // the broker's, when it relays and Options.HTTPStream is enabled; nil if not
	resyncCh chan resyncRetry // rooms whose resync read failed, for the resyncer
	handlers map[string]Handler
	validate map[string]*jsonschema.Validator // by event; nil without Options.ValidateEmits
	rpc      *rpcTable                        // RPC handlers (Options.RPCs)
	idem     *idemStore                       // idempotency keys; nil when off
	comp     *compressor
	log      *slog.Logger
	nodeID   string
	connSeq  atomic.Uint64

	ctx    context.Context // cancelled by Close; hooks receive it
	cancel context.CancelFunc
	// connCtx is the parent of the connections' contexts: ctx's values
	// without its cancellation. Close cancels every connection's context
	// itself, and teardown does, so a connection needs no entry in ctx's
	// list of children (about 44 B per connection, and a lock every
	// connect and teardown would take).
	connCtx context.Context

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
	poll      *poller        // the epoll read path's sets; nil: every connection has a read goroutine
	wg        sync.WaitGroup // connections (from register to teardown), their readers and overflow flushers
	bg        sync.WaitGroup // pinger, clock, flush workers, epoll sets

	stats   hubStats
	latency latencyHist // broadcast: queued to members → last member's frame written

	// testHookFlushed, if set before traffic starts, is called after each
	// vectored write with the number of frames written (benchmarks use it to
	// wait for delivery without spinning).
	testHookFlushed func(frames int)
}

// New validates opts and returns a running Hub. Every problem in opts is
// reported in the returned error, an *[OptionsError], which wraps
// [ErrInvalidOptions] and each problem. Besides each option's own rules, New
// refuses options that cannot work together: a Policy that lets no role into
// any room (unless Options.PublishOnly), and an Emit rule for an event no
// Handler handles.
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
	if pol != nil {
		errs = append(errs, checkPolicyUse(opts.Policy, handlers, opts.PublishOnly)...)
	}
	rpct, rerrs := buildRPCs(&opts)
	errs = append(errs, rerrs...)
	if pol != nil {
		errs = append(errs, checkCallRules(opts.Policy, rpct)...)
	}
	var validators map[string]*jsonschema.Validator
	if opts.ValidateEmits {
		var verrs []error
		validators, verrs = buildValidators(handlers, opts.MaxMessageSize)
		errs = append(errs, verrs...)
	}
	if len(errs) > 0 {
		return nil, &OptionsError{Problems: errs}
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
		stater:   stateBroker(opts.Broker),
		resyncCh: make(chan resyncRetry, 4096),
		revs:     newRevocationSet(opts.Revocation.MaxEntries),
		revKick:  make(chan struct{}, 1),
		syncKick: make(chan struct{}, 1),
		handlers: handlers,
		rpc:      rpct,
		idem:     newIdemStore(opts.Idempotency, opts.Broker),
		validate: validators,
		comp:     newCompressor(opts.Compression.Level),
		log:      opts.Logger,
		nodeID:   hex.EncodeToString(idb[:]),
		ctx:      ctx,
		cancel:   cancel,
		connCtx:  context.WithoutCancel(ctx),
		conns:    make(map[string]*conn),
		users:    make(map[string][]*conn),
		rooms:    make(map[string]*room),
		leaving:  make(map[string]*room),
		stop:     make(chan struct{}),
		flushCh:  make(chan flushJob, 1<<14),
		clock:    newDeadlines(),
	}
	if r := nodeRelay(h.broker); r != nil && opts.HTTPStream.Enabled {
		if err := r.ListenRelay(h.nodeID, h.handleRelayed); err != nil {
			cancel()
			return nil, fmt.Errorf("rthub: listening for relayed commands: %w", err)
		}
		h.relay = r
	}
	sctx, scancel := context.WithTimeout(ctx, opts.BrokerTimeout)
	err = h.broker.Start(sctx, brokerHandler{h})
	if err == nil {
		err = h.startControl(sctx)
		if err != nil {
			cctx, ccancel := context.WithTimeout(context.Background(), opts.BrokerTimeout)
			_ = h.broker.Close(cctx)
			ccancel()
		}
	} else {
		err = fmt.Errorf("rthub: starting the broker: %w", err)
	}
	scancel()
	if err != nil {
		cancel()
		return nil, err
	}
	h.bg.Go(h.resyncer)
	for range syncWorkers {
		h.bg.Go(h.syncWorker)
	}
	if ps, ok := BrokerAs[PresenceStore](h.broker); ok && len(pol.presence) > 0 {
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
	h.poll = hubPoller(h)
	return h, nil
}

// Rooms returns the names of the rooms with at least one local member, sorted.
func (h *Hub) Rooms() []string {
	h.mu.RLock()
	rooms := make([]*room, 0, len(h.rooms))
	for _, rm := range h.rooms {
		rooms = append(rooms, rm)
	}
	h.mu.RUnlock()
	out := make([]string, 0, len(rooms))
	for _, rm := range rooms { // a room being subscribed has no member yet
		rm.mu.Lock()
		if len(rm.members) > 0 {
			out = append(out, rm.name)
		}
		rm.mu.Unlock()
	}
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
		c.closeSocket()
		c.cancel() // a read loop waiting on a broker call for the connection returns now
	}
	h.wg.Wait()
	h.stopBackground()
	return nil
}

func (h *Hub) stopBackground() {
	h.stopOnce.Do(func() {
		close(h.stop)
		if h.poll != nil {
			h.poll.close() // every connection is torn down: no more removes
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.BrokerTimeout)
		if err := h.broker.Close(ctx); err != nil {
			h.log.Warn("rthub: closing the broker", slog.Any("err", err))
		}
		cancel()
		h.cancel()
	})
	h.bg.Wait()
}

var _ http.Handler = (*Hub)(nil)
