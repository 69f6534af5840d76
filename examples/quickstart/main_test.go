package main

import (
	"context"
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
