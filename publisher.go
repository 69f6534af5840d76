package rthub

import "context"

// Publisher publishes events to rooms: [Hub.Publish]'s method set. [*Hub]
// implements it, and so do wrappers of a hub (otelrthub.WrapPublisher, a
// logging or rate-limiting layer of your own). Code that only publishes — an
// MQTT bridge, a job, [Event.Publish] — takes a Publisher, so whatever wraps
// the hub applies to it too.
//
// Publish has the semantics of [Hub.Publish]: data is encoded with
// encoding/json, except a json.RawMessage, which must be valid JSON and is
// sent as is. An implementation is safe for concurrent use.
type Publisher interface {
	Publish(ctx context.Context, room, event string, data any, opts ...PublishOption) error
}

var _ Publisher = (*Hub)(nil)
