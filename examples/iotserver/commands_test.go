package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/mqttbridge"
)

// commandEvent decodes a device:command event.
func commandEvent(t *testing.T, ev client.Event) mqttbridge.Result {
	return decode[mqttbridge.Result](t, ev)
}

// waitCommand waits for the device:command event of id in state.
func waitCommand(t *testing.T, evs *events, d time.Duration, id string, state mqttbridge.CommandState) mqttbridge.Result {
	t.Helper()
	ev := evs.next(t, d, "device:command "+id+" "+string(state), func(ev client.Event) bool {
		var r mqttbridge.Result
		return ev.Room == roomStaff && json.Unmarshal(ev.Data, &r) == nil && r.ID == id && r.State == state
	})
	return commandEvent(t, ev)
}

// TestCommands_Dashboard: an admin changes a simulated device's reporting
// interval and alert threshold with the RPC device:command; the device
// applies each and acknowledges; staff see queued, sent and done. Staff may
// not call it; bad requests are refused with bad_request / not_found.
func TestCommands_Dashboard(t *testing.T) {
	t.Parallel()
	s := startServer(t, map[string]string{"SIM_INTERVAL": "200ms", "ALERT_RULES": "temperature>30<28"})
	admin := s.dial(t, "admin")
	alice := s.dial(t, "alice")
	evs := collect(alice, DeviceCommand.Name())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	eventually(t, 10*time.Second, "dev-01 online", func() bool {
		ds, _ := s.devices(t)
		return slices.ContainsFunc(ds, func(d Device) bool { return d.ID == "dev-01" && d.Status == statusOnline })
	})

	r, err := client.Call(ctx, admin, SendCommand, CommandRequest{Device: "dev-01", Command: cmdSetInterval, Seconds: 2})
	if err != nil || r.State != mqttbridge.CommandQueued || r.Device != "dev-01" || r.Name != cmdSetInterval {
		t.Fatalf("call: %+v, %v", r, err)
	}
	waitCommand(t, evs, 10*time.Second, r.ID, mqttbridge.CommandQueued)
	waitCommand(t, evs, 10*time.Second, r.ID, mqttbridge.CommandSent)
	done := waitCommand(t, evs, 10*time.Second, r.ID, mqttbridge.CommandDone)
	var cfg DeviceConfig
	if err := json.Unmarshal(done.Reply, &cfg); err != nil || cfg.IntervalSeconds != 2 {
		t.Fatalf("reply %s: %+v, %v", done.Reply, cfg, err)
	}

	r, err = client.Call(ctx, admin, SendCommand, CommandRequest{Device: "dev-01", Command: cmdSetThreshold, Metric: "temperature", Value: 12})
	if err != nil {
		t.Fatal(err)
	}
	done = waitCommand(t, evs, 10*time.Second, r.ID, mqttbridge.CommandDone)
	if err := json.Unmarshal(done.Reply, &cfg); err != nil || cfg.Thresholds["temperature"] != 12 {
		t.Fatalf("reply %s", done.Reply)
	}

	tests := []struct {
		name string
		c    *client.Client
		req  CommandRequest
		code string
		is   error
	}{
		{"staffForbidden", alice, CommandRequest{Device: "dev-01", Command: cmdSetInterval, Seconds: 5}, "forbidden", rthub.ErrForbidden},
		{"unknownDevice", admin, CommandRequest{Device: "nope", Command: cmdSetInterval, Seconds: 5}, "not_found", nil},
		{"noRule", admin, CommandRequest{Device: "dev-01", Command: cmdSetThreshold, Metric: "co2", Value: 5}, "bad_request", nil},
		{"badInterval", admin, CommandRequest{Device: "dev-01", Command: cmdSetInterval, Seconds: 0}, "bad_request", nil},
		{"badCommand", admin, CommandRequest{Device: "dev-01", Command: "reboot"}, "bad_payload", nil}, // the schema's enum
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.Call(ctx, tt.c, SendCommand, tt.req)
			var re *rthub.ReplyError
			if !errors.As(err, &re) || re.Code != tt.code || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("call = %v, want code %s", err, tt.code)
			}
		})
	}
}

// devices lists the devices over REST as alice.
func (s *testServer) devices(t *testing.T) ([]Device, error) {
	var body struct {
		Devices []Device `json:"devices"`
	}
	if code := s.do(t, "GET", "/api/devices", s.token(t, "alice"), nil, &body); code != 200 {
		return nil, errors.New("GET /api/devices failed")
	}
	return body.Devices, nil
}

// TestCommands_OfflineRestart runs against the real Mosquitto and
// PostgreSQL: a command sent while the device is offline survives a restart
// of the server (a new server instance on the same database) and runs
// exactly once when the device reconnects within its TTL; a command whose
// TTL passes while the device is offline is answered expired, never sent.
// The device is the example's simulator, a real MQTT client.
func TestCommands_OfflineRestart(t *testing.T) {
	t.Parallel()
	pgURL := testenv.URL(t, testenv.Postgres)
	mqURL := testenv.URL(t, testenv.MQTT)
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	prefix := "iot-cmd-" + hex.EncodeToString(rb[:]) + "/"
	schema := testSchema()
	t.Cleanup(func() { dropSchema(t, pgURL, schema) })
	env := map[string]string{
		"RTHUB_POSTGRES_URL": pgURL,
		"POSTGRES_SCHEMA":    schema,
		"RTHUB_MQTT_URL":     mqURL,
		"MQTT_TOPIC_PREFIX":  prefix,
		"SIM_DEVICES":        "0", // the device is ours
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// The device: seen once (so the server knows it), then gone.
	sim, err := NewSimulator(SimConfig{Devices: 1, Interval: 200 * time.Millisecond}, mqURL, prefix, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	startSim := func() (stop func()) {
		sctx, cancel := context.WithCancel(context.Background())
		sim.Start(sctx)
		return func() { cancel(); sim.Wait() }
	}
	s1 := startServer(t, env)
	alice := s1.dial(t, "alice")
	statuses := collect(alice, DeviceStatus.Name())
	stopSim := startSim()
	statuses.next(t, 10*time.Second, "dev-01 online", func(ev client.Event) bool { return decode[StatusEvent](t, ev).Status == statusOnline })
	stopSim()
	statuses.next(t, 10*time.Second, "dev-01 offline", func(ev client.Event) bool { return decode[StatusEvent](t, ev).Status == statusOffline })

	admin := s1.dial(t, "admin")
	evs := collect(alice, DeviceCommand.Name())
	short, err := client.Call(ctx, admin, SendCommand, CommandRequest{Device: "dev-01", Command: cmdSetThreshold, Metric: "temperature", Value: 40, TTLSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	long, err := client.Call(ctx, admin, SendCommand, CommandRequest{Device: "dev-01", Command: cmdSetInterval, Seconds: 3, TTLSeconds: 60})
	if err != nil || long.State != mqttbridge.CommandQueued {
		t.Fatalf("call: %+v, %v", long, err)
	}
	exp := waitCommand(t, evs, 10*time.Second, short.ID, mqttbridge.CommandExpired)
	if !exp.SentAt.IsZero() {
		t.Fatalf("the expired command was sent: %+v", exp)
	}

	// Restart: a new server instance on the same database and topics.
	s1.stop(t)
	s2 := startServer(t, env)
	alice = s2.dial(t, "alice")
	evs = collect(alice, DeviceCommand.Name())
	time.Sleep(500 * time.Millisecond) // the new bridge sees the retained "offline"; nothing is sent
	stopSim = startSim()
	defer func() { stopSim() }() // the latest
	done := waitCommand(t, evs, 15*time.Second, long.ID, mqttbridge.CommandDone)
	var cfg DeviceConfig
	if err := json.Unmarshal(done.Reply, &cfg); err != nil || cfg.IntervalSeconds != 3 {
		t.Fatalf("reply %s", done.Reply)
	}

	// A reconnection of the device does not send it again.
	stopSim()
	stopSim = startSim()
	time.Sleep(time.Second)
	ids, _, _ := sim.Applied("dev-01")
	if n := count(ids, long.ID); n != 1 || count(ids, short.ID) != 0 {
		t.Fatalf("applied %q: %s %d times (want 1), %s %d times (want 0)", ids, long.ID, n, short.ID, count(ids, short.ID))
	}
	db := pgConn(t, pgURL, schema)
	var state string
	if err := db.QueryRow(ctx, "SELECT state FROM device_commands WHERE id = $1", long.ID).Scan(&state); err != nil || state != "done" {
		t.Fatalf("row state %q, %v", state, err)
	}
}

func count(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

func pgConn(t *testing.T, url, schema string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = schema
	db, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return db
}
