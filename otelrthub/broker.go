package otelrthub

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/org/rthub"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// WrapBroker returns b with a client span around each call the hub makes:
// "rthub.broker.publish" (with the stream offset it assigned),
// "rthub.broker.subscribe", "rthub.broker.unsubscribe" and
// "rthub.broker.history" (an unrecoverable position is an event, not an
// error). Close passes through. If b is also an [rthub.PresenceStore], so is
// the result (its calls are not traced), so cluster presence keeps working.
// Give the result to rthub Options.Broker.
//
// Across nodes: a publication made under a sampled span carries that span's
// W3C trace context in its message's Header["traceparent"] (see
// [rthub.Message]; an entry already there is replaced), and every node that
// wrapped its broker starts a consumer span "rthub.broker.deliver" for it, a
// child of the publisher's span, around handing it to its hub (queuing it to
// the room's members). One sensor reading is then one trace from the MQTT
// ingest on one node to the delivery on every node. The hub ignores the
// Header, so nodes can be wrapped one at a time; History returns it as
// published.
//
// The optional extras of b pass through untraced. The result names b with an
// Unwrap method, so the hub finds b's [rthub.StateBroker] (keyed latest
// state), [rthub.ControlBroker] (the control plane: cluster-wide ControlUser
// and Revoke), [rthub.IdempotencyStore] (idempotency keys shared by the
// hubs) and [rthub.NodeRelay] (commands POSTed to an HTTP stream on another
// node) through it with [rthub.BrokerAs]; code of your own that looks for
// them on the result does the same. An [rthub.PresenceStore] b makes the
// result one too, as it always has.
func WrapBroker(b rthub.Broker, opts Options) rthub.Broker {
	tb := &tracedBroker{next: b, tr: opts.tracer()}
	if ps, ok := b.(rthub.PresenceStore); ok {
		return &tracedPresenceBroker{tb, ps}
	}
	return tb
}

type tracedBroker struct {
	next rthub.Broker
	tr   trace.Tracer
}

type tracedPresenceBroker struct {
	*tracedBroker
	rthub.PresenceStore
}

var (
	_ rthub.Broker        = (*tracedBroker)(nil)
	_ rthub.PresenceStore = (*tracedPresenceBroker)(nil)
)

// Unwrap returns the broker b traces, for [rthub.BrokerAs].
func (b *tracedBroker) Unwrap() rthub.Broker { return b.next }

func (b *tracedBroker) start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return b.tr.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (b *tracedBroker) Start(ctx context.Context, h rthub.BrokerHandler) error {
	return b.next.Start(ctx, tracedHandler{next: h, tr: b.tr})
}

// traceHeader is the Header entry carrying the trace context.
const traceHeader = "traceparent"

// withTrace returns h with ctx's sampled span context in its traceparent
// entry (a copy: h may be the caller's), or h itself when ctx has none.
func withTrace(ctx context.Context, h map[string]string) map[string]string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() || !sc.IsSampled() {
		return h
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	tp := carrier.Get(traceHeader)
	if tp == "" {
		return h
	}
	out := make(map[string]string, len(h)+1)
	maps.Copy(out, h)
	out[traceHeader] = tp
	return out
}

// remoteSpan returns the span context of a publication's traceparent
// (invalid if it has none).
func remoteSpan(h map[string]string) trace.SpanContext {
	tp, ok := h[traceHeader]
	if !ok {
		return trace.SpanContext{}
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{traceHeader: tp})
	return trace.SpanContextFromContext(ctx)
}

// tracedHandler starts "rthub.broker.deliver" for publications that carry a
// trace context.
type tracedHandler struct {
	next rthub.BrokerHandler
	tr   trace.Tracer
}

func (h tracedHandler) HandlePublication(p rthub.Publication) {
	sc := remoteSpan(p.Header)
	if !sc.IsValid() {
		h.next.HandlePublication(p)
		return
	}
	_, span := h.tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), sc), "rthub.broker.deliver",
		trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("rthub.room", p.Room), attribute.Int64("rthub.offset", int64(p.Offset)),
			attribute.String("rthub.epoch", p.Epoch))
	}
	h.next.HandlePublication(p)
	span.End()
}

func (h tracedHandler) HandleResync(rooms []string) { h.next.HandleResync(rooms) }

func (b *tracedBroker) Close(ctx context.Context) error { return b.next.Close(ctx) }

func (b *tracedBroker) Publish(ctx context.Context, room string, msg rthub.Message) (rthub.StreamPosition, error) {
	ctx, span := b.start(ctx, "rthub.broker.publish")
	if span.IsRecording() {
		span.SetAttributes(attribute.String("rthub.room", room), attribute.Int("rthub.bytes", len(msg.Data)))
	}
	msg.Header = withTrace(ctx, msg.Header)
	pos, err := b.next.Publish(ctx, room, msg)
	if err == nil && span.IsRecording() {
		span.SetAttributes(attribute.Int64("rthub.offset", int64(pos.Offset)), attribute.String("rthub.epoch", pos.Epoch))
	}
	end(span, err)
	return pos, err
}

func (b *tracedBroker) Subscribe(ctx context.Context, rooms ...string) error {
	ctx, span := b.start(ctx, "rthub.broker.subscribe", attribute.StringSlice("rthub.rooms", rooms))
	err := b.next.Subscribe(ctx, rooms...)
	end(span, err)
	return err
}

func (b *tracedBroker) Unsubscribe(ctx context.Context, rooms ...string) error {
	ctx, span := b.start(ctx, "rthub.broker.unsubscribe", attribute.StringSlice("rthub.rooms", rooms))
	err := b.next.Unsubscribe(ctx, rooms...)
	end(span, err)
	return err
}

func (b *tracedBroker) History(ctx context.Context, room string, since rthub.StreamPosition, limit int) ([]rthub.Publication, rthub.StreamPosition, error) {
	ctx, span := b.start(ctx, "rthub.broker.history", attribute.String("rthub.room", room),
		attribute.Int64("rthub.since", int64(since.Offset)), attribute.Int("rthub.limit", limit))
	pubs, pos, err := b.next.History(ctx, room, since, limit)
	span.SetAttributes(attribute.Int("rthub.publications", len(pubs)))
	if errors.Is(err, rthub.ErrUnrecoverable) {
		span.AddEvent("rthub.unrecoverable", trace.WithTimestamp(time.Now()))
		span.End()
		return pubs, pos, err
	}
	end(span, err)
	return pubs, pos, err
}
