package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/examples/internal/hubhttp"
)

func TestParseSources(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string // nil: an error
	}{
		{"127.0.0.2", []string{"127.0.0.2"}},
		{"127.0.0.2-127.0.0.4", []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}},
		{"127.0.0.2, 127.0.0.9-127.0.0.10", []string{"127.0.0.2", "127.0.0.9", "127.0.0.10"}},
		{"127.0.0.4-127.0.0.2", nil}, // inverted
		{"127.0.0.2-127.0.1.3", nil}, // not the same /24
		{"::1", nil},                 // IPv6
		{"localhost", nil},           // not an address
		{",", nil},                   // empty
		{"10.0.0.0-10.0.0.255,10.0.1.0-10.0.1.255,10.0.2.0-10.0.2.255,10.0.3.0-10.0.3.255,10.0.4.1", nil}, // > maxSources
	} {
		got, err := parseSources(tc.in)
		if (err == nil) != (tc.want != nil) || !slices.Equal(got, tc.want) {
			t.Errorf("parseSources(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	// Two workers share 3 subjects evenly: client i of worker w is user (2i+w) mod 3.
	w0 := workerConfig{ID: 0, Workers: 2, Subjects: 3}
	w1 := workerConfig{ID: 1, Workers: 2, Subjects: 3}
	var got []string
	for i := range 3 {
		got = append(got, w0.subject(i), w1.subject(i))
	}
	want := []string{"load-u0", "load-u1", "load-u2", "load-u0", "load-u1", "load-u2"}
	if !slices.Equal(got, want) {
		t.Errorf("subjects %v, want %v", got, want)
	}
	if s := (&workerConfig{ID: 1}).subject(7); s != "load-1-7" {
		t.Errorf("without -subjects: %q, want load-1-7", s)
	}
}

// limitServer serves a hub with quickstart's endpoints and the given limits.
func limitServer(t *testing.T, l rthub.Limits) string {
	t.Helper()
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte(testSecret)}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"device:*"}},
		}},
		Limits: l,
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

// TestStorm: 200 clients at once over 2 source addresses and 40 users,
// with 5 connections per user, 100 per address and a per-address handshake
// burst of 100 enforced, while events are published. Only when both
// -subjects and -sources spread the clients are all of them admitted; with
// 20 users half are refused (too_many_connections), and from one address
// the per-address limits refuse half.
func TestStorm(t *testing.T) {
	url := limitServer(t, rthub.Limits{MaxConnsPerUser: 5, MaxConnsPerIP: 100, HandshakesPerIP: 10, HandshakeBurst: 100})
	for _, tc := range []struct {
		name    string
		args    []string
		refused int
	}{
		{"spread", []string{"-subjects", "40", "-sources", "127.0.0.2-127.0.0.3"}, 0},
		{"tooFewSubjects", []string{"-subjects", "20", "-sources", "127.0.0.4-127.0.0.5"}, 100},
		{"oneSource", []string{"-subjects", "40", "-sources", "127.0.0.6"}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Thresholds generous for a loaded CI machine under -race; the
			// verdict logic is what is checked.
			args := append([]string{"-url", url, "-secret", testSecret, "-scenario", "storm", "-users", "200", "-rate", "20",
				"-duration", "1s", "-procs", "0", "-admit-within", "20s", "-handshake-p99", "15s", "-p99-max", "15s"}, tc.args...)
			cfg, err := parseFlags(args)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Concurrency != 200 {
				t.Errorf("storm concurrency %d, want every dial at once (200)", cfg.Concurrency)
			}
			res, err := run(t.Context(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if f := res.Summary["failures"]; f != tc.refused || res.Summary["attempts"] != 200 {
				t.Fatalf("failures %v of %v, want %d; errors %v", f, res.Summary["attempts"], tc.refused, res.Errors)
			}
			if tc.refused > 0 {
				if res.Pass || !strings.Contains(strings.Join(res.Errors, " "), "429") {
					t.Errorf("refusals: pass %v, errors %v", res.Pass, res.Errors)
				}
				return
			}
			if !res.Pass {
				t.Fatalf("verdicts %+v", res.Verdicts)
			}
			if s, _ := res.Summary["admitted_s"].(float64); s <= 0 || s > 20 {
				t.Errorf("admitted_s %v", res.Summary["admitted_s"])
			}
			st, af := res.LatencyStorm, res.LatencyAfter
			if st == nil || af == nil || st.N+af.N != res.Latency.N || res.Latency.N == 0 {
				t.Errorf("latency split: storm %+v after %+v total %+v", st, af, res.Latency)
			}
			if d := res.Summary["delivery_pct"]; d != 100.0 {
				t.Errorf("delivery %v", d)
			}
		})
	}
}

func TestStormFlags(t *testing.T) {
	t.Parallel()
	base := []string{"-secret", "s", "-scenario", "storm", "-users", "300"}
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"defaults", nil, true},
		{"spread", []string{"-spread", "5s"}, true},
		{"spreadPastAdmit", []string{"-spread", "10s"}, false},
		{"negativeSubjects", []string{"-subjects", "-1"}, false},
		{"badSources", []string{"-sources", "127.0.0.9-127.0.0.2"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(append(append([]string{}, base...), tc.args...))
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
			if tc.name == "defaults" && (cfg.Concurrency != 300 || cfg.Client != "raw" || cfg.AdmitWithin != 10*time.Second ||
				cfg.HandshakeP99 != 250*time.Millisecond || cfg.Rate != 10 || cfg.Duration != 10*time.Second) {
				t.Errorf("defaults: %+v", cfg)
			}
		})
	}
}
