// Command iotserver is the complete example IoT server of rthub: simulated
// sensors publish over MQTT, the mqttbridge turns their messages into hub
// events, readings and alerts are kept in a store, and a dashboard served by
// the binary shows it all live.
//
//	go run ./examples/iotserver
//
// With no settings it needs no services: an embedded MQTT broker on
// 127.0.0.1:1884, six simulated devices, an in-memory store, a random JWT
// secret and demo logins, printed at start. RTHUB_POSTGRES_URL and
// RTHUB_MQTT_URL switch to PostgreSQL and a running broker; .env.example
// lists every setting and README.md describes the events and the design.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/admin"
	"github.com/org/rthub/mqttbridge"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := configFromEnv(os.Getenv)
	if err == nil {
		err = run(ctx, cfg, os.Stdout, nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "iotserver:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down in order: the hub drains
// (clients are told to reconnect, spread over WS_DRAIN_WINDOW), then the
// HTTP server, the simulated devices, the MQTT bridge, the reading writer,
// the embedded broker and the store, all within SHUTDOWN_TIMEOUT. ready, if
// set, receives the HTTP address once the server accepts connections.
// shutdownGrace is how long past the shutdown deadline a stop step that
// ignores its context is waited for before it is abandoned.
const shutdownGrace = 2 * time.Second

func run(ctx context.Context, cfg Config, out io.Writer, ready chan<- string) (err error) {
	start := time.Now()
	// Every line logged with a context gets its correlation ID (cid) and,
	// with tracing on, trace_id and span_id (logging.go).
	logTo := cfg.logTo
	if logTo == nil {
		logTo = os.Stderr
	}
	log := slog.New(ctxHandler{slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: cfg.LogLevel})})
	// cleanup runs the stop steps registered so far, last first, on any
	// return (a failed start included).
	// One deadline for the whole shutdown, set when it starts.
	type cleanup struct {
		name string
		fn   func(ctx context.Context)
	}
	var cleanups []cleanup
	var stopCtx context.Context
	var stopStart time.Time
	// step runs one stop step under the shutdown deadline (stopCtx, set
	// before any step runs). Every step honours its context; should one
	// not return anyway (a library that ignores it, a write with no
	// deadline), it is abandoned shortly after the deadline, loudly, so
	// that the process still exits and the steps after it still run: an
	// orchestrator's SIGKILL would lose them all.
	step := func(name string, fn func(ctx context.Context)) {
		t := time.Now()
		done := make(chan struct{})
		go func() { // owned by step; abandoned if it overruns (the process is ending)
			defer close(done)
			fn(stopCtx)
		}()
		// Until the deadline plus the grace; once that has passed, a
		// moment for each remaining step.
		dl, _ := stopCtx.Deadline()
		wait := time.NewTimer(max(time.Until(dl)+shutdownGrace, shutdownGrace/20))
		defer wait.Stop()
		select {
		case <-done:
			log.Debug("stopped", "what", name, "took", time.Since(t).Round(time.Millisecond))
		case <-wait.C:
			log.Error("shutdown: step abandoned, still running past the deadline", "what", name, "took", time.Since(t).Round(time.Millisecond))
		}
	}
	defer func() {
		if stopCtx == nil {
			var cancel context.CancelFunc
			stopCtx, cancel = context.WithTimeout(context.Background(), cfg.Shutdown)
			defer cancel()
		}
		for i := len(cleanups) - 1; i >= 0; i-- {
			step(cleanups[i].name, cleanups[i].fn)
		}
		if !stopStart.IsZero() {
			log.Info("shutdown complete", "took", time.Since(stopStart).Round(time.Millisecond))
		}
	}()
	onStop := func(name string, fn func(ctx context.Context)) { cleanups = append(cleanups, cleanup{name, fn}) }

	// Tracing (off unless OTEL_TRACES_EXPORTER says otherwise), stopped
	// last so that it exports the spans of the shutdown too.
	tr, err := startTracing(ctx, cfg, out)
	if err != nil {
		return err
	}
	onStop("tracing", func(ctx context.Context) {
		if err := tr.shutdown(ctx); err != nil {
			log.Warn("tracing: shutdown", "err", err)
		}
	})

	// Store.
	var store Store
	if cfg.Postgres != "" {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		pg, err := OpenPostgres(pctx, cfg.Postgres, cfg.PGSchema)
		cancel()
		if err != nil {
			return err
		}
		store = pg
	} else {
		store = NewMemoryStore(0)
	}
	onStop("store", func(context.Context) { store.Close() })
	users := cfg.SeedUsers
	if cfg.Demo {
		users = append(append([]seedUser(nil), demoUsers...), users...)
	}
	if err := seedUsers(ctx, store, users); err != nil {
		return err
	}

	// Hub. The audit trail gets every refusal (the hook must be fast: the
	// auditor queues); the metrics count refusals and disconnects by code.
	var aud *auditor
	var pub rthub.Publisher       // set right after the hub: the hub, or its tracing wrapper
	var bridge *mqttbridge.Bridge // set below, before /metrics and /ws are served
	var ingest *Ingest            // set below, before /ws is served
	met := newMetrics(func() *mqttbridge.Bridge { return bridge })
	onConnect, onDisconnect := connLogger(log.With("component", "hub"))
	pol := policy
	pol.Presence = []string{roomStaff}
	origin := rthub.OriginOptions{Patterns: cfg.Origins}
	hubBroker, err := tr.broker() // a memory broker keeping hubState, traced with tracing on
	if err != nil {
		return err
	}
	refusals := admin.NewRefusalLog(0) // the newest 256, for the admin API
	hub, err := rthub.New(rthub.Options{
		Auth:        rthub.AuthOptions{Keys: map[string]any{"": cfg.Secret}, Algorithms: []string{"HS256"}},
		Policy:      pol,
		Origin:      origin,
		DrainWindow: cfg.Drain,
		Broker:      hubBroker,
		OnRefused: met.col.OnRefused(tr.onRefused(func(ctx context.Context, r rthub.Refusal) {
			aud.add(refusalEntry(r))
			refusals.Record(ctx, r)
		})),
		OnConnect:    onConnect,
		OnDisconnect: met.col.OnDisconnect(onDisconnect),
		Logger:       log.With("component", "hub"),
		// alert:ack, the one client emit, checked against its schema
		// (contract/schema.json) before the handler sees it.
		Handlers: []rthub.Handler{ackHandler(store, func(ctx context.Context, a Alert) error {
			return AlertAcked.Publish(ctx, pub, roomStaff, a)
		}, func(e AuditEntry) { aud.add(e) }, log)},
		// device:command, admins only (policy): queued with the bridge's
		// downlink (commands.go). The bridge is set before the hub serves.
		RPCs: []rthub.RPCHandler{commandHandler(func() *mqttbridge.Bridge { return bridge }, func(id string) bool { return ingest.Known(id) },
			rulesByMetric(cfg.Rules), func(e AuditEntry) { aud.add(e) }, log)},
		ValidateEmits: true,
	})
	if err != nil {
		return err
	}
	onStop("hub", func(context.Context) { hub.Close() }) // no-op after Shutdown
	met.col.SetHub(hub)
	pub = tr.publisher(hub) // the hub, with a span per publish when tracing
	aud = newAuditor(store, hub, log)
	onStop("audit", aud.stop)

	// Ingest: alert rules, the reading writer, the bridge.
	alerts := NewAlertEngine(cfg.Rules, store, func(ctx context.Context, ev string, a Alert) {
		for _, room := range []string{roomStaff, deviceRoom(a.Device)} {
			if err := pub.Publish(ctx, room, ev, a, rthub.WithCorrelationID(correlationID(ctx))); err != nil && !errors.Is(err, rthub.ErrHubClosed) {
				log.WarnContext(ctx, "publish alert", "err", err)
			}
		}
	}, log)
	if err := alerts.Load(ctx); err != nil {
		return fmt.Errorf("loading open alerts: %w", err)
	}
	writer := newReadingWriter(store, 200*time.Millisecond, 20000, log)
	onStop("reading writer", func(ctx context.Context) {
		if err := writer.stop(ctx); err != nil {
			log.Warn("reading writer: stop", "err", err)
		}
	})
	known, err := store.Devices(ctx)
	if err != nil {
		return err
	}
	ingest = NewIngest(store, alerts, writer, known, log)

	mqttURL := cfg.MQTTURL
	var broker *EmbeddedBroker
	if mqttURL == "" {
		broker, err = StartEmbeddedBroker(cfg.EmbedAddr, log)
		if err != nil {
			return err
		}
		mqttURL = broker.URL()
		onStop("embedded broker", func(context.Context) { broker.Close() })
	}
	var sim *Simulator
	if cfg.Sim.Devices > 0 {
		sim, err = NewSimulator(cfg.Sim, mqttURL, cfg.Prefix, log)
		if err == nil {
			sim.tracing = tr
		}
		if err != nil {
			return err
		}
		if err := ingest.RegisterDevices(ctx, sim.Devices()); err != nil {
			return err
		}
	}
	bridge, err = newBridge(bridgePublisher{tr, pub}, tr, ingest, cfg, mqttURL,
		commandConfig(cfg.Prefix, store.Commands()), onCommandDone(alerts, log), log)
	if err != nil {
		return err
	}
	if err := bridge.Start(); err != nil {
		return err
	}
	onStop("mqtt bridge", func(ctx context.Context) {
		if err := bridge.Shutdown(ctx); err != nil {
			log.Warn("mqtt bridge: shutdown", "err", err)
		}
	})
	if sim != nil {
		simCtx, stopSim := context.WithCancel(context.WithoutCancel(ctx))
		sim.Start(simCtx)
		onStop("simulator", func(context.Context) { stopSim(); sim.Wait() })
	}
	if cfg.stopStep != nil {
		onStop("test step", cfg.stopStep)
	}

	// Periodic jobs.
	var idb [3]byte
	_, _ = rand.Read(idb[:])
	health := &healthReporter{hub: hub, store: store, ingest: ingest, writer: writer,
		mqtt: mqttState(bridge, broker != nil, sim), node: hex.EncodeToString(idb[:]), start: start, interval: cfg.Health}
	health.begin()
	analytics := &analyticsService{store: store, window: cfg.Window, ttl: cfg.CacheTTL}
	jobsCtx, stopJobs := context.WithCancel(context.WithoutCancel(ctx))
	var jobs sync.WaitGroup
	jobs.Go(func() {
		every(jobsCtx, cfg.Health, func(ctx context.Context) {
			_ = SystemHealth.Publish(ctx, hub, roomStaff, health.next(ctx))
		})
	})
	jobs.Go(func() {
		every(jobsCtx, cfg.Analytics, func(ctx context.Context) {
			v, err := analytics.get(ctx)
			if err != nil {
				log.Warn("analytics", "err", err)
				return
			}
			_ = AnalyticsUpdate.Publish(ctx, hub, roomStaff, v)
		})
	})
	jobs.Go(func() {
		every(jobsCtx, cfg.RetainTick, func(ctx context.Context) {
			n, err := store.DeleteReadingsBefore(ctx, time.Now().Add(-cfg.Retention))
			if err != nil {
				log.Warn("retention", "err", err)
			} else if n > 0 {
				log.Info("retention: readings deleted", "samples", n, "older than", cfg.Retention)
			}
		})
	})

	// HTTP.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		stopJobs()
		jobs.Wait()
		return err
	}
	closing := false
	var closingMu sync.Mutex
	a := &api{cfg: cfg, hub: hub, pub: pub, ws: tr.handler(hub), metrics: met.handler(log), tracing: tr, store: store, alerts: alerts, health: health, analytics: analytics, audit: aud, sim: sim, log: log, refusals: refusals, brokerSt: brokerStats(hubBroker),
		ready: readyCheck(store, func() bool { return bridge.Stats().Subscribed }, func() bool {
			closingMu.Lock()
			defer closingMu.Unlock()
			return closing
		})}
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }() // ends with srv.Shutdown below

	addr := ln.Addr().String()
	url := cfg.PublicURL
	if url == "" {
		url = "http://" + addr
	}
	fmt.Fprintf(out, "rthub iotserver: open %s\n", url)
	cfg.print(out, mqttURL)
	if cfg.Demo {
		fmt.Fprintf(out, "demo mode (JWT_SECRET unset: a random secret, so a restart signs everyone out; set JWT_SECRET to keep sessions). Logins:\n")
		for _, u := range demoUsers {
			fmt.Fprintf(out, "  %-6s %s / %s\n", u.Role, u.Username, u.Password)
		}
	}
	if ready != nil {
		ready <- addr
	}

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		log.Error("http server", "err", err)
	}
	stopStart = time.Now()
	fmt.Fprintln(out, "shutting down: draining WebSocket clients")
	closingMu.Lock()
	closing = true
	closingMu.Unlock()
	// One deadline for the whole shutdown: the deferred cleanups use it
	// too, and release it last.
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown)
	stopCtx = sctx
	cleanups = append([]cleanup{{"deadline", func(context.Context) { cancel() }}}, cleanups...)
	step("periodic jobs", func(context.Context) { stopJobs(); jobs.Wait() })
	// Hub first: net/http neither closes nor waits for hijacked connections.
	step("hub (drain)", func(ctx context.Context) {
		if e := hub.Shutdown(ctx); e != nil {
			log.Warn("hub drain cut short", "err", e)
		}
	})
	// REST requests are short; what keeps Shutdown waiting is usually a
	// browser's speculative connection that never sends a request (net/http
	// waits up to 5 s for those). Give requests a second, then close.
	step("http server", func(ctx context.Context) {
		hctx, hcancel := context.WithTimeout(ctx, time.Second)
		defer hcancel()
		if e := srv.Shutdown(hctx); e != nil {
			if errors.Is(e, context.DeadlineExceeded) {
				_ = srv.Close()
			} else if !errors.Is(e, http.ErrServerClosed) {
				log.Warn("http shutdown", "err", e)
			}
		}
	})
	// The deferred cleanups stop the simulator, the bridge, the writer,
	// the auditor, the broker and the store, in that order.
	return err
}
