package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"
)

// The churn scenario looks for what closed connections leave behind. Slots
// (churnslot.go) connect, live a random lifetime in a presence room and
// close — cleanly or by dropping the TCP connection — and connect again, for
// the duration; then every client closes, the server is left to settle, and
// its memory after forced collections (the debug endpoint of
// examples/quickstart, hubhttp.MemoryHandler) is compared with the baseline:
// taken after a warm-up churn (every client closed, settled), so that what
// grows once and stays — the runtime's goroutine descriptors, grown maps —
// is in it and only what grows with the connects is judged; or, with
// -warmup 0, before any client connected.

// churnConfig holds the churn scenario's flags.
type churnConfig struct {
	Slots        int           `json:"slots"`
	MinLife      time.Duration `json:"min_life_ns"`
	MaxLife      time.Duration `json:"max_life_ns"`
	AbruptPct    float64       `json:"abrupt_pct"`
	PerUser      int           `json:"slots_per_user"`
	TokenTTL     time.Duration `json:"token_ttl_ns"`
	Debug        string        `json:"debug"`
	Warmup       time.Duration `json:"warmup_ns"`
	Settle       time.Duration `json:"settle_ns"`
	HeapTol      float64       `json:"heap_tolerance_pct"`
	GoroutineTol int           `json:"goroutine_tolerance"`
}

// maxUserHandshakeRate is the average handshakes per second per subject the
// churn may cause: 75 % of the hub's default Limits.HandshakesPerUser (2/s),
// so that its burst (20) absorbs the randomness and the per-user limit is
// not what the run measures.
const maxUserHandshakeRate = 1.5

func (cc *churnConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&cc.Slots, "slots", 0, "churn: connections held at once (default 500; same as -users)")
	fs.DurationVar(&cc.MinLife, "min-life", time.Second, "churn: shortest connection lifetime")
	fs.DurationVar(&cc.MaxLife, "max-life", 20*time.Second, "churn: longest connection lifetime (uniform between)")
	fs.Float64Var(&cc.AbruptPct, "abrupt-pct", 50, "churn: percent of closes that drop the TCP connection without a close frame (half FIN, half RST); the rest close cleanly")
	fs.IntVar(&cc.PerUser, "slots-per-user", 4, "churn: slots sharing one token subject (users = slots / this)")
	fs.DurationVar(&cc.TokenTTL, "token-ttl", time.Hour, "churn: lifetime of the clients' tokens")
	fs.StringVar(&cc.Debug, "debug", "http://127.0.0.1:6060", "churn: base URL of the server's GET /debug/memory (quickstart: DEBUG_ADDR)")
	fs.DurationVar(&cc.Warmup, "warmup", time.Minute, "churn: churn this long, close every client and settle before the baseline sample (0: the baseline is taken before any client); see README")
	fs.DurationVar(&cc.Settle, "settle", 30*time.Second, "churn: wait after the last client closed, before the baseline (after the warm-up) and before the final sample (over one ping interval, 25 s, so the hub's periodic pruning has run)")
	fs.Float64Var(&cc.HeapTol, "heap-tolerance", 10, "churn: largest growth of the live heap after GC, final vs baseline, in percent (-100 can never pass)")
	fs.IntVar(&cc.GoroutineTol, "goroutine-tolerance", 3, "churn: largest difference of the server's goroutines, final vs baseline")
}

// check validates the churn flags (Slots set).
func (cc *churnConfig) check() error {
	var errs []error
	if cc.Slots < 1 {
		errs = append(errs, errors.New("-slots: want at least 1"))
	}
	if cc.MinLife <= 0 || cc.MaxLife < cc.MinLife {
		errs = append(errs, fmt.Errorf("-min-life %v, -max-life %v: want 0 < min ≤ max", cc.MinLife, cc.MaxLife))
	}
	if cc.AbruptPct < 0 || cc.AbruptPct > 100 {
		errs = append(errs, fmt.Errorf("-abrupt-pct %g: want 0–100", cc.AbruptPct))
	}
	if cc.PerUser < 1 || cc.PerUser > 100 {
		errs = append(errs, fmt.Errorf("-slots-per-user %d: want 1–100 (the hub's default MaxConnsPerUser is 100)", cc.PerUser))
	} else if mean := (cc.MinLife + cc.MaxLife).Seconds() / 2; mean > 0 && float64(cc.PerUser)/mean > maxUserHandshakeRate {
		errs = append(errs, fmt.Errorf("-slots-per-user %d with a mean lifetime of %.2g s makes %.2g handshakes/s per user, over %g (the hub allows 2/s per user by default): use fewer slots per user or longer lifetimes",
			cc.PerUser, mean, float64(cc.PerUser)/mean, maxUserHandshakeRate))
	}
	if cc.TokenTTL <= cc.MaxLife {
		errs = append(errs, fmt.Errorf("-token-ttl %v: want longer than -max-life %v (connections would end at token expiry)", cc.TokenTTL, cc.MaxLife))
	}
	if cc.Settle < 0 || cc.Warmup < 0 {
		errs = append(errs, errors.New("-settle or -warmup is negative"))
	}
	if cc.HeapTol < -100 {
		errs = append(errs, fmt.Errorf("-heap-tolerance %g: want ≥ -100", cc.HeapTol))
	}
	if cc.GoroutineTol < 0 {
		errs = append(errs, errors.New("-goroutine-tolerance is negative"))
	}
	return errors.Join(errs...)
}

// memPoint is one /debug/memory sample (hubhttp.Memory) with the run's
// clock and phase: baseline (before any client), churn, settle (every
// client closed) or final (after the settle delay).
type memPoint struct {
	T           float64 `json:"t"`
	Phase       string  `json:"phase"`
	HeapAlloc   uint64  `json:"heap_alloc"`
	HeapInuse   uint64  `json:"heap_inuse"`
	HeapObjects uint64  `json:"heap_objects"`
	StackInuse  uint64  `json:"stack_inuse"`
	RSS         uint64  `json:"rss"`
	Goroutines  int     `json:"goroutines"`
	Connections int     `json:"connections"`  // the hub's open connections
	Clients     int     `json:"clients"`      // connected, as the clients last reported
	Accepted    uint64  `json:"accepted"`     // the hub's handshakes so far
	GCSeconds   float64 `json:"gc_seconds"`   // the forced collections' time
	TokenExpiry uint64  `json:"token_closes"` // connections the hub closed at token expiry
}

// memory polls the server's debug endpoint.
func (c *controller) memory(ctx context.Context, cl *http.Client) (memPoint, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.cfg.Churn.Debug+"/debug/memory", nil)
	if err != nil {
		return memPoint{}, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return memPoint{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return memPoint{}, fmt.Errorf("status %s", resp.Status)
	}
	var m struct {
		HeapAlloc   uint64  `json:"heap_alloc"`
		HeapInuse   uint64  `json:"heap_inuse"`
		HeapObjects uint64  `json:"heap_objects"`
		StackInuse  uint64  `json:"stack_inuse"`
		Goroutines  int     `json:"goroutines"`
		RSS         uint64  `json:"rss"`
		Connections int     `json:"connections"`
		GCSeconds   float64 `json:"gc_seconds"`
		Hub         struct {
			Accepted     uint64
			TokenExpired uint64
		} `json:"hub"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return memPoint{}, err
	}
	if m.HeapAlloc == 0 || m.Goroutines == 0 {
		return memPoint{}, errors.New("no heap_alloc or goroutines in the answer: not hubhttp.MemoryHandler")
	}
	return memPoint{HeapAlloc: m.HeapAlloc, HeapInuse: m.HeapInuse, HeapObjects: m.HeapObjects, StackInuse: m.StackInuse,
		RSS: m.RSS, Goroutines: m.Goroutines, Connections: m.Connections, GCSeconds: m.GCSeconds,
		Accepted: m.Hub.Accepted, TokenExpiry: m.Hub.TokenExpired}, nil
}

// churnRun is one churn run's state, across its phases.
type churnRun struct {
	c   *controller
	dbg *http.Client // to the debug endpoint
	res *Result
	mem []memPoint
	// clients is the connected clients as the workers last reported them.
	clients int
}

// phaseCounts is what the clients counted in one churn phase.
type phaseCounts struct {
	attempts, failures, cut int
	ends                    closes
}

// sample takes one /debug/memory sample and appends it to the run's.
func (r *churnRun) sample(ctx context.Context, phase string) (memPoint, bool) {
	m, err := r.c.memory(context.WithoutCancel(ctx), r.dbg)
	if err != nil {
		r.c.logf("GET /debug/memory: %v", err)
		return m, false
	}
	m.T, m.Phase, m.Clients = time.Since(r.c.start).Seconds(), phase, r.clients
	r.mem = append(r.mem, m)
	return m, true
}

// churn starts the workers, churns every slot for d (or until ctx ends),
// sampling the server every -sample, then closes every client and stops the
// workers. It reports whether ctx ended it.
func (r *churnRun) churn(ctx context.Context, phase string, d time.Duration, base memPoint, hs *Hist) (phaseCounts, bool, error) {
	c, cfg, cc := r.c, r.c.cfg, r.c.cfg.Churn
	var n phaseCounts
	c.fleets = nil
	for i := range max(cfg.Procs, 1) {
		wc := workerConfig{ID: i, URL: cfg.URL, Secret: cfg.secret, Roles: cfg.Roles, Room: cfg.Room,
			Concurrency: cfg.Concurrency, SourceAddrs: cfg.sourceAddrs(), Raw: true}
		if cfg.Procs == 0 {
			c.fleets = append(c.fleets, startInProcess(wc, c.reports))
			continue
		}
		f, err := startChild(wc, c.reports)
		if err != nil {
			c.stopFleets()
			return n, false, err
		}
		c.fleets = append(c.fleets, f)
	}
	connected := make([]int, len(c.fleets))
	collect := func(rp report) {
		connected[rp.Worker] = rp.Connected
		n.attempts += rp.Attempts
		n.failures += rp.Failures
		n.cut += rp.Cut
		n.ends.add(rp.Closes)
		hs.Merge(rp.Handshake)
		for _, e := range rp.Errors {
			if len(r.res.Errors) < 10 {
				r.res.Errors = append(r.res.Errors, e)
			}
		}
		r.clients = 0
		for _, k := range connected {
			r.clients += k
		}
	}
	first := 0
	for i, f := range c.fleets {
		share := cc.Slots / len(c.fleets)
		if i < cc.Slots%len(c.fleets) {
			share++
		}
		f.cmds <- command{Churn: &churnSpec{Slots: share, First: first, MinLife: cc.MinLife, MaxLife: cc.MaxLife,
			AbruptPct: cc.AbruptPct, PerUser: cc.PerUser, TokenTTL: cc.TokenTTL}}
		first += share
	}
	start := time.Now()
	r.res.Series = append(r.res.Series, point{T: start.Sub(c.start).Seconds(), Target: cc.Slots})
	deadline := start.Add(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	nextSample := start.Add(cfg.Sample)
	interrupted := false
	for running := true; running; {
		select {
		case <-ctx.Done():
			c.logf("interrupted: closing the clients; no settle delay")
			interrupted, running = true, false
		case rp := <-c.reports:
			collect(rp)
		case now := <-tick.C:
			r.res.Series = append(r.res.Series, point{T: now.Sub(c.start).Seconds(), Target: cc.Slots, Connected: r.clients})
			if !now.Before(nextSample) {
				if m, ok := r.sample(ctx, phase); ok {
					c.logf("%s: clients %d/%d, %d connects; server: %d connections, live heap %.2f MiB (baseline %.2f), goroutines %d (%d), RSS %.1f MiB",
						phase, r.clients, cc.Slots, n.attempts-n.failures, m.Connections, mib(m.HeapAlloc), mib(base.HeapAlloc), m.Goroutines, base.Goroutines, mib(m.RSS))
				}
				nextSample = nextSample.Add(cfg.Sample)
			}
			if !now.Before(deadline) {
				running = false
			}
		}
	}
	// Close every client (each as its drawn close mode says) and collect the
	// workers' last reports.
	stopDone := make(chan struct{})
	go func() { c.stopFleets(); close(stopDone) }()
	for collecting := true; collecting; {
		select {
		case rp := <-c.reports:
			collect(rp)
		case <-stopDone:
			collecting = false
		}
	}
	r.clients = 0
	r.res.Series = append(r.res.Series, point{T: time.Since(c.start).Seconds()})
	c.logf("%s over: all clients closed (%d connects, %d failed dials)", phase, n.attempts-n.failures, n.failures)
	return n, interrupted, nil
}

// settle waits -settle (or until ctx ends), sampling every -sample.
func (r *churnRun) settle(ctx context.Context, phase string) {
	cfg := r.c.cfg
	end := time.Now().Add(cfg.Churn.Settle)
	for next := time.Now().Add(cfg.Sample); next.Before(end); next = next.Add(cfg.Sample) {
		sleepCtx(ctx, time.Until(next))
		if ctx.Err() != nil {
			return
		}
		r.sample(ctx, phase)
	}
	sleepCtx(ctx, time.Until(end))
}

// runChurn runs the churn scenario: a sample before any client; with
// -warmup, a warm-up churn, every client closed and the settle delay, then
// the baseline sample (else the first sample is the baseline); the churn
// for the duration; every client closed; the settle delay; the final sample;
// the verdicts.
func runChurn(ctx context.Context, cfg config, log io.Writer) (*Result, error) {
	cc := cfg.Churn
	c := &controller{cfg: cfg, log: log, reports: make(chan report, 64)}
	// The forced collections of a big leaked heap take a while: a long timeout,
	// and one kept-alive connection, which every sample (baseline included) sees.
	r := &churnRun{c: c, dbg: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}}
	defer r.dbg.CloseIdleConnections()
	if _, err := c.memory(ctx, r.dbg); err != nil {
		return nil, fmt.Errorf("GET %s/debug/memory: %w (start the server with its debug endpoint: examples/quickstart with DEBUG_ADDR=127.0.0.1:6060)", cc.Debug, err)
	}
	c.start = time.Now()
	r.res = &Result{Config: cfg, Start: c.start}
	res := r.res
	phase0 := "baseline"
	if cc.Warmup > 0 {
		phase0 = "start"
	}
	start, ok := r.sample(ctx, phase0)
	if !ok {
		return nil, errors.New("no first sample")
	}
	if start.Connections != 0 {
		c.logf("warning: the server has %d connections before the run (quickstart: WATCH=false); the final count must be 0", start.Connections)
	}
	c.logf("scenario churn: %d slots (%d per user), lifetimes %v–%v, %g %% abrupt closes, tokens valid %v, warm-up %v, duration %v, settle %v, procs %d; before any client: live heap %.2f MiB, goroutines %d, RSS %.1f MiB",
		cc.Slots, cc.PerUser, cc.MinLife, cc.MaxLife, cc.AbruptPct, cc.TokenTTL, cc.Warmup, cfg.Duration, cc.Settle, cfg.Procs, mib(start.HeapAlloc), start.Goroutines, mib(start.RSS))
	hs := newHist()
	var warm phaseCounts
	base := start
	if cc.Warmup > 0 {
		var interrupted bool
		var err error
		warm, interrupted, err = r.churn(ctx, "warmup", cc.Warmup, start, hs)
		if err != nil {
			return nil, err
		}
		if interrupted {
			return nil, errors.New("interrupted during the warm-up")
		}
		r.settle(ctx, "warmup-settle")
		if base, ok = r.sample(ctx, "baseline"); !ok {
			return nil, errors.New("no baseline sample")
		}
		c.logf("baseline after the warm-up: live heap %.2f MiB (%+.1f %% over the start), goroutines %d, connections %d",
			mib(base.HeapAlloc), pct(start.HeapAlloc, base.HeapAlloc), base.Goroutines, base.Connections)
	}
	res.ChurnStart = time.Since(c.start).Seconds()
	n, interrupted, err := r.churn(ctx, "churn", cfg.Duration, base, hs)
	if err != nil {
		return nil, err
	}
	res.ChurnEnd = time.Since(c.start).Seconds()
	if !interrupted {
		c.logf("settling %v", cc.Settle)
		r.settle(ctx, "settle")
	}
	final, ok := r.sample(ctx, "final")
	if !ok {
		return nil, errors.New("no final sample")
	}
	res.Elapsed = time.Since(c.start).Seconds()
	res.Handshake = hs.Summary()
	res.Memory = r.mem
	peak := base
	var peakConns, peakG int
	var peakRSS uint64
	for _, m := range r.mem {
		if m.HeapAlloc > peak.HeapAlloc {
			peak = m
		}
		peakConns, peakG, peakRSS = max(peakConns, m.Connections), max(peakG, m.Goroutines), max(peakRSS, m.RSS)
	}
	connects := n.attempts - n.failures
	churnSecs := res.ChurnEnd - res.ChurnStart
	sum := map[string]any{
		"attempts": n.attempts, "failures": n.failures, "connects": connects,
		"warmup_connects": warm.attempts - warm.failures, "warmup_failures": warm.failures,
		"dials_cut":    n.cut + warm.cut,
		"clean_closes": n.ends.Clean, "fin_drops": n.ends.FIN, "rst_drops": n.ends.RST, "server_closes": n.ends.Server,
		"peak_connected":             peakConns,
		"server_heap_alloc_start":    start.HeapAlloc,
		"server_heap_alloc_baseline": base.HeapAlloc, "server_heap_alloc_peak": peak.HeapAlloc, "server_heap_alloc_end": final.HeapAlloc,
		"server_heap_inuse_baseline": base.HeapInuse, "server_heap_inuse_end": final.HeapInuse,
		"server_rss_start": start.RSS, "server_rss_baseline": base.RSS, "server_rss_peak": peakRSS, "server_rss_end": final.RSS,
		"server_goroutines_baseline": base.Goroutines, "server_goroutines_peak": peakG, "server_goroutines_end": final.Goroutines,
		"server_objects_baseline": base.HeapObjects, "server_objects_end": final.HeapObjects,
		"server_connections_end":   final.Connections,
		"server_token_closes":      final.TokenExpiry - start.TokenExpiry,
		"server_accepted":          final.Accepted - start.Accepted,
		"heap_growth_pct":          pct(base.HeapAlloc, final.HeapAlloc),
		"heap_growth_vs_start_pct": pct(start.HeapAlloc, final.HeapAlloc),
	}
	if churnSecs > 0 {
		sum["connects_per_s"] = float64(connects) / churnSecs
	}
	if connects > 0 {
		sum["heap_growth_per_connect_bytes"] = (float64(final.HeapAlloc) - float64(base.HeapAlloc)) / float64(connects)
	}
	res.Summary = sum
	judgeChurn(res, cc, n.attempts+warm.attempts, n.failures+warm.failures, base, final)
	c.logf("done: %s", verdictLine(res))
	return res, nil
}

// pct is the change from a to b in percent of a (0 when a is 0).
func pct(a, b uint64) float64 {
	if a == 0 {
		return 0
	}
	return 100 * (float64(b) - float64(a)) / float64(a)
}

// judgeChurn adds the churn verdicts: every dial succeeded; the server is
// back to 0 connections, its live heap after GC within HeapTol % of the
// baseline and its goroutines within GoroutineTol of it.
func judgeChurn(res *Result, cc churnConfig, attempts, failures int, base, final memPoint) {
	res.Verdicts = nil
	add := func(name string, pass bool, format string, args ...any) {
		res.Verdicts = append(res.Verdicts, verdict{name, pass, fmt.Sprintf(format, args...)})
	}
	add("connections", failures == 0 && attempts > 0, "%d of %d dials succeeded", attempts-failures, attempts)
	add("connections back to 0", final.Connections == 0, "the server holds %d connections after every client closed", final.Connections)
	limit := float64(base.HeapAlloc) * (1 + cc.HeapTol/100)
	which := "before any client"
	if cc.Warmup > 0 {
		which = "after a " + cc.Warmup.String() + " warm-up"
	}
	add("heap back to baseline", float64(final.HeapAlloc) <= limit,
		"live heap after GC, baseline %s → end: %.2f → %.2f MiB (%+.1f %%), want ≤ %+g %% (%.2f MiB); objects %d → %d; HeapInuse %.2f → %.2f MiB; RSS %.1f → %.1f MiB (not judged)",
		which, mib(base.HeapAlloc), mib(final.HeapAlloc), pct(base.HeapAlloc, final.HeapAlloc), cc.HeapTol, limit/(1<<20), base.HeapObjects, final.HeapObjects,
		mib(base.HeapInuse), mib(final.HeapInuse), mib(base.RSS), mib(final.RSS))
	d := final.Goroutines - base.Goroutines
	add("goroutines back to baseline", int(math.Abs(float64(d))) <= cc.GoroutineTol,
		"goroutines %d → %d (%+d), want within ±%d", base.Goroutines, final.Goroutines, d, cc.GoroutineTol)
	res.Pass = true
	for _, v := range res.Verdicts {
		res.Pass = res.Pass && v.Pass
	}
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
