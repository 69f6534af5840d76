// Command drillserver is the hub node of the failover drills: an rthub hub
// on the Redis broker with JWT auth, plus the HTTP endpoints the drill
// harness drives. Several of them run behind a load balancer; each one is a
// node of one cluster.
//
//	drillserver -addr 127.0.0.1:8081 -redis redis://127.0.0.1:6379/0 -node n1 -secret "$SECRET"
//
// Endpoints:
//
//	GET  /ws       the hub (token in "Authorization: Bearer", HS256 with -secret)
//	POST /ws       the commands of HTTP stream connections (with -http-stream)
//	POST /publish  {"room","event","data"}, token with role "publisher"; 204,
//	               or 503 {"error":"closing"} once draining (not published:
//	               safe to send to another node), or 500 (the broker failed: may
//	               or may not have been published)
//	GET  /healthz  200 when the broker's subscriptions are up and not deaf and
//	               the node is not draining, else 503; JSON either way
//	GET  /stats    JSON: the hub's and the broker's counters
//	POST /revoke   {"subject","token_id","issued_before","reason"} (RFC 3339
//	               time, optional), token with role "publisher": Hub.Revoke on
//	               every node; 200 {"result":{...},"error":"..."}
//	POST /control  {"subject","kind","room","reason"} (kind: disconnect, join,
//	               leave, recheck), token with role "publisher":
//	               Hub.ControlUser; answered like /revoke
//
// Policy: role "drill" is joined to the room "bcast" automatically and may
// join "room:*"; role "admin" is joined to "bcast" and "admin"; the subject
// is the connection's user. A user's current roles (Options.Roles, for a
// recheck) are the fields of the Redis hash <prefix>roles:<subject> (the
// application's user store in the drill: field = role), or the token's when
// the hash does not exist.
//
// SIGTERM or SIGINT drains: /healthz turns 503, the hub closes its
// connections with 1001 over -drain (clients reconnect elsewhere), then the
// HTTP server stops and the process exits 0.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/redisbroker"
)

type config struct {
	addr        string
	redis       []string
	prefix      string
	node        string
	secret      []byte
	historySize int
	historyTTL  time.Duration
	drain       time.Duration
	logLevel    slog.Level
	httpStream  bool
	origins     []string
}

func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("drillserver", flag.ContinueOnError)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8081", "listen address")
	redisURLs := fs.String("redis", "redis://127.0.0.1:6379/0", "Redis URL; several, comma-separated, shard rooms over them")
	fs.StringVar(&cfg.prefix, "prefix", "rthub:", "Redis key prefix (the same on every node of a cluster)")
	fs.StringVar(&cfg.node, "node", "", "node ID: Redis connections are named rthub-<node> (default: random)")
	secret := fs.String("secret", "", "HMAC secret for tokens, 32+ bytes (default: $DRILL_SECRET)")
	fs.IntVar(&cfg.historySize, "history", 0, "publications kept per room (0: the default, 100)")
	fs.DurationVar(&cfg.historyTTL, "history-ttl", 0, "history kept after a room's last publication (0: the default, 5m)")
	fs.DurationVar(&cfg.drain, "drain", 5*time.Second, "spread the closes of a graceful shutdown over this long")
	level := fs.String("log", "warn", "log level: debug, info, warn, error")
	fs.BoolVar(&cfg.httpStream, "http-stream", false, "serve the HTTP stream transport on /ws too (GET text/event-stream, POST commands)")
	origins := fs.String("origin", "", "extra allowed browser origins, comma-separated host patterns (e.g. 127.0.0.1:*)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.redis = strings.Split(*redisURLs, ",")
	if *origins != "" {
		cfg.origins = strings.Split(*origins, ",")
	}
	if *secret == "" {
		*secret = os.Getenv("DRILL_SECRET")
	}
	if len(*secret) < 32 {
		return cfg, errors.New("-secret (or DRILL_SECRET) must be at least 32 bytes")
	}
	cfg.secret = []byte(*secret)
	if err := cfg.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return cfg, fmt.Errorf("-log: %w", err)
	}
	return cfg, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = run(ctx, cfg)
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "drillserver:", err)
		os.Exit(1)
	}
}

// Policy of the drills: everyone is in "bcast" (resumed through the
// handshake's since parameter) and may join "room:*" (resumed by join).
var policy = rthub.Policy{Roles: map[string]rthub.RoleRules{
	"drill": {Join: []string{"room:*"}, AutoJoin: []string{"bcast"}},
	"admin": {Join: []string{"room:*"}, AutoJoin: []string{"bcast", "admin"}},
}}

// run serves until ctx ends, then drains.
func run(ctx context.Context, cfg config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.logLevel})).With("node", cfg.node)
	history := rthub.HistoryPolicy{Default: rthub.HistoryLimits{Size: cfg.historySize, TTL: cfg.historyTTL}}
	bopts := redisbroker.Options{Prefix: cfg.prefix, NodeID: cfg.node, History: history, Logger: log}
	for _, u := range cfg.redis {
		bopts.Shards = append(bopts.Shards, redisbroker.Shard{URL: u})
	}
	broker, err := redisbroker.New(bopts)
	if err != nil {
		return err
	}
	users, err := newUserStore(cfg.redis[0], cfg.prefix+"roles:")
	if err != nil {
		_ = broker.Close(context.Background())
		return err
	}
	defer users.close()
	hub, err := rthub.New(rthub.Options{
		Auth:        rthub.AuthOptions{Keys: map[string]any{"": cfg.secret}},
		Policy:      policy,
		Broker:      broker,
		DrainWindow: cfg.drain,
		Logger:      log,
		Roles:       users.roles,
		HTTPStream:  rthub.HTTPStreamOptions{Enabled: cfg.httpStream},
		Origin:      rthub.OriginOptions{Patterns: cfg.origins},
	})
	if err != nil {
		_ = broker.Close(context.Background())
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		hub.Close()
		return err
	}
	s := &server{hub: hub, broker: broker, secret: cfg.secret, node: cfg.node, started: time.Now()}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("POST /ws", hub)    // the HTTP stream's commands (-http-stream)
	mux.Handle("OPTIONS /ws", hub) // their CORS preflights, from pages on allowed origins
	mux.HandleFunc("POST /publish", s.publish)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /stats", s.stats)
	mux.HandleFunc("POST /revoke", s.revoke)
	mux.HandleFunc("POST /control", s.control)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }() // owner: run; ends with srv.Shutdown below
	fmt.Printf("drillserver %s listening on %s\n", cfg.node, ln.Addr())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		hub.Close()
		return err
	}
	s.draining.Store(true)
	log.Info("draining")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.drain+20*time.Second)
	defer cancel()
	if err := hub.Shutdown(sctx); err != nil {
		log.Warn("hub drain cut short", "err", err)
	}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

type server struct {
	hub      *rthub.Hub
	broker   *redisbroker.Broker
	secret   []byte
	node     string
	started  time.Time
	draining atomic.Bool
}

type publishRequest struct {
	Room  string          `json:"room"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

func (s *server) publish(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r.Header.Get("Authorization"), "publisher") {
		jsonError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	var req publishRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		jsonError(w, http.StatusBadRequest, "bad body: "+err.Error())
		return
	}
	if len(req.Data) == 0 {
		req.Data = json.RawMessage("null")
	}
	err := s.hub.Publish(r.Context(), req.Room, req.Event, req.Data)
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, rthub.ErrHubClosed):
		jsonError(w, http.StatusServiceUnavailable, "closing") // checked before publishing
	case errors.Is(err, rthub.ErrBadRoom), errors.Is(err, rthub.ErrBadPayload):
		jsonError(w, http.StatusBadRequest, err.Error())
	default:
		jsonError(w, http.StatusInternalServerError, err.Error())
	}
}

// authorized checks an HS256 bearer token holding role.
func (s *server) authorized(header, role string) bool {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	var claims struct {
		jwt.RegisteredClaims
		Roles []string `json:"roles"`
	}
	_, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return s.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		return false
	}
	for _, r := range claims.Roles {
		if r == role {
			return true
		}
	}
	return false
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	bs := s.broker.Stats()
	ok := bs.Healthy() && !s.draining.Load()
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"ok": ok, "node": s.node, "draining": s.draining.Load(), "broker": bs})
}

// Stats is the body of GET /stats.
type Stats struct {
	Node       string            `json:"node"`
	Uptime     float64           `json:"uptime_s"`
	Goroutines int               `json:"goroutines"`
	Hub        rthub.Stats       `json:"hub"`
	Broker     redisbroker.Stats `json:"broker"`
}

func (s *server) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Stats{
		Node: s.node, Uptime: time.Since(s.started).Seconds(), Goroutines: runtime.NumGoroutine(),
		Hub: s.hub.Stats(), Broker: s.broker.Stats(),
	})
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
