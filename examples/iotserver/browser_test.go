package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
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

// TestBrowser_Dashboard runs e2e/dashboard.mjs in headless Chromium
// (playwright-core) against the real program: staff log in and see
// readings update; a second user shows in the first one's online list with
// what they view; staff have no admin panel and a forged admin join is
// refused (and audited for the admin); the server is stopped with SIGTERM,
// the page shows reconnecting/stale, the server starts again and the page
// recovers by itself. Screenshots go to e2e/artifacts/ (IOTSERVER_ARTIFACTS
// overrides). It needs e2e/node_modules (npm ci there; .ci/run does it).
func TestBrowser_Dashboard(t *testing.T) {
	t.Parallel()
	node := need(t, "node", "Node.js runs the playwright-core script")
	if _, err := os.Stat(chromiumPath); err != nil {
		if testenv.Required() {
			t.Fatalf("%s=1 but %s is missing (Debian package chromium)", testenv.Require, chromiumPath)
		}
		t.Skipf("%s not found (Debian package chromium)", chromiumPath)
	}
	dir, _ := filepath.Abs("e2e")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		// Tests never reach the network: .ci/run installs the package.
		testenv.Missing(t, "%s has no node_modules; to run this test: (cd %s && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci)", dir, dir)
		return
	}
	artifacts := os.Getenv("IOTSERVER_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(dir, "artifacts")
	}

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

	ctx, cancel := context.WithTimeout(t.Context(), 110*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "dashboard.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BASE_URL=http://"+srv.addr, "ARTIFACTS="+artifacts, "CHROMIUM="+chromiumPath)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		t.Log(line)
		switch line {
		case "@@stop":
			took := srv.terminate(t, 5*time.Second+3*time.Second)
			t.Logf("server stopped %v after SIGTERM", took.Round(time.Millisecond))
			time.Sleep(2 * time.Second) // let the page notice
			_, _ = stdin.Write([]byte("@@stopped\n"))
		case "@@start":
			srv = startProcess(t, env)
			_, _ = stdin.Write([]byte("@@started\n"))
		case "@@breach", "@@recover":
			// A device of our own, through the embedded broker, so that
			// an alert opens (and then resolves) when the page is looking.
			v := map[string]float64{"@@breach": 35, "@@recover": 20}[line]
			broker := brokerRE.FindStringSubmatch(srv.out.String())
			if broker == nil {
				t.Fatalf("no embedded broker address in the server's output:\n%s", srv.out)
			}
			mqttPublish(t, broker[1], "sensors/lab-9/reading", fmt.Sprintf(`{"values":{"temperature":%g}}`, v))
			_, _ = stdin.Write([]byte(line + "ed\n"))
		}
	}
	err := cmd.Wait()
	if err != nil || !strings.Contains(log.String(), "\nPASS\n") {
		t.Fatalf("browser scenario failed: %v\nstderr:\n%s\nserver stderr:\n%s", err, stderr.String(), srv.err)
	}
}

// TestBrowserClient runs the unit tests of web/rthub.js (e2e/rthub.test.mjs,
// node's test runner, a fake WebSocket): backoff, close-code rules, rejoin,
// viewing restored, token refresh, commands as promises, presence helpers.
func TestBrowserClient(t *testing.T) {
	t.Parallel()
	node := need(t, "node", "Node.js runs the browser client's unit tests")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-timeout=10000", "rthub.test.mjs")
	cmd.Dir = "e2e"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test rthub.test.mjs: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "# fail 0") {
		t.Fatalf("unexpected output:\n%s", out)
	}
	t.Logf("%s", out[strings.LastIndex(string(out), "# tests"):])
}
