package otelrthub

import (
	"context"
	"errors"
	"time"

	"github.com/org/rthub"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// WrapBroker returns b with a client span around each call the hub makes:
// "rthub.broker.publish" (with the stream offset it assigned),
// "rthub.broker.subscribe", "rthub.broker.unsubscribe" and
// "rthub.broker.history" (an unrecoverable position is an event, not an
// error). Start and Close pass through. If b is also an
// [rthub.PresenceStore], so is the result (its calls are not traced), so
// cluster presence keeps working. Give the result to rthub Options.Broker.
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
	return b.next.Start(ctx, h)
}

func (b *tracedBroker) Close(ctx context.Context) error { return b.next.Close(ctx) }

func (b *tracedBroker) Publish(ctx context.Context, room string, data []byte) (rthub.StreamPosition, error) {
	ctx, span := b.start(ctx, "rthub.broker.publish")
	if span.IsRecording() {
		span.SetAttributes(attribute.String("rthub.room", room), attribute.Int("rthub.bytes", len(data)))
	}
	pos, err := b.next.Publish(ctx, room, data)
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
