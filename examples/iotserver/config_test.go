package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFromEnv_Defaults(t *testing.T) {
	t.Parallel()
	c, err := configFromEnv(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Addr", c.Addr, "127.0.0.1:8080"},
		{"Demo", c.Demo, true},
		{"secret length", len(c.Secret), 64},
		{"EmbedAddr", c.EmbedAddr, "127.0.0.1:1884"},
		{"Health", c.Health, 10 * time.Second},
		{"Analytics", c.Analytics, 45 * time.Second},
		{"CacheTTL", c.CacheTTL, 30 * time.Second},
		{"Window", c.Window, time.Hour},
		{"Sim.Devices", c.Sim.Devices, 6},
		{"Sim.Interval", c.Sim.Interval, time.Second},
		{"rules", len(c.Rules), 3},
		{"Postgres", c.Postgres, ""},
		{"MQTTURL", c.MQTTURL, ""},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestConfigFromEnv_Values(t *testing.T) {
	t.Parallel()
	c, err := configFromEnv(envOf(map[string]string{
		"JWT_SECRET":            "0123456789abcdef0123456789abcdef",
		"WS_HEALTH_INTERVAL":    "250ms",
		"WS_ANALYTICS_INTERVAL": "2s",
		"ANALYTICS_CACHE_TTL":   "0",
		"MQTT_TOPIC_PREFIX":     "site1",
		"SIM_DEVICES":           "0",
		"SEED_USERS":            "carol:admin:pw:Carol C,dave:staff:pw2",
		"ALERT_RULES":           "co2>900<800",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Demo || c.Health != 250*time.Millisecond || c.Analytics != 2*time.Second || c.CacheTTL != 0 ||
		c.Prefix != "site1/" || c.Sim.Devices != 0 || len(c.Rules) != 1 || c.Rules[0].Open != 900 {
		t.Fatalf("config %+v", c)
	}
	want := []seedUser{{"carol", "Carol C", "admin", "pw"}, {"dave", "dave", "staff", "pw2"}}
	if len(c.SeedUsers) != 2 || c.SeedUsers[0] != want[0] || c.SeedUsers[1] != want[1] {
		t.Fatalf("SeedUsers = %+v, want %+v", c.SeedUsers, want)
	}
}

// TestConfigFromEnv_Errors: every bad setting is named in the one error.
func TestConfigFromEnv_Errors(t *testing.T) {
	t.Parallel()
	_, err := configFromEnv(envOf(map[string]string{
		"JWT_SECRET":         "short",
		"WS_HEALTH_INTERVAL": "10",
		"SIM_DEVICES":        "-1",
		"SIM_INTERVAL":       "0s",
		"ALERT_RULES":        "t>1<2",
		"SEED_USERS":         "eve:root:pw",
		"LOG_LEVEL":          "loud",
		"MQTT_TOPIC_PREFIX":  "a/#",
	}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"JWT_SECRET", "WS_HEALTH_INTERVAL", "SIM_DEVICES", "SIM_INTERVAL", "ALERT_RULES", "SEED_USERS", "LOG_LEVEL", "MQTT_TOPIC_PREFIX"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db": "postgres://u:***@h:5432/db",
		"postgres://u@h/db":             "postgres://u@h/db",
		"tcp://127.0.0.1:1883":          "tcp://127.0.0.1:1883",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPasswords(t *testing.T) {
	t.Parallel()
	h, err := hashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !checkPassword(h, "s3cret") || checkPassword(h, "s3cret ") || checkPassword(h, "") || checkPassword("garbage", "s3cret") {
		t.Fatal("checkPassword is wrong")
	}
	h2, _ := hashPassword("s3cret")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: no salt")
	}
}

// TestEnvExample: .env.example documents exactly the variables the server
// reads.
func TestEnvExample(t *testing.T) {
	t.Parallel()
	read := map[string]bool{}
	_, _ = configFromEnv(func(k string) string { read[k] = true; return "" })
	b, err := os.ReadFile(".env.example")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#?([A-Z][A-Z0-9_]+)=`).FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = true
	}
	for k := range read {
		if !documented[k] {
			t.Errorf("%s is read but not in .env.example", k)
		}
	}
	for k := range documented {
		if !read[k] {
			t.Errorf("%s is in .env.example but not read", k)
		}
	}
}
