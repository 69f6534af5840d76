package rthub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
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
	// RPCs serve the RPCs clients call, one per RPC name (see [RPC.Handle]).
	// A call of any other RPC is answered with the error code unknown_rpc.
	RPCs []RPCHandler
	// Idempotency bounds the hub's memory of the idempotency keys clients
	// give emits and calls; see [IdempotencyOptions] for the defaults.
	Idempotency IdempotencyOptions
	// MaxCallsPerConn bounds the calls of one connection whose handlers run
	// at once. Past it the hub stops reading the connection's commands until
	// a call ends (the client is slowed down, not refused). Default 16.
	MaxCallsPerConn int
	// ValidateEmits checks the data of every client emit against the JSON
	// Schema of its handler's payload type before decoding it (the schema
	// package github.com/org/rthub/contract writes for clients; see
	// docs/contract.md): every field without omitempty/omitzero is required,
	// unknown fields, duplicate member names and null for a non-pointer are
	// refused, and the constraints of jsonschema struct tags (maxLength=200,
	// minimum=0, pattern=..., enum=a|b) hold. encoding/json alone would ignore
	// unknown fields and zero missing ones. A failure is answered with
	// bad_payload, the message and the reply error's field naming the value
	// at fault as a JSON Pointer; the handler is not called. Schemas are built
	// once, in [New], which fails (an [OptionsError] wrapping the cause) for a
	// payload type without a JSON encoding or a malformed jsonschema tag.
	// Nesting deeper than 64 levels is refused. Validation costs about as
	// much as the decoding it precedes (a few microseconds for a typical
	// payload). Default off.
	ValidateEmits bool
	// Compression configures permessage-deflate; by default it is negotiated
	// when the client offers it.
	Compression CompressionOptions
	// Origin says which browser origins may connect; by default only the
	// hub's own (same-origin). See [OriginOptions].
	Origin OriginOptions
	// HTTPStream enables and configures the HTTP stream transport, the
	// fallback for clients whose WebSocket does not get through
	// (docs/protocol.md §6). Default off.
	HTTPStream HTTPStreamOptions
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
	// queue: the frames queued, those being written, the pending ping and
	// pong, gap notices. A client whose queue overflows does not read fast
	// enough: it is closed with 4000 (slow consumer) and the publisher never
	// waits for it, unless the frame that does not fit is an event of a room
	// that [Policy].Overflow lets lose events (then queued events of such
	// rooms are dropped or conflated and the client gets a "gap" message).
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

	// Roles, if set, gives a user's current roles when the application asks
	// for a re-check of the user's rooms ([Hub.ControlUser] with
	// [UserRecheck]), for instance after demoting them: on every node, each
	// of the user's connections gets the returned roles in place of its
	// token's (for the rest of the connection, until a token refresh), and
	// leaves, with a "left" message with reason "recheck", every room the
	// policy (and Policy.Authorize) no longer lets it join; rooms joined
	// through the server-side API stay. It is called once per node with one
	// of the user's connections' identity (read-only) and a context bounded
	// by BrokerTimeout; it must be safe for concurrent use. An error leaves
	// the user's connections on that node as they were and is reported by
	// ControlUser (as ErrInternal from another node). Nil: a re-check uses the
	// roles each connection already has (its token's), which still applies a
	// changed Policy.Authorize decision.
	//
	// A token refresh replaces the connection's roles with the new token's:
	// issue tokens with the new roles after a demotion, and revoke the old
	// ones ([Hub.Revoke] by Subject) so that they cannot be refreshed into.
	Roles func(ctx context.Context, id *Identity) ([]string, error)
	// Revocation bounds the token revocations the hub keeps (see
	// [Hub.Revoke] and [RevocationOptions]).
	Revocation RevocationOptions

	// PublishOnly makes a hub that serves no clients: a process that only
	// publishes events (a worker, a second node's publisher) through a
	// shared broker. Its ServeHTTP refuses every handshake with 404 and the
	// code not_found, and New does not require a Policy that lets clients
	// into rooms.
	PublishOnly bool

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

	// ReadMode selects how the hub waits for client data. The default,
	// [ReadAuto], uses an epoll set on Linux, so an idle connection has no
	// goroutine; [ReadGoroutine] keeps one parked goroutine per connection.
	ReadMode ReadMode

	testMaxIov int // tests only: frames per writev (1 = no coalescing)
	// testKeepNetConn: tests only: the epoll path leaves sockets in the
	// runtime's netpoller (as before the hub owned them), for comparisons
	testKeepNetConn bool
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
	defInt(&o.MaxCallsPerConn, 16, "MaxCallsPerConn")
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
	if err := o.ReadMode.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Compression.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Origin.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.HTTPStream.setDefaults(o.MaxMessageSize); err != nil {
		errs = append(errs, err)
	}
	if err := o.Limits.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Idempotency.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Presence.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Revocation.setDefaults(); err != nil {
		errs = append(errs, err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}
