// Command loadtest drives an rthub server with real WebSocket clients and
// JWTs and writes result.json and report.html. See README.md.
//
//	go run ./examples/loadtest -scenario fanout -users 1000 -rate 20 -duration 30s -out /tmp/lt
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// config is the parsed command line.
type config struct {
	Scenario    string        `json:"scenario"`
	URL         string        `json:"url"`
	HTTPBase    string        `json:"http_base"`
	Users       int           `json:"users"`
	Rate        float64       `json:"rate"`
	Payload     int           `json:"payload"`
	Duration    time.Duration `json:"duration_ns"`
	Procs       int           `json:"procs"`
	Roles       []string      `json:"roles"`
	Room        string        `json:"room"`
	Step        int           `json:"step"`
	StepEvery   time.Duration `json:"step_every_ns"`
	P99Max      time.Duration `json:"p99_max_ns"`
	MinDelivery float64       `json:"min_delivery"`
	Sample      time.Duration `json:"sample_ns"`
	SoakTol     float64       `json:"soak_tolerance_pct"`
	Concurrency int           `json:"concurrency"`
	Compression bool          `json:"compression"`
	Client      string        `json:"client"`
	AllowRemote bool          `json:"allow_remote"`
	Churn       churnConfig   `json:"churn"`
	// Subjects spreads the clients over this many token subjects (users);
	// 0: one subject per client.
	Subjects int `json:"subjects"`
	// Sources are the local addresses the dials bind to, round-robin; empty:
	// 127.0.0.2–9 when the target is IPv4 loopback.
	Sources []string `json:"sources,omitempty"`
	// AdmitWithin and HandshakeP99 are the storm scenario's thresholds.
	AdmitWithin  time.Duration `json:"admit_within_ns"`
	HandshakeP99 time.Duration `json:"handshake_p99_ns"`
	// Spread starts the storm's dials evenly over this time (0: all at once).
	Spread     time.Duration `json:"spread_ns"`
	Out        string        `json:"-"`
	secret     string
	printToken bool
}

// scenarioDefaults: users and duration when the flags are not given.
var scenarioDefaults = map[string]struct {
	users    int
	duration time.Duration
}{
	"connect": {1000, 10 * time.Second},
	"fanout":  {1000, 30 * time.Second},
	"steady":  {50, time.Hour},
	"stress":  {100, 30 * time.Minute},
	"spike":   {100, 10 * time.Minute},
	"soak":    {25, 24 * time.Hour},
	"churn":   {500, 30 * time.Minute}, // users: slots
	"storm":   {1000, 10 * time.Second},
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-worker" {
		if err := workerMain(); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest worker:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	if cfg.printToken {
		tok, err := signToken(cfg.secret, "loadtest-"+strings.Join(cfg.Roles, "-"), cfg.Roles)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		fmt.Println(tok)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg, os.Stderr)
	if res != nil && cfg.Out != "" {
		if werr := writeOutputs(cfg.Out, res); werr != nil {
			err = errors.Join(err, werr)
		} else {
			fmt.Fprintf(os.Stderr, "wrote %s/result.json and %s/report.html\n", cfg.Out, cfg.Out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
	if res != nil && !res.Pass {
		os.Exit(3)
	}
}

func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&cfg.Scenario, "scenario", "connect", "connect | fanout | steady | stress | spike | soak | churn | storm")
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:8080/ws", "WebSocket URL of the hub")
	fs.StringVar(&cfg.HTTPBase, "http", "", "base URL of /publish and /stats (default: from -url)")
	fs.IntVar(&cfg.Users, "users", 0, "clients (connect, fanout, steady, soak; peak for spike; first step for stress); default per scenario")
	fs.Float64Var(&cfg.Rate, "rate", 10, "events published per second (0: none)")
	fs.IntVar(&cfg.Payload, "payload", 100, "padding bytes in each event's data")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run time; default per scenario (connect 10s, fanout 30s, steady 1h, stress 30m, spike 10m, soak 24h, churn 30m)")
	fs.IntVar(&cfg.Procs, "procs", 1, "child processes holding the clients (0: in this process); one process holds at most ~19,900 sockets")
	roles := fs.String("roles", "staff", "comma-separated roles of the clients' tokens")
	fs.StringVar(&cfg.Room, "room", "device:load", "room the clients join and events go to")
	fs.IntVar(&cfg.Step, "step", 100, "stress: users added per step")
	fs.DurationVar(&cfg.StepEvery, "step-every", 0, "stress: step length (default duration/10)")
	fs.DurationVar(&cfg.P99Max, "p99-max", 500*time.Millisecond, "stress: a step whose broadcast p99 exceeds this breaks; storm: the largest broadcast p99")
	fs.IntVar(&cfg.Subjects, "subjects", 0, "token subjects (users) the clients are spread over, round-robin (0: one per client)")
	sources := fs.String("sources", "", "local addresses the dials bind to, round-robin: a list (127.0.0.2,127.0.0.3) or a range of the last octet (127.0.0.2-127.0.0.40); default 127.0.0.2-127.0.0.9 for an IPv4 loopback target")
	fs.DurationVar(&cfg.AdmitWithin, "admit-within", 10*time.Second, "storm: every client must be admitted within this time of the storm's start")
	fs.DurationVar(&cfg.Spread, "spread", 0, "storm: start the dials evenly over this time, as clients with jittered reconnect delays arrive (0: all at once)")
	fs.DurationVar(&cfg.HandshakeP99, "handshake-p99", 250*time.Millisecond, "storm: the largest handshake p99")
	fs.Float64Var(&cfg.MinDelivery, "min-delivery", 99.9, "percent of events that must arrive (fanout, steady, stress, soak)")
	fs.DurationVar(&cfg.Sample, "sample", 0, "server /stats polling interval (default 1s; soak 1m, or duration/60 if shorter; churn: /debug/memory, 10s, or duration/30 if shorter)")
	fs.Float64Var(&cfg.SoakTol, "soak-tolerance", 5, "soak: largest RSS growth over the run, by fitted slope, in percent of mean RSS")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "dials in flight per process")
	fs.BoolVar(&cfg.Compression, "compression", false, "offer permessage-deflate")
	fs.StringVar(&cfg.Client, "client", "", "go (the rthub Go client: reconnects, resumes) | raw (light: one goroutine and 4 KiB per connection, no reconnection); default raw for connect and fanout, go otherwise")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a non-loopback host")
	fs.StringVar(&cfg.Out, "out", "", "directory for result.json and report.html")
	cfg.Churn.flags(fs)
	secret := fs.String("secret", "", "HS256 secret (default: env JWT_SECRET)")
	fs.BoolVar(&cfg.printToken, "print-token", false, "print a token for -roles (valid 48 h) and exit, for other tools (one user, loadtest-<roles>: wscat, curl)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	d, ok := scenarioDefaults[cfg.Scenario]
	if !ok {
		return cfg, fmt.Errorf("unknown -scenario %q", cfg.Scenario)
	}
	if cfg.Users <= 0 {
		cfg.Users = d.users
	}
	if cfg.Duration <= 0 {
		cfg.Duration = d.duration
	}
	if cfg.Scenario == "connect" {
		cfg.Rate = 0
	}
	if cfg.Scenario == "storm" {
		cfg.Concurrency = cfg.Users // every dial at once
		if cfg.Spread < 0 || cfg.Spread >= cfg.AdmitWithin {
			return cfg, fmt.Errorf("-spread %v: want 0 or less than -admit-within %v", cfg.Spread, cfg.AdmitWithin)
		}
	}
	if cfg.Subjects < 0 {
		return cfg, fmt.Errorf("-subjects %d: want ≥ 0", cfg.Subjects)
	}
	if *sources != "" {
		a, err := parseSources(*sources)
		if err != nil {
			return cfg, err
		}
		cfg.Sources = a
	}
	switch cfg.Client {
	case "":
		cfg.Client = "go"
		if cfg.Scenario == "connect" || cfg.Scenario == "fanout" || cfg.Scenario == "storm" {
			cfg.Client = "raw"
		}
	case "go", "raw":
	default:
		return cfg, fmt.Errorf("unknown -client %q: want go or raw", cfg.Client)
	}

	cfg.secret = *secret
	if cfg.secret == "" {
		cfg.secret = os.Getenv("JWT_SECRET")
	}
	if cfg.secret == "" {
		return cfg, errors.New("no secret: set -secret or JWT_SECRET")
	}
	for r := range strings.SplitSeq(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.Roles = append(cfg.Roles, r)
		}
	}
	if cfg.Sample <= 0 {
		cfg.Sample = time.Second
		switch cfg.Scenario {
		case "soak":
			cfg.Sample = min(time.Minute, max(time.Second, cfg.Duration/60))
		case "churn":
			cfg.Sample = min(10*time.Second, max(time.Second, cfg.Duration/30))
		}
	}
	if cfg.Scenario == "churn" {
		if cfg.Churn.Slots > 0 {
			cfg.Users = cfg.Churn.Slots
		}
		cfg.Churn.Slots = cfg.Users
		cfg.Client, cfg.Rate = "raw", 0
		if err := cfg.Churn.check(); err != nil {
			return cfg, err
		}
	}
	if cfg.StepEvery <= 0 {
		cfg.StepEvery = max(time.Second, cfg.Duration/10)
	}
	return cfg, cfg.checkTargets()
}

// checkTargets refuses hosts that are not loopback unless -allow-remote, and
// derives the HTTP base URL.
func (cfg *config) checkTargets() error {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") {
		return fmt.Errorf("-url %q: want ws:// or wss://", cfg.URL)
	}
	if cfg.HTTPBase == "" {
		scheme := "http"
		if u.Scheme == "wss" {
			scheme = "https"
		}
		cfg.HTTPBase = scheme + "://" + u.Host
	}
	hb, err := url.Parse(cfg.HTTPBase)
	if err != nil {
		return fmt.Errorf("-http: %w", err)
	}
	hosts := []string{u.Hostname(), hb.Hostname()}
	if cfg.Scenario == "churn" {
		db, err := url.Parse(cfg.Churn.Debug)
		if err != nil || (db.Scheme != "http" && db.Scheme != "https") {
			return fmt.Errorf("-debug %q: want http://host:port", cfg.Churn.Debug)
		}
		hosts = append(hosts, db.Hostname())
	}
	for _, h := range hosts {
		if !cfg.AllowRemote && !isLoopback(h) {
			return fmt.Errorf("host %q is not loopback; pass -allow-remote to load it", h)
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sourceAddrs spreads a child's clients over 127.0.0.2–9 (8 × ~28k
// ephemeral ports) when the target is IPv4 loopback.
func (cfg *config) sourceAddrs() []string {
	if len(cfg.Sources) > 0 {
		return cfg.Sources
	}
	u, _ := url.Parse(cfg.URL)
	h := u.Hostname()
	if ip := net.ParseIP(h); ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil
	}
	var a []string
	for i := 2; i <= 9; i++ {
		a = append(a, fmt.Sprintf("127.0.0.%d", i))
	}
	return a
}

// maxSources bounds -sources (a range of the last octet has at most 256).
const maxSources = 1024

// parseSources reads -sources: comma-separated IP addresses, each item
// either one address or a range a-b of addresses that differ only in the
// last byte (127.0.0.2-127.0.0.40).
func parseSources(v string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(item, "-")
		a := net.ParseIP(strings.TrimSpace(lo)).To4()
		if a == nil {
			return nil, fmt.Errorf("-sources: %q is not an IPv4 address", lo)
		}
		if !isRange {
			out = append(out, a.String())
			continue
		}
		b := net.ParseIP(strings.TrimSpace(hi)).To4()
		if b == nil || !a[:3:3].Equal(b[:3:3]) || b[3] < a[3] {
			return nil, fmt.Errorf("-sources: range %q: want a-b with the same first three bytes and a ≤ b", item)
		}
		for x := int(a[3]); x <= int(b[3]); x++ {
			out = append(out, net.IPv4(a[0], a[1], a[2], byte(x)).String())
		}
		if len(out) > maxSources {
			break
		}
	}
	if len(out) == 0 || len(out) > maxSources {
		return nil, fmt.Errorf("-sources %q: want 1 to %d addresses", v, maxSources)
	}
	return out, nil
}
