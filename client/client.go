package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/org/rthub"
)

const (
	// attemptTimeout bounds one connection attempt: TokenFunc, the handshake,
	// the welcome and the joins.
	attemptTimeout = 30 * time.Second
	// writeTimeout bounds writing one message; a connection that cannot take
	// a message for this long is dropped (and reconnected).
	writeTimeout = 10 * time.Second
	// closeTimeout is how long Close waits for the server to answer its close
	// frame before it drops the connection.
	closeTimeout = time.Second
	// idleMargin is added to twice the server's ping interval to decide that
	// a silent connection is dead.
	idleMargin = 5 * time.Second
)

// idleFor is how long a connection may go without a message or ping from a
// server that pings every ping before the client drops it; 0 (never) if the
// server does not ping.
func idleFor(ping time.Duration) time.Duration {
	if ping <= 0 {
		return 0
	}
	return 2*ping + idleMargin
}

// Options configures a [Client]. Zero fields take the documented defaults;
// [Dial] copies Options and never modifies the caller's value.
type Options struct {
	// Token is a static token, sent as "Authorization: Bearer" on every
	// handshake. It cannot be refreshed: when it expires the server closes the
	// connection (4002), the reconnection is refused (401) and the client
	// stops. Prefer TokenFunc. Set Token or TokenFunc, not both; with neither,
	// the handshake carries no token.
	Token string
	// TokenFunc returns the token to present. It is called before every
	// handshake (with Dial's ctx for the first, then from the client's
	// goroutine), when the server warns that the token expires soon (the
	// client then sends a refresh on its own), and by [Client.Refresh]. It
	// may block, bounded by ctx, and is never called concurrently with
	// itself by the client's goroutine.
	TokenFunc func(ctx context.Context) (string, error)
	// Header holds extra handshake headers. Authorization and the WebSocket
	// headers are set by the client.
	Header http.Header
	// Rooms are joined after each connection, in addition to the rooms the
	// server joins automatically. On Dial, a room that cannot be joined fails
	// Dial. After a reconnection, a room now refused is logged and dropped
	// (kept for the next reconnection if the refusal was rate_limited or
	// internal).
	Rooms []string
	// Backoff paces reconnection attempts; see [Backoff] for its defaults.
	Backoff Backoff
	// OnState, if set, is told of every state change with its cause:
	// Connecting (no error) and then Connected or Closed during Dial, then
	// Reconnecting (why the connection or an attempt failed), Connected,
	// Closed (the same error as [Client.Err]). It is called from Dial's
	// goroutine and then from the client's goroutine, never concurrently; it
	// must not block and must not call [Client.Close].
	OnState func(State, error)
	// HTTPClient makes the handshake requests (and, with the HTTP stream,
	// the stream's GET and the POSTs: give it no Timeout). Default
	// http.DefaultClient.
	HTTPClient *http.Client
	// Transport says how to connect: WebSocket (the default), the HTTP
	// stream (docs/protocol.md §6), or WebSocket falling back to the HTTP
	// stream when WebSocket keeps failing (TransportAuto).
	Transport Transport
	// Logger receives the client's logs (reconnections, dropped rooms,
	// undecodable events); nil discards them. Tokens are never logged.
	Logger *slog.Logger
	// Compression offers permessage-deflate without context takeover, the
	// only mode the hub accepts. The hub compresses only messages of at least
	// its threshold (default 1 KiB) and the client messages of at least 512
	// bytes; each compressed message costs CPU and pooled flate state. Turn it
	// on for large payloads over slow links, after measuring. Default false.
	Compression bool
	// MaxMessageSize bounds a message from the server, in bytes; a larger one
	// drops the connection (which then reconnects). Default 1 MiB; negative
	// for no limit.
	MaxMessageSize int64
	// OnReset, if set, is called when the client may have missed events of
	// room that the server cannot replay: after a reconnection beyond the
	// server's history (or after the server lost the room's stream), or when
	// the server's own delivery had a gap it could not fill. Reload the room's
	// state (e.g. from your REST API) and keep listening. Without a reset,
	// events resume exactly where they stopped: the client sends its last
	// position per room when it reconnects, the server replays what was
	// missed, and the client drops any duplicate. It runs on the client's
	// read goroutine, like event handlers: it must not block.
	OnReset func(room string)
	// OnSnapshot, if set, receives every state snapshot of a room joined
	// with [Client.JoinState]: the first, and each one asked for again after
	// a reconnection the server could not resume, a reset or a gap. Replace
	// the room's view with it; the room's events that follow are exactly
	// those after its position. It runs on the read goroutine, before any
	// later event of the room: it must not block.
	OnSnapshot func(Snapshot)
	// Outbox bounds the emits ([Client.EmitOnce]) and calls ([Call]) that
	// wait for an answer across reconnections; see [OutboxOptions].
	Outbox OutboxOptions
	// OnGap, if set, is called when the server dropped events of room for
	// this connection rather than close it (the room's overflow policy, a
	// "gap" message). A room joined with state gets a new snapshot next
	// (OnSnapshot); for other rooms, reload the state if it matters. It
	// runs on the read goroutine: it must not block.
	OnGap func(room string)
}

// State is a client's connection state, reported to Options.OnState.
type State int

// The states of a client.
const (
	// Connecting: Dial is making the first connection.
	Connecting State = iota + 1
	// Connected: a connection is up, with its rooms joined.
	Connected
	// Reconnecting: the connection was lost, or an attempt to restore it
	// failed; the client waits (see [Backoff]) and tries again.
	Reconnecting
	// Closed: the client stopped for good; see [Client.Err].
	Closed
)

// String returns the state's name.
func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Reconnecting:
		return "reconnecting"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Client is a connection to an rthub hub that reconnects by itself. Create one
// with [Dial]; stop it with [Client.Close].
//
// A client runs one goroutine for its life, which reconnects and owns each
// connection's two goroutines: a reader, which dispatches replies, events
// (to the handlers, in arrival order) and the server's room changes, and a
// writer. Close stops and waits for all of them.
//
// Commands ([Client.Join], [Client.Emit], ...) issued while the client is
// reconnecting wait for the connection to come back, bounded by their
// context; after the client stopped they fail with [ErrClosed].
//
// All methods are safe for concurrent use.
type Client struct {
	url  string
	opts Options
	log  *slog.Logger

	ctx    context.Context // the client's life; cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned
	nextID atomic.Uint64

	mu    sync.Mutex
	cn    *conn                           // connection open for commands; nil while (re)connecting
	ready chan struct{}                   // closed when cn is set; replaced when it is lost
	rooms map[string]bool                 // rooms in; true for the client's own (rejoined after a reconnection)
	pos   map[string]rthub.StreamPosition // last event seen per room, for resuming
	// stateRooms are the own rooms joined with state; holds are the rooms
	// whose events are held while a join with state is pending.
	stateRooms map[string]bool
	holds      map[string]*held
	view       string    // what the client views (presence); declared again after a reconnection
	err        error     // why the client stopped; set before done is closed
	wsFailed   int       // TransportAuto: WebSocket failures in a row
	httpUntil  time.Time // TransportAuto: connect over the HTTP stream until then

	hmu      sync.RWMutex
	handlers map[string][]func(Event)

	outbox outbox // unanswered keyed emits and calls

	// Seams for tests: the backoff wait, its randomness, and how long a
	// connection may stay silent given the server's ping interval.
	sleep   func(ctx context.Context, d time.Duration) error
	rand    func() float64
	idleFor func(ping time.Duration) time.Duration
}

// Dial connects to the hub at url (ws:// or wss://) and returns a client that
// stays connected until [Client.Close] or a terminal close.
//
// Dial makes the first connection synchronously, bounded by ctx and by 30 s:
// TokenFunc, the handshake (offering subprotocol rthub.v1, with the token as
// "Authorization: Bearer"), the server's welcome, and the joins of
// Options.Rooms. If any step fails, Dial returns its error and no client: a
// refusal before the upgrade is a *[HandshakeError] (errors.Is(err,
// rthub.ErrTokenExpired) and so on); a refused room is a *[rthub.ReplyError]
// (errors.Is(err, rthub.ErrForbidden)). Dial does not retry.
//
// Once connected, the client keeps its connection whatever happens to ctx;
// ctx's values are passed on to TokenFunc on reconnections.
//
// Reconnection: when the connection ends, the client decides from the close
// code ([rthub.CloseCode.Reconnect]): a dropped connection (1006), draining
// (1001), an expired token (4002) and the 4000–4099 range reconnect, after a
// [Backoff] wait, with a fresh token from TokenFunc, and rejoin the client's
// rooms; the other codes (1000, 1002, 1003, 1007, 1008, 1009, 4100–4199) stop
// the client, as does a refusal of a reconnection with a 4xx status other than
// 408 or 429. A refusal with 5xx, 408 or 429, or a network failure, is
// retried.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	return dial(ctx, url, opts, nil)
}

// dial is Dial with a hook to set test seams before the first connection.
func dial(ctx context.Context, url string, opts Options, setup func(*Client)) (*Client, error) {
	c, err := newClient(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	if setup != nil {
		setup(c)
	}
	c.state(Connecting, nil)
	cn, err := c.connect(ctx, true)
	if err != nil && c.opts.Transport == TransportAuto && ctx.Err() == nil {
		// The first WebSocket failed: try the HTTP stream at once.
		c.mu.Lock()
		c.httpUntil = time.Now().Add(autoStayOnHTTP)
		c.mu.Unlock()
		cn, err = c.connect(ctx, true)
	}
	if err != nil {
		c.cancel()
		c.state(Closed, err)
		return nil, err
	}
	// The client owns run; Close stops it and waits on done.
	go c.run(cn)
	return c, nil
}

func newClient(ctx context.Context, url string, opts Options) (*Client, error) {
	var errs []error
	if opts.Token != "" && opts.TokenFunc != nil {
		errs = append(errs, errors.New("rthub/client: set Options.Token or Options.TokenFunc, not both"))
	}
	b, err := opts.Backoff.withDefaults()
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	opts.Backoff = b
	opts.Header = opts.Header.Clone()
	opts.Rooms = slices.Clone(opts.Rooms)
	switch {
	case opts.MaxMessageSize == 0:
		opts.MaxMessageSize = 1 << 20
	case opts.MaxMessageSize < 0:
		opts.MaxMessageSize = -1
	}
	opts.Outbox.setDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		url:        url,
		opts:       opts,
		log:        log,
		done:       make(chan struct{}),
		ready:      make(chan struct{}),
		rooms:      make(map[string]bool, len(opts.Rooms)),
		pos:        make(map[string]rthub.StreamPosition),
		stateRooms: make(map[string]bool),
		holds:      make(map[string]*held),
		handlers:   make(map[string][]func(Event)),
		sleep:      sleep,
		rand:       rand.Float64,
		idleFor:    idleFor,
		outbox:     outbox{opts: opts.Outbox},
	}
	c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, r := range opts.Rooms {
		c.rooms[r] = true
	}
	return c, nil
}

// run is the client's goroutine: it serves each connection until it ends,
// then reconnects or stops. It closes done when it returns.
func (c *Client) run(cn *conn) {
	defer close(c.done)
	defer c.cancel() // after stop recorded why: calls see the client closed
	for {
		cause := c.serve(cn)
		if cn.viaWS {
			c.wsOutcome(time.Since(cn.born) >= autoShortLived)
		}
		c.setConn(nil)
		if c.ctx.Err() != nil {
			c.stop(ErrClosed)
			return
		}
		if !reconnectable(cause) {
			c.stop(cause)
			return
		}
		c.log.Info("rthub/client: connection lost, reconnecting", slog.Any("err", cause))
		c.state(Reconnecting, cause)
		for attempt := 0; ; attempt++ {
			if err := c.sleep(c.ctx, c.opts.Backoff.delay(attempt, c.rand())); err != nil {
				c.stop(ErrClosed)
				return
			}
			var err error
			if cn, err = c.connect(c.ctx, false); err == nil {
				break
			}
			switch {
			case c.ctx.Err() != nil:
				c.stop(ErrClosed)
				return
			case !reconnectable(err):
				c.stop(err)
				return
			}
			c.log.Info("rthub/client: reconnection failed", slog.Int("attempt", attempt+1), slog.Any("err", err))
			c.state(Reconnecting, err)
		}
	}
}

// serve runs one connection until it ends, refreshing the token when the
// server asks, and returns why it ended. When the client is closed it closes
// the connection normally. Either way the connection's goroutines have
// returned when serve does.
func (c *Client) serve(cn *conn) error {
	for {
		select {
		case <-cn.done:
			_ = cn.ws.CloseNow()
			cn.wg.Wait()
			return cn.err
		case <-c.ctx.Done():
			cn.close()
			return ErrClosed
		case <-cn.expiring:
			if err := c.refresh(c.ctx, cn); err != nil {
				c.log.Warn("rthub/client: token refresh failed", slog.Any("err", err))
			}
		}
	}
}

// connect makes one connection attempt: token, handshake, welcome, joins. On
// the first attempt (Dial's) a room that cannot be joined fails the attempt.
func (c *Client) connect(ctx context.Context, first bool) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	tok := c.opts.Token
	if c.opts.TokenFunc != nil {
		var err error
		if tok, err = c.opts.TokenFunc(ctx); err != nil {
			return nil, fmt.Errorf("rthub/client: TokenFunc: %w", err)
		}
	}
	hdr := c.opts.Header.Clone()
	if hdr == nil {
		hdr = make(http.Header)
	}
	if tok != "" {
		hdr.Set("Authorization", "Bearer "+tok)
	}
	mode := websocket.CompressionDisabled
	if c.opts.Compression {
		mode = websocket.CompressionNoContextTakeover
	}
	cn := newConn(c)
	var ws wire
	viaWS := !c.useHTTP()
	if viaWS {
		wc, resp, err := websocket.Dial(ctx, c.sinceURL(), &websocket.DialOptions{
			HTTPClient:      c.opts.HTTPClient,
			HTTPHeader:      hdr,
			Subprotocols:    []string{rthub.Subprotocol},
			CompressionMode: mode,
			OnPingReceived:  cn.onPing,
		})
		if err != nil {
			c.wsOutcome(false)
			return nil, handshakeError(resp, err)
		}
		wc.SetReadLimit(c.opts.MaxMessageSize)
		ws = wc
	} else {
		sw, err := dialStream(ctx, c.opts.HTTPClient, c.sinceURL(), hdr, c.opts.MaxMessageSize, cn.alive)
		if err != nil {
			return nil, err
		}
		ws = sw
	}
	cn.viaWS = viaWS
	w, err := readWelcome(ctx, ws)
	if err != nil {
		_ = ws.CloseNow()
		if viaWS {
			c.wsOutcome(false)
		}
		return nil, err
	}
	c.mu.Lock()
	clear(c.holds) // joins with state pending on the previous connection
	c.mu.Unlock()
	var lost []string // rooms joined with state that the welcome could not resume
	for room, st := range w.Streams {
		c.joinedAt(room, st)
		c.mu.Lock()
		if st.Recovered != nil && !*st.Recovered && c.stateRooms[room] {
			lost = append(lost, room)
		}
		c.mu.Unlock()
	}
	cn.start(ws, w)
	for _, room := range lost {
		c.requestState(cn, room)
	}
	if err := c.joinRooms(ctx, cn, w.Rooms, first); err != nil {
		cn.close()
		return nil, err
	}
	c.mu.Lock()
	view := c.view
	c.mu.Unlock()
	if view != "" {
		if err := c.callOn(ctx, cn, command{Op: "viewing", Target: &view}, nil); err != nil {
			c.log.Warn("rthub/client: viewing not restored", slog.Any("err", err))
		}
	}
	c.setConn(cn)
	c.log.Debug("rthub/client: connected", slog.String("conn", w.Conn))
	c.state(Connected, nil)
	return cn, nil
}

// handshakeError turns a refused handshake into a *HandshakeError read from
// the response's JSON body; other failures are returned as they are.
func handshakeError(resp *http.Response, err error) error {
	if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return err
	}
	he := &HandshakeError{Status: resp.StatusCode}
	if resp.Body != nil {
		var body struct {
			Error rthub.ReplyError `json:"error"`
		}
		if b, rerr := io.ReadAll(io.LimitReader(resp.Body, 1024)); rerr == nil && json.Unmarshal(b, &body) == nil {
			he.Code, he.Message = body.Error.Code, body.Error.Message
		}
	}
	return he
}

// readWelcome reads the server's first message, which must be a welcome.
func readWelcome(ctx context.Context, ws wire) (*message, error) {
	_, b, err := ws.Read(ctx)
	if err != nil {
		return nil, closeCause(err)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil || m.Type != "welcome" {
		return nil, fmt.Errorf("rthub/client: protocol: first message is not a welcome: %.100q", b)
	}
	return &m, nil
}

// joinRooms joins, all at once, the client's own rooms that the server did
// not join already (auto, as listed in the welcome), and waits for every
// reply. strict makes a refused room an error. Otherwise refusals are logged,
// and a room refused for good (forbidden, bad name, too many rooms) is
// dropped; one refused for a passing reason (rate_limited, internal) is kept,
// to be retried on the next reconnection.
func (c *Client) joinRooms(ctx context.Context, cn *conn, auto []string, strict bool) error {
	c.mu.Lock()
	for r, own := range c.rooms {
		if !own {
			delete(c.rooms, r) // the server's rooms of the previous connection
			if !slices.Contains(auto, r) {
				delete(c.pos, r)
			}
		}
	}
	var todo []string
	for r := range c.rooms {
		if !slices.Contains(auto, r) {
			todo = append(todo, r)
		}
	}
	for _, r := range auto {
		if _, ok := c.rooms[r]; !ok {
			c.rooms[r] = false
		}
	}
	c.mu.Unlock()
	slices.Sort(todo)

	errc := make(chan error, len(todo))
	for _, r := range todo {
		id := c.nextID.Add(1)
		cmd, state := c.rejoinCommand(id, r)
		ok := cn.register(id, func(m *message) {
			err := m.err()
			switch {
			case err == nil && state:
				c.snapshotReplied(cn, r, m.Data)
			case err == nil:
				c.joinReplied(r, m.Data)
			case state:
				c.release(r)
			}
			if err != nil && !strict && !errors.Is(err, rthub.ErrRateLimited) && !errors.Is(err, rthub.ErrInternal) {
				c.mu.Lock()
				delete(c.rooms, r)
				c.mu.Unlock()
				c.log.Warn("rthub/client: room refused on rejoin, dropped", slog.String("room", r), slog.Any("err", err))
				err = nil
			}
			if err != nil {
				err = fmt.Errorf("rthub/client: join %q: %w", r, err)
			}
			errc <- err
		})
		if !ok {
			return cn.err
		}
		b, err := json.Marshal(cmd)
		if err != nil {
			return err
		}
		if err := cn.send(ctx, b); err != nil {
			return err
		}
	}
	var errs []error
	for range todo {
		select {
		case err := <-errc:
			if err != nil {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-cn.done:
			return cn.err
		}
	}
	if strict {
		return errors.Join(errs...)
	}
	for _, err := range errs {
		c.log.Warn("rthub/client: rejoin failed", slog.Any("err", err))
	}
	return nil
}

// setConn publishes cn as the connection for commands, or, with nil, marks
// the client as disconnected.
func (c *Client) setConn(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case cn != nil:
		c.cn = cn
		close(c.ready)
	case c.cn != nil:
		c.cn = nil
		c.ready = make(chan struct{})
	}
}

// waitConn returns the current connection, waiting for one while the client
// reconnects.
func (c *Client) waitConn(ctx context.Context) (*conn, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.ctx.Err() != nil {
			return nil, c.closedErr()
		}
		c.mu.Lock()
		cn, ready := c.cn, c.ready
		c.mu.Unlock()
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, c.closedErr()
		}
	}
}

// closedErr is the error of a call made after the client stopped.
func (c *Client) closedErr() error {
	if err := c.Err(); err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return ErrClosed
}

func (c *Client) state(s State, err error) {
	if c.opts.OnState != nil {
		c.opts.OnState(s, err)
	}
}

// stop records why the client stopped and reports Closed.
func (c *Client) stop(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	if !errors.Is(err, ErrClosed) {
		c.log.Warn("rthub/client: stopped", slog.Any("err", err))
	}
	c.state(Closed, err)
}

// Close closes the connection normally (1000), stops reconnecting and waits
// for the client's goroutines. It waits a second for the server to answer
// the close frame, then drops the connection (in a rare race with the
// reader, coder/websocket's own limit of 5 s applies instead). Close is
// idempotent and returns nil; it must not be called from a handler or from
// OnState, which run on the goroutines it waits for.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return nil
}

// Done returns a channel that is closed when the client has stopped: after
// Close, or after a terminal close code or refusal (see [Client.Err]).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped, once Done is closed; nil before.
// After Close it is [ErrClosed]; after a terminal close code, a
// [rthub.CloseError] with the code (read it with [rthub.CloseStatus]); after
// a refused reconnection, a *[HandshakeError].
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// ConnID returns the ID the server gave the current connection (in its
// welcome message), or "" while the client is reconnecting or stopped. It
// changes with every reconnection.
func (c *Client) ConnID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cn == nil {
		return ""
	}
	return c.cn.id
}

// Rooms returns, sorted, the rooms the client is in as far as it knows: the
// server's automatic rooms and server-side joins of the current connection,
// Options.Rooms and rooms joined with [Client.Join], less those left. Only
// the rooms the client joined itself are rejoined after a reconnection (the
// server restores its own); while reconnecting, Rooms reports the rooms of
// the lost connection.
func (c *Client) Rooms() []string {
	c.mu.Lock()
	out := make([]string, 0, len(c.rooms))
	for r := range c.rooms {
		out = append(out, r)
	}
	c.mu.Unlock()
	slices.Sort(out)
	return out
}
