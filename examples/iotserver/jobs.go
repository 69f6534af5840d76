package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub"
)

// Health is the payload of system:health (and GET /api/health).
type Health struct {
	At         time.Time `json:"at"`
	Uptime     float64   `json:"uptime"` // seconds
	Node       string    `json:"node"`
	Interval   float64   `json:"interval"` // seconds between two system:health events
	Conns      int       `json:"connections"`
	Users      int       `json:"users"`
	Rooms      int       `json:"rooms"`
	Goroutines int       `json:"goroutines"`
	HeapBytes  uint64    `json:"heap_bytes"`
	RSSBytes   uint64    `json:"rss_bytes"`
	// OpenAlerts and Devices are counted from the store, the state GET
	// /api/alerts and GET /api/devices serve (the dashboard's panels); null
	// when the store did not answer.
	OpenAlerts *int          `json:"open_alerts"`
	Devices    *DeviceCounts `json:"devices"`
	MQTT       MQTTState     `json:"mqtt"`
	DB         DBState       `json:"db"`
	// Rates are per second over the interval between the two latest
	// samples; null until there are two (a rate needs a previous sample:
	// never a made-up 0).
	Rates   *Rates  `json:"rates"`
	Refused Refused `json:"refused"`
}

// DeviceCounts counts the devices the store knows (simulated and external)
// by status.
type DeviceCounts struct {
	Total  int `json:"total"`
	Online int `json:"online"`
}

// MQTTState is the MQTT side of Health.
type MQTTState struct {
	Status       string `json:"status"` // connected, connecting
	Broker       string `json:"broker"` // embedded or external
	Received     uint64 `json:"received"`
	Published    uint64 `json:"published"`
	DecodeErrors uint64 `json:"decode_errors"`
	Dropped      uint64 `json:"dropped"`
	Queued       int    `json:"queued"`
	SimDevices   int    `json:"sim_devices"` // simulated devices with an MQTT connection up (not their status)
	LastError    string `json:"last_error,omitempty"`
}

// DBState is the store side of Health.
type DBState struct {
	Status    string  `json:"status"` // ok or error
	Kind      string  `json:"kind"`   // memory or postgres
	LatencyMS float64 `json:"latency_ms"`
	Written   uint64  `json:"written"` // readings
	Dropped   uint64  `json:"dropped"` // readings not queued (store behind)
	Failed    uint64  `json:"failed"`  // readings the store refused
	Error     string  `json:"error,omitempty"`
}

// Rates are event rates per second.
type Rates struct {
	Published float64 `json:"published"` // hub publishes
	Delivered float64 `json:"delivered"` // event frames to clients
	MQTT      float64 `json:"mqtt"`      // MQTT messages received
	Readings  float64 `json:"readings"`
}

// Refused counts what the hub refused since start.
type Refused struct {
	Unauthorized uint64 `json:"unauthorized"`
	Forbidden    uint64 `json:"forbidden"`
	RateLimited  uint64 `json:"rate_limited"`
}

// healthReporter builds Health snapshots. Rates are computed between two
// samples of the periodic event (next); begin takes the first, so that the
// first event already has rates over its interval. GET /api/health
// (current) is a fresh snapshot with the rates of the latest sample.
type healthReporter struct {
	hub      *rthub.Hub
	store    Store
	ingest   *Ingest
	writer   *readingWriter
	mqtt     func() MQTTState
	node     string
	start    time.Time
	interval time.Duration

	mu   sync.Mutex
	prev *counters // the latest sample's counters; nil before the first
	last *Rates    // the latest sample's rates; nil before the second

	dbOK atomic.Bool
}

// counters are the cumulative counts rates are computed from.
type counters struct {
	at                   time.Time
	published, delivered uint64
	mqtt, readings       uint64
}

// counters reads them; at is now, mqttReceived the MQTT side's count.
func (r *healthReporter) counters(at time.Time, mqttReceived uint64) counters {
	st := r.hub.Stats()
	return counters{at: at, published: st.Published, delivered: st.Delivered,
		mqtt: mqttReceived, readings: r.ingest.readings.Load()}
}

// storeBudget bounds the store calls of one snapshot together.
const storeBudget = 2 * time.Second

func (r *healthReporter) snapshot(ctx context.Context) Health {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := r.hub.Stats()
	h := Health{
		At: time.Now().UTC(), Uptime: time.Since(r.start).Seconds(), Node: r.node, Interval: r.interval.Seconds(),
		Conns: st.Connections, Users: st.Users, Rooms: st.Rooms,
		Goroutines: runtime.NumGoroutine(), HeapBytes: ms.HeapInuse, RSSBytes: rss(),
		MQTT:    r.mqtt(),
		Refused: Refused{Unauthorized: st.Unauthorized, Forbidden: st.Forbidden, RateLimited: st.RateLimited},
	}
	sctx, cancel := context.WithTimeout(ctx, storeBudget)
	defer cancel()
	t0 := time.Now()
	err := r.store.Ping(sctx)
	h.DB = DBState{Status: "ok", Kind: r.store.Kind(), LatencyMS: float64(time.Since(t0).Microseconds()) / 1000,
		Written: r.writer.written.Load(), Dropped: r.writer.dropped.Load(), Failed: r.writer.failed.Load()}
	if err != nil {
		h.DB.Status, h.DB.Error = "error", err.Error()
	}
	r.dbOK.Store(err == nil)
	if err == nil {
		// The panels' own sources: the devices and the open alerts in the
		// store (the alert engine's map is this node's view only).
		if ds, err := r.store.Devices(sctx); err == nil {
			c := DeviceCounts{Total: len(ds)}
			for _, d := range ds {
				if d.Status == statusOnline {
					c.Online++
				}
			}
			h.Devices = &c
		}
		if ac, err := r.store.AlertCounts(sctx, h.At); err == nil {
			n := int(ac.Open)
			h.OpenAlerts = &n
		}
	}
	return h
}

// begin takes the first sample of the counters, so that the first periodic
// event has rates.
func (r *healthReporter) begin() {
	c := r.counters(time.Now(), r.mqtt().Received)
	r.mu.Lock()
	r.prev = &c
	r.mu.Unlock()
}

// next is the periodic sample: a snapshot with the rates since the
// previous sample (none before there is one).
func (r *healthReporter) next(ctx context.Context) Health {
	c := r.counters(time.Now(), r.mqtt().Received) // before the store calls, which may take a while
	h := r.snapshot(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.prev; p != nil {
		if dt := c.at.Sub(p.at).Seconds(); dt > 0 {
			r.last = &Rates{
				Published: float64(c.published-p.published) / dt,
				Delivered: float64(c.delivered-p.delivered) / dt,
				MQTT:      float64(c.mqtt-p.mqtt) / dt,
				Readings:  float64(c.readings-p.readings) / dt,
			}
		}
	}
	r.prev = &c
	h.Rates = r.last
	return h
}

// current is what GET /api/health serves: a snapshot taken now (so its
// counts agree with what GET /api/devices and /api/alerts answer now), with
// the rates of the latest periodic sample.
func (r *healthReporter) current(ctx context.Context) Health {
	h := r.snapshot(ctx)
	r.mu.Lock()
	h.Rates = r.last
	r.mu.Unlock()
	return h
}

// Analytics is the payload of analytics:update (and GET /api/analytics):
// per device and metric aggregates over the window, and alert counts.
type Analytics struct {
	ComputedAt time.Time   `json:"computed_at"` // when the store was queried (cached up to ANALYTICS_CACHE_TTL)
	SentAt     time.Time   `json:"sent_at"`
	Window     float64     `json:"window"` // seconds
	Devices    []Aggregate `json:"devices"`
	Alerts     AlertCounts `json:"alerts"`
}

// analyticsService computes analytics from the store at most once per TTL:
// the result is cached in the process and in the store itself (shared by
// the nodes of one PostgreSQL database), so many clients and nodes cost one
// aggregate query per TTL.
type analyticsService struct {
	store  Store
	window time.Duration
	ttl    time.Duration

	mu       sync.Mutex
	cached   Analytics
	has      bool
	computes atomic.Uint64 // store aggregations run (tests)
}

const analyticsKey = "analytics:v1"

func (a *analyticsService) get(ctx context.Context) (Analytics, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	if a.has && now.Sub(a.cached.ComputedAt) < a.ttl {
		out := a.cached
		out.SentAt = now.UTC()
		return out, nil
	}
	if a.ttl > 0 {
		body, _, ok, err := a.store.CachedAnalytics(ctx, analyticsKey, now.Add(-a.ttl))
		if err == nil && ok {
			var v Analytics
			if json.Unmarshal(body, &v) == nil {
				a.cached, a.has = v, true
				v.SentAt = now.UTC()
				return v, nil
			}
		}
	}
	aggs, err := a.store.Aggregates(ctx, now.Add(-a.window))
	if err != nil {
		return Analytics{}, fmt.Errorf("analytics: %w", err)
	}
	counts, err := a.store.AlertCounts(ctx, now.Add(-a.window))
	if err != nil {
		return Analytics{}, fmt.Errorf("analytics: %w", err)
	}
	a.computes.Add(1)
	v := Analytics{ComputedAt: now.UTC(), Window: a.window.Seconds(), Devices: aggs, Alerts: counts}
	if body, err := json.Marshal(v); err == nil && a.ttl > 0 {
		_ = a.store.SaveAnalytics(ctx, analyticsKey, body, v.ComputedAt)
	}
	a.cached, a.has = v, true
	v.SentAt = now.UTC()
	return v, nil
}

// every runs fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func(ctx context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// auditor writes audit entries to the store and publishes them to the admin
// room, off the caller's goroutine (rthub's OnRefused must be fast): a
// bounded queue, entries beyond it dropped and counted.
type auditor struct {
	store   Store
	hub     *rthub.Hub
	log     *slog.Logger
	ch      chan AuditEntry
	done    chan struct{}
	dropped atomic.Uint64
	mu      sync.RWMutex
	closed  bool
}

func newAuditor(store Store, hub *rthub.Hub, log *slog.Logger) *auditor {
	a := &auditor{store: store, hub: hub, log: log, ch: make(chan AuditEntry, 1024), done: make(chan struct{})}
	go a.run() // stopped by stop
	return a
}

// add queues e; it never blocks.
func (a *auditor) add(e AuditEntry) {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return
	}
	select {
	case a.ch <- e:
	default:
		a.dropped.Add(1)
	}
}

func (a *auditor) run() {
	defer close(a.done)
	for e := range a.ch {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		saved, err := a.store.AddAudit(ctx, e)
		if err != nil {
			a.log.Warn("audit: not stored", "kind", e.Kind, "err", err)
			saved = e
		}
		_ = AuditEvent.Publish(ctx, a.hub, roomAdmin, saved)
		cancel()
	}
}

func (a *auditor) stop(ctx context.Context) {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.ch)
	}
	a.mu.Unlock()
	select {
	case <-a.done:
	case <-ctx.Done():
	}
}

// refusalEntry turns a hub refusal into an audit entry.
func refusalEntry(r rthub.Refusal) AuditEntry {
	kind := auditForbidden
	switch {
	case r.Op == "handshake" && r.Status == 401:
		kind = auditUnauthorized
	case r.Op == "handshake" && r.Code == "forbidden_origin":
		kind = auditOriginDenied
	case r.Op == "handshake", r.Op == "abuse", r.Code == "rate_limited":
		kind = "refused"
	}
	detail := r.Op
	switch {
	case r.Room != "" && r.Event != "":
		detail += fmt.Sprintf(" %s to %q", r.Event, r.Room)
	case r.Room != "":
		detail += fmt.Sprintf(" %q", r.Room)
	}
	detail += ": " + r.Code
	if r.Origin != "" {
		detail += " (origin " + r.Origin + ")"
	}
	if r.ConnID != "" {
		detail += " [conn " + r.ConnID + "]"
	}
	addr := r.RemoteAddr
	if r.ClientIP.IsValid() {
		addr = r.ClientIP.String()
	}
	return AuditEntry{Kind: kind, Username: r.Subject, Detail: detail, RemoteAddr: addr}
}
