package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub/client"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrapeMetrics fetches GET /metrics and parses it with the Prometheus
// text parser.
func scrapeMetrics(t *testing.T, s *testServer) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url("/metrics"), nil)
	req.Header.Set("Accept", "text/plain") // the classic text format, not OpenMetrics
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("GET /metrics: %s", res.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// sample returns the sum of the values of family name's series whose
// labels include want (pairs); a histogram counts its samples.
func sample(mfs map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			ok := false
			for _, lp := range m.GetLabel() {
				ok = ok || (lp.GetName() == want[i] && lp.GetValue() == want[i+1])
			}
			if !ok {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

// TestServer_Metrics scrapes /metrics of the running server: the hub's,
// the MQTT bridge's and the process families exist, and move as readings
// flow and a dashboard connects.
func TestServer_Metrics(t *testing.T) {
	t.Parallel()
	s := startServer(t, nil)
	// Wait for the simulated devices' readings to reach the hub.
	eventually(t, 15*time.Second, "readings published", func() bool {
		v, _ := sample(scrapeMetrics(t, s), "rthub_mqtt_publishes_total", "route", "readings", "result", "ok")
		return v > 0
	})
	before := scrapeMetrics(t, s)
	for _, name := range []string{"rthub_connections", "rthub_rooms", "rthub_connections_accepted_total",
		"rthub_published_total", "rthub_delivered_total", "rthub_sent_bytes_total", "rthub_broadcast_latency_seconds",
		"rthub_handshakes_refused_total", "rthub_mqtt_connected", "rthub_mqtt_subscribed", "rthub_mqtt_received_total",
		"rthub_mqtt_messages_total", "process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := sample(before, name); !ok {
			t.Errorf("%s: not in /metrics", name)
		}
	}
	if v, _ := sample(before, "rthub_mqtt_subscribed"); v != 1 {
		t.Errorf("rthub_mqtt_subscribed = %v", v)
	}

	c := s.dial(t, "alice") // auto-joins staff: every reading reaches it
	readings := collect(c, SensorData.Name())
	for range 5 {
		readings.next(t, 10*time.Second, "a reading", nil)
	}
	// A refused handshake.
	_, err := client.Dial(t.Context(), "ws://"+s.addr+"/ws", client.Options{Token: "bad"})
	if err == nil {
		t.Fatal("a bad token connected")
	}
	after := scrapeMetrics(t, s)
	for _, m := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"rthub_connections_accepted_total", nil, 1},
		{"rthub_published_total", nil, 5},
		{"rthub_delivered_total", nil, 5},
		{"rthub_frames_sent_total", nil, 5},
		{"rthub_sent_bytes_total", nil, 100},
		{"rthub_broadcast_latency_seconds", nil, 1}, // publications riding on a write in progress are not observed
		{"rthub_mqtt_received_total", []string{"route", "readings"}, 5},
		{"rthub_mqtt_messages_total", []string{"route", "readings", "outcome", "sent"}, 5},
		{"rthub_handshakes_refused_total", []string{"reason", "unauthorized"}, 1},
		{"rthub_refusals_total", []string{"op", "handshake", "status", "401"}, 1},
	} {
		b, _ := sample(before, m.name, m.labels...)
		a, ok := sample(after, m.name, m.labels...)
		if !ok || a-b < m.min {
			t.Errorf("%s%v: %v → %v (present %v), want +%v", m.name, m.labels, b, a, ok, m.min)
		}
	}
	if v, _ := sample(after, "rthub_connections"); v != 1 {
		t.Errorf("rthub_connections = %v, want 1", v)
	}
}

var simCID = regexp.MustCompile(`^dev-\d\d\.[0-9a-f]{4}\.\d+$`)

// TestServer_CorrelationIDs: a reading's correlation ID (set by the
// simulated device as an MQTT 5 user property) reaches the client as the
// event's cid and is in the server's log lines for it; an HTTP publish's
// X-Correlation-ID too.
func TestServer_CorrelationIDs(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	s := startServerWith(t, map[string]string{"LOG_LEVEL": "debug"}, func(c *Config) { c.logTo = logs })
	c := s.dial(t, "alice")
	readings := collect(c, SensorData.Name())
	ev := readings.next(t, 10*time.Second, "a reading", nil)
	if !simCID.MatchString(ev.CID) {
		t.Fatalf("reading cid %q, want device.run.seq", ev.CID)
	}
	// The bridge's decode (ingest) and the hub's publish logged it.
	eventually(t, 5*time.Second, "the reading's log lines", func() bool {
		l := logs.String()
		return strings.Contains(l, `msg="ingest: reading"`) && logHas(l, "ingest: reading", "cid="+ev.CID) &&
			logHas(l, "rthub: publish", "cid="+ev.CID)
	})

	announcements := collect(c, "announcement")
	req, _ := http.NewRequestWithContext(t.Context(), "POST", s.url("/api/publish"),
		strings.NewReader(`{"room":"staff","event":"announcement","data":{"text":"fire drill at 3"}}`))
	req.Header.Set("Authorization", "Bearer "+s.token(t, "admin"))
	req.Header.Set("X-Correlation-ID", "ops-ticket-4711")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted || res.Header.Get("X-Correlation-ID") != "ops-ticket-4711" {
		t.Fatalf("POST /api/publish: %s, X-Correlation-ID %q", res.Status, res.Header.Get("X-Correlation-ID"))
	}
	got := announcements.next(t, 5*time.Second, "the announcement", nil)
	if got.CID != "ops-ticket-4711" {
		t.Errorf("announcement cid %q", got.CID)
	}
	eventually(t, 5*time.Second, "the publish's log line", func() bool {
		return logHas(logs.String(), "api: published", "cid=ops-ticket-4711")
	})
	// Staff may not publish.
	if code := s.do(t, "POST", "/api/publish", s.token(t, "alice"), map[string]any{"room": "staff", "event": "x"}, nil); code != http.StatusForbidden {
		t.Errorf("staff publish: %d, want 403", code)
	}
}

// logHas reports whether a line of logs has msg and contains field.
func logHas(logs, msg, field string) bool {
	for line := range strings.SplitSeq(logs, "\n") {
		if strings.Contains(line, `msg="`+msg+`"`) && strings.Contains(line, field) {
			return true
		}
	}
	return false
}

// span is the part of a stdouttrace JSON line the tests read.
type span struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
}

func (s span) attr(k string) any {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value.Value
		}
	}
	return nil
}

func spans(out string) []span {
	var ss []span
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if b := sc.Bytes(); bytes.HasPrefix(b, []byte(`{"Name"`)) {
			var s span
			if json.Unmarshal(b, &s) == nil {
				ss = append(ss, s)
			}
		}
	}
	return ss
}

// TestServer_Tracing: with OTEL_TRACES_EXPORTER=stdout, one reading is one
// trace: the device's sensor.publish, the bridge's mqtt.ingest and the
// hub's rthub.publish (with its broker call) under it, the correlation ID
// on each; an HTTP publish continues its caller's trace; a WebSocket
// handshake is a span with its status.
func TestServer_Tracing(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"OTEL_TRACES_EXPORTER": "stdout", "SIM_DEVICES": "1"})
	s.dial(t, "alice")
	var sensor, ingest, publish, brokerPub span
	eventually(t, 15*time.Second, "a reading's whole trace", func() bool {
		all := spans(s.out.String())
		byID := map[string]span{}
		for _, sp := range all {
			byID[sp.SpanContext.SpanID] = sp
		}
		for _, sp := range all {
			if sp.Name != "rthub.broker.publish" {
				continue
			}
			p, ok := byID[sp.Parent.SpanID]
			if !ok || p.Name != "rthub.publish" || p.attr("rthub.event") != SensorData.Name() {
				continue
			}
			root, ok := byID[p.Parent.SpanID]
			if !ok || root.Name != "sensor.publish" {
				continue
			}
			for _, in := range all {
				if in.Name == "mqtt.ingest" && in.Parent.SpanID == root.SpanContext.SpanID {
					sensor, ingest, publish, brokerPub = root, in, p, sp
					return true
				}
			}
		}
		return false
	})
	cid, _ := sensor.attr("rthub.cid").(string)
	if !simCID.MatchString(cid) || ingest.attr("rthub.cid") != cid || publish.attr("rthub.cid") != cid {
		t.Errorf("cids: sensor %q, ingest %v, publish %v", cid, ingest.attr("rthub.cid"), publish.attr("rthub.cid"))
	}
	for _, sp := range []span{ingest, publish, brokerPub} {
		if sp.SpanContext.TraceID != sensor.SpanContext.TraceID {
			t.Errorf("%s in trace %s, want %s", sp.Name, sp.SpanContext.TraceID, sensor.SpanContext.TraceID)
		}
	}
	// An HTTP publish continues the caller's trace (W3C traceparent).
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequestWithContext(t.Context(), "POST", s.url("/api/publish"),
		strings.NewReader(`{"room":"staff","event":"announcement","data":1}`))
	req.Header.Set("Authorization", "Bearer "+s.token(t, "admin"))
	req.Header.Set("Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	eventually(t, 5*time.Second, "the HTTP publish's spans", func() bool {
		var httpSpan string
		for _, sp := range spans(s.out.String()) {
			if sp.Name == "POST /api/publish" && sp.SpanContext.TraceID == callerTrace && sp.Parent.SpanID == callerSpan {
				httpSpan = sp.SpanContext.SpanID
			}
		}
		for _, sp := range spans(s.out.String()) {
			if httpSpan != "" && sp.Name == "rthub.publish" && sp.Parent.SpanID == httpSpan {
				return true
			}
		}
		return false
	})
	var handshake bool
	for _, sp := range spans(s.out.String()) {
		if sp.Name == "rthub.handshake" && sp.attr("http.response.status_code") == float64(101) {
			handshake = true
		}
	}
	if !handshake {
		t.Error("no rthub.handshake span with status 101")
	}
}

// TestCtxHandler: a line logged with a context carrying a correlation ID
// gets a cid field, once.
func TestCtxHandler(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	log := slog.New(ctxHandler{slog.NewTextHandler(&b, nil)}).With("component", "test")
	ctx := withCorrelationID(context.Background(), "abc-1")
	log.InfoContext(ctx, "one")
	log.InfoContext(ctx, "two", "cid", "own")
	log.Info("three")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "cid=abc-1") || strings.Count(lines[1], "cid=") != 1 ||
		!strings.Contains(lines[1], "cid=own") || strings.Contains(lines[2], "cid=") {
		t.Errorf("logs:\n%s", b.String())
	}
}
