package rthub

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"reflect"
	"slices"
	"sync"
)

// Event is a named event whose payload has type T. Declare each event once, at
// package level, and use it on both sides: the server publishes a T, clients
// decode a T, and client emits reach a handler as a T.
//
//	var SensorData = rthub.NewEvent[Reading]("sensor:data")
//	SensorData.Publish(ctx, hub, "device:7", Reading{...}) // hub: any [Publisher]
type Event[T any] struct {
	name string
}

// events is the process-wide registry of declared events, for duplicate
// detection and for [Events].
var events struct {
	sync.Mutex
	byName map[string]reflect.Type
}

// NewEvent declares an event. The name follows the room-name syntax (letters,
// digits, "_-.:@/", segments separated by ':'), e.g. "sensor:data".
// Declaring an invalid name, or the same name twice, panics: both are
// programming errors found at start-up, as http.ServeMux panics on a
// conflicting pattern.
func NewEvent[T any](name string) Event[T] {
	if err := validEventName(name); err != nil {
		panic(fmt.Sprintf("rthub: NewEvent(%q): %v", name, err))
	}
	events.Lock()
	defer events.Unlock()
	if events.byName == nil {
		events.byName = make(map[string]reflect.Type)
	}
	if t, dup := events.byName[name]; dup {
		panic(fmt.Sprintf("rthub: NewEvent(%q): event already declared with type %v", name, t))
	}
	events.byName[name] = reflect.TypeFor[T]()
	return Event[T]{name: name}
}

// Events yields the name and payload type of every event declared with
// [NewEvent] in this process, sorted by name: the source of generated event
// references (package github.com/org/rthub/eventdoc). Each iteration reads
// the events declared when it starts.
func Events() iter.Seq2[string, reflect.Type] {
	return func(yield func(string, reflect.Type) bool) {
		events.Lock()
		names := slices.Sorted(maps.Keys(events.byName))
		types := make([]reflect.Type, len(names))
		for i, n := range names {
			types[i] = events.byName[n]
		}
		events.Unlock()
		for i, n := range names {
			if !yield(n, types[i]) {
				return
			}
		}
	}
}

func validEventName(name string) error {
	if err := ValidRoom(name); err != nil {
		return fmt.Errorf("%w %q", ErrBadEvent, truncate(name, 64))
	}
	return nil
}

// Name returns the event's name as it appears on the wire.
func (e Event[T]) Name() string { return e.name }

// Publish sends v to every connection in room through p, typically the
// [*Hub] or a wrapper of it ([Publisher]). It is type-checked: only a T can
// be published as this event. v is encoded with encoding/json and given to
// p.Publish as a json.RawMessage; see [Hub.Publish] for the semantics.
//
// An event declared with a key ([Event.KeyBy]) is published with the key of
// v unless opts hold a [WithKey].
func (e Event[T]) Publish(ctx context.Context, p Publisher, room string, v T, opts ...PublishOption) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if fn, ok := eventKeys.Load(e.name); ok {
		var cfg publishConfig
		for _, o := range opts {
			o(&cfg)
		}
		if cfg.key == "" {
			opts = append(slices.Clip(opts), WithKey(fn.(func(T) string)(v)))
		}
	}
	if h, ok := p.(*Hub); ok {
		// What Hub.Publish does with a json.RawMessage, minus checking that
		// json.Marshal made valid JSON.
		return h.publish(ctx, room, e.name, data, opts...)
	}
	return p.Publish(ctx, room, e.name, json.RawMessage(data), opts...)
}

// eventKeys holds the key function of each event declared with a key
// (KeyBy), by name: Event[T] stays a comparable struct of its name alone.
var eventKeys sync.Map // string → func(T) string

// KeyBy declares the state key of the event: [Event.Publish] given no
// [WithKey] publishes v with WithKey(fn(v)), so that rooms keeping state
// (see [StatePolicy]) keep the latest v per key, e.g. per device:
//
//	var SensorData = rthub.NewEvent[Reading]("sensor:data").
//		KeyBy(func(r Reading) string { return r.Device })
//
// A key that [WithKey] would refuse (empty, too long, not printable ASCII)
// publishes v without a key. KeyBy returns e; calling it again replaces fn.
// It is safe for concurrent use, and is meant for start-up, with NewEvent.
func (e Event[T]) KeyBy(fn func(T) string) Event[T] {
	if fn == nil {
		eventKeys.Delete(e.name)
	} else {
		eventKeys.Store(e.name, fn)
	}
	return e
}

// Keyed reports whether the event was declared with a key ([Event.KeyBy]).
func (e Event[T]) Keyed() bool {
	_, ok := eventKeys.Load(e.name)
	return ok
}

// Decode parses an event's data as a T, for clients.
func (e Event[T]) Decode(data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%w: %s: %v", ErrBadPayload, e.name, err)
	}
	return v, nil
}

// Incoming is an event a client emitted, decoded.
type Incoming[T any] struct {
	// Conn is the emitting connection.
	Conn ConnInfo
	// Room is the room the client emitted to; the hub already checked that the
	// connection is a member and that its role may emit this event there.
	Room string
	// Data is the decoded payload.
	Data T
	// Raw is the payload as the client sent it (valid JSON).
	Raw json.RawMessage

	hub *Hub
}

// Hub returns the hub the event arrived on, to publish from a handler.
func (in Incoming[T]) Hub() *Hub { return in.hub }

// Handler handles client emits of one event; make one with [Event.Handle] or
// [Event.Relay] and pass it in Options.Handlers.
type Handler interface {
	eventName() string
	payloadType() reflect.Type
	handle(ctx context.Context, h *Hub, c ConnInfo, room string, raw json.RawMessage) error
}

type handlerFunc[T any] struct {
	name string
	fn   func(ctx context.Context, in Incoming[T]) error
}

func (hf handlerFunc[T]) eventName() string { return hf.name }

func (hf handlerFunc[T]) payloadType() reflect.Type { return reflect.TypeFor[T]() }

func (hf handlerFunc[T]) handle(ctx context.Context, h *Hub, c ConnInfo, room string, raw json.RawMessage) error {
	var v T
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return decodeError(hf.name, err)
	}
	return hf.fn(ctx, Incoming[T]{Conn: c, Room: room, Data: v, Raw: raw, hub: h})
}

// Handle returns a Handler that decodes client emits of e into a T and calls fn
// on the connection's goroutine (so one client's emits are handled in order;
// fn must not block for long). fn's error goes back to the client as the
// reply's error: a sentinel of this package or a *[ReplyError] chooses the
// code; any other error is reported as "internal" without details. A payload
// that does not decode is answered with bad_payload, naming the field when
// encoding/json can tell, and fn is not called. With Options.ValidateEmits,
// the payload is first checked against the JSON Schema of T (see
// docs/contract.md), so fn only sees payloads that match it.
func (e Event[T]) Handle(fn func(ctx context.Context, in Incoming[T]) error) Handler {
	return handlerFunc[T]{name: e.name, fn: fn}
}

// Relay returns a Handler that checks a client's emit decodes into a T and
// publishes it, as sent, to the room, leaving out the sender.
func (e Event[T]) Relay() Handler {
	return e.Handle(func(ctx context.Context, in Incoming[T]) error {
		return in.hub.publish(ctx, in.Room, e.name, in.Raw, WithExcept(in.Conn.ID))
	})
}
