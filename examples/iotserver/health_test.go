package main

import (
	"encoding/json"
	"testing"
	"time"
)

// wireHealth is system:health (and GET /api/health) as a client reads it,
// decoded independently of the server's Go type: null and missing fields
// stay visible.
type wireHealth struct {
	At         time.Time       `json:"at"`
	Rates      json.RawMessage `json:"rates"`
	OpenAlerts *int            `json:"open_alerts"`
	Devices    *struct {
		Total  int `json:"total"`
		Online int `json:"online"`
	} `json:"devices"`
	MQTT struct {
		SimDevices int `json:"sim_devices"`
	} `json:"mqtt"`
}

// rates decodes h.Rates; ok is false when they are null or missing.
func (h wireHealth) rates(t *testing.T) (r Rates, ok bool) {
	t.Helper()
	if len(h.Rates) == 0 || string(h.Rates) == "null" {
		return r, false
	}
	if err := json.Unmarshal(h.Rates, &r); err != nil {
		t.Fatalf("rates %s: %v", h.Rates, err)
	}
	return r, true
}

// panels is what the dashboard's devices and alerts panels show, from the
// REST calls they load.
type panels struct{ total, online, openAlerts int }

func loadPanels(t *testing.T, s *testServer, tok string) panels {
	t.Helper()
	var ds struct{ Devices []Device }
	if code := s.do(t, "GET", "/api/devices", tok, nil, &ds); code != 200 {
		t.Fatalf("GET /api/devices: %d", code)
	}
	var as struct{ Alerts []Alert }
	if code := s.do(t, "GET", "/api/alerts", tok, nil, &as); code != 200 {
		t.Fatalf("GET /api/alerts: %d", code)
	}
	p := panels{total: len(ds.Devices), openAlerts: len(as.Alerts)}
	for _, d := range ds.Devices {
		if d.Status == statusOnline {
			p.online++
		}
	}
	return p
}

// agree fails the test unless the health sample counts what the panels show.
func (p panels) agree(t *testing.T, what string, h wireHealth) {
	t.Helper()
	if h.Devices == nil || h.Devices.Total != p.total || h.Devices.Online != p.online {
		t.Errorf("%s: devices %+v, but the devices panel shows %d of %d online", what, h.Devices, p.online, p.total)
	}
	if h.OpenAlerts == nil || *h.OpenAlerts != p.openAlerts {
		t.Errorf("%s: open_alerts %v, but the alerts panel lists %d", what, h.OpenAlerts, p.openAlerts)
	}
}

// TestServer_HealthAgreesWithPanels: the numbers of system:health are real
// and are those of the dashboard's panels. Before the first periodic sample
// GET /api/health has no rates (null, not a made-up 0/s); the first
// system:health event already has real ones (the reporter's first sample is
// taken at start); device counts are those of GET /api/devices (an external
// device included, not just the simulated connections) and the open alerts
// those of GET /api/alerts, both at once and in the first event.
func TestServer_HealthAgreesWithPanels(t *testing.T) {
	t.Parallel()
	const interval = 4 * time.Second
	s := startServer(t, map[string]string{"WS_HEALTH_INTERVAL": interval.String()})
	started := time.Now()
	staff := s.token(t, "alice")

	var h wireHealth
	if code := s.do(t, "GET", "/api/health", staff, nil, &h); code != 200 {
		t.Fatalf("GET /api/health: %d", code)
	}
	if r, ok := h.rates(t); ok && time.Since(started) < interval {
		t.Errorf("GET /api/health before the first sample: rates %+v, want null (no previous sample to compute them from)", r)
	}

	c := s.dial(t, "alice")
	health := collect(c, SystemHealth.Name())

	// An external device, online and over its threshold: the devices
	// panel then counts three devices (two simulated), the alerts panel one.
	broker := brokerRE.FindStringSubmatch(s.out.String())
	if broker == nil {
		t.Fatalf("no embedded broker address in the server's output:\n%s", s.out)
	}
	mqttPublish(t, broker[1], "devices/lab-1/status", "online")
	mqttPublish(t, broker[1], "sensors/lab-1/reading", `{"values":{"temperature":35}}`)
	eventually(t, 5*time.Second, "3 devices online and 1 open alert", func() bool {
		return loadPanels(t, s, staff) == panels{total: 3, online: 3, openAlerts: 1}
	})
	want := loadPanels(t, s, staff)
	if code := s.do(t, "GET", "/api/health", staff, nil, &h); code != 200 {
		t.Fatalf("GET /api/health: %d", code)
	}
	want.agree(t, "GET /api/health", h)
	if time.Since(started) >= interval {
		t.Logf("NOTE: the setup took %v, past the first sample: the first event is checked anyway", time.Since(started).Round(time.Millisecond))
	}

	ev := health.next(t, interval+5*time.Second, "the first system:health", nil)
	first := decode[wireHealth](t, ev)
	want = loadPanels(t, s, staff)
	want.agree(t, "the first system:health", first)
	r, ok := first.rates(t)
	if !ok {
		t.Fatalf("the first system:health has no rates: %s", first.Rates)
	}
	// Two simulated devices publish every 100 ms: about 20 readings and
	// MQTT messages a second, each published to two rooms.
	if r.MQTT < 5 || r.Readings < 5 || r.Published < 5 {
		t.Errorf("the first system:health's rates %+v: want the real ones (about 20/s MQTT and readings, 40/s published)", r)
	}
	if first.MQTT.SimDevices != 2 {
		t.Errorf("mqtt.sim_devices %d, want 2 (the simulated devices' connections)", first.MQTT.SimDevices)
	}
	// GET /api/health now: the same rates as the latest sample, counts now.
	if code := s.do(t, "GET", "/api/health", staff, nil, &h); code != 200 {
		t.Fatalf("GET /api/health: %d", code)
	}
	if got, ok := h.rates(t); !ok || got != r {
		t.Errorf("GET /api/health after the first sample: rates %s, want the sample's %+v", h.Rates, r)
	}
	want.agree(t, "GET /api/health after the first sample", h)
	if h.At.Before(first.At) {
		t.Errorf("GET /api/health at %v, older than the sample at %v: want a snapshot taken now", h.At, first.At)
	}
}
