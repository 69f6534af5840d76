package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
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
	sorted := slices.Sorted(slices.Values(raw))
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

// churnServer serves a hub with presence on device:* and, on a second
// listener, the quickstart's /debug/memory. It returns the WebSocket URL,
// the debug base URL and the hub.
func churnServer(t *testing.T) (string, string, *rthub.Hub) {
	t.Helper()
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte(testSecret)}},
		Policy: rthub.Policy{
			Roles:    map[string]rthub.RoleRules{"staff": {Join: []string{"device:*"}}},
			Presence: []string{"device:*"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	dmux := http.NewServeMux()
	dmux.Handle("GET /debug/memory", hubhttp.MemoryHandler(hub))
	var addrs []string
	var srvs []*http.Server
	for _, h := range []http.Handler{mux, dmux} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go func() { _ = srv.Serve(ln) }()
		addrs, srvs = append(addrs, ln.Addr().String()), append(srvs, srv)
	}
	t.Cleanup(func() {
		hub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range srvs {
			_ = s.Shutdown(ctx)
		}
	})
	return "ws://" + addrs[0] + "/ws", "http://" + addrs[1], hub
}

// TestChurn runs the churn scenario (12 slots, 0.5–1.5 s lifetimes, a 1 s
// warm-up, 2 s of churn, clients in a child process) against a hub with
// presence, with a heap tolerance no run can meet (-100 %: the live heap
// would have to vanish), and checks the phases, the counts against the
// server's, the verdicts — the heap's FAIL, the others' PASS — and the
// outputs. Re-judging the same samples with a tolerance any run meets must
// pass: the check follows the tolerance, not the run.
func TestChurn(t *testing.T) {
	wsURL, dbg, hub := churnServer(t)
	dir := t.TempDir()
	const slots = 12
	cfg, err := parseFlags([]string{"-url", wsURL, "-secret", testSecret, "-debug", dbg,
		"-scenario", "churn", "-slots", fmt.Sprint(slots), "-slots-per-user", "1", "-min-life", "500ms", "-max-life", "1500ms",
		"-warmup", "1s", "-duration", "2s", "-sample", "500ms", "-settle", "1s", "-procs", "1", "-heap-tolerance", "-100", "-out", dir})
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(t.Context(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeOutputs(dir, res); err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]bool{}
	for _, v := range res.Verdicts {
		verdicts[v.Name] = v.Pass
	}
	want := map[string]bool{"connections": true, "connections back to 0": true, "goroutines back to baseline": true, "heap back to baseline": false}
	for name, pass := range want {
		if got, ok := verdicts[name]; !ok || got != pass {
			t.Errorf("verdict %q: pass %v (present %v), want %v", name, got, ok, pass)
		}
	}
	if res.Pass {
		t.Error("the run passed with -heap-tolerance -100")
	}
	if t.Failed() {
		t.Fatalf("verdicts %+v\nsummary %v\nerrors %v", res.Verdicts, res.Summary, res.Errors)
	}

	// Phases, in order, and what the server held in each.
	phases := map[string][]memPoint{}
	var order []string
	for _, m := range res.Memory {
		if len(order) == 0 || order[len(order)-1] != m.Phase {
			order = append(order, m.Phase)
		}
		phases[m.Phase] = append(phases[m.Phase], m)
	}
	if got := strings.Join(order, " "); got != "start warmup warmup-settle baseline churn settle final" {
		t.Errorf("phases %q", got)
	}
	if b := phases["baseline"]; len(b) != 1 || b[0].Connections != 0 || b[0].HeapAlloc == 0 || b[0].Goroutines == 0 {
		t.Errorf("baseline %+v", b)
	}
	busy := 0
	for _, m := range phases["churn"] {
		busy = max(busy, m.Connections)
	}
	if busy == 0 || busy > slots {
		t.Errorf("server connections during the churn: at most %d, want 1–%d", busy, slots)
	}
	if f := phases["final"]; len(f) != 1 || f[0].Connections != 0 {
		t.Errorf("final %+v", f)
	}
	// The clients' counts against the hub's.
	sum := res.Summary
	connects, _ := sum["connects"].(int)
	warm, _ := sum["warmup_connects"].(int)
	if connects <= slots || warm < slots {
		t.Errorf("connects %d, warm-up %d: want more than %d (every slot reconnects)", connects, warm, slots)
	}
	// A dial the stop cut short may have been accepted.
	cut, _ := sum["dials_cut"].(int)
	if acc, _ := sum["server_accepted"].(uint64); acc < uint64(connects+warm) || acc > uint64(connects+warm+cut) {
		t.Errorf("the hub accepted %d connections, the clients made %d (and %d were cut short)", acc, connects+warm, cut)
	}
	clean, _ := sum["clean_closes"].(int)
	fin, _ := sum["fin_drops"].(int)
	rst, _ := sum["rst_drops"].(int)
	srvFirst, _ := sum["server_closes"].(int)
	if clean == 0 || fin+rst == 0 || srvFirst != 0 || clean+fin+rst != connects {
		t.Errorf("closes: %d clean, %d FIN, %d RST, %d by the server first, for %d connects (every connection ends, in one way)", clean, fin, rst, srvFirst, connects)
	}
	if res.Handshake.N != uint64(connects+warm) {
		t.Errorf("handshake samples %d, want %d", res.Handshake.N, connects+warm)
	}
	if p, err := hub.Presence(t.Context(), cfg.Room); err != nil || p.Count != 0 {
		t.Errorf("presence in %s after the run: %+v, %v (want on, and empty)", cfg.Room, p, err)
	}

	// The same samples, judged with a tolerance any run meets.
	cc := cfg.Churn
	cc.HeapTol = 1e9
	again := &Result{}
	attempts, _ := sum["attempts"].(int)
	judgeChurn(again, cc, attempts, 0, phases["baseline"][0], phases["final"][0])
	if !again.Pass {
		t.Errorf("re-judged with +1e9 %%: %+v", again.Verdicts)
	}

	// Outputs: result.json, report.html, memory.csv (a row per sample), churn.svg (4 panels).
	b, err := os.ReadFile(dir + "/result.json")
	if err != nil {
		t.Fatal(err)
	}
	var rj struct {
		Memory []memPoint `json:"memory"`
		Pass   bool       `json:"pass"`
		Config struct {
			Churn churnConfig `json:"churn"`
		} `json:"config"`
	}
	if err := json.Unmarshal(b, &rj); err != nil || len(rj.Memory) != len(res.Memory) || rj.Pass || rj.Config.Churn.Slots != slots {
		t.Errorf("result.json: %v, %d samples, pass %v, churn config %+v", err, len(rj.Memory), rj.Pass, rj.Config.Churn)
	}
	csv, err := os.ReadFile(dir + "/memory.csv")
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(csv)), "\n")
	if len(rows) != len(res.Memory)+1 || !strings.HasPrefix(rows[0], "t_s,phase,heap_alloc,") || !strings.Contains(rows[len(rows)-1], ",final,") {
		t.Errorf("memory.csv:\n%s", csv)
	}
	svg, err := os.ReadFile(dir + "/churn.svg")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name
		Groups  []struct {
			SVG struct {
				Text string `xml:"text"`
			} `xml:"svg"`
		} `xml:"g"`
	}
	if err := xml.Unmarshal(svg, &doc); err != nil {
		t.Fatalf("churn.svg is not well-formed: %v", err)
	}
	if doc.XMLName.Local != "svg" || len(doc.Groups) != 4 || !strings.Contains(doc.Groups[0].SVG.Text, "live heap") {
		t.Errorf("churn.svg: root %q, %d panels, first %q", doc.XMLName.Local, len(doc.Groups), doc.Groups[0].SVG.Text)
	}
	for _, s := range []string{"FAIL", ">baseline<", "limit -100 %", "before any client", "clients closed"} {
		if !strings.Contains(string(svg), s) {
			t.Errorf("churn.svg lacks %q", s)
		}
	}
	page, err := os.ReadFile(dir + "/report.html")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "Server live heap after forced GC") || strings.Contains(string(page), "Broadcast latency per second") {
		t.Error("report.html does not hold the churn panels (or holds the latency chart)")
	}
}

func TestJudgeChurn(t *testing.T) {
	t.Parallel()
	base := memPoint{HeapAlloc: 1000, Goroutines: 20}
	cc := churnConfig{HeapTol: 10, GoroutineTol: 3}
	for _, tc := range []struct {
		name               string
		attempts, failures int
		final              memPoint
		tol                float64
		failing            string // the verdict that fails; "" = all pass
	}{
		{"back", 50, 0, memPoint{HeapAlloc: 1050, Goroutines: 21}, 10, ""},
		{"atTheLimit", 50, 0, memPoint{HeapAlloc: 1100, Goroutines: 23}, 10, ""},
		{"shrunk", 50, 0, memPoint{HeapAlloc: 900, Goroutines: 17}, 10, ""},
		{"heapOver", 50, 0, memPoint{HeapAlloc: 1101, Goroutines: 20}, 10, "heap back to baseline"},
		{"zeroTolerance", 50, 0, memPoint{HeapAlloc: 1001, Goroutines: 20}, 0, "heap back to baseline"},
		{"impossible", 50, 0, memPoint{HeapAlloc: 1, Goroutines: 20}, -100, "heap back to baseline"},
		{"goroutinesLeft", 50, 0, memPoint{HeapAlloc: 1000, Goroutines: 24}, 10, "goroutines back to baseline"},
		{"goroutinesGone", 50, 0, memPoint{HeapAlloc: 1000, Goroutines: 16}, 10, "goroutines back to baseline"},
		{"connectionLeft", 50, 0, memPoint{HeapAlloc: 1000, Goroutines: 20, Connections: 1}, 10, "connections back to 0"},
		{"dialFailed", 50, 1, memPoint{HeapAlloc: 1000, Goroutines: 20}, 10, "connections"},
		{"noDials", 0, 0, memPoint{HeapAlloc: 1000, Goroutines: 20}, 10, "connections"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cc
			c.HeapTol = tc.tol
			res := &Result{}
			judgeChurn(res, c, tc.attempts, tc.failures, base, tc.final)
			if len(res.Verdicts) != 4 {
				t.Fatalf("%d verdicts", len(res.Verdicts))
			}
			for _, v := range res.Verdicts {
				if v.Pass == (v.Name == tc.failing) {
					t.Errorf("%s: pass %v (%s)", v.Name, v.Pass, v.Detail)
				}
			}
			if res.Pass != (tc.failing == "") {
				t.Errorf("Pass %v", res.Pass)
			}
		})
	}
}

func TestChurnFlags(t *testing.T) {
	t.Parallel()
	base := []string{"-secret", "s", "-scenario", "churn"}
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults", nil, true},
		{"short", []string{"-slots", "20", "-slots-per-user", "1", "-min-life", "500ms", "-max-life", "1500ms"}, true},
		{"perUserTooFast", []string{"-slots-per-user", "4", "-min-life", "1s", "-max-life", "3s"}, false},
		{"lifeInverted", []string{"-min-life", "5s", "-max-life", "2s"}, false},
		{"tokenShorterThanLife", []string{"-token-ttl", "20s"}, false},
		{"abruptOver100", []string{"-abrupt-pct", "101"}, false},
		{"heapTolBelow100", []string{"-heap-tolerance", "-101"}, false},
		{"remoteDebug", []string{"-debug", "http://10.0.0.1:6060"}, false},
		{"remoteDebugAllowed", []string{"-debug", "http://10.0.0.1:6060", "-allow-remote"}, true},
		{"debugNotHTTP", []string{"-debug", "127.0.0.1:6060"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(append(append([]string{}, base...), tc.args...))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if tc.name == "defaults" {
				cc := cfg.Churn
				if cc.Slots != 500 || cfg.Users != 500 || cfg.Duration != 30*time.Minute || cfg.Sample != 10*time.Second || cfg.Client != "raw" ||
					cc.TokenTTL != time.Hour || cc.MinLife != time.Second || cc.MaxLife != 20*time.Second || cc.HeapTol != 10 || cc.Warmup != time.Minute {
					t.Errorf("defaults: %+v", cfg)
				}
			}
		})
	}
}
