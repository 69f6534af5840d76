package otelrthub_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/otelrthub"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

var secret = []byte("otelrthub-test-secret-0123456789abcdef")

func token(t testing.TB, sub string, roles ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "roles": roles, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// recordingOptions returns wrapper options whose spans rec records.
func recordingOptions(t testing.TB) (otelrthub.Options, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return otelrthub.Options{TracerProvider: tp}, rec
}

// staffHub starts a hub on broker b (staff auto-join "staff") served by
// handler(hub), and returns it with its WebSocket URL.
func staffHub(t testing.TB, b rthub.Broker, onRefused func(context.Context, rthub.Refusal), handler func(*rthub.Hub) http.Handler) (*rthub.Hub, string) {
	t.Helper()
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"staff"}, AutoJoin: []string{"staff"}},
		}},
		Broker:    b,
		OnRefused: onRefused,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler(hub))
	t.Cleanup(func() { hub.Close(); srv.Close() })
	return hub, "ws" + strings.TrimPrefix(srv.URL, "http")
}

func plainHandler(h *rthub.Hub) http.Handler { return h }

// tracedHub starts a hub with every wrapper, recording spans.
func tracedHub(t testing.TB) (*rthub.Hub, rthub.Publisher, string, *tracetest.SpanRecorder) {
	t.Helper()
	opts, rec := recordingOptions(t)
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hub, url := staffHub(t, otelrthub.WrapBroker(mb, opts), otelrthub.OnRefused(nil),
		func(h *rthub.Hub) http.Handler { return otelrthub.Handler(h, opts) })
	pub := otelrthub.WrapPublisher(hub, otelrthub.PublishOptions{Options: opts,
		CorrelationID: func(ctx context.Context) string { id, _ := ctx.Value(cidKey{}).(string); return id }})
	return hub, pub, url, rec
}

type cidKey struct{}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// ticks connects a staff client to url (closed when the test ends) and
// returns the "tick" events it gets.
func ticks(ctx context.Context, t *testing.T, url string) chan client.Event {
	t.Helper()
	c, err := client.Dial(ctx, url, client.Options{Token: token(t, "ann", "staff")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan client.Event, 4)
	c.On("tick", func(e client.Event) { ch <- e })
	return ch
}

// childNamed returns the ended span called name whose parent is parent; it
// fails the test if there is none.
func childNamed(t *testing.T, rec *tracetest.SpanRecorder, name string, parent trace.SpanContext) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spansNamed(rec, name) {
		if s.Parent().SpanID() == parent.SpanID() {
			return s
		}
	}
	t.Fatalf("no %s span under span %v", name, parent.SpanID())
	return nil
}

func TestHandler_handshakeSpans(t *testing.T) {
	t.Parallel()
	_, _, wsURL, rec := tracedHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, wsURL, client.Options{Token: token(t, "ann", "staff")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = client.Dial(ctx, wsURL, client.Options{Token: "bad"})
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
		t.Fatalf("bad token: %v", err)
	}
	spans := spansNamed(rec, "rthub.handshake")
	if len(spans) != 2 {
		t.Fatalf("%d handshake spans, want 2", len(spans))
	}
	byStatus := map[int64]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.SpanKind() != trace.SpanKindServer {
			t.Errorf("handshake span kind %v", s.SpanKind())
		}
		v, _ := attr(s, "http.response.status_code")
		byStatus[v.AsInt64()] = s
	}
	ok, refused := byStatus[101], byStatus[401]
	if ok == nil || refused == nil {
		t.Fatalf("statuses %v, want 101 and 401", byStatus)
	}
	if ok.Status().Code == codes.Error {
		t.Errorf("accepted handshake is an error: %v", ok.Status())
	}
	if refused.Status().Code != codes.Error || !strings.Contains(refused.Status().Description, "token_") {
		t.Errorf("refused handshake status %+v, want an error with the code", refused.Status())
	}
	if evs := refused.Events(); len(evs) != 1 || evs[0].Name != "rthub.refused" {
		t.Errorf("refused handshake events %v", evs)
	}
}

func TestWrapPublisher_spansAndBroker(t *testing.T) {
	t.Parallel()
	_, pub, wsURL, rec := tracedHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := ticks(ctx, t, wsURL)
	pctx := context.WithValue(ctx, cidKey{}, "reading-42")
	if err := pub.Publish(pctx, "staff", "tick", 1, rthub.WithCorrelationID("reading-42")); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.CID != "reading-42" {
			t.Errorf("client got cid %q", e.CID)
		}
	case <-ctx.Done():
		t.Fatal("no event")
	}
	if err := pub.Publish(ctx, "bad room!", "tick", 1); err == nil {
		t.Fatal("publish to a bad room succeeded")
	}
	ps := spansNamed(rec, "rthub.publish")
	if len(ps) != 2 {
		t.Fatalf("%d publish spans, want 2", len(ps))
	}
	p := ps[0]
	if v, _ := attr(p, "rthub.cid"); v.AsString() != "reading-42" {
		t.Errorf("rthub.cid = %q", v.AsString())
	}
	if v, _ := attr(p, "rthub.room"); v.AsString() != "staff" {
		t.Errorf("rthub.room = %q", v.AsString())
	}
	if ps[1].Status().Code != codes.Error {
		t.Errorf("failed publish status %v", ps[1].Status())
	}
	child := childNamed(t, rec, "rthub.broker.publish", p.SpanContext())
	if v, ok := attr(child, "rthub.offset"); !ok || v.AsInt64() < 1 {
		t.Errorf("broker span offset %v", v)
	}
	if len(spansNamed(rec, "rthub.broker.subscribe")) == 0 {
		t.Error("no broker subscribe span (the auto-join subscribes staff)")
	}
}

// presenceBroker is a Broker that is also a PresenceStore.
type presenceBroker struct {
	rthub.Broker
	rthub.PresenceStore
}

func TestWrapBroker_keepsPresenceStore(t *testing.T) {
	t.Parallel()
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := otelrthub.WrapBroker(mb, otelrthub.Options{}).(rthub.PresenceStore); ok != isPresence(mb) {
		t.Errorf("memory broker: PresenceStore %v after wrapping, %v before", ok, isPresence(mb))
	}
	var pb rthub.Broker = presenceBroker{Broker: mb}
	if _, ok := otelrthub.WrapBroker(pb, otelrthub.Options{}).(rthub.PresenceStore); !ok {
		t.Error("a PresenceStore broker lost PresenceStore when wrapped")
	}
}

func isPresence(b rthub.Broker) bool { _, ok := b.(rthub.PresenceStore); return ok }

// An IdempotencyStore stays reachable (rthub.BrokerAs) when wrapped, keeping the other optional
// interfaces as they were.
func TestWrapBroker_keepsIdempotencyStore(t *testing.T) {
	t.Parallel()
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	isIdem := func(b rthub.Broker) bool { _, ok := rthub.BrokerAs[rthub.IdempotencyStore](b); return ok }
	isState := func(b rthub.Broker) bool { _, ok := rthub.BrokerAs[rthub.StateBroker](b); return ok }
	type idemBroker struct {
		rthub.Broker
		rthub.IdempotencyStore
	}
	for name, b := range map[string]rthub.Broker{
		"memory": mb,
		"idem":   idemBroker{Broker: mb},
		"idem+presence": struct {
			presenceBroker
			rthub.IdempotencyStore
		}{presenceBroker{Broker: mb}, nil},
		"idem+state": struct {
			*rthub.MemoryBroker
			rthub.IdempotencyStore
		}{mb, nil},
		"idem+presence+state": struct {
			*rthub.MemoryBroker
			rthub.PresenceStore
			rthub.IdempotencyStore
		}{mb, nil, nil},
	} {
		w := otelrthub.WrapBroker(b, otelrthub.Options{})
		if isIdem(w) != isIdem(b) || isPresence(w) != isPresence(b) || isState(w) != isState(b) {
			t.Errorf("%s: after wrapping IdempotencyStore %v (was %v), PresenceStore %v (%v), StateBroker %v (%v)",
				name, isIdem(w), isIdem(b), isPresence(w), isPresence(b), isState(w), isState(b))
		}
	}
}

// A StateBroker stays reachable (rthub.BrokerAs) when wrapped (with or without PresenceStore), and
// its State answers through the wrapper.
func TestWrapBroker_keepsStateBroker(t *testing.T) {
	t.Parallel()
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{State: rthub.StatePolicy{Rules: []rthub.StateRule{{Pattern: "device:**"}}}})
	if err != nil {
		t.Fatal(err)
	}
	type stateBroker interface {
		rthub.Broker
		rthub.StateBroker
	}
	for name, b := range map[string]rthub.Broker{
		"memory": mb,
		"presence": struct {
			stateBroker
			rthub.PresenceStore
		}{mb, presenceBroker{Broker: mb}},
	} {
		w := otelrthub.WrapBroker(b, otelrthub.Options{})
		sb, ok := rthub.BrokerAs[rthub.StateBroker](w)
		if !ok || isPresence(w) != isPresence(b) {
			t.Fatalf("%s: StateBroker %v, PresenceStore %v after wrapping", name, ok, isPresence(w))
		}
		if _, err := w.Publish(t.Context(), "device:1", rthub.Message{Data: []byte(`{}`), Key: "k"}); err != nil {
			t.Fatal(err)
		}
		if st, _, err := sb.State(t.Context(), "device:1"); err != nil || len(st) != 1 || st[0].Key != "k" {
			t.Fatalf("%s: State through the wrapper: %v %v", name, st, err)
		}
	}
}

// TestWrapBroker_acrossNodes: three hubs on one in-memory cluster. A
// publication on node A under a span reaches node B (wrapped) as a
// "rthub.broker.deliver" span in the same trace, child of A's broker publish
// span; node C (not wrapped) ignores the trace context in the Header; clients on both get
// the event as published, and a resume from history too.
func TestWrapBroker_acrossNodes(t *testing.T) {
	t.Parallel()
	opts, rec := recordingOptions(t)
	first, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node := func(b rthub.Broker) (*rthub.Hub, string) { return staffHub(t, b, nil, plainHandler) }
	hubA, _ := node(otelrthub.WrapBroker(first, opts))
	_, urlB := node(otelrthub.WrapBroker(first.Peer(), opts))
	_, urlC := node(first.Peer()) // not wrapped
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[string]chan client.Event{}
	for name, url := range map[string]string{"B": urlB, "C": urlC} {
		got[name] = ticks(ctx, t, url)
	}

	pctx, parent := opts.TracerProvider.Tracer("test").Start(ctx, "ingest")
	if err := hubA.Publish(pctx, "staff", "tick", map[string]int{"n": 7}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	for name, ch := range got {
		select {
		case e := <-ch:
			if string(e.Data) != `{"n":7}` {
				t.Errorf("node %s: client got %s", name, e.Data)
			}
		case <-ctx.Done():
			t.Fatalf("node %s: no event", name)
		}
	}
	pubSpan := childNamed(t, rec, "rthub.broker.publish", parent.SpanContext())
	// Node A's own delivery and node B's: each a child of the publish span.
	deliveries := 0
	for _, s := range spansNamed(rec, "rthub.broker.deliver") {
		if s.SpanContext().TraceID() != parent.SpanContext().TraceID() || s.Parent().SpanID() != pubSpan.SpanContext().SpanID() {
			t.Errorf("deliver span %v, parent %v; want a child of %v", s.SpanContext().SpanID(), s.Parent().SpanID(), pubSpan.SpanContext().SpanID())
			continue
		}
		if !s.Parent().IsRemote() || s.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("deliver span: remote parent %v, kind %v", s.Parent().IsRemote(), s.SpanKind())
		}
		if v, _ := attr(s, "rthub.room"); v.AsString() != "staff" {
			t.Errorf("deliver span room %q", v.AsString())
		}
		deliveries++
	}
	if deliveries != 1 {
		t.Errorf("%d deliver spans, want 1 (node B; node A has no member in the room, C is not wrapped)", deliveries)
	}

	// History (what a resume reads) returns the publication as published:
	// the data as clients get it, the trace context in the Header.
	wrapped := otelrthub.WrapBroker(first, opts)
	_, cur, err := wrapped.History(ctx, "staff", rthub.StreamPosition{}, -1)
	if err != nil {
		t.Fatal(err)
	}
	since := rthub.StreamPosition{Offset: cur.Offset - 1, Epoch: cur.Epoch}
	for name, b := range map[string]rthub.Broker{"through the wrapper": wrapped, "stored": first} {
		pubs, _, err := b.History(ctx, "staff", since, -1)
		if err != nil || len(pubs) != 1 || !json.Valid(pubs[0].Data) {
			t.Fatalf("history %s: %v, %+v", name, err, pubs)
		}
		tp := pubs[0].Header["traceparent"]
		if want := pubSpan.SpanContext().TraceID().String(); !strings.Contains(tp, want) || len(pubs[0].Header) != 1 {
			t.Errorf("history %s: Header %q, want a traceparent of trace %s", name, pubs[0].Header, want)
		}
	}
}

// TestWrapBroker_header: the traceparent of the broker publish span is added
// to a copy of the message's Header (the caller's map is left alone, an
// entry there is replaced), and only when that span is sampled.
func TestWrapBroker_header(t *testing.T) {
	t.Parallel()
	opts, _ := recordingOptions(t)
	mb, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := otelrthub.WrapBroker(mb, opts)
	ctx := context.Background()
	sctx, span := opts.TracerProvider.Tracer("test").Start(ctx, "ingest")
	defer span.End()
	unsampled := trace.ContextWithSpanContext(ctx, span.SpanContext().WithTraceFlags(0))
	own := map[string]string{"a": "1", "traceparent": "stale"}
	for _, tt := range []struct {
		name string
		ctx  context.Context
		in   map[string]string
		want map[string]string
	}{
		{"noParent", ctx, nil, map[string]string{"traceparent": "00-"}}, // the broker span starts a sampled trace
		{"unsampled", unsampled, own, own},
		{"sampled", sctx, nil, map[string]string{"traceparent": "00-" + span.SpanContext().TraceID().String()}},
		{"sampledWithHeader", sctx, own, map[string]string{"a": "1", "traceparent": "00-" + span.SpanContext().TraceID().String()}},
	} {
		pos, err := b.Publish(tt.ctx, "room:"+tt.name, rthub.Message{Data: []byte("{}"), Header: tt.in})
		if err != nil {
			t.Fatal(err)
		}
		pubs, _, err := mb.History(ctx, "room:"+tt.name, rthub.StreamPosition{Epoch: pos.Epoch}, -1)
		if err != nil || len(pubs) != 1 {
			t.Fatalf("%s: history %+v, %v", tt.name, pubs, err)
		}
		got := pubs[0].Header
		if len(got) != len(tt.want) {
			t.Errorf("%s: Header %q, want %q", tt.name, got, tt.want)
		}
		for k, v := range tt.want {
			if !strings.HasPrefix(got[k], v) {
				t.Errorf("%s: Header[%q] = %q, want %q...", tt.name, k, got[k], v)
			}
		}
	}
	if len(own) != 2 || own["traceparent"] != "stale" {
		t.Errorf("the caller's Header changed: %q", own)
	}
}

// TestWrapPublisher_typedEvent: a typed event published through the
// wrapper (Event.Publish takes an rthub.Publisher) gets its span, and
// clients get it as through the hub.
func TestWrapPublisher_typedEvent(t *testing.T) {
	t.Parallel()
	_, pub, wsURL, rec := tracedHub(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := ticks(ctx, t, wsURL)
	if err := tickEvent.Publish(ctx, pub, "staff", tick{N: 3}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if string(e.Data) != `{"n":3}` {
			t.Errorf("client got %s", e.Data)
		}
	case <-ctx.Done():
		t.Fatal("no event")
	}
	ps := spansNamed(rec, "rthub.publish")
	if len(ps) != 1 {
		t.Fatalf("%d publish spans, want 1", len(ps))
	}
	if v, _ := attr(ps[0], "rthub.event"); v.AsString() != "tick" {
		t.Errorf("rthub.event = %q", v.AsString())
	}
	childNamed(t, rec, "rthub.broker.publish", ps[0].SpanContext())
}

type tick struct {
	N int `json:"n"`
}

var tickEvent = rthub.NewEvent[tick]("tick")

// A ControlBroker stays reachable (rthub.BrokerAs) when wrapped, whatever else it is, so control
// calls still reach every node: a revocation made on one wrapped node is
// kept by the other.
func TestWrapBroker_keepsControlBroker(t *testing.T) {
	t.Parallel()
	first, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	type controlBroker interface {
		rthub.Broker
		rthub.ControlBroker
	}
	for name, b := range map[string]rthub.Broker{
		"memory (state, control)": first,
		"presence and control": struct {
			controlBroker
			rthub.PresenceStore
		}{first, presenceBroker{Broker: first}},
		"control only": struct{ controlBroker }{first},
	} {
		if _, ok := rthub.BrokerAs[rthub.ControlBroker](otelrthub.WrapBroker(b, otelrthub.Options{})); !ok {
			t.Errorf("%s: ControlBroker lost when wrapped", name)
		}
	}
	hubA, _ := staffHub(t, otelrthub.WrapBroker(first, otelrthub.Options{}), nil, plainHandler)
	hubB, _ := staffHub(t, otelrthub.WrapBroker(first.Peer(), otelrthub.Options{}), nil, plainHandler)
	res, err := hubA.Revoke(t.Context(), rthub.Revocation{Subject: "mallory"})
	if err != nil || res.Nodes != 2 {
		t.Fatalf("Revoke through wrapped brokers = %+v, %v; want 2 nodes", res, err)
	}
	if n := hubB.Stats().RevocationsKept; n != 1 {
		t.Errorf("the other node keeps %d revocations, want 1", n)
	}
}
