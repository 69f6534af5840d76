package otelrthub

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/org/rthub"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Handler returns next (the hub) wrapped so that each request is a server
// span named "rthub.handshake", with http.request.method, url.path,
// client.address, user_agent.original and http.response.status_code: 101
// when the connection was upgraded, else the refusal's status. Install
// [OnRefused] in the hub's Options too: it adds the refusal's code (and
// the user, when the token was valid) and marks the span as an error. A
// browser refused in band (upgraded, then closed with 4001/4002) gets the
// 401 its refusal says.
//
// The span ends when the handshake is done; the connection's life is not
// part of it. An upgrade that fails after the hijack (rare: a write error)
// is reported as 101.
func Handler(next http.Handler, opts Options) http.Handler {
	tr := opts.tracer()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, span := tr.Start(r.Context(), "rthub.handshake", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", r.Method),
				attribute.String("url.path", r.URL.Path),
				attribute.String("client.address", clientAddr(r.RemoteAddr)),
				attribute.String("user_agent.original", r.UserAgent()),
			))
		st := &handshake{}
		rw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(rw, r.WithContext(context.WithValue(ctx, handshakeKey{}, st)))
		st.mu.Lock()
		status, code := st.status, st.code
		st.mu.Unlock()
		if status == 0 {
			status = rw.status
		}
		if status == 0 {
			status = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if code != "" || status >= 400 {
			span.SetStatus(codes.Error, strconv.Itoa(status)+" "+code)
		}
		span.End()
	})
}

type handshakeKey struct{}

// handshake is what OnRefused tells Handler about its request.
type handshake struct {
	mu     sync.Mutex
	status int
	code   string
}

// OnRefused returns an rthub Options.OnRefused hook that records each
// refusal on the span of ctx, if it has one: an event "rthub.refused" with
// the op, code, room and event, and for a handshake the status and code
// Handler reports. Then it calls next (which may be nil). Refusals of
// established connections (joins, emits) happen outside any request; their
// ctx has no span, so only next sees them.
func OnRefused(next func(context.Context, rthub.Refusal)) func(context.Context, rthub.Refusal) {
	return func(ctx context.Context, r rthub.Refusal) {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			attrs := []attribute.KeyValue{attribute.String("rthub.refusal.op", r.Op), attribute.String("rthub.refusal.code", r.Code)}
			if r.Room != "" {
				attrs = append(attrs, attribute.String("rthub.room", r.Room))
			}
			if r.Event != "" {
				attrs = append(attrs, attribute.String("rthub.event", r.Event))
			}
			if r.Subject != "" {
				attrs = append(attrs, attribute.String("enduser.id", r.Subject))
				span.SetAttributes(attribute.String("enduser.id", r.Subject))
			}
			span.AddEvent("rthub.refused", trace.WithAttributes(attrs...))
		}
		if st, ok := ctx.Value(handshakeKey{}).(*handshake); ok && r.Op == "handshake" {
			st.mu.Lock()
			st.status, st.code = r.Status, r.Code
			st.mu.Unlock()
		}
		if next != nil {
			next(ctx, r)
		}
	}
}

// statusWriter records the status written, and 101 on a hijack (the hub
// upgrades through http.NewResponseController, which finds Hijack here).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, rw, err
}

func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func clientAddr(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}
