package mqttbridge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/org/rthub"
)

// Config configures a [Bridge]. Zero fields take the documented defaults;
// [New] copies the Config and never modifies the caller's value.
type Config struct {
	// URL is the broker's address (required): tcp:// or mqtt:// for plain
	// TCP, tls://, ssl:// or mqtts:// for TLS, all with a port, e.g.
	// "tcp://127.0.0.1:1883"; ws:// or wss:// with a path for MQTT over
	// WebSocket, e.g. "wss://broker.example.com/mqtt".
	URL string
	// ClientID identifies the bridge to the broker; it must be unique among
	// the broker's clients (a second client with the same ID takes the
	// session over and disconnects the first). Default "rthub-bridge-"
	// followed by 16 random hex digits, fixed for the Bridge's life so that
	// reconnections resume its session.
	ClientID string
	// Username and Password are sent in CONNECT when Username is set.
	// The password is never logged.
	Username string
	Password string
	// TLS configures tls://, ssl://, mqtts:// and wss:// connections. Nil
	// means the system's roots and the URL's host name.
	TLS *tls.Config

	// Routes map topics to hub events (at least one, unless Commands is
	// set). See [Route].
	Routes []Route
	// Commands, if set, turns on the downlink: [Bridge.Command] and
	// [Bridge.Send] publish commands to devices. See [CommandConfig].
	Commands *CommandConfig
	// QoS is the default subscription QoS of the routes. Default
	// [AtLeastOnce].
	QoS QoS
	// ShareGroup, if set, subscribes with MQTT 5 shared subscriptions
	// ("$share/<ShareGroup>/<filter>"): the bridges of a group (e.g. one per
	// hub node sharing a Redis broker) split the messages between them
	// instead of each receiving all. Brokers send no retained messages to
	// shared subscriptions.
	ShareGroup string
	// CorrelationProperty names the MQTT 5 user property that carries a
	// message's correlation ID ([Message].CorrelationID). Default
	// "correlation-id".
	CorrelationProperty string

	// KeepAlive is the MQTT keep-alive: the broker drops the bridge, and the
	// bridge the connection, after 1.5 × KeepAlive of silence. Default 30 s;
	// whole seconds, at most 65535 s.
	KeepAlive time.Duration
	// ConnectTimeout bounds one connection attempt (TCP, TLS, CONNECT) and
	// one subscription. Default 10 s.
	ConnectTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the wait between connection
	// attempts: the first attempt after a lost connection is immediate, then
	// the wait doubles from ReconnectMin up to ReconnectMax, ± 20 %.
	// Defaults 250 ms and 30 s.
	ReconnectMin, ReconnectMax time.Duration
	// SessionExpiry is how long the broker keeps the bridge's session (its
	// subscriptions and the QoS 1 and 2 messages for it) after a connection
	// is lost, so that a reconnection within it misses nothing. A graceful
	// shutdown ends the session at once. Default 60 s; negative for none
	// (the session ends with each connection). Whole seconds.
	SessionExpiry time.Duration
	// ReceiveMaximum, if positive, is sent to the broker as the MQTT 5
	// Receive Maximum: the broker sends at most this many QoS 1 and 2
	// messages the bridge has not acknowledged yet, and keeps the rest (up to
	// its own limits). The bridge acknowledges a message once it is queued,
	// so this matters only with [Block]: without it, messages the broker
	// sends while a route blocks wait in the MQTT client's memory. At most
	// 65535. Default 0: not sent, which MQTT reads as 65535. Measure before
	// lowering it: mochi-mqtt v2.7 was seen to stop delivering under a burst
	// with 128.
	ReceiveMaximum int
	// MaxPayload is the largest MQTT packet the bridge accepts, in bytes,
	// sent to the broker as the MQTT 5 Maximum Packet Size: the broker drops
	// larger messages instead of sending them. Default 256 KiB.
	MaxPayload int

	// QueueSize and QueueBytes are the default Route.QueueSize (messages)
	// and Route.QueueBytes (bytes) of each route's queue. Defaults 1024
	// messages and 8 MiB; QueueBytes must hold a message of MaxPayload.
	QueueSize  int
	QueueBytes int
	// MaxKeys bounds the keys whose last data a Route.OnChange route
	// remembers. Default 100,000.
	MaxKeys int
	// DrainTimeout bounds the graceful stop of [Bridge.Run]. Default 5 s.
	DrainTimeout time.Duration

	// Logger receives the bridge's logs: connections, subscriptions, and at
	// most one line per second per route and kind for bad messages. Nil
	// discards them.
	Logger *slog.Logger
}

func (c *Config) setDefaults() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	defDur := func(d *time.Duration, v time.Duration, name string) {
		if *d == 0 {
			*d = v
		} else if *d < 0 {
			bad("%s is negative", name)
		}
	}
	defInt := func(p *int, v int, name string) {
		if *p == 0 {
			*p = v
		} else if *p < 0 {
			bad("%s is negative", name)
		}
	}
	if c.URL == "" {
		bad("URL is empty")
	} else if u, err := url.Parse(c.URL); err != nil {
		bad("URL %q: %v", c.URL, err)
	} else {
		switch strings.ToLower(u.Scheme) {
		case "tcp", "mqtt", "tls", "ssl", "mqtts", "ws", "wss":
		default:
			bad("URL %q: scheme %q is not tcp, mqtt, tls, ssl, mqtts, ws or wss", c.URL, u.Scheme)
		}
		if u.Host == "" {
			bad("URL %q has no host", c.URL)
		} else if u.Port() == "" && !strings.HasPrefix(strings.ToLower(u.Scheme), "ws") {
			bad("URL %q has no port (e.g. :1883, or :8883 for TLS)", c.URL)
		}
	}
	if c.ClientID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.ClientID = "rthub-bridge-" + hex.EncodeToString(b[:])
	}
	if c.Password != "" && c.Username == "" {
		bad("Password is set without Username")
	}
	if len(c.Routes) == 0 && c.Commands == nil {
		bad("Routes is empty")
	}
	switch {
	case c.QoS == 0:
		c.QoS = AtLeastOnce
	case c.QoS > ExactlyOnce:
		bad("QoS %d is not a QoS level", c.QoS)
	}
	if c.ShareGroup != "" && strings.ContainsAny(c.ShareGroup, "/+#") {
		bad("ShareGroup %q contains '/', '+' or '#'", c.ShareGroup)
	}
	if c.CorrelationProperty == "" {
		c.CorrelationProperty = "correlation-id"
	}
	defDur(&c.KeepAlive, 30*time.Second, "KeepAlive")
	if c.KeepAlive > 65535*time.Second {
		bad("KeepAlive %v is over 65535 s", c.KeepAlive)
	}
	defDur(&c.ConnectTimeout, 10*time.Second, "ConnectTimeout")
	defDur(&c.ReconnectMin, 250*time.Millisecond, "ReconnectMin")
	defDur(&c.ReconnectMax, 30*time.Second, "ReconnectMax")
	if c.ReconnectMax < c.ReconnectMin {
		bad("ReconnectMax %v is less than ReconnectMin %v", c.ReconnectMax, c.ReconnectMin)
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = time.Minute
	} else if c.SessionExpiry < 0 {
		c.SessionExpiry = 0
	}
	defInt(&c.MaxPayload, 256<<10, "MaxPayload")
	if c.ReceiveMaximum < 0 || c.ReceiveMaximum > 65535 {
		bad("ReceiveMaximum %d is not in 0..65535", c.ReceiveMaximum)
	}
	defInt(&c.QueueSize, 1024, "QueueSize")
	defInt(&c.QueueBytes, 8<<20, "QueueBytes")
	defInt(&c.MaxKeys, 100_000, "MaxKeys")
	defDur(&c.DrainTimeout, 5*time.Second, "DrainTimeout")
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return errs
}

// Bridge subscribes to an MQTT broker and publishes the messages of its
// routes to a hub. Create one with [New], run it with [Bridge.Run] (or
// [Bridge.Start] and later [Bridge.Shutdown]).
//
// A bridge owns these goroutines, all stopped and waited for by
// Shutdown and Close: the MQTT client's (connection manager, reader,
// delivery, pinger), one per route (decode and publish, in queue order),
// one per connection while it subscribes, and with Config.Commands the
// command goroutine (sends queued commands, expires them) and the reply
// goroutine (records replies). The delivery goroutine only
// matches the topic and queues the message, so a slow route never holds up
// the others (except with [Block]).
//
// All methods are safe for concurrent use.
type Bridge struct {
	pub     rthub.Publisher
	cfg     Config
	routes  []*route
	filters []string
	subQoS  []byte     // per filter
	nvars   int        // most variables of a route's pattern
	cmd     *commander // nil without Config.Commands
	log     *slog.Logger

	mu         sync.Mutex
	state      int // stateNew, stateRunning, stateClosed
	cm         *autopaho.ConnectionManager
	connected  bool
	subscribed bool
	connects   uint64
	connDown   chan struct{} // closed when the current connection drops
	ready      chan struct{} // closed while subscribed
	lastErr    error
	lastErrAt  time.Time

	ctx        context.Context // cancelled when the bridge is aborted
	cancel     context.CancelFunc
	stopIntake chan struct{} // closed when Shutdown starts: incoming messages are dropped
	drain      chan struct{} // closed when the routes should empty their queue and stop
	workers    sync.WaitGroup
	cmdWorker  sync.WaitGroup // the command and reply goroutines
	subs       sync.WaitGroup // subscribe goroutines
	done       chan struct{}  // closed when the bridge has stopped
	shutErr    error          // Shutdown's result, once done is closed

	unrouted      atomic.Uint64 // messages matching no route
	connectErrors atomic.Uint64
	connLog       logLimiter
	unroutedLog   logLimiter
}

const (
	stateNew = iota
	stateRunning
	stateClosed
)

// New validates cfg and returns a bridge that publishes to pub: the
// [*rthub.Hub], or a wrapper of it (otelrthub.WrapPublisher, your own).
// pub.Publish must not block for long (the hub's never waits for clients); it
// is called from each route's goroutine, concurrently for different routes.
// New starts nothing: call [Bridge.Run] or [Bridge.Start]. Every problem with cfg is
// reported in the error, which wraps [ErrInvalidConfig]: a missing or bad
// URL, a bad topic pattern, a room template that cannot produce a valid
// room, an unknown variable, an invalid event name, overlapping patterns, a
// negative size or duration.
func New(pub rthub.Publisher, cfg Config) (*Bridge, error) {
	var errs []error
	if pub == nil {
		//lint:ignore ST1005 it names the rthub.Publisher argument; it follows "mqttbridge: invalid config: "
		errs = append(errs, errors.New("Publisher is nil"))
	}
	errs = append(errs, cfg.setDefaults()...)
	cfg.Routes = append([]Route(nil), cfg.Routes...)
	b := &Bridge{
		pub:        pub,
		cfg:        cfg,
		log:        cfg.Logger,
		ready:      make(chan struct{}),
		stopIntake: make(chan struct{}),
		drain:      make(chan struct{}),
		done:       make(chan struct{}),
	}
	for i, r := range cfg.Routes {
		rt, rerrs := compileRoute(r, i, &b.cfg)
		errs = append(errs, rerrs...)
		if len(rerrs) > 0 || rt.pat == nil {
			continue
		}
		for _, o := range b.routes {
			if overlaps(o.pat, rt.pat) {
				//lint:ignore ST1005 it names the Config field; it follows "mqttbridge: invalid config: "
				errs = append(errs, fmt.Errorf("Routes[%d] (%q) and Routes[%d] (%q): topic patterns %q and %q overlap: a topic can match both",
					o.idx, o.Name, i, rt.Name, o.Topic, rt.Topic))
			}
		}
		b.routes = append(b.routes, rt)
		b.nvars = max(b.nvars, len(rt.pat.vars))
		f := rt.pat.filter
		if cfg.ShareGroup != "" {
			f = "$share/" + cfg.ShareGroup + "/" + f
		}
		b.filters = append(b.filters, f)
		b.subQoS = append(b.subQoS, rt.QoS.wire())
	}
	if cfg.Commands != nil {
		cc := *cfg.Commands
		cc.Rooms = slices.Clone(cc.Rooms) // nil stays nil: the default
		cmd, cerrs := newCommander(cc, b.routes, cfg.ShareGroup != "")
		errs = append(errs, cerrs...)
		if len(cerrs) == 0 {
			b.cmd = cmd
			b.cfg.Commands = &cmd.cfg
			for _, f := range cmd.filters() {
				b.filters = append(b.filters, f)
				b.subQoS = append(b.subQoS, AtLeastOnce.wire())
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	for _, rt := range b.routes {
		rt.queue = newQueue(rt.QueueSize, rt.QueueBytes, rt.Overflow, rt.Conflate)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// Subscriptions returns the MQTT subscription filters of the routes, in
// Config.Routes order, e.g. "sensors/+/reading" for the pattern
// "sensors/{device}/reading", followed by those of Config.Commands: the
// reply topic's, and the status topic's unless a route has it.
func (b *Bridge) Subscriptions() []string {
	return append([]string(nil), b.filters...)
}

// Start connects to the broker in the background and starts the routes; it
// does not wait for the connection (see [Bridge.WaitReady]). The bridge
// then retries failed connections, reconnects lost ones and subscribes
// again after each, until [Bridge.Shutdown] or [Bridge.Close]. Start returns
// nil if the bridge is already running, and [ErrClosed] after it stopped.
func (b *Bridge) Start() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case stateRunning:
		return nil
	case stateClosed:
		return ErrClosed
	}
	b.startRoutesLocked()
	cm, err := autopaho.NewConnection(b.ctx, b.clientConfig())
	if err != nil { // only for a config New rejects
		b.cancel()
		b.workers.Wait()
		b.state = stateClosed
		close(b.done)
		return fmt.Errorf("%w: %v", ErrConnect, err)
	}
	b.cm = cm
	b.state = stateRunning
	return nil
}

// startRoutesLocked starts the routes' goroutines. Call with b.mu held.
func (b *Bridge) startRoutesLocked() {
	for _, r := range b.routes {
		b.workers.Go(func() { b.runRoute(r) })
	}
	if b.cmd != nil {
		b.cmdWorker.Go(func() { b.runCommands(b.stopIntake) })
		b.cmdWorker.Go(func() { b.runReplies(b.stopIntake) })
	}
}

// Run starts the bridge (see [Bridge.Start]), waits until ctx is done and
// then stops it gracefully, as [Bridge.Shutdown] does, within
// Config.DrainTimeout. It returns nil after a clean stop,
// context.DeadlineExceeded if the queues could not be emptied in time (the
// rest is dropped), and [ErrClosed] if the bridge was, or is meanwhile,
// stopped by Shutdown or Close.
func (b *Bridge) Run(ctx context.Context) error {
	if err := b.Start(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-b.stopIntake:
		<-b.done
		return ErrClosed
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.DrainTimeout)
	defer cancel()
	return b.Shutdown(sctx)
}

// WaitReady waits until the bridge is connected and the broker has accepted
// its subscriptions: messages published from then on reach the routes. It
// returns ctx's error if ctx ends first, and [ErrClosed] if the bridge is
// stopped. It may be called before [Bridge.Start].
func (b *Bridge) WaitReady(ctx context.Context) error {
	b.mu.Lock()
	ready := b.ready
	b.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-b.stopIntake:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown stops the bridge gracefully: it stops taking messages, ends the
// MQTT session (DISCONNECT with session expiry 0) and lets every route
// publish what its queue holds, then waits for all of the bridge's
// goroutines. If ctx ends first, the messages still queued are dropped
// (Stats.Dropped) and ctx's error returned. Messages the broker had not yet
// delivered are not received. Shutdown is idempotent; a bridge cannot be
// started again.
func (b *Bridge) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	prev := b.state
	b.state = stateClosed
	cm := b.cm
	if prev != stateClosed {
		close(b.stopIntake)
	}
	b.mu.Unlock()
	if prev == stateClosed {
		select {
		case <-b.done:
			return b.shutErr
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if prev == stateNew {
		b.cancel()
		b.shutErr = nil
		close(b.done)
		return nil
	}

	var err error
	// The command and reply goroutines stop with stopIntake: no command is
	// published once the shutdown began (those queued stay in the store).
	b.cmdWorker.Wait()
	// Stop the MQTT client first, so that no message arrives while the
	// queues drain. Disconnect returns once the client's goroutines ended.
	if cm != nil {
		if e := cm.Disconnect(ctx); e != nil {
			err = e
			b.cancel()
			<-cm.Done()
		}
	}
	b.mu.Lock()
	b.setDownLocked()
	b.mu.Unlock()
	b.subs.Wait()

	close(b.drain)
	finished := make(chan struct{})
	go func() { // ends when the workers do, which the abort below ensures
		b.workers.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
		b.cancel()
		<-finished
	}
	for _, r := range b.routes {
		if n := r.queue.clear(); n > 0 {
			r.stats.dropped.Add(uint64(n))
			b.log.Warn("mqttbridge: shutdown dropped queued messages", slog.String("route", r.Name), slog.Int("messages", n))
		}
	}
	b.cancel()
	b.shutErr = err
	close(b.done)
	return err
}

// Close stops the bridge at once: like [Bridge.Shutdown] with an expired
// context, it disconnects and drops the queued messages. It waits for the
// bridge's goroutines and returns nil; it is idempotent.
func (b *Bridge) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.cancel()
	_ = b.Shutdown(ctx)
	<-b.done
	return nil
}

// setDownLocked records that the connection is down. Call with b.mu held.
func (b *Bridge) setDownLocked() {
	b.connected = false
	if b.subscribed {
		b.subscribed = false
		b.ready = make(chan struct{})
	}
	if b.connDown != nil {
		close(b.connDown)
		b.connDown = nil
	}
}

// noteErr records err as Stats.LastError.
func (b *Bridge) noteErr(err error) {
	b.mu.Lock()
	b.lastErr, b.lastErrAt = err, time.Now()
	b.mu.Unlock()
}
