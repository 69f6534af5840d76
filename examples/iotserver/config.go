package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Config is the server's configuration, read from the environment by
// configFromEnv; .env.example documents every variable.
type Config struct {
	Addr       string        // ADDR
	Secret     []byte        // JWT_SECRET; random in demo mode
	Demo       bool          // JWT_SECRET unset: demo users created and printed
	TokenTTL   time.Duration // TOKEN_TTL
	SeedUsers  []seedUser    // SEED_USERS
	LogLevel   slog.Level    // LOG_LEVEL
	PublicURL  string        // PUBLIC_URL, printed instead of http://ADDR
	Origins    []string      // ALLOWED_ORIGINS: extra browser origins for /ws
	Postgres   string        // RTHUB_POSTGRES_URL; memory store if empty
	PGSchema   string        // POSTGRES_SCHEMA
	MQTTURL    string        // RTHUB_MQTT_URL; embedded broker if empty
	MQTTUser   string        // MQTT_USERNAME
	MQTTPass   string        // MQTT_PASSWORD
	EmbedAddr  string        // MQTT_EMBEDDED_ADDR
	Prefix     string        // MQTT_TOPIC_PREFIX
	Sim        SimConfig     // SIM_*
	Rules      []AlertRule   // ALERT_RULES
	Health     time.Duration // WS_HEALTH_INTERVAL
	Analytics  time.Duration // WS_ANALYTICS_INTERVAL
	CacheTTL   time.Duration // ANALYTICS_CACHE_TTL
	Window     time.Duration // ANALYTICS_WINDOW
	Retention  time.Duration // RETENTION
	RetainTick time.Duration // RETENTION_INTERVAL
	Shutdown   time.Duration // SHUTDOWN_TIMEOUT
	Drain      time.Duration // WS_DRAIN_WINDOW

	TraceExporter string // OTEL_TRACES_EXPORTER: none (default), stdout or otlp
	OTLPEndpoint  string // OTEL_EXPORTER_OTLP_ENDPOINT; the exporter's default (http://localhost:4318) if empty
	ServiceName   string // OTEL_SERVICE_NAME

	logTo    io.Writer                 // where logs go; os.Stderr if nil (tests set it)
	stopStep func(ctx context.Context) // tests: one more stop step, run right after the simulator's
}

// seedUser is a login created at start.
type seedUser struct {
	Username, Name, Role, Password string
}

// demoUsers are created in demo mode (JWT_SECRET unset) and printed.
var demoUsers = []seedUser{
	{"alice", "Alice", "staff", "alice"},
	{"bob", "Bob", "staff", "bob"},
	{"admin", "Ada Admin", "admin", "admin"},
}

// configFromEnv reads the configuration; getenv is os.Getenv outside tests.
// Every bad value is reported in the one error.
func configFromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	str := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	dur := func(name string, def time.Duration, allowZero bool) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || (d == 0 && !allowZero) {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as 10s or 500ms", name, v))
			return def
		}
		return d
	}
	num := func(name string, def int) int {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number, 0 or more", name, v))
			return def
		}
		return n
	}
	c := Config{
		Addr:       str("ADDR", "127.0.0.1:8080"),
		TokenTTL:   dur("TOKEN_TTL", 15*time.Minute, false),
		PublicURL:  getenv("PUBLIC_URL"),
		Postgres:   getenv("RTHUB_POSTGRES_URL"),
		PGSchema:   getenv("POSTGRES_SCHEMA"),
		MQTTURL:    getenv("RTHUB_MQTT_URL"),
		MQTTUser:   getenv("MQTT_USERNAME"),
		MQTTPass:   getenv("MQTT_PASSWORD"),
		EmbedAddr:  str("MQTT_EMBEDDED_ADDR", "127.0.0.1:1884"),
		Prefix:     getenv("MQTT_TOPIC_PREFIX"),
		Health:     dur("WS_HEALTH_INTERVAL", 10*time.Second, false),
		Analytics:  dur("WS_ANALYTICS_INTERVAL", 45*time.Second, false),
		CacheTTL:   dur("ANALYTICS_CACHE_TTL", 30*time.Second, true),
		Window:     dur("ANALYTICS_WINDOW", time.Hour, false),
		Retention:  dur("RETENTION", 24*time.Hour, false),
		RetainTick: dur("RETENTION_INTERVAL", 10*time.Minute, false),
		Shutdown:   dur("SHUTDOWN_TIMEOUT", 15*time.Second, false),
		Drain:      dur("WS_DRAIN_WINDOW", 5*time.Second, false),

		TraceExporter: strings.ToLower(str("OTEL_TRACES_EXPORTER", "none")),
		OTLPEndpoint:  getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
		ServiceName:   str("OTEL_SERVICE_NAME", "iotserver"),
		Sim: SimConfig{
			Devices:      num("SIM_DEVICES", 6),
			Interval:     dur("SIM_INTERVAL", time.Second, false),
			BreachEvery:  dur("SIM_BREACH_EVERY", 3*time.Minute, true),
			DropoutEvery: dur("SIM_DROPOUT_EVERY", 5*time.Minute, true),
			Seed:         uint64(num("SIM_SEED", 0)),
		},
	}
	if s := getenv("JWT_SECRET"); s != "" {
		if len(s) < 32 {
			errs = append(errs, errors.New("JWT_SECRET: at least 32 bytes (HS256)"))
		}
		c.Secret = []byte(s)
	} else {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		c.Secret = []byte(hex.EncodeToString(b))
		c.Demo = true
	}
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if strings.ContainsAny(c.Prefix, "+#") {
		errs = append(errs, fmt.Errorf("MQTT_TOPIC_PREFIX=%q: no wildcards", c.Prefix))
	}
	if c.Sim.Devices > 500 {
		errs = append(errs, fmt.Errorf("SIM_DEVICES=%d: at most 500", c.Sim.Devices))
	}
	rules, err := ParseRules(str("ALERT_RULES", defaultAlertRules))
	if err != nil {
		errs = append(errs, fmt.Errorf("ALERT_RULES: %w", err))
	}
	c.Rules = rules
	users, err := parseSeedUsers(getenv("SEED_USERS"))
	if err != nil {
		errs = append(errs, fmt.Errorf("SEED_USERS: %w", err))
	}
	c.SeedUsers = users
	if v := getenv("ALLOWED_ORIGINS"); v != "" {
		for o := range strings.SplitSeq(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.Origins = append(c.Origins, o)
			}
		}
	}
	switch c.TraceExporter {
	case "none", "stdout", "otlp":
	default:
		errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want none, stdout or otlp", c.TraceExporter))
	}
	switch strings.ToLower(str("LOG_LEVEL", "info")) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", getenv("LOG_LEVEL")))
	}
	return c, errors.Join(errs...)
}

// parseSeedUsers parses "user:role:password[:Display Name],...".
func parseSeedUsers(s string) ([]seedUser, error) {
	var out []seedUser
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.SplitN(part, ":", 4)
		if len(f) < 3 || f[0] == "" || f[2] == "" || (f[1] != "staff" && f[1] != "admin") {
			return nil, fmt.Errorf("entry %d: want user:staff|admin:password[:Display Name]", len(out)+1)
		}
		u := seedUser{Username: f[0], Role: f[1], Password: f[2], Name: f[0]}
		if len(f) == 4 && f[3] != "" {
			u.Name = f[3]
		}
		out = append(out, u)
	}
	return out, nil
}

// print writes the settings at start (no secrets).
func (c Config) print(w io.Writer, mqttURL string) {
	store := "memory (set RTHUB_POSTGRES_URL for PostgreSQL)"
	if c.Postgres != "" {
		store = "postgres " + redactURL(c.Postgres)
		if c.PGSchema != "" {
			store += " schema " + c.PGSchema
		}
	}
	broker := "embedded on " + mqttURL + " (set RTHUB_MQTT_URL for a running broker)"
	if c.MQTTURL != "" {
		broker = redactURL(c.MQTTURL)
	}
	sim := "off"
	if c.Sim.Devices > 0 {
		sim = fmt.Sprintf("%d devices every %v (breach every %v, dropout every %v per device)",
			c.Sim.Devices, c.Sim.Interval, c.Sim.BreachEvery, c.Sim.DropoutEvery)
	}
	rules := make([]string, len(c.Rules))
	for i, r := range c.Rules {
		rules[i] = r.String()
	}
	tracing := "off (set OTEL_TRACES_EXPORTER=stdout or otlp)"
	switch c.TraceExporter {
	case "stdout":
		tracing = "stdout, service " + c.ServiceName
	case "otlp":
		endpoint := c.OTLPEndpoint
		if endpoint == "" {
			endpoint = "http://localhost:4318"
		}
		tracing = "otlp " + redactURL(endpoint) + ", service " + c.ServiceName
	}
	fmt.Fprintf(w, "  store:      %s\n  mqtt:       %s, topic prefix %q\n  simulator:  %s\n  alerts:     %s\n  intervals:  health %v, analytics %v (cache %v, window %v), retention %v checked every %v\n  metrics:    GET /metrics (Prometheus)\n  tracing:    %s\n",
		store, broker, c.Prefix, sim, strings.Join(rules, ", "), c.Health, c.Analytics, c.CacheTTL, c.Window, c.Retention, c.RetainTick, tracing)
}

// redactURL hides a URL's password.
func redactURL(s string) string {
	at := strings.LastIndex(s, "@")
	scheme := strings.Index(s, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return s
	}
	cred := s[scheme+3 : at]
	if user, _, ok := strings.Cut(cred, ":"); ok {
		return s[:scheme+3] + user + ":***" + s[at:]
	}
	return s
}
