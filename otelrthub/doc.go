// Package otelrthub traces an rthub hub with OpenTelemetry, from outside the
// hub: the rthub module never imports OpenTelemetry, and a program that does
// not wrap anything pays nothing.
//
//   - [Handler] wraps the hub's http.Handler: one server span per WebSocket
//     handshake ("rthub.handshake"), with the HTTP status (101 when
//     upgraded) and, through [OnRefused] installed as the hub's
//     Options.OnRefused, the refusal's code and user.
//   - [WrapPublisher] wraps the hub (or any [rthub.Publisher]): one producer
//     span per publish ("rthub.publish"), with the room, the event and the
//     correlation ID. Typed events published through the result
//     (rthub.Event.Publish takes an rthub.Publisher) are traced the same.
//   - [WrapBroker] wraps the hub's Broker: one client span per broker call
//     ("rthub.broker.publish", "rthub.broker.history", ...), children of the
//     publish span for publishes, so a trace shows the Redis round trip; and
//     one consumer span per traced publication delivered to the node
//     ("rthub.broker.deliver"), a child of the publisher's span.
//
// Spans for ingest paths (an MQTT message carrying W3C trace context in its
// user properties) are the program's: examples/iotserver extracts
// "traceparent" from the mqttbridge message and starts a consumer span.
//
// Across nodes, the publisher's trace context travels with the publication
// in its rthub.Message Header["traceparent"], which the hub ignores and
// WrapBroker reads on delivery (History returns it as published too).
//
// It is its own module, so that the rthub module never depends on
// OpenTelemetry.
package otelrthub
