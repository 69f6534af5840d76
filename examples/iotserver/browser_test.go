package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/org/rthub/internal/testenv"
)

var brokerRE = regexp.MustCompile(`embedded on tcp://(\S+)`)

// mqttPublish publishes one QoS 1 message with a plain paho client.
func mqttPublish(t *testing.T, addr, topic, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "browser-test", CleanStart: true, KeepAlive: 10}); err != nil {
		t.Fatalf("mqtt connect %s: %v", addr, err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)}); err != nil {
		t.Fatalf("mqtt publish: %v", err)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	<-c.Done()
}

// chromiumPath is Debian's Chromium (package chromium); the test never
// downloads a browser.
const chromiumPath = "/usr/bin/chromium"

// browserTools returns node and the absolute path of e2e/ with
// playwright-core installed, or skips the test (fails it under
// RTHUB_REQUIRE_SERVICES=1) without node, Debian's Chromium or
// e2e/node_modules (npm ci there; .ci/run does it: tests never reach the
// network).
func browserTools(t *testing.T) (node, dir string) {
	t.Helper()
	node = need(t, "node", "Node.js runs the playwright-core script")
	if _, err := os.Stat(chromiumPath); err != nil {
		if testenv.Required() {
			t.Fatalf("%s=1 but %s is missing (Debian package chromium)", testenv.Require, chromiumPath)
		}
		t.Skipf("%s not found (Debian package chromium)", chromiumPath)
	}
	dir, _ = filepath.Abs("e2e")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		// Tests never reach the network: .ci/run installs the package.
		testenv.Missing(t, "%s has no node_modules; to run this test: (cd %s && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci)", dir, dir)
		return
	}
	return node, dir
}

// artifactsDir is where the browser scripts put screenshots:
// IOTSERVER_ARTIFACTS, else e2e/artifacts.
func artifactsDir(dir string) string {
	if a := os.Getenv("IOTSERVER_ARTIFACTS"); a != "" {
		return a
	}
	return filepath.Join(dir, "artifacts")
}

// runBrowserScript runs the playwright-core script in dir (BASE_URL,
// ARTIFACTS and CHROMIUM in its environment) for at most limit. Each line
// it prints is logged and passed to on; a non-empty answer is written back
// to the script's stdin (its requests: stop or start the server, publish
// over MQTT). The test fails unless the script prints PASS and exits 0;
// serverErr supplies the server's stderr for the report.
func runBrowserScript(t *testing.T, node, dir, script, baseURL string, limit time.Duration, serverErr func() string, on func(line string) string) {
	t.Helper()
	env := []string{"BASE_URL=" + baseURL, "ARTIFACTS=" + artifactsDir(dir), "CHROMIUM=" + chromiumPath}
	if stderr, err := testenv.RunScript(t, node, dir, script, env, limit, on); err != nil {
		t.Fatalf("browser scenario %v\nstderr:\n%s\nserver stderr:\n%s", err, stderr, serverErr())
	}
}

// TestBrowser_Dashboard runs e2e/dashboard.mjs in headless Chromium
// (playwright-core) against the real program: staff log in and see
// readings update; a second user shows in the first one's online list with
// what they view; staff have no admin panel and a forged admin join is
// refused (and audited for the admin); the server is stopped with SIGTERM,
// the page shows reconnecting/stale, the server starts again and the page
// recovers by itself. Screenshots go to e2e/artifacts/ (IOTSERVER_ARTIFACTS
// overrides). It needs e2e/node_modules (see browserTools).
func TestBrowser_Dashboard(t *testing.T) {
	t.Parallel()
	node, dir := browserTools(t)

	env := baseEnv()
	env["SIM_DEVICES"] = "4"
	env["SIM_INTERVAL"] = "500ms"
	env["SIM_BREACH_EVERY"] = "30s"
	env["WS_HEALTH_INTERVAL"] = "2s"
	env["WS_ANALYTICS_INTERVAL"] = "3s"
	env["WS_DRAIN_WINDOW"] = "200ms"
	env["SHUTDOWN_TIMEOUT"] = "5s"
	srv := startProcess(t, env)
	env["ADDR"] = srv.addr // the same address after the restart

	runBrowserScript(t, node, dir, "dashboard.mjs", "http://"+srv.addr, 110*time.Second, func() string { return srv.err.String() }, func(line string) string {
		switch line {
		case "@@stop":
			took := srv.terminate(t, 5*time.Second+3*time.Second)
			t.Logf("server stopped %v after SIGTERM", took.Round(time.Millisecond))
			time.Sleep(2 * time.Second) // let the page notice
			return "@@stopped"
		case "@@start":
			srv = startProcess(t, env)
			return "@@started"
		case "@@breach", "@@recover":
			// A device of our own, through the embedded broker, so that
			// an alert opens (and then resolves) when the page is looking.
			v := map[string]float64{"@@breach": 35, "@@recover": 20}[line]
			broker := brokerRE.FindStringSubmatch(srv.out.String())
			if broker == nil {
				t.Fatalf("no embedded broker address in the server's output:\n%s", srv.out)
			}
			mqttPublish(t, broker[1], "sensors/lab-9/reading", fmt.Sprintf(`{"values":{"temperature":%g}}`, v))
			return line + "ed"
		}
		return ""
	})
}

// TestBrowser_SessionEnds runs e2e/session.mjs in headless Chromium against
// the real program in demo mode (a random JWT secret per start): every close
// in the "do not reconnect" range 41xx takes the page back to the sign-in,
// with the reason, at once. An admin disconnects a staff user (4101): that
// user's page shows the sign-in within 3 s, the others stay live. The
// server restarts with a new secret: a live staff tab whose next attempt
// reuses its stored token (refused with 4100) and an admin tab reloaded
// after the restart both show the sign-in within 3 s of that attempt, and
// can sign in again. The first health figures the page shows agree with
// its panels, and it shows no rate before the server has two samples.
func TestBrowser_SessionEnds(t *testing.T) {
	t.Parallel()
	node, dir := browserTools(t)

	env := map[string]string{
		"ADDR": "127.0.0.1:0", "MQTT_EMBEDDED_ADDR": "127.0.0.1:0",
		"JWT_SECRET": "", "SEED_USERS": "", // demo mode: a new random secret at every start
		"SIM_DEVICES": "3", "SIM_INTERVAL": "500ms", "SIM_BREACH_EVERY": "0", "SIM_DROPOUT_EVERY": "0",
		"WS_HEALTH_INTERVAL": "1h", // no second sample during the test: rates stay unknown
		"WS_DRAIN_WINDOW":    "200ms", "SHUTDOWN_TIMEOUT": "5s", "LOG_LEVEL": "warn",
	}
	srv := startProcess(t, env)
	env["ADDR"] = srv.addr // the same origin after the restart: the tabs keep their sessions

	runBrowserScript(t, node, dir, "session.mjs", "http://"+srv.addr, 100*time.Second, func() string { return srv.err.String() }, func(line string) string {
		switch line {
		case "@@stop":
			took := srv.terminate(t, 5*time.Second+3*time.Second)
			t.Logf("server stopped %v after SIGTERM", took.Round(time.Millisecond))
			return "@@stopped"
		case "@@start":
			srv = startProcess(t, env)
			return "@@started"
		case "@@external":
			// A device that is not simulated, online and over its
			// threshold: three simulated devices and one more online,
			// and an open alert, before the page loads.
			broker := brokerRE.FindStringSubmatch(srv.out.String())
			if broker == nil {
				t.Fatalf("no embedded broker address in the server's output:\n%s", srv.out)
			}
			mqttPublish(t, broker[1], "devices/lab-7/status", "online")
			mqttPublish(t, broker[1], "sensors/lab-7/reading", `{"values":{"temperature":36}}`)
			return "@@externaled"
		}
		return ""
	})
}

// TestBrowser_SnapshotRace runs e2e/state.mjs in headless Chromium against
// the real program: the dashboard joins staff with state, and a reading of
// device lab-7 is published while the page's join is held (between the
// page's load and its subscription). The card shows it and the next one,
// each applied once, the first from the hub's snapshot.
func TestBrowser_SnapshotRace(t *testing.T) {
	t.Parallel()
	node, dir := browserTools(t)
	env := baseEnv()
	env["SIM_DEVICES"] = "1"
	env["SIM_INTERVAL"] = "1s"
	srv := startProcess(t, env)
	published := 0
	runBrowserScript(t, node, dir, "state.mjs", "http://"+srv.addr, 60*time.Second, func() string { return srv.err.String() }, func(line string) string {
		var n int
		if _, err := fmt.Sscanf(line, "@@reading %d", &n); err != nil {
			return ""
		}
		broker := brokerRE.FindStringSubmatch(srv.out.String())
		if broker == nil {
			t.Fatalf("no embedded broker address in the server's output:\n%s", srv.out)
		}
		mqttPublish(t, broker[1], "sensors/lab-7/reading", fmt.Sprintf(`{"values":{"temperature":%g}}`, 20+float64(n)/10))
		published++
		// Wait until the hub has it: the REST store has n readings of lab-7.
		deadline := time.Now().Add(10 * time.Second)
		for {
			var got struct {
				Readings []json.RawMessage `json:"readings"`
			}
			if procGet(t, srv.addr, "/api/devices/lab-7/readings?limit=10", &got) && len(got.Readings) >= published {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reading %d of lab-7 not stored within 10 s", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond) // the store comes before the publish
		return "@@published"
	})
}

// procGet reads path of the server at addr as alice into out; it reports
// false on any failure (the caller retries).
func procGet(t *testing.T, addr, path string, out any) bool {
	t.Helper()
	res, err := http.Post("http://"+addr+"/api/login", "application/json", strings.NewReader(`{"username":"alice","password":"alice-pw"}`))
	if err != nil {
		return false
	}
	var tok struct {
		Token string `json:"token"`
	}
	err = json.NewDecoder(res.Body).Decode(&tok)
	res.Body.Close()
	if err != nil || tok.Token == "" {
		return false
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer res.Body.Close()
	return res.StatusCode == http.StatusOK && json.NewDecoder(res.Body).Decode(out) == nil
}

// TestBrowser_Commands runs e2e/commands.mjs in headless Chromium against
// the real program on the real Mosquitto and PostgreSQL (RTHUB_MQTT_URL,
// RTHUB_POSTGRES_URL; a topic prefix and a schema of its own): an admin
// changes a simulated device's reporting interval (its readings then come
// 2 s apart) and alert threshold (an alert opens) from the dashboard, and
// sees each command pending, then done; a device whose connection is cut
// gets its queued command when it is back, while one with a 1 s TTL shows
// expired; staff see the commands without the forms, and their forged call
// is refused with forbidden.
func TestBrowser_Commands(t *testing.T) {
	t.Parallel()
	pgURL := testenv.URL(t, testenv.Postgres)
	mqURL := testenv.URL(t, testenv.MQTT)
	node, dir := browserTools(t)
	schema := testSchema()
	t.Cleanup(func() { dropSchema(t, pgURL, schema) })
	env := baseEnv()
	env["RTHUB_POSTGRES_URL"] = pgURL
	env["POSTGRES_SCHEMA"] = schema
	env["RTHUB_MQTT_URL"] = mqURL
	env["MQTT_TOPIC_PREFIX"] = strings.TrimPrefix(schema, "iot_test_") + "/"
	env["SIM_INTERVAL"] = "500ms"
	env["WS_HEALTH_INTERVAL"] = "2s"
	srv := startProcess(t, env)
	runBrowserScript(t, node, dir, "commands.mjs", "http://"+srv.addr, 100*time.Second, func() string { return srv.err.String() }, func(string) string { return "" })
}
