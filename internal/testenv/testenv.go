// Package testenv finds the external services integration tests run against.
//
// A service is named by an environment variable holding its URL (for example
// RTHUB_REDIS_URL). Without it a test skips with a one-line reason; with
// RTHUB_REQUIRE_SERVICES=1 (set by .ci/run) a missing service fails the test
// instead, so a green CI cannot hide a service that never ran.
package testenv

import (
	"net"
	"net/url"
	"os"
	"os/exec"
	"time"
)

// Well-known variables.
const (
	Redis    = "RTHUB_REDIS_URL"
	Postgres = "RTHUB_POSTGRES_URL"
	MQTT     = "RTHUB_MQTT_URL"
	NATS     = "RTHUB_NATS_URL"
	Require  = "RTHUB_REQUIRE_SERVICES"
)

// TB is the part of testing.TB used here.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Required reports whether missing services are failures rather than skips.
func Required() bool { return os.Getenv(Require) == "1" }

// URL returns the URL in the environment variable name. When the variable is
// unset, or the service does not accept a TCP connection within two seconds,
// the test is skipped (or failed under RTHUB_REQUIRE_SERVICES=1).
func URL(t TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		missing(t, "%s not set; set it to run this test against the real service", name)
		return ""
	}
	if addr := hostPort(v); addr != "" {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			missing(t, "%s=%s: service not reachable: %v", name, v, err)
			return ""
		}
		c.Close()
	}
	return v
}

// Tool returns the path of the command name, or skips the test (fails it
// under RTHUB_REQUIRE_SERVICES=1) with a message saying how to install it.
func Tool(t TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, "%s not found; to run this test: %s", name, install)
		return ""
	}
	return p
}

// Missing skips the test (fails it under RTHUB_REQUIRE_SERVICES=1) for a
// missing prerequisite; the message must say what to do to run the test.
func Missing(t TB, format string, args ...any) {
	t.Helper()
	missing(t, format, args...)
}

func missing(t TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("%s=1 but "+format, append([]any{Require}, args...)...)
		return
	}
	t.Skipf(format, args...)
}

// hostPort extracts host:port from a service URL, with the scheme's default
// port when none is given. It returns "" when it cannot tell.
func hostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	port := map[string]string{
		"redis": "6379", "rediss": "6379", "postgres": "5432", "postgresql": "5432",
		"tcp": "1883", "mqtt": "1883", "nats": "4222",
	}[u.Scheme]
	if port == "" {
		return ""
	}
	return net.JoinHostPort(u.Hostname(), port)
}
