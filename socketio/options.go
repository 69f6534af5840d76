package socketio

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/org/rthub"
)

// Options configures a [Server]. The zero value is valid: every field has a
// default, given in its comment.
type Options struct {
	// PingInterval is how often the server pings each session (Engine.IO v4:
	// the server pings, the client answers). It is sent to the client in the
	// handshake. Default 25 s, as Socket.IO's.
	PingInterval time.Duration
	// PingTimeout closes a session whose client has not answered a ping
	// within this long. Default 20 s, as Socket.IO's.
	PingTimeout time.Duration
	// MaxPayload bounds, in bytes, a polling request's body and a WebSocket
	// message from the client; the client learns it in the handshake and
	// splits its batches under it. A larger body is refused with 413 and
	// the session closed; a larger WebSocket message closes the session.
	// Default 100 000 (Socket.IO's is 1 MB; rthub's commands are bounded by
	// the hub's MaxMessageSize, 64 KiB by default, anyway).
	MaxPayload int
	// MaxSessions bounds the Engine.IO sessions of the server. A handshake
	// past it is refused with 503. Default 10 000.
	MaxSessions int
	// QueuePackets and QueueBytes bound each session's outbound queue (the
	// packets waiting for the client's next poll, or for the WebSocket
	// writer). A session whose queue overflows is closed: its client
	// reconnects (and recovers, see Recovery). Defaults 1024 packets and
	// 4 MiB, as the hub's send queue.
	QueuePackets int
	QueueBytes   int
	// PollTimeout bounds how long a polling GET waits for packets before it
	// answers with a noop. Default PingInterval (a ping is queued every
	// PingInterval anyway).
	PollTimeout time.Duration
	// ConnectTimeout closes a session whose client has not connected a
	// Socket.IO namespace within this long after the handshake (or after a
	// refused connect). Default 45 s, as Socket.IO's connectTimeout.
	ConnectTimeout time.Duration
	// WriteTimeout bounds one write to a client's WebSocket and to the
	// session's hub connection. Default 10 s.
	WriteTimeout time.Duration
	// HandshakeTimeout bounds the hub handshake made for a Socket.IO
	// connect (token check, auto-joins, resume). Default 10 s.
	HandshakeTimeout time.Duration
	// MaxPendingAcks bounds the client events awaiting the hub's reply per
	// session; an event past it is answered at once with the error code
	// rate_limited. Default 64.
	MaxPendingAcks int

	// Recovery turns on Socket.IO's connection-state recovery
	// (socket.io-client ≥ 4.6, socket.recovered): the server hands the
	// client a private session id (pid) and appends an offset to every
	// event; a client that reconnects within Recovery.Window with them gets
	// the events it missed, replayed by the hub from the rooms' history
	// (docs/socketio.md, "Connection-state recovery"). Default off, as in
	// Socket.IO: events then carry no extra argument.
	Recovery RecoveryOptions

	// Route maps a client event that is not one of the reserved rthub:*
	// events onto the hub's emit command: the room to emit to and the data.
	// args are the event's arguments (without the acknowledgement
	// callback). Nil means [DefaultRoute]. An error refuses the event (its
	// acknowledgement, if any, gets the error code bad_request).
	Route func(event string, args []json.RawMessage) (room string, data json.RawMessage, err error)

	// IsRPC says which client events are calls of an RPC (rthub's typed RPC,
	// docs/protocol.md §2.5): such an event's one argument is the request
	// and its acknowledgement the result, socket.emit("math:sum", {a: 1, b:
	// 2}, (res) => …) with res {"ok":true,"data":…} or {"ok":false,"error":
	// {…}}. Nil means the RPCs declared with rthub.NewRPC when [New] ran
	// (declare them at package level).
	IsRPC func(event string) bool

	// Logger receives the server's logs; nil discards them. Tokens are never
	// logged.
	Logger *slog.Logger
}

// RecoveryOptions configures connection-state recovery; see
// Options.Recovery.
type RecoveryOptions struct {
	// Window is how long the state of a session whose transport closed is
	// kept for the client to recover it. Zero turns recovery off. Socket.IO's
	// default is 2 minutes; the rooms' history (the hub broker's) must cover
	// it for the events to be there.
	Window time.Duration
	// MaxSessions bounds the states kept; past it the oldest is forgotten
	// (its client reconnects with recovered false). Default Options.MaxSessions.
	MaxSessions int
	// Log bounds the events remembered per session to tell which ones the
	// client received (its offset), 32 bytes each, so at most Log × 32 B
	// per session, live or kept (8 KiB by default). A client that lost more
	// than Log events in flight when its transport died is not recovered.
	// Default 256.
	Log int
}

// ErrInvalidOptions is wrapped by the error [New] returns for bad options.
var ErrInvalidOptions = errors.New("socketio: invalid options")

func (o *Options) setDefaults() error {
	var errs []error
	dur := func(d *time.Duration, v time.Duration, name string) {
		switch {
		case *d < 0:
			errs = append(errs, fmt.Errorf("%s is negative", name))
		case *d == 0:
			*d = v
		}
	}
	num := func(n *int, v int, name string) {
		switch {
		case *n < 0:
			errs = append(errs, fmt.Errorf("%s is negative", name))
		case *n == 0:
			*n = v
		}
	}
	dur(&o.PingInterval, 25*time.Second, "PingInterval")
	dur(&o.PingTimeout, 20*time.Second, "PingTimeout")
	dur(&o.PollTimeout, o.PingInterval, "PollTimeout")
	dur(&o.ConnectTimeout, 45*time.Second, "ConnectTimeout")
	dur(&o.WriteTimeout, 10*time.Second, "WriteTimeout")
	dur(&o.HandshakeTimeout, 10*time.Second, "HandshakeTimeout")
	num(&o.MaxPayload, 100_000, "MaxPayload")
	num(&o.MaxSessions, 10_000, "MaxSessions")
	num(&o.QueuePackets, 1024, "QueuePackets")
	num(&o.QueueBytes, 4<<20, "QueueBytes")
	num(&o.MaxPendingAcks, 64, "MaxPendingAcks")
	if o.Recovery.Window < 0 {
		errs = append(errs, errors.New("Recovery.Window is negative"))
	}
	num(&o.Recovery.MaxSessions, o.MaxSessions, "Recovery.MaxSessions")
	num(&o.Recovery.Log, 256, "Recovery.Log")
	if o.IsRPC == nil {
		declared := make(map[string]bool)
		for info := range rthub.RPCs() {
			declared[info.Name] = true
		}
		o.IsRPC = func(event string) bool { return declared[event] }
	}
	if o.Route == nil {
		o.Route = DefaultRoute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
	}
	return nil
}

// DefaultRoute is the default Options.Route: a client event's first
// argument is the room and its second the data,
// socket.emit("alert:ack", "staff", {id: 3}). An event with one argument
// that is an object with a string member "room" is emitted to that room
// with the whole object as data, socket.emit("chat:message", {room:
// "staff", text: "hi"}).
func DefaultRoute(event string, args []json.RawMessage) (room string, data json.RawMessage, err error) {
	switch len(args) {
	case 2:
		if err := json.Unmarshal(args[0], &room); err != nil {
			return "", nil, errors.New("the first argument must be the room, a string")
		}
		return room, args[1], nil
	case 1:
		var v struct {
			Room *string `json:"room"`
		}
		if err := json.Unmarshal(args[0], &v); err != nil || v.Room == nil {
			return "", nil, errors.New(`one argument must be an object with a string "room"`)
		}
		return *v.Room, args[0], nil
	}
	return "", nil, errors.New("expected (room, data) or ({room, …})")
}
