package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub/client"
)

// TestRun starts the quickstart on a free port, receives simulated readings
// with the Go client, and checks it drains and returns on cancel.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := config{addr: "127.0.0.1:0", secret: []byte("quickstart-test-secret-0123456789"), interval: 20 * time.Millisecond}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, ready) }()
	addr := <-ready

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
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, ready) }()
	addr := <-ready
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
