package rthub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// StreamPosition is a position in a room's stream of publications: the offset
// of a publication and the epoch of the stream it belongs to.
//
// Offsets of a room start at 1 and grow by one with each publication. The epoch
// names one life of the stream: when a broker loses a room's stream (a Redis
// restart without persistence, an evicted key, an expired position) the room
// starts again with a new epoch, so a position from before can be told apart
// from one in the new stream even when the offsets coincide. The zero value
// means "no position".
type StreamPosition struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// IsZero reports whether p is the zero value ("no position").
func (p StreamPosition) IsZero() bool { return p == StreamPosition{} }

// String returns "offset@epoch".
func (p StreamPosition) String() string { return fmt.Sprintf("%d@%s", p.Offset, p.Epoch) }

// Message is what a publish hands to a [Broker]: the encoded event and the
// metadata that travels with it. The broker carries all three unchanged from
// [Broker.Publish] to every subscribed node's handler and to [Broker.History].
//
// The hub fills Data and Except; Header is for broker wrappers (otelrthub
// puts the publisher's W3C trace context in Header["traceparent"]), and the
// hub neither sets nor reads it. In particular a correlation ID
// ([WithCorrelationID]) travels only in Data, as the event's "cid" member,
// which clients receive: a wrapper that wants it reads it there, or from the
// Publisher side (otelrthub's PublishOptions.CorrelationID). A message's
// metadata is bounded: see [Message.Check].
type Message struct {
	// Data is the encoded event, exactly as clients receive it minus the
	// stream position: the JSON object {"type":"event","event":…,"room":…,
	// "cid":…,"data":…} (with "cid" only for a publish given
	// [WithCorrelationID]). Brokers never decode or re-encode it.
	Data []byte
	// Except is the ID of a connection not to deliver to, "" for none (see
	// [WithExcept]).
	Except string
	// Header is metadata for wrappers, nil when there is none. Brokers return
	// nil, not an empty map, for a message published without entries.
	Header map[string]string
	// Key is the state key of a keyed event, "" for none (see [WithKey]): the
	// publication replaces the room's previous one with the same key in the
	// room's latest state, and queues that conflate keep only the newest
	// publication per key. Brokers carry it unchanged.
	Key string
}

// Limits of a [Message]'s metadata, which every [Broker] enforces.
const (
	// MaxHeaderEntries is the most entries a Message.Header may have.
	MaxHeaderEntries = 16
	// MaxHeaderBytes bounds a message's metadata: the lengths of Except, of
	// Key and of every key and value of Header, added up.
	MaxHeaderBytes = 4096
)

// Check reports whether m's metadata is within [MaxHeaderEntries] and
// [MaxHeaderBytes]; the error wraps [ErrHeaderTooLarge]. Data is not
// checked. Brokers call it first thing in Publish.
func (m Message) Check() error {
	if len(m.Header) > MaxHeaderEntries {
		return fmt.Errorf("%w: %d header entries, at most %d", ErrHeaderTooLarge, len(m.Header), MaxHeaderEntries)
	}
	if n := m.metaBytes(); n > MaxHeaderBytes {
		return fmt.Errorf("%w: %d bytes of except and header, at most %d", ErrHeaderTooLarge, n, MaxHeaderBytes)
	}
	return nil
}

// metaBytes is what [MaxHeaderBytes] counts.
func (m Message) metaBytes() int {
	n := len(m.Except) + len(m.Key)
	for k, v := range m.Header {
		n += len(k) + len(v)
	}
	return n
}

// Publication is one event of a room's stream as a [Broker] delivers it: the
// [Message] as it was given to [Broker.Publish] (embedded: p.Data, p.Except
// and p.Header are the message's) and the position the broker assigned to it.
// Its Data and Header may be shared with the broker's history and with other
// handlers: read them, keep them, never modify them.
type Publication struct {
	// Room is the room the event was published to.
	Room string
	// Offset and Epoch are the publication's [StreamPosition].
	Offset uint64
	Epoch  string
	Message
}

// Position returns the publication's stream position.
func (p Publication) Position() StreamPosition {
	return StreamPosition{Offset: p.Offset, Epoch: p.Epoch}
}

// BrokerHandler receives what a [Broker] delivers to this node. The hub
// implements it and passes it to [Broker.Start].
//
// For each room, calls come one at a time and in offset order; calls for
// different rooms may come concurrently from different goroutines. A call
// blocks the broker's delivery to this node (for the room, and possibly for
// others), so a handler hands the publication on and returns. It may call
// [Broker.History]; it must not call the broker's other methods or wait for a
// publication, which can wait for the very delivery the call is holding up.
type BrokerHandler interface {
	// HandlePublication is called for each publication of a room this node
	// subscribed (see [Broker.Subscribe]). While a room stays subscribed, its
	// offsets grow by exactly one from call to call, except across a
	// HandleResync naming the room or an epoch change.
	HandlePublication(pub Publication)

	// HandleResync tells the handler that the broker's delivery of rooms may have
	// missed publications, and has been restored: typically its connection to
	// the backend was lost and it subscribed the rooms again. Publications
	// published after the call began are delivered as usual; those published
	// while the delivery was broken are not, so the handler reads them with
	// [Broker.History] from the last offset it saw. For each room it names,
	// HandleResync comes before any publication delivered by the restored
	// subscription.
	HandleResync(rooms []string)
}

// Broker carries publications between the hubs (nodes) of a cluster and keeps
// each room's recent history, so that a client can resume from its last
// position on any node. A broker instance is one node's access to the shared
// backend: it delivers to its handler only the rooms this node subscribed,
// which the hub does for rooms with local members.
//
// [NewMemoryBroker] is the single-process broker; the redisbroker module has
// one for many nodes. package brokertest checks that an implementation keeps
// this contract. Every method is safe for concurrent use. A method's error
// wraps ctx.Err() when ctx ended first, and [ErrBrokerClosed] after Close.
type Broker interface {
	// Start registers h, the receiver of this node's publications, and starts the
	// broker's background work, which runs until Close. ctx bounds the start-up
	// only. Start is called once; Subscribe and Unsubscribe need it, Publish and
	// History do not (a process that only publishes never calls Start).
	Start(ctx context.Context, h BrokerHandler) error

	// Publish appends msg to room's stream and delivers it to every node that
	// subscribed room, with the position it assigned. Offsets of a room are
	// assigned in the order publications reach the backend, and every node
	// receives a room's publications in that order. The broker may keep
	// msg.Data and msg.Header (in history, in what it hands to handlers), so
	// the caller does not modify them afterwards. A message over the limits of
	// [Message.Check] is refused with an error wrapping [ErrHeaderTooLarge],
	// and nothing is published.
	Publish(ctx context.Context, room string, msg Message) (StreamPosition, error)

	// Subscribe makes this node receive the publications of rooms: every
	// publication assigned its offset after Subscribe returned nil is passed to
	// the handler, so a position read with History after Subscribe returned
	// marks a seam with no gap: everything after it comes live. Earlier
	// publications may or may not be delivered (the hub drops duplicates by
	// offset). Subscribing a subscribed room is a no-op. On error, the rooms may
	// or may not be subscribed.
	Subscribe(ctx context.Context, rooms ...string) error

	// Unsubscribe stops the delivery of rooms to this node: publications whose
	// Publish starts after Unsubscribe returned are not passed to the handler.
	// Unsubscribing a room that is not subscribed is a no-op.
	Unsubscribe(ctx context.Context, rooms ...string) error

	// History returns room's current position and the publications after since,
	// oldest first, each with its Message as published (Data, Except and
	// Header, as live delivery gives them), at most limit of them (limit < 0: all the broker keeps;
	// limit 0: none, but since is still checked). A caller that got fewer than
	// it needs calls again from the last one it got.
	//
	// A zero since asks for the current position only: no publications, no
	// error. The first History or Publish of a room fixes its epoch, so the
	// position returned for an empty room stays valid for later publications.
	//
	// When the publications after since are no longer all kept — the epoch
	// changed, or they fell out of the room's history (size, TTL), or since is
	// ahead of the stream — History returns the current position and an
	// *[UnrecoverableError], which wraps [ErrUnrecoverable]; replaying what is
	// kept would leave a gap, so it returns no publications.
	History(ctx context.Context, room string, since StreamPosition, limit int) ([]Publication, StreamPosition, error)

	// Close stops the broker: the handler is not called after Close returns,
	// and every other method returns [ErrBrokerClosed]. ctx bounds the wait for
	// background work to stop. Close is idempotent.
	Close(ctx context.Context) error
}

// Broker errors. Test them with [errors.Is].
var (
	// ErrBrokerClosed is returned by a [Broker]'s methods after its Close.
	ErrBrokerClosed = errors.New("rthub: broker closed")
	// ErrUnrecoverable is wrapped by the *[UnrecoverableError] that
	// [Broker.History] returns when the publications after a position are not
	// all kept any more.
	ErrUnrecoverable = errors.New("rthub: stream position not recoverable")
	// ErrHeaderTooLarge is wrapped by the error of [Message.Check], and so of
	// [Broker.Publish], for a message whose metadata is over its limits.
	ErrHeaderTooLarge = errors.New("rthub: message header too large")
)

// UnrecoverableError is the error [Broker.History] returns when it cannot
// continue a room's stream from a position: the client must reload its state
// instead. [errors.Is](err, [ErrUnrecoverable]) is true for it.
type UnrecoverableError struct {
	Room    string
	Since   StreamPosition // the position asked for
	Current StreamPosition // the room's position now
}

// EpochChanged reports whether the stream since was in is gone (the backend
// lost it, or its position expired), rather than trimmed to its limits.
func (e *UnrecoverableError) EpochChanged() bool { return e.Since.Epoch != e.Current.Epoch }

// Error implements error.
func (e *UnrecoverableError) Error() string {
	why := "publications after it no longer in history"
	switch {
	case e.EpochChanged():
		why = "epoch changed"
	case e.Since.Offset > e.Current.Offset:
		why = "position ahead of the stream"
	}
	return fmt.Sprintf("rthub: room %q: position %s not recoverable (now %s): %s", e.Room, e.Since, e.Current, why)
}

// Is reports whether target is [ErrUnrecoverable].
func (e *UnrecoverableError) Is(target error) bool { return target == ErrUnrecoverable }

// Defaults of [HistoryLimits].
const (
	DefaultHistorySize    = 100
	DefaultHistoryTTL     = 5 * time.Minute
	DefaultHistoryMetaTTL = 24 * time.Hour
)

// HistoryLimits bounds the history a broker keeps for a room.
//
// Memory: a room keeps at most Size publications of its encoded events (the
// Redis broker up to one stream node more, about 4 KiB), for TTL after its
// last publication; its position (about 100 bytes) lives for MetaTTL.
type HistoryLimits struct {
	// Size is the most publications kept per room, the most a client can miss
	// and still resume. 0 means DefaultHistorySize (100); negative means none:
	// publications still get offsets, so a gap is still noticed, but nothing can
	// be replayed.
	Size int
	// TTL is how long a room's history is kept after its last publication. A room
	// silent for longer loses its history, not its position: clients that saw
	// its last publication still resume. 0 means DefaultHistoryTTL (5 minutes).
	// Brokers may round it up to a millisecond.
	TTL time.Duration
	// MetaTTL is how long a room's position (offset and epoch) is kept after its
	// last publication or History call. Past it the room starts a new stream
	// with a new epoch and older positions cannot be resumed. 0 means
	// DefaultHistoryMetaTTL (24 hours); it is raised to TTL if shorter.
	MetaTTL time.Duration
}

// HistoryRule applies limits to the rooms matching Pattern.
type HistoryRule struct {
	// Pattern is a room pattern as in [ValidPattern], without {sub}.
	Pattern string
	HistoryLimits
}

// HistoryPolicy says how much history a broker keeps for each room: the
// limits of the first rule whose pattern matches the room (see [Match]), or
// else Default. The zero value gives every room the defaults of
// [HistoryLimits].
type HistoryPolicy struct {
	Rules   []HistoryRule
	Default HistoryLimits
}

// Validate reports every problem of p in one error wrapping
// [ErrInvalidOptions]: bad patterns, negative durations.
func (p HistoryPolicy) Validate() error {
	var errs []error
	check := func(what string, l HistoryLimits) {
		if l.TTL < 0 {
			errs = append(errs, fmt.Errorf("%s: negative TTL %v", what, l.TTL))
		}
		if l.MetaTTL < 0 {
			errs = append(errs, fmt.Errorf("%s: negative MetaTTL %v", what, l.MetaTTL))
		}
	}
	check("history default", p.Default)
	for i, r := range p.Rules {
		what := fmt.Sprintf("history rule %d (%q)", i, r.Pattern)
		if err := ValidPattern(r.Pattern); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		} else if strings.Contains(r.Pattern, "{sub}") {
			errs = append(errs, fmt.Errorf("%s: {sub} has no meaning in a history rule", what))
		}
		check(what, r.HistoryLimits)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
}

// Limits returns the limits for room with the defaults filled in: in the
// result Size 0 means no history, and MetaTTL ≥ TTL > 0.
func (p HistoryPolicy) Limits(room string) HistoryLimits {
	l := p.Default
	for _, r := range p.Rules {
		if Match(r.Pattern, room) {
			l = r.HistoryLimits
			break
		}
	}
	switch {
	case l.Size == 0:
		l.Size = DefaultHistorySize
	case l.Size < 0:
		l.Size = 0
	}
	if l.TTL <= 0 {
		l.TTL = DefaultHistoryTTL
	}
	if l.MetaTTL <= 0 {
		l.MetaTTL = DefaultHistoryMetaTTL
	}
	if l.MetaTTL < l.TTL {
		l.MetaTTL = l.TTL
	}
	return l
}

// CheckHistory is for [Broker] implementations: it decides whether the
// publications after since can be replayed from a room whose current position
// is cur and which keeps at most size publications. first is the offset of the
// oldest publication after since that the broker still has (0 if it has none).
// It returns nil, or an *[UnrecoverableError].
func CheckHistory(room string, since, cur StreamPosition, size int, first uint64) error {
	lost := &UnrecoverableError{Room: room, Since: since, Current: cur}
	switch {
	case since.Epoch != cur.Epoch, since.Offset > cur.Offset:
		return lost
	case since.Offset == cur.Offset:
		return nil // nothing was missed
	case cur.Offset-since.Offset > uint64(size), first != since.Offset+1:
		return lost
	}
	return nil
}
