package otelrthub

import (
	"context"
	"errors"

	"github.com/org/rthub"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// PublishOptions configures [WrapPublisher].
type PublishOptions struct {
	Options
	// CorrelationID, if set, returns the correlation ID of the publish whose
	// context is ctx (the one also given with rthub.WithCorrelationID, which
	// a wrapper cannot read), recorded as the span's rthub.cid attribute.
	CorrelationID func(ctx context.Context) string
}

// WrapPublisher returns p (the hub, or another [rthub.Publisher]) with a
// producer span around each Publish, named "rthub.publish", with rthub.room,
// rthub.event, rthub.cid and the error, if any. The span is the parent of the
// broker spans of [WrapBroker] (the hub passes the context on to its broker).
// Typed events go through it too: give the result to rthub.Event.Publish.
func WrapPublisher(p rthub.Publisher, opts PublishOptions) rthub.Publisher {
	return &publisher{next: p, tr: opts.tracer(), cid: opts.CorrelationID}
}

type publisher struct {
	next rthub.Publisher
	tr   trace.Tracer
	cid  func(context.Context) string
}

func (p *publisher) Publish(ctx context.Context, room, event string, data any, opts ...rthub.PublishOption) error {
	ctx, span := p.tr.Start(ctx, "rthub.publish", trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() { // attributes only for spans that are kept
		span.SetAttributes(attribute.String("rthub.room", room), attribute.String("rthub.event", event))
		if p.cid != nil {
			if id := p.cid(ctx); id != "" {
				span.SetAttributes(attribute.String("rthub.cid", id))
			}
		}
	}
	err := p.next.Publish(ctx, room, event, data, opts...)
	if err != nil {
		span.RecordError(err)
		if !errors.Is(err, rthub.ErrHubClosed) {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
	return err
}
