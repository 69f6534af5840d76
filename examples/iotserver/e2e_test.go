package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os/exec"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/org/rthub/client"
	"github.com/org/rthub/internal/testenv"
)

// need skips the test when a command is missing, or fails it under
// RTHUB_REQUIRE_SERVICES=1.
func need(t *testing.T, cmd, why string) string {
	t.Helper()
	p, err := exec.LookPath(cmd)
	if err != nil {
		if testenv.Required() {
			t.Fatalf("%s=1 but %s is missing (%s)", testenv.Require, cmd, why)
		}
		t.Skipf("%s not found (%s)", cmd, why)
	}
	return p
}

// mosquittoPub publishes one message with the real mosquitto_pub CLI.
func mosquittoPub(t *testing.T, bin, brokerURL, topic, payload string) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	port := u.Port()
	if port == "" {
		port = "1883"
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-h", u.Hostname(), "-p", port, "-q", "1", "-t", topic, "-m", payload).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %s %s: %v\n%s", topic, payload, err, out)
	}
}

// TestE2E_RealServices runs the server against the real Mosquitto and
// PostgreSQL (RTHUB_MQTT_URL, RTHUB_POSTGRES_URL): a reading published with
// mosquitto_pub reaches a WebSocket client within 1 s and lands in
// PostgreSQL; a breach raises alert:new once and its recovery
// alert:resolved once; a simulated device's cut connection becomes
// device:status offline through its Last Will; short event intervals from
// the environment are honoured. Each run uses its own topic prefix and
// schema, so runs and other tests sharing the services do not collide.
func TestE2E_RealServices(t *testing.T) {
	t.Parallel()
	pgURL := testenv.URL(t, testenv.Postgres)
	mqURL := testenv.URL(t, testenv.MQTT)
	pub := need(t, "mosquitto_pub", "the external MQTT publisher; Debian package mosquitto-clients")

	var rb [4]byte
	_, _ = rand.Read(rb[:])
	prefix := "iot-e2e-" + hex.EncodeToString(rb[:]) + "/"
	schema := testSchema()
	t.Cleanup(func() { dropSchema(t, pgURL, schema) }) // after the server stopped (cleanups run last first)
	s := startServer(t, map[string]string{
		"RTHUB_POSTGRES_URL":    pgURL,
		"POSTGRES_SCHEMA":       schema,
		"RTHUB_MQTT_URL":        mqURL,
		"MQTT_TOPIC_PREFIX":     prefix,
		"SIM_DEVICES":           "1",
		"SIM_INTERVAL":          "200ms",
		"ALERT_RULES":           "temperature>30<28",
		"WS_HEALTH_INTERVAL":    "300ms",
		"WS_ANALYTICS_INTERVAL": "400ms",
		"ANALYTICS_CACHE_TTL":   "1500ms",
	})
	eventually(t, 15*time.Second, "/readyz", func() bool { return s.do(t, "GET", "/readyz", "", nil, nil) == 200 })

	cfg, err := pgx.ParseConfig(pgURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["search_path"] = schema
	db, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	count := func(q string, args ...any) int {
		var n int
		if err := db.QueryRow(t.Context(), q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}

	c := s.dial(t, "alice", "device:ext-1")
	readings := collect(c, SensorData.Name())
	statuses := collect(c, DeviceStatus.Name())
	opened := collect(c, AlertNew.Name())
	resolved := collect(c, AlertResolved.Name())
	health := collect(c, SystemHealth.Name())
	analytics := collect(c, AnalyticsUpdate.Name())
	reading := func(v float64) string { return fmt.Sprintf(`{"values":{"temperature":%g}}`, v) }
	readingTopic := prefix + "sensors/ext-1/reading"
	isExt := func(ev client.Event) bool { return ev.Room == "device:ext-1" }

	t.Run("readingToClientAndPostgres", func(t *testing.T) {
		start := time.Now()
		mosquittoPub(t, pub, mqURL, readingTopic, `{"ts":"2026-11-20T10:00:00Z","values":{"temperature":21.5,"humidity":40.25}}`)
		ev := readings.next(t, time.Second, "sensor:data within 1 s of mosquitto_pub", isExt)
		t.Logf("sensor:data %v after mosquitto_pub started (includes the CLI's own start-up)", time.Since(start).Round(time.Millisecond))
		r := decode[ReadingEvent](t, ev)
		if r.Device != "ext-1" || r.Values["temperature"] != 21.5 || r.Values["humidity"] != 40.25 || !r.At.Equal(t0) {
			t.Fatalf("sensor:data %+v", r)
		}
		eventually(t, 5*time.Second, "the reading in PostgreSQL", func() bool {
			return count(`SELECT count(*) FROM readings WHERE device_id = 'ext-1' AND at = $1
				AND ((metric = 'temperature' AND value = 21.5) OR (metric = 'humidity' AND value = 40.25))`, t0) == 2
		})
		if n := count("SELECT count(*) FROM devices WHERE id = 'ext-1' AND kind = 'external'"); n != 1 {
			t.Fatalf("device ext-1 not created in PostgreSQL")
		}
	})

	t.Run("alertOnceAndResolvedOnce", func(t *testing.T) {
		for _, v := range []float64{29, 31, 33, 29.5, 30.5} { // over 30 opens; 29.5 and 30.5 are inside the hysteresis band
			mosquittoPub(t, pub, mqURL, readingTopic, reading(v))
		}
		ev := opened.next(t, 5*time.Second, "alert:new", isExt)
		a := decode[Alert](t, ev)
		if a.Device != "ext-1" || a.Metric != "temperature" || a.Value != 31 || a.State != alertOpen || a.ID == 0 {
			t.Fatalf("alert:new %+v", a)
		}
		// The readings after the breach must have been processed before we
		// can say no second alert came: wait for the last one.
		readings.next(t, 5*time.Second, "the 30.5 reading", func(ev client.Event) bool {
			return isExt(ev) && decode[ReadingEvent](t, ev).Values["temperature"] == 30.5
		})
		opened.none(t, 300*time.Millisecond, "second alert:new", isExt)
		resolved.none(t, 0, "alert:resolved inside the band", isExt)
		for _, v := range []float64{27.5, 26, 29} { // under 28 resolves; 29 afterwards opens nothing
			mosquittoPub(t, pub, mqURL, readingTopic, reading(v))
		}
		ev = resolved.next(t, 5*time.Second, "alert:resolved", isExt)
		r := decode[Alert](t, ev)
		if r.ID != a.ID || r.State != alertResolved || r.ResolvedValue == nil || *r.ResolvedValue != 27.5 {
			t.Fatalf("alert:resolved %+v, want alert %d resolved at 27.5", r, a.ID)
		}
		readings.next(t, 5*time.Second, "the 29 reading", func(ev client.Event) bool {
			return isExt(ev) && decode[ReadingEvent](t, ev).Values["temperature"] == 29
		})
		resolved.none(t, 300*time.Millisecond, "second alert:resolved", isExt)
		opened.none(t, 0, "alert:new after recovery", isExt)
		if n := count("SELECT count(*) FROM alerts WHERE device_id = 'ext-1' AND state = 'resolved' AND value = 31 AND resolved_value = 27.5"); n != 1 {
			t.Fatalf("%d resolved alerts in PostgreSQL, want 1", n)
		}
		if n := count("SELECT count(*) FROM alerts WHERE device_id = 'ext-1'"); n != 1 {
			t.Fatalf("%d alerts in PostgreSQL, want 1", n)
		}
	})

	t.Run("statusOnChangeOnly", func(t *testing.T) {
		topic := prefix + "devices/ext-1/status"
		for _, p := range []string{"online", "online", `{"status":"online"}`, "offline", "offline"} {
			mosquittoPub(t, pub, mqURL, topic, p)
		}
		for _, want := range []string{statusOnline, statusOffline} {
			ev := statuses.next(t, 5*time.Second, "device:status "+want, isExt)
			if st := decode[StatusEvent](t, ev); st.Status != want {
				t.Fatalf("device:status %+v, want %s", st, want)
			}
		}
		statuses.none(t, 500*time.Millisecond, "device:status without a change", isExt)
	})

	// The simulated device dev-01 is an MQTT client of the real broker with
	// a Last Will on its status topic; a dropout closes its TCP connection
	// without DISCONNECT, so Mosquitto publishes the Will.
	t.Run("lastWillOffline", func(t *testing.T) {
		isDev := func(status string) func(client.Event) bool {
			return func(ev client.Event) bool {
				st := decode[StatusEvent](t, ev)
				return ev.Room == roomStaff && st.Device == "dev-01" && st.Status == status
			}
		}
		eventually(t, 10*time.Second, "dev-01 online", func() bool {
			var devs struct{ Devices []Device }
			s.do(t, "GET", "/api/devices", s.token(t, "alice"), nil, &devs)
			for _, d := range devs.Devices {
				if d.ID == "dev-01" && d.Status == statusOnline {
					return true
				}
			}
			return false
		})
		if code := s.do(t, "POST", "/api/devices/dev-01/dropout?seconds=2", s.token(t, "admin"), nil, nil); code != 204 {
			t.Fatalf("dropout: %d", code)
		}
		statuses.next(t, 5*time.Second, "device:status offline from the Last Will", isDev(statusOffline))
		statuses.next(t, 15*time.Second, "device:status online after the reconnection", isDev(statusOnline))
		if n := count("SELECT count(*) FROM devices WHERE id = 'dev-01' AND status = 'online'"); n != 1 {
			t.Fatal("dev-01 not online in PostgreSQL")
		}
	})

	// WS_HEALTH_INTERVAL=300ms and WS_ANALYTICS_INTERVAL=400ms: over 3 s,
	// about 10 and 7 events; analytics is recomputed at most once per
	// ANALYTICS_CACHE_TTL (1.5 s).
	t.Run("intervalsFromEnv", func(t *testing.T) {
		drain := func(e *events) {
			for len(e.ch) > 0 {
				<-e.ch
			}
		}
		drain(health)
		drain(analytics)
		time.Sleep(3 * time.Second)
		nh, na := len(health.ch), len(analytics.ch)
		if nh < 6 || nh > 13 {
			t.Errorf("%d system:health events in 3 s at WS_HEALTH_INTERVAL=300ms, want about 10", nh)
		}
		if na < 4 || na > 10 {
			t.Errorf("%d analytics:update events in 3 s at WS_ANALYTICS_INTERVAL=400ms, want about 7", na)
		}
		h := decode[Health](t, <-health.ch)
		if h.Interval != 0.3 || h.DB.Kind != "postgres" || h.DB.Status != "ok" || h.MQTT.Broker != "external" || h.MQTT.Status != "connected" || h.Conns < 1 {
			t.Errorf("system:health %+v", h)
		}
		computed := map[time.Time]bool{}
		var last Analytics
		for len(analytics.ch) > 0 {
			last = decode[Analytics](t, <-analytics.ch)
			computed[last.ComputedAt] = true
		}
		if len(computed) > 3 {
			t.Errorf("%d distinct computations in 3 s with ANALYTICS_CACHE_TTL=1.5s, want at most 3", len(computed))
		}
		found := false
		for _, a := range last.Devices {
			if a.Device == "ext-1" && a.Metric == "temperature" && a.Count >= 8 && a.Max == 33 {
				found = true
			}
		}
		if !found || last.Alerts.Resolved != 1 {
			t.Errorf("analytics %+v: want ext-1 temperature (8+ samples, max 33) and 1 resolved alert", last)
		}
	})
}
