package rthub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
)

// PublishOption adjusts one publish.
type PublishOption func(*publishConfig)

type publishConfig struct {
	except string
	cid    string
	key    string
}

// WithExcept leaves out the connection with this ID (typically the sender of
// a relayed event).
func WithExcept(connID string) PublishOption {
	return func(p *publishConfig) { p.except = connID }
}

// WithKey names the state key of the published event, e.g. a device ID, or
// "device:7/temp" for one metric of one device: a later publication to the
// same room with the same key supersedes it (see [Message].Key). key is 1 to
// [MaxKeyLen] bytes of printable ASCII; anything else is ignored, and the
// event is published without a key.
func WithKey(key string) PublishOption {
	return func(p *publishConfig) {
		if validKey(key) {
			p.key = key
		}
	}
}

// MaxKeyLen is the longest state key [WithKey] accepts.
const MaxKeyLen = 256

func validKey(key string) bool {
	return len(key) <= MaxKeyLen && printableASCII(key)
}

// WithCorrelationID tags the event with id, which clients receive as the
// event's "cid" field and the hub logs (at debug level) with the publish, so
// one reading can be followed from its origin (an MQTT message, an HTTP
// request) to the frame a client receives. id is at most 128 bytes of
// printable ASCII; anything else is ignored.
func WithCorrelationID(id string) PublishOption {
	return func(p *publishConfig) {
		if validCorrelationID(id) {
			p.cid = id
		}
	}
}

func validCorrelationID(id string) bool {
	return len(id) <= 128 && printableASCII(id)
}

// printableASCII reports whether s is non-empty printable ASCII.
func printableASCII(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Publish sends event with data to every connection in room. data is encoded
// with encoding/json, except a json.RawMessage, which must be valid JSON and
// is sent as is. The event is encoded (and compressed) once, whatever the
// number of recipients; it returns once the event is queued to every member,
// never waiting for a slow client. Errors: [ErrHubClosed], [ErrBadRoom], [ErrBadEvent],
// [ErrBadPayload], or ctx's error.
func (h *Hub) Publish(ctx context.Context, room, event string, data any, opts ...PublishOption) error {
	var raw []byte
	switch d := data.(type) {
	case json.RawMessage:
		if !json.Valid(d) {
			return fmt.Errorf("%w: data is not valid JSON", ErrBadPayload)
		}
		raw = d
	default:
		b, err := json.Marshal(data)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadPayload, err)
		}
		raw = b
	}
	return h.publish(ctx, room, event, raw, opts...)
}

// publish delivers valid JSON data to the local members of room.
func (h *Hub) publish(ctx context.Context, room, event string, data []byte, opts ...PublishOption) error {
	if h.closing.Load() {
		return ErrHubClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := ValidRoom(room); err != nil {
		return err
	}
	if err := validEventName(event); err != nil {
		return err
	}
	var cfg publishConfig
	for _, o := range opts {
		o(&cfg)
	}
	h.stats.published.Add(1)
	h.stats.events.of(event).published.Add(1)
	payload := appendEventCID(make([]byte, 0, 64+len(event)+len(room)+len(cfg.cid)+len(data)), cfg.cid, event, room, data)
	if cfg.cid != "" && h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.LogAttrs(ctx, slog.LevelDebug, "rthub: publish", slog.String("room", room),
			slog.String("event", event), slog.String("cid", cfg.cid), slog.Int("bytes", len(data)))
	}
	if _, err := h.broker.Publish(ctx, room, Message{Data: payload, Except: cfg.except, Key: cfg.key}); err != nil {
		h.stats.brokerErrors.Add(1)
		return fmt.Errorf("rthub: publish to %q: %w", room, err)
	}
	return nil
}

// preparedMessage holds one encoded message and builds each wire form of it at
// most once: the plain frame, and the compressed frame for connections that
// negotiated permessage-deflate.
type preparedMessage struct {
	payload   []byte
	comp      *compressor
	threshold int
	plain     []byte
	deflated  []byte
	triedDefl bool
}

func (p *preparedMessage) frame(deflate bool) []byte {
	if deflate && len(p.payload) >= p.threshold {
		if !p.triedDefl {
			p.triedDefl = true
			// A payload holding line breaks (only a json.RawMessage can)
			// is not compressed: an HTTP stream writes a compressed
			// payload as one event line (see httpStream.encode).
			if !bytes.ContainsAny(p.payload, "\r\n") {
				body, err := p.comp.compress(make([]byte, 0, len(p.payload)/2+16), p.payload)
				if err == nil && len(body) < len(p.payload) {
					p.deflated = appendFrame(make([]byte, 0, frameHeaderLen(len(body))+len(body)), opText, true, body)
				}
			}
		}
		if p.deflated != nil {
			return p.deflated
		}
	}
	if p.plain == nil {
		p.plain = textFrame(p.payload)
	}
	return p.plain
}
