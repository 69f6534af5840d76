package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"

	"github.com/org/rthub/mqttbridge"
)

// Correlation IDs. A reading's ID comes from its MQTT message (the
// "correlation-id" user property, which the simulated devices set; see
// mqttbridge), an HTTP publish's from its X-Correlation-ID header or a new
// one. The hub sends it to clients as the event's "cid" and logs it at
// debug level with the publish; every log line written with a context that
// carries one gets a cid field (ctxHandler), so that
//
//	LOG_LEVEL=debug go run ./examples/iotserver 2>&1 | grep 'cid=lab-1.'
//
// follows one reading from the bridge through the alert rules to the hub.

type cidKey struct{}

// withCorrelationID returns ctx carrying id.
func withCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, cidKey{}, id)
}

// correlationID returns the correlation ID ctx carries: an HTTP publish's,
// or the MQTT message's; "" if none.
func correlationID(ctx context.Context) string {
	if id, ok := ctx.Value(cidKey{}).(string); ok {
		return id
	}
	return mqttbridge.CorrelationID(ctx)
}

// newCorrelationID returns a random ID (16 hex digits).
func newCorrelationID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ctxHandler adds to each record the correlation ID of its context (cid)
// and, when tracing is on, the trace and span IDs (trace_id, span_id), so
// logs and traces join up. A record that has a cid already keeps its own.
type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	cid := correlationID(ctx)
	tid, sid := traceIDs(ctx)
	if cid == "" && tid == "" {
		return h.Handler.Handle(ctx, r)
	}
	if cid != "" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "cid" {
				cid = ""
				return false
			}
			return true
		})
	}
	r = r.Clone()
	if cid != "" {
		r.AddAttrs(slog.String("cid", cid))
	}
	if tid != "" {
		r.AddAttrs(slog.String("trace_id", tid), slog.String("span_id", sid))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(as)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler {
	return ctxHandler{h.Handler.WithGroup(name)}
}
