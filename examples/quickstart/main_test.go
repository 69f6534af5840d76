package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
)

// TestRun starts the quickstart on a free port, receives simulated readings
// with the Go client, and checks it drains and returns on cancel.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := config{addr: "127.0.0.1:0", secret: []byte("quickstart-test-secret-0123456789"), interval: 20 * time.Millisecond}
	ready := make(chan listening, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, ready) }()
	addr := (<-ready).addr

	c, err := client.Dial(ctx, "ws://"+addr+"/ws", client.Options{
		TokenFunc: func(context.Context) (string, error) { return sign(cfg.secret, "tester", "staff") },
		Rooms:     []string{"device:2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan Reading, 16)
	client.Handle(c, SensorData, func(room string, r Reading) {
		select {
		case got <- r:
		default:
		}
	})
	select {
	case r := <-got:
		if r.Device != "2" {
			t.Fatalf("reading from device %q, want 2", r.Device)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reading within 10 s")
	}
	// Staff may not join admin.
	if err := c.Join(ctx, "admin"); err == nil {
		t.Fatal("staff joined admin")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	// The drain closed the client with 1001 (reconnect); it keeps retrying
	// until closed.
	c.Close()
}

// TestPublishAndStats checks POST /publish's auth (401 without a token, 403
// for staff, 204 for admin with the event delivered) and the /stats JSON.
func TestPublishAndStats(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := config{addr: "127.0.0.1:0", secret: []byte("quickstart-test-secret-0123456789"), interval: time.Hour}
	ready := make(chan listening, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, ready) }()
	addr := (<-ready).addr
	defer func() { cancel(); <-done }()

	c, err := client.Dial(ctx, "ws://"+addr+"/ws", client.Options{
		TokenFunc: func(context.Context) (string, error) { return sign(cfg.secret, "tester", "staff") },
		Rooms:     []string{"device:9"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan client.Event, 1)
	c.On("load:tick", func(e client.Event) { got <- e })

	post := func(tok string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/publish",
			strings.NewReader(`{"room":"device:9","event":"load:tick","data":{"n":1}}`))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	staff, _ := sign(cfg.secret, "alice", "staff")
	admin, _ := sign(cfg.secret, "root", "admin")
	other, _ := sign([]byte("another-secret-another-secret-000"), "root", "admin")
	for _, tc := range []struct {
		name, tok string
		want      int
	}{
		{"noToken", "", 401},
		{"wrongSecret", other, 401},
		{"staff", staff, 403},
		{"admin", admin, 204},
	} {
		if s := post(tc.tok); s != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, s, tc.want)
		}
	}
	select {
	case e := <-got:
		if e.Room != "device:9" || string(e.Data) != `{"n":1}` {
			t.Fatalf("got %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("published event did not arrive")
	}

	resp, err := http.Get("http://" + addr + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"hub", "goroutines", "heap_inuse", "stack_inuse", "num_gc", "rss", "uptime"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/stats has no %q: %v", k, st)
		}
	}
	hub, _ := st["hub"].(map[string]any)
	if n, _ := hub["Connections"].(float64); n < 1 {
		t.Errorf("/stats hub.Connections = %v, want >= 1", hub["Connections"])
	}
	if n, _ := st["rss"].(float64); n <= 0 {
		t.Errorf("/stats rss = %v", st["rss"])
	}
}

// TestDebugEndpoint runs the quickstart with presence on device:* and the
// debug listener, and checks /debug/memory's figures (one connection, in a
// presence room) and pprof, and that the hub's address serves neither.
func TestDebugEndpoint(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := config{addr: "127.0.0.1:0", secret: []byte("quickstart-test-secret-0123456789"), interval: time.Hour,
		presence: []string{"device:*"}, debug: "127.0.0.1:0"}
	ready := make(chan listening, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, ready) }()
	l := <-ready
	defer func() { cancel(); <-done }()
	if l.debug == "" || l.debug == l.addr {
		t.Fatalf("debug address %q (hub on %q)", l.debug, l.addr)
	}

	c, err := client.Dial(ctx, "ws://"+l.addr+"/ws", client.Options{
		TokenFunc: func(context.Context) (string, error) { return sign(cfg.secret, "tester", "staff") },
		Rooms:     []string{"device:7"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := c.Presence(ctx, "device:7")
	if err != nil {
		t.Fatalf("presence in device:7 (PRESENCE=device:*): %v", err)
	}
	if p.Count != 1 || len(p.Users) != 1 || p.Users[0].User != "tester" {
		t.Errorf("presence %+v, want tester alone", p)
	}
	if _, err := c.Presence(ctx, "staff"); err == nil {
		t.Error("presence answered in staff, which PRESENCE does not list")
	}

	get := func(url string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, body := get("http://" + l.debug + "/debug/memory")
	if code != 200 {
		t.Fatalf("/debug/memory: %d %s", code, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	num := func(k string) float64 {
		v, ok := m[k].(float64)
		if !ok {
			t.Errorf("/debug/memory has no number %q: %s", k, body)
		}
		return v
	}
	if a, in := num("heap_alloc"), num("heap_inuse"); a <= 0 || in < a {
		t.Errorf("heap_alloc %v, heap_inuse %v: want 0 < alloc ≤ inuse", a, in)
	}
	for _, k := range []string{"heap_objects", "stack_inuse", "goroutines", "rss", "num_gc"} {
		if num(k) <= 0 {
			t.Errorf("%s = %v, want > 0", k, m[k])
		}
	}
	if n := num("num_gc"); n < 3 {
		t.Errorf("num_gc %v: the handler forces three collections", n)
	}
	if n := num("connections"); n != 1 {
		t.Errorf("connections %v, want 1", n)
	}
	if h, _ := m["hub"].(map[string]any); h["Accepted"] != 1.0 {
		t.Errorf("hub stats %v, want Accepted 1", m["hub"])
	}
	if code, body := get("http://" + l.debug + "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("pprof goroutine profile: %d %.200s", code, body)
	}
	if code, _ := get("http://" + l.addr + "/debug/memory"); code != 404 {
		t.Errorf("hub address serves /debug/memory: %d", code)
	}
	if code, _ := get("http://" + l.addr + "/debug/pprof/"); code != 404 {
		t.Errorf("hub address serves pprof: %d", code)
	}
}

// TestConfigFromEnv checks the opt-in settings: presence patterns and the
// debug address, loopback only unless DEBUG_REMOTE.
func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		presence, debug, remote string
		wantPresence            []string
		wantDebug               string
		wantErr                 bool
	}{
		{name: "off"},
		{name: "presence", presence: " device:* , staff ", wantPresence: []string{"device:*", "staff"}},
		{name: "loopback", debug: "127.0.0.1:6060", wantDebug: "127.0.0.1:6060"},
		{name: "localhost", debug: "localhost:6060", wantDebug: "localhost:6060"},
		{name: "ipv6Loopback", debug: "[::1]:6060", wantDebug: "[::1]:6060"},
		{name: "allInterfaces", debug: ":6060", wantErr: true},
		{name: "public", debug: "0.0.0.0:6060", wantErr: true},
		{name: "otherHost", debug: "10.1.2.3:6060", wantErr: true},
		{name: "remoteAllowed", debug: "0.0.0.0:6060", remote: "true", wantDebug: "0.0.0.0:6060"},
		{name: "badRemote", debug: "127.0.0.1:6060", remote: "maybe", wantErr: true},
		{name: "noPort", debug: "127.0.0.1", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("JWT_SECRET", "quickstart-test-secret-0123456789")
			t.Setenv("PRESENCE", tc.presence)
			t.Setenv("DEBUG_ADDR", tc.debug)
			t.Setenv("DEBUG_REMOTE", tc.remote)
			cfg, err := configFromEnv(os.Getenv)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if strings.Join(cfg.presence, "|") != strings.Join(tc.wantPresence, "|") || cfg.debug != tc.wantDebug {
				t.Errorf("presence %q debug %q, want %q %q", cfg.presence, cfg.debug, tc.wantPresence, tc.wantDebug)
			}
		})
	}
}

// TestLimitsFromEnv checks the connection and handshake limits read from
// the environment, and that the hub accepts them.
func TestLimitsFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    rthub.Limits
		wantErr bool
	}{
		{name: "unset"},
		{name: "storm", env: map[string]string{"MAX_CONNS_PER_USER": "5", "HANDSHAKES_PER_IP": "100", "HANDSHAKE_BURST": "500"},
			want: rthub.Limits{MaxConnsPerUser: 5, HandshakesPerIP: 100, HandshakeBurst: 500}},
		{name: "offAndFractional", env: map[string]string{"MAX_CONNS_PER_IP": "-1", "HANDSHAKES_PER_USER": "0.5"},
			want: rthub.Limits{MaxConnsPerIP: -1, HandshakesPerUser: 0.5}},
		{name: "badInt", env: map[string]string{"MAX_CONNS_PER_USER": "five"}, wantErr: true},
		{name: "badRate", env: map[string]string{"HANDSHAKES_PER_IP": "NaN"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l rthub.Limits
			err := limitsFromEnv(func(k string) string { return tc.env[k] }, &l)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if l.MaxConnsPerUser != tc.want.MaxConnsPerUser || l.MaxConnsPerIP != tc.want.MaxConnsPerIP || l.HandshakesPerIP != tc.want.HandshakesPerIP ||
				l.HandshakesPerUser != tc.want.HandshakesPerUser || l.HandshakeBurst != tc.want.HandshakeBurst {
				t.Errorf("limits %+v, want %+v", l, tc.want)
			}
			hub, err := rthub.New(rthub.Options{Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte("quickstart-test-secret-0123456789")}}, Policy: policy, Handlers: []rthub.Handler{ChatMessage.Relay()}, Limits: l})
			if err != nil {
				t.Fatal(err)
			}
			hub.Close()
		})
	}
}
