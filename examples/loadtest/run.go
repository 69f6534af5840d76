package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// point is one second of the run (server fields from the latest /stats).
type point struct {
	T         float64 `json:"t"` // seconds since start
	Target    int     `json:"target"`
	Connected int     `json:"connected"`
	P50       float64 `json:"p50_ms"`
	P95       float64 `json:"p95_ms"`
	P99       float64 `json:"p99_ms"`
	Max       float64 `json:"max_ms"`
	Received  uint64  `json:"received"`
	Published uint64  `json:"published"`
}

// serverPoint is one /stats sample.
type serverPoint struct {
	T           float64 `json:"t"`
	RSS         uint64  `json:"rss"`
	HeapInuse   uint64  `json:"heap_inuse"`
	Goroutines  int     `json:"goroutines"`
	Connections int     `json:"connections"`
	BytesSent   uint64  `json:"bytes_sent"`
}

// stepResult is one stress step.
type stepResult struct {
	Users      int     `json:"users"`
	Connected  int     `json:"connected"`
	P99        float64 `json:"p99_ms"`
	DeliveryPc float64 `json:"delivery_pct"`
	OK         bool    `json:"ok"`
}

// Result is result.json.
type Result struct {
	Config    config         `json:"config"`
	Start     time.Time      `json:"start"`
	Elapsed   float64        `json:"elapsed_s"`
	Summary   map[string]any `json:"summary"`
	Handshake Summary        `json:"handshake"`
	Latency   Summary        `json:"broadcast_latency"`
	// LatencyStorm and LatencyAfter split the storm scenario's broadcast
	// latency at the report (1 s) in which the last dial ended.
	LatencyStorm *Summary      `json:"broadcast_latency_storm,omitempty"`
	LatencyAfter *Summary      `json:"broadcast_latency_after,omitempty"`
	Reconnect    Summary       `json:"reconnect"`
	Series       []point       `json:"series"`
	Server       []serverPoint `json:"server"`
	Steps        []stepResult  `json:"steps,omitempty"`
	Verdicts     []verdict     `json:"verdicts"`
	Pass         bool          `json:"pass"`
	Errors       []string      `json:"errors,omitempty"`
	// SoakFit is the RSS line fitted over the run: bytes per second, bytes at t=0.
	SoakFit *[2]float64 `json:"rss_fit,omitempty"`
	// Memory is the churn scenario's /debug/memory samples; its measured
	// churn ran from ChurnStart to ChurnEnd (seconds since start; a warm-up
	// comes before).
	Memory     []memPoint `json:"memory,omitempty"`
	ChurnStart float64    `json:"churn_start_s,omitempty"`
	ChurnEnd   float64    `json:"churn_end_s,omitempty"`
}

type verdict struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// controller runs one scenario.
type controller struct {
	cfg     config
	log     io.Writer
	http    *http.Client
	admin   string
	fleets  []*fleet
	reports chan report
	start   time.Time

	seq       atomic.Uint64 // last sequence number published
	published atomic.Uint64 // publishes answered 2xx
	pubErrs   atomic.Uint64

	mu     sync.Mutex
	target int
	server []serverPoint
}

// run executes cfg's scenario against the server and returns what it measured.
func run(ctx context.Context, cfg config, log io.Writer) (*Result, error) {
	if cfg.Scenario == "churn" {
		return runChurn(ctx, cfg, log)
	}
	admin, err := signToken(cfg.secret, "loadtest-publisher", []string{"admin"})
	if err != nil {
		return nil, err
	}
	c := &controller{cfg: cfg, log: log, admin: admin, reports: make(chan report, 64),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	if _, err := c.stats(ctx); err != nil {
		return nil, fmt.Errorf("GET %s/stats: %w (the tool needs the server's /stats and /publish, as examples/quickstart serves them)", cfg.HTTPBase, err)
	}
	procs := max(cfg.Procs, 1)
	for i := range procs {
		wc := workerConfig{ID: i, URL: cfg.URL, Secret: cfg.secret, Roles: cfg.Roles, Room: cfg.Room,
			Event: tickEvent, Concurrency: cfg.Concurrency, SourceAddrs: cfg.sourceAddrs(), Compression: cfg.Compression,
			Raw: cfg.Client == "raw", Subjects: cfg.Subjects, Workers: procs, Spread: cfg.Spread}
		if cfg.Procs == 0 {
			c.fleets = append(c.fleets, startInProcess(wc, c.reports))
			continue
		}
		f, err := startChild(wc, c.reports)
		if err != nil {
			c.stopFleets()
			return nil, err
		}
		c.fleets = append(c.fleets, f)
	}
	res := c.loop(ctx)
	return res, nil
}

const tickEvent = "load:tick"

func (c *controller) logf(format string, args ...any) {
	fmt.Fprintf(c.log, "[%6.1fs] "+format+"\n", append([]any{time.Since(c.start).Seconds()}, args...)...)
}

// setTarget spreads n users over the fleets.
func (c *controller) setTarget(n int) {
	c.mu.Lock()
	c.target = n
	c.mu.Unlock()
	k := len(c.fleets)
	for i, f := range c.fleets {
		share := n / k
		if i < n%k {
			share++
		}
		f.cmds <- command{Target: &share}
	}
}

func (c *controller) broadcast(cmd command) {
	for _, f := range c.fleets {
		f.cmds <- cmd
	}
}

func (c *controller) stopFleets() {
	var wg sync.WaitGroup
	for _, f := range c.fleets {
		wg.Go(f.stop)
	}
	wg.Wait()
}

// stats polls GET /stats.
func (c *controller) stats(ctx context.Context) (serverPoint, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.cfg.HTTPBase+"/stats", nil)
	if err != nil {
		return serverPoint{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return serverPoint{}, err
	}
	defer resp.Body.Close()
	var s struct {
		Hub struct {
			Connections int
			BytesSent   uint64
		} `json:"hub"`
		Goroutines int    `json:"goroutines"`
		HeapInuse  uint64 `json:"heap_inuse"`
		RSS        uint64 `json:"rss"`
	}
	if resp.StatusCode != 200 {
		return serverPoint{}, fmt.Errorf("status %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return serverPoint{}, err
	}
	return serverPoint{RSS: s.RSS, HeapInuse: s.HeapInuse, Goroutines: s.Goroutines,
		Connections: s.Hub.Connections, BytesSent: s.Hub.BytesSent}, nil
}

// publisher posts events at cfg.Rate until ctx ends.
func (c *controller) publisher(ctx context.Context) {
	if c.cfg.Rate <= 0 {
		return
	}
	pad := strings.Repeat("x", c.cfg.Payload)
	interval := time.Duration(float64(time.Second) / c.cfg.Rate)
	t := time.NewTicker(interval)
	defer t.Stop()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			c.pubErrs.Add(1) // the server cannot keep up with the rate
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c.publish(ctx, pad)
		})
	}
}

var seqMu sync.Mutex // sequence numbers go out in order

func (c *controller) publish(ctx context.Context, pad string) {
	seqMu.Lock()
	seq := c.seq.Load() + 1
	data, _ := json.Marshal(tick{T: time.Now().UnixNano(), Seq: seq, Pad: pad})
	body, _ := json.Marshal(map[string]any{"room": c.cfg.Room, "event": tickEvent, "data": json.RawMessage(data)})
	req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), "POST", c.cfg.HTTPBase+"/publish", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode/100 != 2 {
		seqMu.Unlock()
		if n := c.pubErrs.Add(1); n <= 3 {
			if err == nil {
				err = fmt.Errorf("status %s", resp.Status)
			}
			c.logf("publish: %v", err)
		}
		return
	}
	c.seq.Store(seq)
	seqMu.Unlock()
	c.published.Add(1)
}

// plan returns the user target at elapsed time t and whether to force a
// disconnect now (spike).
func (c *controller) plan(t time.Duration) int {
	d := c.cfg.Duration
	n := c.cfg.Users
	f := float64(t) / float64(d)
	switch c.cfg.Scenario {
	case "spike": // 10 % idle, 20 % ramp up, 30 % hold, 20 % ramp down, 20 % idle
		switch {
		case f < 0.1:
			return 0
		case f < 0.3:
			return int(math.Ceil(float64(n) * (f - 0.1) / 0.2))
		case f < 0.6:
			return n
		case f < 0.8:
			return int(float64(n) * (0.8 - f) / 0.2)
		default:
			return 0
		}
	case "stress":
		return n + c.cfg.Step*int(t/c.cfg.StepEvery)
	}
	return n
}

func (c *controller) loop(ctx context.Context) *Result {
	cfg := c.cfg
	c.start = time.Now()
	res := &Result{Config: cfg, Start: c.start}
	hs, lat, rec := newHist(), newHist(), newHist()
	var attempts, failures int
	var received, missed uint64
	connected := make([]int, len(c.fleets))

	// Baseline before any client.
	base, _ := c.stats(ctx)
	c.server = append(c.server, base)
	c.logf("scenario %s: users %d, rate %.1f/s, payload %d B, duration %v, procs %d; server RSS %.1f MiB",
		cfg.Scenario, cfg.Users, cfg.Rate, cfg.Payload, cfg.Duration, cfg.Procs, float64(base.RSS)/(1<<20))

	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	pubStarted := false
	startPub := func() {
		pubStarted = true
		go func() { defer close(pubDone); c.publisher(pubCtx) }()
	}
	// Fixed-size scenarios connect everyone first, then publish; a storm
	// publishes while everyone connects at once.
	fixed := cfg.Scenario != "spike" && cfg.Scenario != "stress"
	storm := cfg.Scenario == "storm"
	if fixed {
		c.setTarget(cfg.Users)
	}
	if !fixed || storm {
		startPub()
	}
	stormLat, afterLat := newHist(), newHist()
	var lastUp int64 // UnixNano of the last successful first dial
	admitted := false
	deadline := c.start.Add(cfg.Duration)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastPublished uint64
	interval := newHist()
	var intervalRecv uint64
	reportsThisTick := 0
	dropped := false
	nextSample := time.Now()
	step := stepResult{Users: cfg.Users}
	stepLat, stepRecv, stepMissed := newHist(), uint64(0), uint64(0)
	connectWait := time.Now().Add(60 * time.Second)
	stopped := false

	for !stopped {
		select {
		case <-ctx.Done():
			c.logf("interrupted")
			stopped = true
		case r := <-c.reports:
			connected[r.Worker] = r.Connected
			attempts += r.Attempts
			failures += r.Failures
			received += r.Received
			missed += r.Missed
			intervalRecv += r.Received
			stepRecv += r.Received
			stepMissed += r.Missed
			hs.Merge(r.Handshake)
			lat.Merge(r.Latency)
			rec.Merge(r.Reconnect)
			interval.Merge(r.Latency)
			stepLat.Merge(r.Latency)
			if admitted {
				afterLat.Merge(r.Latency)
			} else {
				stormLat.Merge(r.Latency)
			}
			lastUp = max(lastUp, r.LastUp)
			if storm && !admitted && attempts >= cfg.Users {
				admitted = true
				deadline = time.Now().Add(cfg.Duration) // publish as long again after the storm
				c.logf("storm over: %d/%d dials succeeded (the last success %.2f s after the start)", attempts-failures, cfg.Users,
					float64(max(lastUp-c.start.UnixNano(), 0))/1e9)
			}
			for _, e := range r.Errors {
				if len(res.Errors) < 10 {
					res.Errors = append(res.Errors, e)
				}
			}
			reportsThisTick++
		case now := <-tick.C:
			el := now.Sub(c.start)
			total := 0
			for _, n := range connected {
				total += n
			}
			pub := c.published.Load()
			c.mu.Lock()
			target := c.target
			c.mu.Unlock()
			p := point{T: el.Seconds(), Target: target, Connected: total, Received: intervalRecv, Published: pub - lastPublished}
			s := interval.Summary()
			p.P50, p.P95, p.P99, p.Max = s.P50, s.P95, s.P99, s.Max
			res.Series = append(res.Series, p)
			lastPublished = pub
			interval = newHist()
			intervalRecv = 0
			if !now.Before(nextSample) {
				if sp, err := c.stats(ctx); err == nil {
					sp.T = el.Seconds()
					c.server = append(c.server, sp)
				}
				nextSample = nextSample.Add(cfg.Sample)
			}
			if storm && !admitted && now.After(connectWait) {
				admitted = true // give up waiting: the dials' own timeouts (30 s) have passed
				deadline = now.Add(cfg.Duration)
				c.logf("storm: only %d of %d dials ended within 60 s", attempts, cfg.Users)
			}
			if fixed && !pubStarted && (attempts >= cfg.Users || now.After(connectWait)) {
				c.logf("%d/%d connected (%d failed); holding for %v at %g events/s", total, cfg.Users, failures, cfg.Duration, cfg.Rate)
				// The run's clock starts when everyone is connected.
				deadline = now.Add(cfg.Duration)
				startPub()
			}
			if cfg.Scenario == "spike" && !dropped && el > cfg.Duration*45/100 {
				dropped = true
				c.logf("forcing a disconnect of %d clients", total)
				c.broadcast(command{Drop: true})
			}
			if cfg.Scenario == "stress" && el >= time.Duration(len(res.Steps)+1)*cfg.StepEvery {
				step.Connected = total
				step.P99 = stepLat.Summary().P99
				exp := stepRecv + stepMissed
				step.DeliveryPc = 100
				if exp > 0 {
					step.DeliveryPc = 100 * float64(stepRecv) / float64(exp)
				}
				step.OK = step.P99 <= ms(cfg.P99Max) && step.DeliveryPc >= cfg.MinDelivery && total >= step.Users*99/100 && stepLat.N > 0
				res.Steps = append(res.Steps, step)
				c.logf("stress step %d users: connected %d, p99 %.1f ms, delivery %.2f %% → ok=%v", step.Users, total, step.P99, step.DeliveryPc, step.OK)
				if !step.OK {
					stopped = true
				}
				step = stepResult{Users: c.plan(el)}
				stepLat, stepRecv, stepMissed = newHist(), 0, 0
			}
			if !fixed && !stopped { // after the stress check: a broken step adds no users
				if n := c.plan(el); n != target {
					c.setTarget(n)
				}
			}
			if int(el.Seconds())%10 == 0 {
				c.logf("connected %d/%d, published %d, received %d, p99 %.1f ms", total, target, pub, received, lat.Summary().P99)
			}
			if now.After(deadline) && (!fixed || pubStarted) {
				stopped = true
			}
		}
	}
	// Drain: stop publishing, let the last events arrive, count the tail.
	stopPub()
	if pubStarted {
		<-pubDone
	}
	time.Sleep(time.Second)
	if seq := c.seq.Load(); seq > 0 {
		c.broadcast(command{Final: seq})
	}
	end, _ := c.stats(context.WithoutCancel(ctx))
	// "Loaded" is the /stats sample with the most server connections.
	peak := end
	for _, sp := range c.server {
		if sp.Connections > peak.Connections {
			peak = sp
		}
	}
	peakConns := peak.Connections
	// Stop the fleets, collecting their last reports.
	stopDone := make(chan struct{})
	go func() { c.stopFleets(); close(stopDone) }()
	for collecting := true; collecting; {
		select {
		case r := <-c.reports:
			received += r.Received
			missed += r.Missed
			attempts += r.Attempts
			failures += r.Failures
			hs.Merge(r.Handshake)
			lat.Merge(r.Latency)
			afterLat.Merge(r.Latency)
			rec.Merge(r.Reconnect)
			lastUp = max(lastUp, r.LastUp)
			for _, e := range r.Errors { // the last reports' dial errors count too
				if len(res.Errors) < 10 {
					res.Errors = append(res.Errors, e)
				}
			}
		case <-stopDone:
			collecting = false
		}
	}
	// Spike: let the server settle, then compare with the baseline.
	var after serverPoint
	if cfg.Scenario == "spike" || cfg.Scenario == "connect" {
		time.Sleep(2 * time.Second)
	}
	after, _ = c.stats(context.WithoutCancel(ctx))
	after.T = time.Since(c.start).Seconds()
	c.server = append(c.server, after)

	res.Elapsed = time.Since(c.start).Seconds()
	res.Handshake, res.Latency, res.Reconnect = hs.Summary(), lat.Summary(), rec.Summary()
	res.Server = c.server
	pub := c.published.Load()
	sum := map[string]any{
		"attempts": attempts, "failures": failures, "published": pub, "publish_errors": c.pubErrs.Load(),
		"received": received, "missed": missed, "peak_connected": peakConns,
		"server_rss_baseline": base.RSS, "server_rss_loaded": peak.RSS, "server_rss_end": after.RSS,
		"server_goroutines_baseline": base.Goroutines, "server_goroutines_loaded": peak.Goroutines, "server_goroutines_end": after.Goroutines,
		"server_heap_baseline": base.HeapInuse, "server_heap_loaded": peak.HeapInuse, "server_heap_end": after.HeapInuse,
		"server_bytes_sent": end.BytesSent - base.BytesSent,
	}
	if storm {
		ss, as := stormLat.Summary(), afterLat.Summary()
		res.LatencyStorm, res.LatencyAfter = &ss, &as
		sum["admitted"] = attempts - failures
		if lastUp > 0 {
			sum["admitted_s"] = float64(lastUp-c.start.UnixNano()) / 1e9
		}
	}
	if attempts > 0 {
		sum["success_pct"] = 100 * float64(attempts-failures) / float64(attempts)
	}
	if peakConns > 0 {
		sum["server_rss_per_conn"] = (float64(peak.RSS) - float64(base.RSS)) / float64(peakConns)
		sum["server_heap_per_conn"] = (float64(peak.HeapInuse) - float64(base.HeapInuse)) / float64(peakConns)
		sum["server_bytes_per_conn"] = float64(end.BytesSent-base.BytesSent) / float64(peakConns)
	}
	if secs := pubSeconds(res.Series); secs > 0 {
		sum["messages_per_s"] = float64(received) / secs
	}
	delivery := 100.0
	if cfg.Scenario == "fanout" || cfg.Scenario == "steady" || cfg.Scenario == "soak" {
		// Every user was connected before the first publish: exact.
		if exp := pub * uint64(cfg.Users-failures); exp > 0 {
			delivery = 100 * float64(received) / float64(exp)
		}
	} else if received+missed > 0 {
		delivery = 100 * float64(received) / float64(received+missed)
	}
	if cfg.Rate > 0 {
		sum["delivery_pct"] = delivery
	}
	res.Summary = sum
	c.judge(res, delivery, attempts, failures, base, after)
	c.logf("done: %s", verdictLine(res))
	return res
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// pubSeconds is how many seconds events were published.
func pubSeconds(s []point) float64 {
	n := 0
	for _, p := range s {
		if p.Published > 0 {
			n++
		}
	}
	return float64(n)
}

func verdictLine(r *Result) string {
	var b strings.Builder
	for _, v := range r.Verdicts {
		st := "PASS"
		if !v.Pass {
			st = "FAIL"
		}
		fmt.Fprintf(&b, "%s %s (%s); ", st, v.Name, v.Detail)
	}
	return b.String()
}

// judge adds the scenario's verdicts.
func (c *controller) judge(res *Result, delivery float64, attempts, failures int, base, after serverPoint) {
	cfg := c.cfg
	add := func(name string, pass bool, format string, args ...any) {
		res.Verdicts = append(res.Verdicts, verdict{name, pass, fmt.Sprintf(format, args...)})
	}
	add("connections", failures == 0 && attempts > 0, "%d of %d dials succeeded", attempts-failures, attempts)
	if cfg.Rate > 0 && cfg.Scenario != "spike" && cfg.Scenario != "stress" {
		add("delivery", delivery >= cfg.MinDelivery, "%.3f %% delivered, want ≥ %.3f %%", delivery, cfg.MinDelivery)
	}
	switch cfg.Scenario {
	case "storm":
		within, _ := res.Summary["admitted_s"].(float64)
		all := failures == 0 && attempts >= cfg.Users
		add("admitted in time", all && within <= cfg.AdmitWithin.Seconds(),
			"%d of %d clients admitted, the last %.2f s after the start, want all within %v", attempts-failures, cfg.Users, within, cfg.AdmitWithin)
		add("handshake p99", res.Handshake.N > 0 && res.Handshake.P99 <= ms(cfg.HandshakeP99),
			"p50 %.1f ms, p99 %.1f ms, max %.1f ms, want p99 ≤ %v", res.Handshake.P50, res.Handshake.P99, res.Handshake.Max, cfg.HandshakeP99)
		if cfg.Rate > 0 {
			st, af := res.LatencyStorm, res.LatencyAfter
			add("broadcast p99", res.Latency.N > 0 && res.Latency.P99 <= ms(cfg.P99Max),
				"p99 %.1f ms overall (during the storm %.1f ms of %d, after it %.1f ms of %d), want ≤ %v",
				res.Latency.P99, st.P99, st.N, af.P99, af.N, cfg.P99Max)
		}
	case "stress":
		best := 0
		for _, s := range res.Steps {
			if s.OK {
				best = s.Users
			}
		}
		res.Summary["stress_max_users"] = best
		add("stress", best > 0, "largest step within p99 ≤ %v and delivery ≥ %.1f %%: %d users", cfg.P99Max, cfg.MinDelivery, best)
	case "spike":
		add("reconnection", res.Reconnect.N > 0, "%d clients reconnected after a forced drop; p50 %.0f ms, p99 %.0f ms, max %.0f ms",
			res.Reconnect.N, res.Reconnect.P50, res.Reconnect.P99, res.Reconnect.Max)
		// Heap and goroutines come back at once; RSS only as the Go scavenger returns pages.
		heapOK := float64(after.HeapInuse) <= float64(base.HeapInuse)*1.5+4<<20
		gOK := after.Goroutines <= base.Goroutines+10
		add("memory back to baseline", heapOK && gOK && after.Connections == 0,
			"heap %.1f → %.1f MiB, goroutines %d → %d, connections %d, RSS %.1f → %.1f MiB",
			mib(base.HeapInuse), mib(after.HeapInuse), base.Goroutines, after.Goroutines, after.Connections, mib(base.RSS), mib(after.RSS))
	case "soak":
		var xs, ys []float64
		for _, s := range res.Server[1 : len(res.Server)-1] { // loaded samples only
			xs = append(xs, s.T)
			ys = append(ys, float64(s.RSS))
		}
		// Skip the first 10 % (warm-up) when there are enough samples.
		if k := len(xs) / 10; len(xs) >= 20 {
			xs, ys = xs[k:], ys[k:]
		}
		slope, icpt := Fit(xs, ys)
		res.SoakFit = &[2]float64{slope, icpt}
		var mean float64
		for _, y := range ys {
			mean += y / float64(len(ys))
		}
		growth := slope * cfg.Duration.Seconds()
		pct := 0.0
		if mean > 0 {
			pct = 100 * growth / mean
		}
		res.Summary["rss_slope_bytes_per_hour"] = slope * 3600
		add("soak RSS flat", len(xs) >= 3 && pct <= cfg.SoakTol,
			"RSS slope %.2f MiB/h, %.2f %% of mean RSS over the run (%d samples), want ≤ %.1f %%", slope*3600/(1<<20), pct, len(xs), cfg.SoakTol)
	}
	res.Pass = true
	for _, v := range res.Verdicts {
		res.Pass = res.Pass && v.Pass
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
