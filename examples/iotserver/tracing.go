package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/eclipse/paho.golang/paho"
	"github.com/org/rthub"
	"github.com/org/rthub/mqttbridge"
	"github.com/org/rthub/otelrthub"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (OpenTelemetry) is off unless OTEL_TRACES_EXPORTER is stdout or
// otlp. Off, nothing is wrapped: the hub, the bridge and the handlers run
// exactly as without tracing. On, a reading's trace is
//
//	sensor.publish (simulated device; "traceparent" in the MQTT 5 user properties)
//	├── mqtt.ingest (decode: validate, store, alert rules)
//	│   └── rthub.publish (alert:new, when the reading opens an alert) ─ rthub.broker.publish
//	└── rthub.publish ×2 (device:{id} and staff) ─ rthub.broker.publish
//
// and a WebSocket handshake is a span rthub.handshake, an HTTP publish a
// span POST /api/publish with its rthub.publish.

// tracing holds the tracer provider; a nil *tracing is "off".
type tracing struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// startTracing sets tracing up as cfg says, or returns nil when it is off.
// stdout spans (one JSON object per line) go to out.
func startTracing(ctx context.Context, cfg Config, out io.Writer) (*tracing, error) {
	var exp sdktrace.SpanExporter
	var err error
	var sync bool
	switch cfg.TraceExporter {
	case "", "none":
		return nil, nil
	case "stdout":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(out))
		sync = true // each span printed when it ends
	case "otlp":
		var opts []otlptracehttp.Option
		if cfg.OTLPEndpoint != "" {
			// As the OpenTelemetry spec reads OTEL_EXPORTER_OTLP_ENDPOINT:
			// a base URL, to which the signal's path is appended.
			opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(cfg.OTLPEndpoint, "/")+"/v1/traces"))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want none, stdout or otlp", cfg.TraceExporter)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	var export sdktrace.TracerProviderOption
	if sync {
		export = sdktrace.WithSyncer(exp)
	} else {
		export = sdktrace.WithBatcher(exp) // starts its goroutine: only when used
	}
	tp := sdktrace.NewTracerProvider(export,
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", cfg.ServiceName))))
	return &tracing{tp: tp, tracer: tp.Tracer("github.com/org/rthub/examples/iotserver"), prop: propagation.TraceContext{}}, nil
}

// shutdown flushes and stops the exporter.
func (t *tracing) shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

func (t *tracing) options() otelrthub.Options {
	return otelrthub.Options{TracerProvider: t.tp}
}

// hubState is the keyed latest state the hub keeps: the staff room and
// each device room keep the latest reading and status of every device
// (sensor:data and device:status are declared with keys, events.go), so a
// dashboard that joins with state gets its device cards and then exactly
// the events after them.
var hubState = rthub.StatePolicy{Rules: []rthub.StateRule{{Pattern: roomStaff}, {Pattern: "device:*"}}}

// broker returns the hub's broker: a memory broker keeping hubState, with
// spans when tracing is on.
func (t *tracing) broker() (rthub.Broker, error) {
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{State: hubState})
	if err != nil {
		return nil, err
	}
	if t == nil {
		return mb, nil
	}
	return otelrthub.WrapBroker(mb, t.options()), nil
}

// onRefused adds the handshake span's refusal, when tracing is on.
func (t *tracing) onRefused(next func(context.Context, rthub.Refusal)) func(context.Context, rthub.Refusal) {
	if t == nil {
		return next
	}
	return otelrthub.OnRefused(next)
}

// handler wraps the hub's handler, when tracing is on.
func (t *tracing) handler(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return otelrthub.Handler(h, t.options())
}

// publisher returns the hub, or the hub with a span per publish.
func (t *tracing) publisher(hub *rthub.Hub) rthub.Publisher {
	if t == nil {
		return hub
	}
	return otelrthub.WrapPublisher(hub, otelrthub.PublishOptions{Options: t.options(), CorrelationID: correlationID})
}

// userProps reads and writes MQTT 5 user properties as a propagation
// carrier ("traceparent", "tracestate").
type userProps struct {
	get func(string) string
	set func(k, v string)
}

func (u userProps) Get(k string) string { return u.get(k) }
func (u userProps) Set(k, v string)     { u.set(k, v) }
func (u userProps) Keys() []string      { return nil }

// messageContext returns ctx with the remote span context of the MQTT
// message behind it (its "traceparent" user property), if any.
func (t *tracing) messageContext(ctx context.Context) context.Context {
	m, ok := mqttbridge.FromContext(ctx)
	if t == nil || !ok {
		return ctx
	}
	return t.prop.Extract(ctx, userProps{get: m.Property})
}

// ingest runs decode in a consumer span "mqtt.ingest", child of the
// message's remote span when it carries one.
func ingestSpan[T any](t *tracing, decode func(context.Context, *mqttbridge.Message) (T, error)) func(context.Context, *mqttbridge.Message) (T, error) {
	if t == nil {
		return decode
	}
	return func(ctx context.Context, m *mqttbridge.Message) (T, error) {
		ctx, span := t.tracer.Start(t.messageContext(ctx), "mqtt.ingest", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("messaging.system", "mqtt"),
				attribute.String("messaging.destination.name", m.Topic),
				attribute.String("mqttbridge.route", m.Route)))
		if m.CorrelationID != "" {
			span.SetAttributes(attribute.String("rthub.cid", m.CorrelationID))
		}
		v, err := decode(ctx, m)
		if err != nil && !errors.Is(err, mqttbridge.ErrSkip) {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return v, err
	}
}

// bridgePublisher is the bridge's Publisher: the hub's (traced) Publish
// with the MQTT message's remote span as parent.
type bridgePublisher struct {
	t   *tracing
	pub rthub.Publisher
}

func (b bridgePublisher) Publish(ctx context.Context, room, event string, data any, opts ...rthub.PublishOption) error {
	return b.pub.Publish(b.t.messageContext(ctx), room, event, data, opts...)
}

// sensorSpan starts a simulated device's producer span for one reading and
// puts its context into the MQTT user properties; end ends it. Without
// tracing it only adds the correlation ID.
func (t *tracing) sensorSpan(ctx context.Context, device, topic, cid string, props *paho.UserProperties) (end func(error)) {
	props.Add("correlation-id", cid)
	if t == nil {
		return func(error) {}
	}
	ctx, span := t.tracer.Start(ctx, "sensor.publish", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "mqtt"),
			attribute.String("messaging.destination.name", topic),
			attribute.String("device.id", device), attribute.String("rthub.cid", cid)))
	t.prop.Inject(ctx, userProps{set: func(k, v string) { props.Add(k, v) }})
	return func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// traceIDs returns the trace and span IDs of ctx's span, if it has one.
func traceIDs(ctx context.Context) (traceID, spanID string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	return sc.TraceID().String(), sc.SpanID().String()
}

// requestSpan starts a server span named name for r, child of the
// caller's span when r has a W3C traceparent header; end records the
// status. Without tracing it returns r's context and a no-op.
func (t *tracing) requestSpan(r *http.Request, name string) (context.Context, func(status int)) {
	if t == nil {
		return r.Context(), func(int) {}
	}
	ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
	return ctx, func(status int) {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		span.End()
	}
}
