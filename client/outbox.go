package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub"
)

// OutboxOptions bounds the client's outbox: the emits ([Client.EmitOnce])
// and calls ([Call]) sent with an idempotency key and not yet answered.
// Each is sent again, with the same key, on every new connection until the
// server answers it; the server runs it at most once per key and answers a
// retry with the first run's outcome (docs/rpc.md). Zero fields take the
// defaults.
type OutboxOptions struct {
	// MaxEntries bounds the entries waiting for an answer. Past it EmitOnce
	// and Call fail at once with [ErrOutboxFull]. Default 1000.
	MaxEntries int
	// TTL bounds how long an entry is retried. Past it the emit or call
	// fails with [ErrExpired] (a call fails earlier at its own deadline)
	// and OnExpired is told. Keep it below the hub's
	// IdempotencyOptions.TTL (default 10 minutes), or a retry may run
	// again. Default 2 minutes.
	TTL time.Duration
	// OnExpired, if set, is called, on the goroutine of the EmitOnce or
	// Call that expired, for each entry whose TTL passed before the server
	// answered it: the server may or may not have run it. It must not block.
	OnExpired func(Expired)
}

// Expired describes an outbox entry whose TTL passed unanswered.
type Expired struct {
	// Op is "emit" or "call".
	Op string
	// Name is the event or RPC name; Room the emit's room.
	Name, Room string
	// Key is the idempotency key it was sent with: sending it again with
	// the same key (WithKey) is safe while the hub remembers the key.
	Key string
	// Attempts is how many times it was sent.
	Attempts int
}

// OutboxStats counts the outbox's work since Dial.
type OutboxStats struct {
	// Pending is the number of entries waiting for an answer now.
	Pending int
	// Sent counts sends of entries (first sends and retries); Retries the
	// sends after the first, on a later connection.
	Sent, Retries uint64
	// Expired counts the entries whose TTL passed unanswered.
	Expired uint64
}

// SendOption configures one [Client.EmitOnce] or [Call].
type SendOption func(*sendConfig)

type sendConfig struct {
	key string
}

// WithKey sets the idempotency key of an emit or call instead of a random
// one: 1–128 bytes of printable ASCII, unique per user for as long as the
// hub remembers it. Use it to retry, after the client or the whole process
// restarted, an emit or call whose outcome is unknown.
func WithKey(key string) SendOption {
	return func(c *sendConfig) { c.key = key }
}

// newKey returns a random idempotency key (128 bits, hex).
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// outbox counts the client's unanswered keyed commands. The entries
// themselves live on the goroutines of their callers, which send them
// again after each reconnection (send): the count is the bound.
type outbox struct {
	opts    OutboxOptions
	mu      sync.Mutex
	pending int

	sent, retries, expired atomic.Uint64
}

func (o *OutboxOptions) setDefaults() {
	if o.MaxEntries <= 0 {
		o.MaxEntries = 1000
	}
	if o.TTL <= 0 {
		o.TTL = 2 * time.Minute
	}
}

func (ob *outbox) add() bool {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if ob.pending >= ob.opts.MaxEntries {
		return false
	}
	ob.pending++
	return true
}

func (ob *outbox) done() {
	ob.mu.Lock()
	ob.pending--
	ob.mu.Unlock()
}

// Outbox returns the outbox's counters.
func (c *Client) Outbox() OutboxStats {
	c.outbox.mu.Lock()
	n := c.outbox.pending
	c.outbox.mu.Unlock()
	return OutboxStats{Pending: n, Sent: c.outbox.sent.Load(), Retries: c.outbox.retries.Load(), Expired: c.outbox.expired.Load()}
}

// errTTL is the cause of an outbox entry's context when its TTL passed.
var errTTL = errors.New("rthub/client: outbox TTL passed")

// EmitOnce sends event to room like [Client.Emit], with an idempotency key
// (random, or [WithKey]'s), and keeps it in the outbox until the server
// answers: if the connection drops first, it is sent again on the next
// connection, and the server, which remembers the key, runs the handler at
// most once and answers the retry with the first outcome. It returns the
// server's answer; ctx's error if ctx ends first (the emit may or may not
// have happened: send it again with the same key to find out);
// [ErrExpired] past Outbox.TTL; [ErrOutboxFull] when Outbox.MaxEntries
// emits and calls are already waiting; [ErrClosed] once the client stopped.
func (c *Client) EmitOnce(ctx context.Context, event, room string, data any, opts ...SendOption) error {
	raw, err := encodeData(data)
	if err != nil {
		return wrap(err, "emit %s to %q", event, room)
	}
	_, err = c.send(ctx, command{Op: "emit", Event: event, Room: room, Data: raw}, opts)
	return wrap(err, "emit %s to %q", event, room)
}

// EmitEventOnce is [Client.EmitOnce] for a typed event: only a T can be
// sent as ev.
func EmitEventOnce[T any](ctx context.Context, c *Client, ev rthub.Event[T], room string, v T, opts ...SendOption) error {
	return c.EmitOnce(ctx, ev.Name(), room, v, opts...)
}

// send sends a keyed command (an emit, or a call with its Timeout unset)
// through the outbox and waits for its reply: on each connection until one
// answers, bounded by ctx and the outbox TTL. A call whose ctx ends is
// cancelled on the server.
func (c *Client) send(ctx context.Context, cmd command, opts []SendOption) (json.RawMessage, error) {
	var cfg sendConfig
	for _, o := range opts {
		o(&cfg)
	}
	cmd.Idem = cfg.key
	if cmd.Idem == "" {
		cmd.Idem = newKey()
	}
	if !c.outbox.add() {
		return nil, ErrOutboxFull
	}
	defer c.outbox.done()
	tctx, cancel := context.WithTimeoutCause(ctx, c.outbox.opts.TTL, errTTL)
	defer cancel()
	attempts := 0
	expired := func() error {
		c.outbox.expired.Add(1)
		if fn := c.opts.Outbox.OnExpired; fn != nil {
			name := cmd.Event
			if cmd.Op == "call" {
				name = cmd.RPC
			}
			fn(Expired{Op: cmd.Op, Name: name, Room: cmd.Room, Key: cmd.Idem, Attempts: attempts})
		}
		return fmt.Errorf("%w after %d attempts (key %s)", ErrExpired, attempts, cmd.Idem)
	}
	ended := func() error {
		if ctx.Err() == nil && errors.Is(context.Cause(tctx), errTTL) {
			return expired()
		}
		return ctx.Err()
	}
	for {
		cn, err := c.waitConn(tctx)
		if err != nil {
			if tctx.Err() != nil {
				return nil, ended()
			}
			return nil, err
		}
		if cmd.Op == "call" {
			dl, _ := tctx.Deadline()
			cmd.Timeout = max(1, time.Until(dl).Milliseconds())
		}
		cmd.ID = c.nextID.Add(1)
		b, err := json.Marshal(cmd)
		if err != nil {
			return nil, err
		}
		replies := make(chan *message, 1)
		if !cn.register(cmd.ID, func(m *message) { replies <- m }) {
			<-cn.done // lost before sending: wait for the next connection
			continue
		}
		if err := cn.send(tctx, b); err != nil {
			cn.unregister(cmd.ID)
			if tctx.Err() != nil {
				return nil, ended()
			}
			continue // the connection ended: send it on the next one
		}
		attempts++
		c.outbox.sent.Add(1)
		if attempts > 1 {
			c.outbox.retries.Add(1)
		}
		select {
		case m := <-replies:
			return m.Data, m.err()
		case <-tctx.Done():
			cn.unregister(cmd.ID)
			if cmd.Op == "call" {
				cn.cancelCall(cmd.ID)
			}
			return nil, ended()
		case <-cn.done:
			select {
			case m := <-replies: // the reply came just before the end
				return m.Data, m.err()
			default:
			}
			// Lost with the connection: send it again on the next one.
		}
	}
}
