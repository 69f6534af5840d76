package promrthub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/promrthub"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var secret = []byte("promrthub-test-secret-0123456789abcdef")

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

// fakeSources are the broker, control plane and bridge stats a test
// collector reads.
func fakeSources(opts *promrthub.Options) {
	opts.Broker = func() []promrthub.BrokerShard {
		return []promrthub.BrokerShard{{Name: "s0", Connected: true, ProbeRTT: 3 * time.Millisecond,
			LastProbe: time.Unix(1_700_000_000, 0), Rooms: 2, Resubscribes: 1, Published: 10, Delivered: 9}}
	}
	opts.BrokerControl = func() promrthub.BrokerControl {
		return promrthub.BrokerControl{Live: true, Dropped: 2, Resyncs: 3}
	}
	opts.Bridge = func() promrthub.BridgeStats {
		return promrthub.BridgeStats{Connected: true, Subscribed: true, Connects: 2, Received: 12, InvalidTopic: 3,
			Routes: []promrthub.BridgeRoute{{Name: "readings", Received: 10, Sent: 8, Published: 16, DecodeErrors: 1, InvalidTopic: 1, Queued: 1, QueuedBytes: 300, QueueHighWater: 4}}}
	}
}

// testServer starts a hub with the collector's hooks behind an httptest
// server, and a /metrics server for a registry holding the collector.
func testServer(t *testing.T, mod func(*promrthub.Options)) (hub *rthub.Hub, wsURL, metricsURL string) {
	t.Helper()
	var copts promrthub.Options
	if mod != nil {
		mod(&copts)
	}
	col := promrthub.New(copts)
	var refusedNext atomic.Int32
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"staff", "device:*"}, AutoJoin: []string{"staff"}},
		}},
		OnRefused:    col.OnRefused(func(context.Context, rthub.Refusal) { refusedNext.Add(1) }),
		OnDisconnect: col.OnDisconnect(nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	col.SetHub(hub)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(col)
	hs := httptest.NewServer(hub)
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.PanicOnError}))
	t.Cleanup(func() {
		ms.Close()
		hub.Close()
		hs.Close()
		if refusedNext.Load() == 0 {
			t.Error("OnRefused did not call next")
		}
	})
	return hub, "ws" + strings.TrimPrefix(hs.URL, "http"), ms.URL
}

// scrape fetches url and parses it with the Prometheus text parser.
func scrape(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return mfs
}

// value returns the value of the series of family name whose labels
// include want (name=value pairs), and whether there is one. A histogram's
// value is its sample count.
func value(mfs map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCollector_realTraffic drives a real hub with real WebSocket clients
// and checks, through the text parser, that the series exist and move.
func TestCollector_realTraffic(t *testing.T) {
	t.Parallel()
	hub, wsURL, metricsURL := testServer(t, func(o *promrthub.Options) { o.Node = "n1"; fakeSources(o) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	before := scrape(t, metricsURL)
	for _, name := range []string{"rthub_connections", "rthub_connections_accepted_total", "rthub_published_total", "rthub_broadcast_latency_seconds"} {
		if _, ok := value(before, name, "node", "n1"); !ok {
			t.Fatalf("%s missing before traffic", name)
		}
	}

	const clients, events = 3, 20
	var got atomic.Int64
	var cs []*client.Client
	for i := range clients {
		c, err := client.Dial(ctx, wsURL, client.Options{Token: token(t, "u"+string(rune('a'+i)), "staff")})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.On("tick", func(client.Event) { got.Add(1) })
		cs = append(cs, c)
	}
	// A refused token (401), a forbidden join.
	_, err := client.Dial(ctx, wsURL, client.Options{Token: "not-a-token"})
	var he *client.HandshakeError
	if !errors.As(err, &he) || he.Status != 401 {
		t.Fatalf("Dial with a bad token: %v, want a 401 HandshakeError", err)
	}
	if err := cs[0].Join(ctx, "admin"); !errors.Is(err, rthub.ErrForbidden) {
		t.Fatalf("Join(admin) = %v, want ErrForbidden", err)
	}
	for i := range events {
		if err := hub.Publish(ctx, "staff", "tick", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every event at every client", func() bool { return got.Load() == clients*events })
	if err := cs[2].Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the disconnect", func() bool { return hub.Stats().Connections == clients-1 })

	after := scrape(t, metricsURL)
	moved := []struct {
		name   string
		labels []string
		min    float64
	}{
		{"rthub_connections_accepted_total", nil, clients},
		{"rthub_published_total", nil, events},
		{"rthub_delivered_total", nil, clients * events},
		{"rthub_events_total", []string{"event", "tick", "outcome", "published"}, events},
		{"rthub_events_total", []string{"event", "tick", "outcome", "delivered"}, clients * events},
		{"rthub_frames_sent_total", nil, clients * events},
		{"rthub_socket_writes_total", nil, 1},
		{"rthub_sent_bytes_total", nil, clients * events * 20},
		{"rthub_received_messages_total", nil, 1},
		{"rthub_forbidden_total", nil, 1},
		{"rthub_broadcast_latency_seconds", nil, 1},
		{"rthub_handshakes_refused_total", []string{"reason", "unauthorized"}, 1},
		{"rthub_refusals_total", []string{"op", "handshake", "status", "401"}, 1},
		{"rthub_refusals_total", []string{"op", "join", "code", "forbidden", "status", ""}, 1},
		{"rthub_disconnects_total", []string{"code", "1000"}, 1},
	}
	for _, m := range moved {
		b, _ := value(before, m.name, m.labels...)
		a, ok := value(after, m.name, m.labels...)
		if !ok {
			t.Errorf("%s%v: no series after traffic", m.name, m.labels)
			continue
		}
		if a-b < m.min {
			t.Errorf("%s%v moved from %v to %v, want +%v or more", m.name, m.labels, b, a, m.min)
		}
	}
	if v, _ := value(after, "rthub_connections"); v != clients-1 {
		t.Errorf("rthub_connections = %v, want %d", v, clients-1)
	}
	if v, _ := value(after, "rthub_rooms"); v != 1 {
		t.Errorf("rthub_rooms = %v, want 1", v)
	}
	// The histogram has the hub's buckets and a sum.
	h := after["rthub_broadcast_latency_seconds"].GetMetric()[0].GetHistogram()
	if len(h.GetBucket()) != 17 || h.GetSampleSum() <= 0 { // 16 bounds and +Inf
		t.Errorf("broadcast latency histogram: %d buckets, sum %v", len(h.GetBucket()), h.GetSampleSum())
	}
	// Every family of the catalog is in the scrape (the hooks fired, the
	// broker and bridge sources are set), with its HELP text.
	for _, m := range promrthub.Metrics() {
		if m.Source == "process" {
			continue // only where a limit exists
		}
		mf := after[m.Name]
		if mf == nil {
			t.Errorf("%s: not in the scrape", m.Name)
			continue
		}
		if mf.GetHelp() != m.Help {
			t.Errorf("%s: HELP %q, want %q", m.Name, mf.GetHelp(), m.Help)
		}
		if got := strings.ToLower(mf.GetType().String()); got != m.Type {
			t.Errorf("%s: TYPE %s, want %s", m.Name, got, m.Type)
		}
	}
	if v, _ := value(after, "rthub_mqtt_received_total", "route", ""); v != 2 {
		t.Errorf("unrouted MQTT messages = %v, want 2", v)
	}
	if v, _ := value(after, "rthub_mqtt_messages_total", "route", "", "outcome", "invalid_topic"); v != 2 {
		t.Errorf("unrouted invalid topics = %v, want 2", v)
	}
}

// TestCollector_noHub: before SetHub, only the hook and optional families
// are exported, and scraping works.
func TestCollector_noHub(t *testing.T) {
	t.Parallel()
	c := promrthub.New(promrthub.Options{MemoryLimit: 1 << 30})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d series without a hub, want 1 (rthub_memory_limit_bytes)", n)
	}
	if v := testutil.ToFloat64(c); v != 1<<30 {
		t.Errorf("rthub_memory_limit_bytes = %v", v)
	}
}

// statsFunc is a StatsSource for tests.
type statsFunc func() rthub.Stats

func (f statsFunc) Stats() rthub.Stats { return f() }

// TestCollector_lint runs promlint (the naming and HELP conventions) over
// every family the collector exports.
func TestCollector_lint(t *testing.T) {
	t.Parallel()
	opts := promrthub.Options{MemoryLimit: 1 << 30, Hub: statsFunc(func() rthub.Stats {
		return rthub.Stats{Connections: 1, BroadcastLatency: rthub.LatencyHistogram{
			Bounds: []time.Duration{time.Millisecond}, Counts: []uint64{1}, Count: 2, Sum: 3 * time.Millisecond}}
	})}
	fakeSources(&opts)
	c := promrthub.New(opts)
	c.OnRefused(nil)(context.Background(), rthub.Refusal{Op: "join", Code: "forbidden"})
	c.OnDisconnect(nil)(context.Background(), rthub.ConnInfo{}, rthub.CloseError{Code: 1001})
	if n := testutil.CollectAndCount(c); n < len(promrthub.Metrics()) {
		t.Errorf("%d series, want at least one per family (%d)", n, len(promrthub.Metrics()))
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestCollector_refusalCardinality: label sets past MaxRefusalSeries are
// folded into code="other".
func TestCollector_refusalCardinality(t *testing.T) {
	t.Parallel()
	c := promrthub.New(promrthub.Options{MaxRefusalSeries: 2, MemoryLimit: -1})
	on := c.OnRefused(nil)
	for _, code := range []string{"a", "b", "c", "d", "a"} {
		on(context.Background(), rthub.Refusal{Op: "join", Code: code})
	}
	if n := testutil.CollectAndCount(c, "rthub_refusals_total"); n != 3 {
		t.Errorf("%d refusal series, want 3 (a, b, other)", n)
	}
}

func TestCollector_disconnectCodes(t *testing.T) {
	t.Parallel()
	c := promrthub.New(promrthub.Options{MemoryLimit: -1})
	on := c.OnDisconnect(nil)
	on(context.Background(), rthub.ConnInfo{}, rthub.CloseError{Code: 4000})
	on(context.Background(), rthub.ConnInfo{}, errors.New("no close code"))
	want := `
# HELP rthub_disconnects_total ` + helpOf("rthub_disconnects_total") + `
# TYPE rthub_disconnects_total counter
rthub_disconnects_total{code="4000"} 1
rthub_disconnects_total{code="unknown"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "rthub_disconnects_total"); err != nil {
		t.Error(err)
	}
}

func helpOf(name string) string {
	for _, m := range promrthub.Metrics() {
		if m.Name == name {
			return m.Help
		}
	}
	return ""
}

// TestCollector_brokerControl: Options.BrokerControl's fields are exported
// as the rthub_broker_control_* families, without a shard label.
func TestCollector_brokerControl(t *testing.T) {
	t.Parallel()
	ctl := promrthub.BrokerControl{Live: true, Dropped: 2, Resyncs: 3}
	c := promrthub.New(promrthub.Options{MemoryLimit: -1, Node: "n1", BrokerControl: func() promrthub.BrokerControl { return ctl }})
	want := func(live, dropped, resyncs int) string {
		return fmt.Sprintf(`
# HELP rthub_broker_control_dropped_total %s
# TYPE rthub_broker_control_dropped_total counter
rthub_broker_control_dropped_total{node="n1"} %d
# HELP rthub_broker_control_live %s
# TYPE rthub_broker_control_live gauge
rthub_broker_control_live{node="n1"} %d
# HELP rthub_broker_control_resyncs_total %s
# TYPE rthub_broker_control_resyncs_total counter
rthub_broker_control_resyncs_total{node="n1"} %d
`, helpOf("rthub_broker_control_dropped_total"), dropped, helpOf("rthub_broker_control_live"), live, helpOf("rthub_broker_control_resyncs_total"), resyncs)
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want(1, 2, 3))); err != nil {
		t.Error(err)
	}
	ctl = promrthub.BrokerControl{Resyncs: 4} // read on every scrape
	if err := testutil.CollectAndCompare(c, strings.NewReader(want(0, 0, 4))); err != nil {
		t.Error(err)
	}
}
