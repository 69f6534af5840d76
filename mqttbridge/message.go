package mqttbridge

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Message is an MQTT message as a route's [DecodeFunc] sees it. The bridge
// never modifies a Message after handing it over; a DecodeFunc must not
// modify it either (the same Message may be re-read after a merge).
type Message struct {
	// Route is the name of the route the topic matched.
	Route string
	// Topic is the topic the message was published to.
	Topic string
	// Vars holds the topic pattern's variables: for the pattern
	// "sensors/{device}/reading" and the topic "sensors/7/reading",
	// Vars["device"] is "7". Nil when the pattern has none.
	Vars map[string]string
	// Payload is the message's payload, as published.
	Payload []byte
	// QoS is the QoS the message was delivered with (0, 1 or 2).
	QoS byte
	// Retained is true for a retained message the broker sent because the
	// bridge subscribed (MQTT 5 "retain as published" is off).
	Retained bool
	// CorrelationID is the MQTT 5 user property named by
	// Config.CorrelationProperty (default "correlation-id"); if absent, the
	// MQTT 5 Correlation Data, as is when it is printable UTF-8, else in
	// hex. Empty when the message has neither. The bridge publishes the
	// message's event with [rthub.WithCorrelationID], so clients receive it
	// as the event's "cid" (the hub ignores an ID over 128 bytes or not
	// printable ASCII).
	CorrelationID string
	// ContentType is the MQTT 5 Content Type property, if any.
	ContentType string
	// UserProperties are the MQTT 5 user properties, in order (a key may
	// repeat). Trace context propagated by the publisher (e.g. "traceparent")
	// is here.
	UserProperties []UserProperty
	// Received is when the bridge received the message.
	Received time.Time
}

// UserProperty is an MQTT 5 user property: a key and a value.
type UserProperty struct {
	Key, Value string
}

// Property returns the value of the first user property named key, or "".
func (m *Message) Property(key string) string {
	for _, p := range m.UserProperties {
		if p.Key == key {
			return p.Value
		}
	}
	return ""
}

// size is the memory a queued message accounts for, in bytes.
func (m *Message) size() int {
	n := 256 + len(m.Topic) + len(m.Payload) + len(m.CorrelationID) + len(m.ContentType)
	for _, p := range m.UserProperties {
		n += 32 + len(p.Key) + len(p.Value)
	}
	return n
}

// correlationFromData turns MQTT 5 Correlation Data into a string.
func correlationFromData(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if utf8.Valid(b) {
		printable := true
		for _, r := range string(b) {
			if r < 0x20 || r == 0x7f {
				printable = false
				break
			}
		}
		if printable {
			return string(b)
		}
	}
	return hex.EncodeToString(b)
}

// DecodeFunc turns a message into the data of the hub event, which is
// encoded with encoding/json (a [json.RawMessage] is used as is, after a
// validity check). It runs on the route's own goroutine, one message at a
// time, in the order of the queue; it must not block for long.
//
// ctx carries the message (see [FromContext] and [CorrelationID]) and is
// cancelled when the bridge is closed. A returned error drops the message:
// [ErrSkip] silently (Stats.Skipped), any other error as a decode error
// (Stats.DecodeErrors, logged at most once a second per route, never
// published). A panic in a DecodeFunc is recovered and counted as a decode
// error.
type DecodeFunc func(ctx context.Context, m *Message) (any, error)

// JSON is the default [DecodeFunc]: the payload must be one valid JSON
// value; it is published as is, with insignificant white space removed.
func JSON(_ context.Context, m *Message) (any, error) {
	return compactJSON(m.Payload)
}

func compactJSON(p []byte) (json.RawMessage, error) {
	var b bytes.Buffer
	b.Grow(len(p))
	if err := json.Compact(&b, p); err != nil {
		return nil, fmt.Errorf("payload is not valid JSON: %v", err)
	}
	if b.Len() == 0 {
		return nil, errors.New("payload is empty")
	}
	return json.RawMessage(b.Bytes()), nil
}

// JSONWithVars is a [DecodeFunc] for JSON object payloads that adds the
// topic variables to the object as string fields, so that a dashboard
// receiving every device's readings in one room can tell them apart:
// {"celsius":21.5} on "sensors/7/reading" becomes
// {"celsius":21.5,"device":"7"}. A field already in the payload wins over a
// variable of the same name. A payload that is not a JSON object is a decode
// error.
func JSONWithVars(_ context.Context, m *Message) (any, error) {
	raw, err := compactJSON(m.Payload)
	if err != nil {
		return nil, err
	}
	if raw[0] != '{' {
		return nil, errors.New("payload is not a JSON object")
	}
	if len(m.Vars) == 0 {
		return raw, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("payload is not a JSON object: %v", err)
	}
	for k, v := range m.Vars {
		if _, ok := fields[k]; !ok {
			b, _ := json.Marshal(v)
			fields[k] = b
		}
	}
	return fields, nil
}

// Text is a [DecodeFunc] for plain-text payloads, such as a device status
// "online" or a Last Will "offline": the payload must be valid UTF-8 and is
// published as a JSON string.
func Text(_ context.Context, m *Message) (any, error) {
	if !utf8.Valid(m.Payload) {
		return nil, errors.New("payload is not valid UTF-8")
	}
	return string(m.Payload), nil
}

// JSONAs returns a [DecodeFunc] that decodes the payload into a T, rejecting
// unknown fields and trailing data, and publishes the T (re-encoded), so that
// clients only ever see the fields T declares.
func JSONAs[T any]() DecodeFunc {
	return func(_ context.Context, m *Message) (any, error) {
		var v T
		dec := json.NewDecoder(bytes.NewReader(m.Payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("payload does not decode as %T: %v", v, err)
		}
		if dec.More() {
			return nil, errors.New("payload has data after the JSON value")
		}
		return v, nil
	}
}

type ctxKey struct{}

// msgContext is what the bridge puts in the contexts it passes on.
type msgContext struct {
	msg *Message // nil for a batch
}

// withMessage returns ctx carrying m (nil for a batch of messages).
func withMessage(ctx context.Context, m *Message) context.Context {
	return context.WithValue(ctx, ctxKey{}, msgContext{msg: m})
}

// FromContext returns the MQTT message behind a context the bridge passed to
// a [DecodeFunc] or to the [rthub.Publisher]'s Publish. It returns false for other
// contexts and for the publish of a batch (Route.BatchInterval), which stands
// for several messages.
//
// An rthub.Publisher that wraps the hub can use it to log or trace a publish with
// the message's correlation ID or user properties.
func FromContext(ctx context.Context) (*Message, bool) {
	mc, ok := ctx.Value(ctxKey{}).(msgContext)
	if !ok || mc.msg == nil {
		return nil, false
	}
	return mc.msg, true
}

// CorrelationID returns the correlation ID of the MQTT message behind ctx
// (see [Message].CorrelationID), or "" if there is none.
func CorrelationID(ctx context.Context) string {
	if m, ok := FromContext(ctx); ok {
		return m.CorrelationID
	}
	return ""
}
