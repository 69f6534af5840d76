package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/examples/internal/hubhttp"
)

// TestMain lets the test binary serve as a child worker (-procs > 0).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-worker" {
		if err := workerMain(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		name string
		in   []float64
		q    float64
		want float64
	}{
		{"empty", nil, 0.5, 0},
		{"single", []float64{7}, 0.99, 7},
		{"p50", s, 0.5, 5},
		{"p90", s, 0.9, 9},
		{"p95", s, 0.95, 10},
		{"p99", s, 0.99, 10},
		{"p100", s, 1, 10},
		{"p10", s, 0.1, 1},
		{"tiny", s, 0.0001, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.in, tc.q); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
			}
		})
	}
}

func TestHistQuantile(t *testing.T) {
	t.Parallel()
	h := newHist()
	var raw []float64
	for i := 1; i <= 100000; i++ {
		v := float64(i) * 3.7 // µs
		raw = append(raw, v)
		h.RecordMicros(v)
	}
	sorted := sortedCopy(raw)
	for _, q := range []float64{0.5, 0.9, 0.95, 0.99, 0.999, 1} {
		want := Percentile(sorted, q)
		got := h.Quantile(q)
		if math.Abs(got-want)/want > 0.011 {
			t.Errorf("q%v = %v, want %v ± 1 %%", q, got, want)
		}
	}
	if h.Max != sorted[len(sorted)-1] || h.Min != sorted[0] || h.N != 100000 {
		t.Errorf("min %v max %v n %d", h.Min, h.Max, h.N)
	}
	// Merge and the JSON round trip keep every figure.
	b, err := h.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var h2 Hist
	if err := h2.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	m := newHist()
	m.Merge(&h2)
	m.Merge(newHist())
	if m.Summary() != h.Summary() {
		t.Errorf("after JSON and merge: %+v, want %+v", m.Summary(), h.Summary())
	}
	if e := newHist(); e.Quantile(0.99) != 0 || e.Mean() != 0 {
		t.Error("empty histogram not zero")
	}
}

func TestFit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		xs, ys       []float64
		slope, icept float64
	}{
		{"flat", []float64{0, 1, 2, 3}, []float64{5, 5, 5, 5}, 0, 5},
		{"line", []float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}, 2, 1},
		{"falling", []float64{10, 20, 30}, []float64{30, 20, 10}, -1, 40},
		{"noisy", []float64{0, 1, 2, 3}, []float64{0, 2, 1, 3}, 0.8, 0.3},
		{"oneX", []float64{4, 4}, []float64{1, 3}, 0, 2},
		{"empty", nil, nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, i := Fit(tc.xs, tc.ys)
			if math.Abs(s-tc.slope) > 1e-9 || math.Abs(i-tc.icept) > 1e-9 {
				t.Errorf("Fit = %v, %v; want %v, %v", s, i, tc.slope, tc.icept)
			}
		})
	}
}

func TestNiceTicks(t *testing.T) {
	t.Parallel()
	for _, tc := range [][2]float64{{0, 217}, {17, 18}, {0, 0}, {0.3, 0.7}, {0, 1e9}} {
		ts := niceTicks(tc[0], tc[1], 5)
		if len(ts) < 2 || ts[0] > tc[0] || ts[len(ts)-1] < tc[1] {
			t.Errorf("niceTicks(%v) = %v: does not cover the range", tc, ts)
		}
	}
}

// TestReport checks that the page is well-formed, self-contained and holds
// the charts, the verdicts and the soak fit.
func TestReport(t *testing.T) {
	t.Parallel()
	res := &Result{
		Config:   config{Scenario: "soak", URL: "ws://127.0.0.1:1/ws", Users: 25, Duration: time.Minute},
		Summary:  map[string]any{"delivery_pct": 100.0, "server_rss_end": uint64(10 << 20), "note": "<b>&"},
		Latency:  Summary{N: 3, P50: 1, P99: 2},
		Verdicts: []verdict{{"soak RSS flat", false, "slope <big>"}},
		SoakFit:  &[2]float64{1000, 10 << 20},
	}
	for i := range 10 {
		res.Series = append(res.Series, point{T: float64(i), Target: 25, Connected: 25, P50: 1, P95: 2, P99: 3, Max: 4, Received: uint64(i % 2)})
		res.Server = append(res.Server, serverPoint{T: float64(i), RSS: uint64(10<<20 + i*1000), Goroutines: 40})
	}
	page := renderHTML(res)
	d := xml.NewDecoder(strings.NewReader(page))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("HTML does not parse: %v", err)
		}
	}
	svgs := regexp.MustCompile(`(?s)<svg .*?</svg>`).FindAllString(page, -1)
	if len(svgs) != 5 {
		t.Fatalf("%d charts, want 5", len(svgs))
	}
	for _, s := range svgs {
		var v struct {
			XMLName   xml.Name
			Polylines []struct {
				Points string `xml:"points,attr"`
			} `xml:"polyline"`
		}
		if err := xml.Unmarshal([]byte(s), &v); err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, s)
		}
		if v.XMLName.Local != "svg" || len(v.Polylines) == 0 {
			t.Errorf("chart without lines: %.200s", s)
		}
	}
	for _, want := range []string{"FAIL", "RSS fit", "slope &lt;big&gt;", "&lt;b&gt;&amp;", "Broadcast latency", "Connections", "Server memory"} {
		if !strings.Contains(page, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") {
		t.Error("report has a script")
	}
	if strings.Contains(page, `src="http`) || strings.Contains(page, `href="http`) {
		t.Error("report loads something from the network")
	}
	if c := chart("empty", "x", "y", nil); !strings.Contains(c, "no data") {
		t.Errorf("empty chart: %s", c)
	}
}

func TestCheckTargets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url    string
		remote bool
		ok     bool
	}{
		{"ws://127.0.0.1:8080/ws", false, true},
		{"ws://localhost:8080/ws", false, true},
		{"ws://[::1]:8080/ws", false, true},
		{"ws://example.com/ws", false, false},
		{"ws://10.0.0.1/ws", false, false},
		{"wss://example.com/ws", true, true},
		{"http://127.0.0.1/ws", false, false},
	} {
		cfg := config{URL: tc.url, AllowRemote: tc.remote}
		if err := cfg.checkTargets(); (err == nil) != tc.ok {
			t.Errorf("%s remote=%v: err %v", tc.url, tc.remote, err)
		}
	}
}

const testSecret = "loadtest-test-secret-0123456789abcdef"

// testServer serves a hub with quickstart's /publish and /stats.
func testServer(t *testing.T) string {
	t.Helper()
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte(testSecret)}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"device:*"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("GET /stats", hubhttp.StatsHandler(hub, time.Now()))
	mux.Handle("POST /publish", hubhttp.Publish(hub, []byte(testSecret)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		hub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "ws://" + ln.Addr().String() + "/ws"
}

func TestEndToEnd(t *testing.T) {
	url := testServer(t)
	parse := func(args ...string) config {
		t.Helper()
		cfg, err := parseFlags(append([]string{"-url", url, "-secret", testSecret}, args...))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	t.Run("connectTwoChildren", func(t *testing.T) {
		cfg := parse("-scenario", "connect", "-users", "50", "-duration", "1s", "-procs", "2")
		res, err := run(t.Context(), cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Pass || res.Summary["attempts"] != 50 || res.Summary["failures"] != 0 {
			t.Fatalf("verdicts %+v summary %v errors %v", res.Verdicts, res.Summary, res.Errors)
		}
		if h := res.Handshake; h.N != 50 || h.P50 <= 0 || h.P99 < h.P50 || h.Max < h.P99 || h.Max > 30e3 {
			t.Errorf("handshake %+v", h)
		}
		if n, _ := res.Summary["peak_connected"].(int); n != 50 {
			t.Errorf("peak_connected %v, want 50", res.Summary["peak_connected"])
		}
		if b, _ := res.Summary["server_bytes_per_conn"].(float64); b <= 0 {
			t.Errorf("server_bytes_per_conn %v", res.Summary["server_bytes_per_conn"])
		}
	})
	t.Run("fanoutRawCompressed", func(t *testing.T) {
		// 2 KB events are over the hub's 1 KiB threshold: the raw client must inflate them.
		cfg := parse("-scenario", "fanout", "-compression", "-users", "10", "-rate", "20", "-payload", "2000", "-duration", "1s", "-procs", "0")
		res, err := run(t.Context(), cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := res.Summary["published"].(uint64)
		if d := res.Summary["delivery_pct"]; pub == 0 || d != 100.0 || res.Latency.N != pub*10 {
			t.Errorf("compressed raw fanout: delivery %v, latency samples %d of %d", d, res.Latency.N, pub*10)
		}
	})
	t.Run("fanoutGoClient", func(t *testing.T) {
		cfg := parse("-scenario", "fanout", "-client", "go", "-users", "10", "-rate", "20", "-duration", "1s", "-procs", "0")
		res, err := run(t.Context(), cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := res.Summary["published"].(uint64)
		if d := res.Summary["delivery_pct"]; pub == 0 || d != 100.0 || res.Latency.N != pub*10 {
			t.Errorf("Go client fanout: delivery %v, latency samples %d of %d", d, res.Latency.N, pub*10)
		}
	})
	t.Run("fanoutInProcess", func(t *testing.T) {
		dir := t.TempDir()
		cfg := parse("-scenario", "fanout", "-users", "20", "-rate", "20", "-duration", "2s", "-procs", "0", "-out", dir)
		res, err := run(t.Context(), cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeOutputs(dir, res); err != nil {
			t.Fatal(err)
		}
		pub, _ := res.Summary["published"].(uint64)
		if pub < 20 {
			t.Fatalf("published %d, want ≥ 20 (2 s at 20/s)", pub)
		}
		if d := res.Summary["delivery_pct"]; d != 100.0 || res.Summary["received"] != pub*20 {
			t.Errorf("delivery %v, received %v of %d", d, res.Summary["received"], pub*20)
		}
		if l := res.Latency; l.N != pub*20 || l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max || l.Max > 5000 {
			t.Errorf("latency %+v", l)
		}
		if !res.Pass {
			t.Errorf("verdicts %+v", res.Verdicts)
		}
		for _, f := range []string{"result.json", "report.html"} {
			if _, err := os.Stat(dir + "/" + f); err != nil {
				t.Error(err)
			}
		}
	})
}

func TestParseTick(t *testing.T) {
	for _, tc := range []struct {
		in     string
		t      int64
		seq    uint64
		wantOK bool
	}{
		{`{"type":"event","event":"load:tick","room":"r","data":{"t":1764100000000000000,"s":42,"p":"xx"},"offset":9,"epoch":"e"}`, 1764100000000000000, 42, true},
		{`{"type":"event","event":"load:tick","room":"r","data":{"t":5,"s":7},"offset":9,"epoch":"e"}`, 5, 7, true},
		{`{"type":"reply","id":1,"ok":true}`, 0, 0, false},
		{`{"type":"event","data":{"t":x,"s":1}}`, 0, 0, false},
		{`{"type":"event","data":{"t":1,"q":1}}`, 0, 0, false},
	} {
		tt, seq, ok := parseTick([]byte(tc.in))
		if ok != tc.wantOK || tt != tc.t || seq != tc.seq {
			t.Errorf("parseTick(%s) = %d, %d, %v", tc.in, tt, seq, ok)
		}
	}
}
