// Package otelrthub traces an rthub hub with OpenTelemetry, from outside the
// hub: the rthub module never imports OpenTelemetry, and a program that does
// not wrap anything pays nothing.
//
//   - [Handler] wraps the hub's http.Handler: one server span per WebSocket
//     handshake ("rthub.handshake"), with the HTTP status (101 when
//     upgraded) and, through [OnRefused] installed as the hub's
//     Options.OnRefused, the refusal's code and user.
//   - [WrapPublisher] wraps the hub (or anything with its Publish method):
//     one producer span per publish ("rthub.publish"), with the room,
//     the event and the correlation ID.
//   - [WrapBroker] wraps the hub's Broker: one client span per broker call
//     ("rthub.broker.publish", "rthub.broker.history", ...), children of the
//     publish span for publishes, so a trace shows the Redis round trip.
//
// Spans for ingest paths (an MQTT message carrying W3C trace context in its
// user properties) are the program's: examples/iotserver extracts
// "traceparent" from the mqttbridge message and starts a consumer span.
//
// The delivery to clients on other nodes is not traced: the publication
// crosses the broker as the hub's opaque bytes, which carry no trace context.
//
// It is its own module, so that the rthub module never depends on
// OpenTelemetry.
package otelrthub
