// Command quickstart is the smallest complete rthub server: a hub with a
// staff/admin policy, simulated sensors publishing sensor:data to device
// rooms, and (by default) a Go client in the same process that prints the
// events it receives, so one command shows events flowing.
//
//	go run ./examples/quickstart
//
// It prints demo tokens and a wscat command line for watching from another
// terminal. It also serves GET /stats (JSON: hub counters, runtime, RSS) and
// POST /publish (admin token; body {"room","event","data"}), which the load
// tool in examples/loadtest uses. Settings (environment, defaults printed at start):
//
//	ADDR              listen address (127.0.0.1:8080)
//	JWT_SECRET        HMAC secret, 32+ bytes (random: demo mode, tokens printed)
//	PUBLISH_INTERVAL  how often each simulated device publishes (1s)
//	WATCH             run the printing client (true)
//	WRITE_DELAY       rthub.Options.WriteDelay: coalesce busy rooms' writes (0; e.g. 20ms)
//	PRESENCE          comma-separated room patterns with presence on, e.g. device:* (none)
//	DEBUG_ADDR        opt-in debug listener, e.g. 127.0.0.1:6060 (off): GET /debug/memory
//	                  (memory after forced GCs, goroutines, RSS, hub connections; JSON)
//	                  and net/http/pprof under /debug/pprof/
//	DEBUG_REMOTE      allow a DEBUG_ADDR that is not loopback (false)
//
// Connection and handshake limits (rthub.Limits; unset: the hub's defaults,
// a negative value turns a limit off; see docs/performance.md, "Connect
// storms", for sizing them):
//
//	MAX_CONNS_PER_USER   Limits.MaxConnsPerUser (100)
//	MAX_CONNS_PER_IP     Limits.MaxConnsPerIP (off)
//	HANDSHAKES_PER_IP    Limits.HandshakesPerIP, per second (off)
//	HANDSHAKES_PER_USER  Limits.HandshakesPerUser, per second (2)
//	HANDSHAKE_BURST      Limits.HandshakeBurst, of both handshake limits (20)
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/examples/internal/hubhttp"
	"github.com/org/rthub/token"
	"golang.org/x/time/rate"
)

// Reading is the payload of sensor:data.
type Reading struct {
	Device string    `json:"device"`
	Temp   float64   `json:"temp"`
	At     time.Time `json:"at"`
}

// SensorData is published to device:<id> rooms.
var SensorData = rthub.NewEvent[Reading]("sensor:data")

// Chat is what staff may emit to the staff room; the hub relays it.
type Chat struct {
	Text string `json:"text"`
}

// ChatMessage is relayed to the staff room.
var ChatMessage = rthub.NewEvent[Chat]("chat:message")

// policy: staff may watch any device and chat in staff; admin also has admin.
var policy = rthub.Policy{Roles: map[string]rthub.RoleRules{
	"staff": {
		Join:     []string{"staff", "device:*"},
		AutoJoin: []string{"staff", "user:{sub}"},
		Emit:     []rthub.EmitRule{{Events: []string{"chat:message"}, Rooms: []string{"staff"}}},
	},
	"admin": {
		Join:     []string{"staff", "admin", "device:*"},
		AutoJoin: []string{"staff", "admin", "user:{sub}"},
		Emit:     []rthub.EmitRule{{Events: []string{"chat:message"}, Rooms: []string{"staff", "admin"}}},
	},
}}

type config struct {
	addr     string
	secret   []byte
	demo     bool
	interval time.Duration
	watch    bool
	delay    time.Duration // rthub.Options.WriteDelay
	presence []string      // rthub.Policy.Presence
	debug    string        // debug listener address; "" = off
	limits   rthub.Limits  // connection and handshake limits from the environment
}

// configFromEnv reads the settings; getenv is os.Getenv outside tests.
func configFromEnv(getenv func(string) string) (config, error) {
	cfg := config{addr: "127.0.0.1:8080", interval: time.Second, watch: true}
	if v := getenv("ADDR"); v != "" {
		cfg.addr = v
	}
	if v := getenv("JWT_SECRET"); v != "" {
		cfg.secret = []byte(v)
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		cfg.secret = []byte(hex.EncodeToString(b))
		cfg.demo = true
	}
	if v := getenv("PUBLISH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("PUBLISH_INTERVAL=%q: want a positive duration like 500ms", v)
		}
		cfg.interval = d
	}
	if v := getenv("WRITE_DELAY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Second {
			return cfg, fmt.Errorf("WRITE_DELAY=%q: want a duration from 0 to 1s, like 20ms", v)
		}
		cfg.delay = d
	}
	if v := getenv("WATCH"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return cfg, fmt.Errorf("WATCH=%q: want true or false", v)
		}
		cfg.watch = b
	}
	for p := range strings.SplitSeq(getenv("PRESENCE"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.presence = append(cfg.presence, p) // rthub.New checks the patterns
		}
	}
	remote := false
	if v := getenv("DEBUG_REMOTE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return cfg, fmt.Errorf("DEBUG_REMOTE=%q: want true or false", v)
		}
		remote = b
	}
	if v := getenv("DEBUG_ADDR"); v != "" {
		if err := checkDebugAddr(v, remote); err != nil {
			return cfg, err
		}
		cfg.debug = v
	}
	return cfg, limitsFromEnv(getenv, &cfg.limits)
}

// limitsFromEnv reads the connection and handshake limits; unset
// variables leave the hub's defaults.
func limitsFromEnv(getenv func(string) string, l *rthub.Limits) error {
	ints := []struct {
		name string
		p    *int
	}{
		{"MAX_CONNS_PER_USER", &l.MaxConnsPerUser},
		{"MAX_CONNS_PER_IP", &l.MaxConnsPerIP},
		{"HANDSHAKE_BURST", &l.HandshakeBurst},
	}
	for _, e := range ints {
		if v := getenv(e.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s=%q: want an integer (negative: off)", e.name, v)
			}
			*e.p = n
		}
	}
	rates := []struct {
		name string
		p    *rate.Limit
	}{
		{"HANDSHAKES_PER_IP", &l.HandshakesPerIP},
		{"HANDSHAKES_PER_USER", &l.HandshakesPerUser},
	}
	for _, e := range rates {
		if v := getenv(e.name); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("%s=%q: want a number per second (negative: off)", e.name, v)
			}
			*e.p = rate.Limit(f)
		}
	}
	return nil
}

// checkDebugAddr refuses a debug address that is not loopback unless remote:
// the debug listener has no authentication, and pprof shows the process's
// internals (and can be made to burn CPU).
func checkDebugAddr(addr string, remote bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("DEBUG_ADDR=%q: want host:port, like 127.0.0.1:6060", addr)
	}
	if remote {
		return nil
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("DEBUG_ADDR=%q is not a loopback address (an empty host listens on all); set DEBUG_REMOTE=true to serve it anyway", addr)
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := configFromEnv(os.Getenv)
	if err == nil {
		err = run(ctx, cfg, nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// listening is what run reports once it serves: the hub's address and the
// debug listener's ("" when off).
type listening struct {
	addr, debug string
}

// run serves until ctx ends, then drains. ready, if set, receives the
// listening addresses.
func run(ctx context.Context, cfg config, ready chan<- listening) error {
	ctx, stopRun := context.WithCancel(ctx) // a server failing stops the rest too
	defer stopRun()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	pol := policy
	pol.Presence = cfg.presence
	hub, err := rthub.New(rthub.Options{
		Auth:     rthub.AuthOptions{Keys: map[string]any{"": cfg.secret}},
		Policy:   pol,
		Handlers: []rthub.Handler{ChatMessage.Relay()},
		Logger:   log,
		// Busy rooms coalesce their writes (the load tool's throughput runs);
		// rooms slower than one event per delay are not held.
		WriteDelay: cfg.delay,
		Limits:     cfg.limits,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		hub.Close()
		return err
	}
	addr := ln.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("GET /stats", hubhttp.StatsHandler(hub, time.Now()))
	mux.Handle("POST /publish", hubhttp.Publish(hub, cfg.secret))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(ln) }()
	var dbg *http.Server
	dbgAddr := ""
	if cfg.debug != "" {
		dln, err := net.Listen("tcp", cfg.debug)
		if err != nil {
			_ = srv.Close()
			hub.Close()
			return fmt.Errorf("DEBUG_ADDR: %w", err)
		}
		dbgAddr = dln.Addr().String()
		dbg = &http.Server{Handler: debugMux(hub), ReadHeaderTimeout: 10 * time.Second}
		go func() { serveErr <- dbg.Serve(dln) }()
		fmt.Printf("debug endpoints on http://%s/debug/memory and http://%s/debug/pprof/\n", dbgAddr, dbgAddr)
	}
	if len(cfg.presence) > 0 {
		fmt.Printf("presence on in rooms %s\n", strings.Join(cfg.presence, ", "))
	}

	staffTok, _ := sign(cfg.secret, "alice", "staff")
	adminTok, _ := sign(cfg.secret, "root", "admin")
	fmt.Printf("rthub quickstart listening on ws://%s/ws (publish every %v)\n", addr, cfg.interval)
	if cfg.demo {
		fmt.Printf("demo mode (JWT_SECRET unset, random secret); tokens valid 24 h:\n  staff alice: %s\n  admin root:  %s\n", staffTok, adminTok)
		fmt.Printf("watch from another terminal:\n  npx wscat -s rthub.v1 -H 'Authorization: Bearer %s' -c ws://%s/ws\n  then type: {\"id\":1,\"op\":\"join\",\"room\":\"device:1\"}\n", staffTok, addr)
	}
	if ready != nil {
		ready <- listening{addr: addr, debug: dbgAddr}
	}

	// The simulated sensors: one goroutine, stopped by ctx, waited for below.
	sensorsDone := make(chan struct{})
	go func() {
		defer close(sensorsDone)
		simulate(ctx, hub, cfg.interval)
	}()

	var watcher *client.Client
	if cfg.watch {
		watcher, err = watch(ctx, "ws://"+addr+"/ws", cfg.secret)
		if err != nil {
			log.Error("watcher", "err", err)
		}
	}

	var failed error
	select {
	case <-ctx.Done():
	case failed = <-serveErr:
		stopRun()
	}
	fmt.Println("shutting down: draining connections")
	if watcher != nil {
		watcher.Close()
	}
	<-sensorsDone
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := hub.Shutdown(shutdownCtx); err != nil {
		log.Warn("hub drain cut short", "err", err)
	}
	if dbg != nil {
		_ = dbg.Close() // a pprof profile in progress is cut short
	}
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(failed, err)
	}
	return failed
}

// debugMux serves the opt-in debug endpoints: /debug/memory (see
// hubhttp.MemoryHandler) and net/http/pprof's, registered here rather than
// on http.DefaultServeMux, which this program never serves.
func debugMux(hub *rthub.Hub) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /debug/memory", hubhttp.MemoryHandler(hub))
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also serves the named profiles: heap, goroutine, allocs…
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// simulate publishes a reading for devices 1–3 every interval.
func simulate(ctx context.Context, hub *rthub.Hub, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for d := 1; d <= 3; d++ {
				r := Reading{
					Device: strconv.Itoa(d),
					Temp:   math.Round((20+3*math.Sin(float64(i)/10+float64(d)))*100) / 100,
					At:     now.UTC(),
				}
				_ = SensorData.Publish(ctx, hub, "device:"+r.Device, r)
			}
		}
	}
}

// watch connects a Go client as staff, joins device:1 and prints what arrives.
func watch(ctx context.Context, url string, secret []byte) (*client.Client, error) {
	c, err := client.Dial(ctx, url, client.Options{
		TokenFunc: func(context.Context) (string, error) { return sign(secret, "watcher", "staff") },
		Rooms:     []string{"device:1"},
	})
	if err != nil {
		return nil, err
	}
	client.Handle(c, SensorData, func(room string, r Reading) {
		fmt.Printf("watcher got sensor:data in %s: device %s %.2f °C\n", room, r.Device, r.Temp)
	})
	return c, nil
}

// sign issues a demo token valid for 24 hours.
func sign(secret []byte, sub, role string) (string, error) {
	return token.Sign(secret, token.Claims{Subject: sub, Roles: []string{role}, TTL: 24 * time.Hour})
}
