package mqttbridge

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/org/rthub"
)

// QoS is an MQTT quality of service level for a subscription. The zero value
// means the default, [AtLeastOnce].
type QoS uint8

// The QoS levels. The broker delivers a message with the lower of the QoS it
// was published with and the subscription's.
const (
	// AtMostOnce is MQTT QoS 0: messages are lost while the bridge is
	// disconnected.
	AtMostOnce QoS = iota + 1
	// AtLeastOnce is MQTT QoS 1, the default: the broker keeps a message
	// until the bridge acknowledges it, also across a reconnection within
	// Config.SessionExpiry. The bridge acknowledges a message once it is in
	// the route's queue.
	AtLeastOnce
	// ExactlyOnce is MQTT QoS 2. The hub keeps no history, so it adds only
	// cost over AtLeastOnce.
	ExactlyOnce
)

func (q QoS) wire() byte { return byte(q) - 1 }

// Overflow says what a route does with a message that arrives when its queue
// is full (Route.QueueSize messages or Route.QueueBytes bytes).
type Overflow uint8

const (
	// DropOldest, the default, discards the oldest queued message to make
	// room: dashboards want the newest data. Counted in Stats.Dropped.
	DropOldest Overflow = iota
	// DropNewest discards the arriving message. Counted in Stats.Dropped.
	DropNewest
	// Block makes the bridge wait for room, which stops it reading from the
	// broker for every route: with QoS 1 or 2 the broker then holds the
	// messages (up to its own limits, e.g. Mosquitto's max_queued_messages)
	// and nothing is dropped by the bridge. Use it where no message may be
	// lost, e.g. alerts, with a queue large enough that it rarely blocks.
	Block
)

// String returns the policy's name.
func (o Overflow) String() string {
	switch o {
	case DropOldest:
		return "drop-oldest"
	case DropNewest:
		return "drop-newest"
	case Block:
		return "block"
	}
	return fmt.Sprintf("Overflow(%d)", o)
}

// Route maps the MQTT topics matching a pattern to one hub event published
// to one or more rooms.
type Route struct {
	// Name identifies the route in logs and [Stats]. Default: Topic.
	Name string
	// Topic is the topic pattern (required). Levels are separated by '/';
	// a level is literal text, "{name}" (one level, captured as variable
	// name), "+" (one level, not captured) or, as the last level only, "#"
	// (any number of levels, including none). The bridge subscribes to the
	// pattern with each variable replaced by '+'. No two routes of a bridge
	// may have patterns that a topic can match both: each message belongs
	// to exactly one route.
	Topic string
	// Event is the hub event published (required), e.g. "sensor:data";
	// event names follow the room-name syntax ([rthub.ValidRoom]). The
	// bridge does not declare the event with [rthub.NewEvent]; see
	// [EventRoute] to tie a route to a typed event.
	Event string
	// Rooms are the room templates the event is published to (at least
	// one), e.g. "device:{device}" and "staff". A {name} placeholder is
	// replaced by the topic variable of that name. A message whose variable
	// is empty, contains ':' or a character rooms do not allow is not
	// published (Stats.InvalidTopic), so a topic level cannot add segments
	// to a room name.
	Rooms []string
	// Decode turns a message into the event's data. Default [JSON].
	Decode DecodeFunc
	// QoS of the subscription. Default Config.QoS.
	QoS QoS

	// Key is the template of a message's key (placeholders as in Rooms),
	// used by Conflate and OnChange: messages with the same key are
	// versions of the same thing, e.g. "{device}". Default: the topic.
	Key string
	// Conflate keeps at most one message per key in the queue: a message
	// whose key is already queued replaces the queued one in place
	// (Stats.Merged), so a burst from one device costs one slot and the
	// newest reading wins. Default false: every message is queued.
	Conflate bool
	// OnChange publishes a message only if its decoded data differs from
	// the last data published for its key (Stats.Unchanged otherwise):
	// a device repeating "online" is published once, its Last Will
	// "offline" then is. The last data of up to Config.MaxKeys keys is
	// remembered per route; past that, a key is forgotten at random and its
	// next message is published even if unchanged.
	OnChange bool

	// QueueSize bounds the route's queue, in messages. Default
	// Config.QueueSize.
	QueueSize int
	// QueueBytes bounds the route's queue, in bytes of payload plus a
	// per-message overhead. Default Config.QueueBytes.
	QueueBytes int
	// Overflow says what happens when the queue is full. Default
	// [DropOldest].
	Overflow Overflow

	// BatchInterval, if positive, combines messages into one event per
	// room: the first message starts a batch, and BatchInterval later every
	// message that arrived meanwhile is published as one event whose data is
	// a JSON array of the decoded data, in arrival order (at most BatchMax
	// elements per event; more are split into several events). Declare the
	// event's type as a slice, e.g. rthub.NewEvent[[]Reading]. Default 0:
	// one event per message.
	BatchInterval time.Duration
	// BatchMax bounds the elements of one batch event. Default 100.
	BatchMax int
}

// EventRoute returns a Route for the typed event ev, whose decoder must
// produce ev's payload type: the compiler then checks that what the bridge
// publishes is what clients of ev decode. Set the other fields on the
// result.
func EventRoute[T any](ev rthub.Event[T], topic string, rooms []string, decode func(ctx context.Context, m *Message) (T, error)) Route {
	r := Route{Topic: topic, Event: ev.Name(), Rooms: rooms}
	if decode != nil {
		r.Decode = func(ctx context.Context, m *Message) (any, error) { return decode(ctx, m) }
	}
	return r
}

// route is a compiled Route.
type route struct {
	Route
	idx   int
	pat   *pattern
	rooms []*template
	key   *template // nil: the topic
	// roomVars marks the variables used in a room template, which must be
	// valid room segments.
	roomVars []bool
	queue    *queue
	stats    routeCounters
	last     map[string]json.RawMessage // OnChange: last data per key; the route's goroutine only

	topicLog, dropLog, decodeLog, publishLog logLimiter
}

// compileRoute validates r and fills in its defaults from cfg.
func compileRoute(r Route, idx int, cfg *Config) (*route, []error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if r.Name == "" {
		r.Name = r.Topic
	}
	rt := &route{Route: r, idx: idx}
	where := fmt.Sprintf("Routes[%d] (%q)", idx, r.Name)
	p, err := parsePattern(r.Topic)
	if err != nil {
		bad("%s: %v", where, err)
	}
	rt.pat = p
	if r.Event == "" {
		bad("%s: Event is empty", where)
	} else if err := rthub.ValidRoom(r.Event); err != nil {
		bad("%s: Event %q is not a valid event name: %v", where, r.Event, err)
	}
	if len(r.Rooms) == 0 {
		bad("%s: Rooms is empty", where)
	}
	if p != nil {
		rt.roomVars = make([]bool, len(p.vars))
		for _, s := range r.Rooms {
			t, err := parseTemplate(s, p)
			if err == nil {
				err = validRoomTemplate(t, len(p.vars))
			}
			if err != nil {
				bad("%s: %v", where, err)
				continue
			}
			for v := range p.vars {
				if t.usesVar(v) {
					rt.roomVars[v] = true
				}
			}
			rt.rooms = append(rt.rooms, t)
		}
		if r.Key != "" {
			t, err := parseTemplate(r.Key, p)
			if err != nil {
				bad("%s: Key: %v", where, err)
			}
			rt.key = t
		}
	}
	if r.Decode == nil {
		rt.Decode = JSON
	}
	if r.OnChange {
		rt.last = make(map[string]json.RawMessage)
	}
	switch {
	case r.QoS == 0:
		rt.QoS = cfg.QoS
	case r.QoS > ExactlyOnce:
		bad("%s: QoS %d is not a QoS level", where, r.QoS)
	}
	if r.Overflow > Block {
		bad("%s: Overflow %d is not a policy", where, r.Overflow)
	}
	defInt := func(p *int, def int, name string) {
		if *p == 0 {
			*p = def
		} else if *p < 0 {
			bad("%s: %s is negative", where, name)
		}
	}
	defInt(&rt.QueueSize, cfg.QueueSize, "QueueSize")
	defInt(&rt.QueueBytes, cfg.QueueBytes, "QueueBytes")
	defInt(&rt.BatchMax, 100, "BatchMax")
	if rt.QueueBytes > 0 && rt.QueueBytes < cfg.MaxPayload+(&Message{}).size() {
		bad("%s: QueueBytes %d cannot hold one message of Config.MaxPayload (%d bytes)", where, rt.QueueBytes, cfg.MaxPayload)
	}
	if r.BatchInterval < 0 {
		bad("%s: BatchInterval is negative", where)
	}
	return rt, errs
}

// resolve extracts a message's variables, rooms and key. It returns false
// (with the reason) if a variable cannot go into a room name.
func (r *route) resolve(topic string, vals []string) (rooms []string, key string, why string) {
	for v, used := range r.roomVars {
		if used && !validVarValue(vals[v]) {
			return nil, "", fmt.Sprintf("variable {%s} = %q cannot be part of a room name", r.pat.vars[v], truncate(vals[v], 64))
		}
	}
	rooms = make([]string, 0, len(r.rooms))
	for _, t := range r.rooms {
		room := t.expand(vals)
		if err := rthub.ValidRoom(room); err != nil {
			return nil, "", fmt.Sprintf("room %q: %v", truncate(room, 64), err)
		}
		rooms = append(rooms, room)
	}
	key = topic
	if r.key != nil {
		key = r.key.expand(vals)
	}
	return rooms, key, ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
