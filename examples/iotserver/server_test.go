package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub/client"
)

const testSecret = "iotserver-test-secret-0123456789abcdef"

// testUsers are seeded in every test server.
const testUsers = "alice:staff:alice-pw:Alice,bob:staff:bob-pw:Bob,admin:admin:admin-pw:Ada Admin"

// baseEnv is the configuration of in-process test servers: free ports, an
// embedded broker, no random dropouts or breaches, a fixed secret.
func baseEnv() map[string]string {
	return map[string]string{
		"ADDR":               "127.0.0.1:0",
		"MQTT_EMBEDDED_ADDR": "127.0.0.1:0",
		"JWT_SECRET":         testSecret,
		"SEED_USERS":         testUsers,
		"SIM_DEVICES":        "2",
		"SIM_INTERVAL":       "100ms",
		"SIM_BREACH_EVERY":   "0",
		"SIM_DROPOUT_EVERY":  "0",
		"WS_DRAIN_WINDOW":    "100ms",
		"SHUTDOWN_TIMEOUT":   "10s",
		"LOG_LEVEL":          "warn",
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testServer struct {
	addr   string
	cfg    Config
	out    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

// startServer runs the server in process with baseEnv plus env; it is
// stopped (gracefully) when the test ends.
func startServer(t *testing.T, env map[string]string) *testServer {
	t.Helper()
	return startServerWith(t, env, nil)
}

// startServerWith is startServer with mod applied to the configuration.
func startServerWith(t *testing.T, env map[string]string, mod func(*Config)) *testServer {
	t.Helper()
	all := baseEnv()
	maps.Copy(all, env)
	cfg, err := configFromEnv(envOf(all))
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(&cfg)
	}
	if cfg.logTo == nil { // kept, and shown if the test fails
		cfg.logTo = &syncBuffer{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &testServer{cfg: cfg, out: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() { s.done <- run(ctx, cfg, s.out, ready) }()
	select {
	case s.addr = <-ready:
	case err := <-s.done:
		cancel()
		t.Fatalf("server did not start: %v\n%s", err, s.out)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server did not start within 30 s")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop shuts the server down and checks it returned in time, without error.
func (s *testServer) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if !ok {
			return // stopped by the test already
		}
		if err != nil {
			t.Errorf("run: %v", err)
		}
		close(s.done)
		if ours := abandonedSteps(s.logs(), thirdPartySteps); len(ours) > 0 {
			t.Errorf("shutdown steps %q overran the deadline\n%s", ours, hungReport(s))
		} else if all := abandonedSteps(s.logs(), nil); len(all) > 0 {
			// The MQTT clients and the embedded broker are libraries
			// (paho writes its DISCONNECT with no deadline, mochi has
			// known races): the process exits anyway, which is what
			// the watchdog is for. Say so; fail on our own steps only.
			t.Logf("NOTE: shutdown steps %q (third-party MQTT code) overran the deadline and were abandoned\n%s", all, hungReport(s))
		} else if t.Failed() {
			t.Logf("server logs:\n%s", tail(s.logs(), 60))
		}
	case <-time.After(s.cfg.Shutdown + shutdownGrace + 5*time.Second):
		t.Errorf("server did not stop within SHUTDOWN_TIMEOUT (%v) + %v + 5 s\n%s", s.cfg.Shutdown, shutdownGrace, hungReport(s))
	}
}

// thirdPartySteps are the stop steps that wait on MQTT libraries.
var thirdPartySteps = map[string]bool{"simulator": true, "mqtt bridge": true, "embedded broker": true}

// abandonedSteps lists the stop steps the server's logs say were abandoned,
// but those in except.
func abandonedSteps(logs string, except map[string]bool) []string {
	var out []string
	for line := range strings.SplitSeq(logs, "\n") {
		if !strings.Contains(line, "step abandoned") {
			continue
		}
		_, what, ok := strings.Cut(line, "what=")
		if !ok {
			continue
		}
		if strings.HasPrefix(what, `"`) {
			what, _, _ = strings.Cut(what[1:], `"`)
		} else {
			what, _, _ = strings.Cut(what, " ")
		}
		if !except[what] {
			out = append(out, what)
		}
	}
	return out
}

// logs returns what the server logged (when the test captures it).
func (s *testServer) logs() string {
	if l, ok := s.cfg.logTo.(*syncBuffer); ok {
		return l.String()
	}
	return ""
}

// tail returns the last n lines of text.
func tail(text string, n int) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// hungReport is what a hung shutdown leaves to go on: the server's last
// log lines and the stacks of the goroutines in this module and rthub's.
func hungReport(s *testServer) string {
	var b strings.Builder
	b.WriteString("output:\n" + tail(s.out.String(), 20) + "\nlast log lines:\n" + tail(s.logs(), 60))
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	b.WriteString("\ngoroutines in rthub code:\n")
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "org/rthub") && !strings.Contains(g, "hungReport") {
			b.WriteString(g)
			b.WriteString("\n\n")
		}
	}
	return b.String()
}

func (s *testServer) url(path string) string { return "http://" + s.addr + path }

// token signs a token for a seeded user, as the login would.
func (s *testServer) token(t *testing.T, user string) string {
	t.Helper()
	roles := map[string][]string{"alice": {"staff"}, "bob": {"staff"}, "admin": {"admin"}}[user]
	tok, _, err := issueToken(s.cfg.Secret, User{Username: user, Name: user, Roles: roles}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do makes a request and decodes a JSON answer into out (if not nil).
func (s *testServer) do(t *testing.T, method, path, tok string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(t.Context(), method, s.url(path), rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, res.StatusCode, b, err)
		}
	}
	return res.StatusCode
}

// dial connects a Go client as user, joined to rooms.
func (s *testServer) dial(t *testing.T, user string, rooms ...string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+s.addr+"/ws", client.Options{Token: s.token(t, user), Rooms: rooms})
	if err != nil {
		t.Fatalf("dial as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// events collects one event name's payloads (as JSON) from a client.
type events struct {
	ch chan client.Event
}

func collect(c *client.Client, name string) *events {
	e := &events{ch: make(chan client.Event, 1024)}
	c.On(name, func(ev client.Event) {
		select {
		case e.ch <- ev:
		default:
		}
	})
	return e
}

// next waits up to d for an event matching ok.
func (e *events) next(t *testing.T, d time.Duration, what string, ok func(client.Event) bool) client.Event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev := <-e.ch:
			if ok == nil || ok(ev) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

// none checks that no event matching ok arrives within d.
func (e *events) none(t *testing.T, d time.Duration, what string, ok func(client.Event) bool) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case ev := <-e.ch:
			if ok == nil || ok(ev) {
				t.Fatalf("unexpected %s: %s in %s: %s", what, ev.Name, ev.Room, ev.Data)
			}
		case <-timer.C:
			return
		}
	}
}

func decode[T any](t *testing.T, ev client.Event) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(ev.Data, &v); err != nil {
		t.Fatalf("%s: %v: %s", ev.Name, err, ev.Data)
	}
	return v
}

// eventually polls cond every 20 ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func auditHas(entries []AuditEntry, kind, user, detail string) bool {
	for _, e := range entries {
		if e.Kind == kind && e.Username == user && strings.Contains(e.Detail, detail) {
			return true
		}
	}
	return false
}

// TestServer_ShutdownAbandonsStuckStep: a stop step that ignores its
// context (here one that blocks until the test ends) does not keep the
// process from exiting: it is abandoned shortly after SHUTDOWN_TIMEOUT,
// with an error log naming it, and the steps after it still run.
func TestServer_ShutdownAbandonsStuckStep(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	logs := &syncBuffer{}
	s := startServerWith(t, map[string]string{"SHUTDOWN_TIMEOUT": "1s", "LOG_LEVEL": "debug"}, func(c *Config) {
		c.logTo = logs
		c.stopStep = func(context.Context) { <-release }
	})
	start := time.Now()
	s.cancel()
	select {
	case err := <-s.done:
		close(s.done)
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(s.cfg.Shutdown + shutdownGrace + 5*time.Second):
		t.Fatalf("run did not return\n%s", hungReport(s))
	}
	took := time.Since(start)
	if took < s.cfg.Shutdown {
		t.Errorf("run returned after %v, before the deadline (%v): the stuck step was not waited for", took, s.cfg.Shutdown)
	}
	l := logs.String()
	if !logHas(l, "shutdown: step abandoned, still running past the deadline", `what="test step"`) {
		t.Errorf("no error log naming the abandoned step:\n%s", tail(l, 30))
	}
	if got := abandonedSteps(l, nil); len(got) != 1 || got[0] != "test step" {
		t.Errorf("abandonedSteps = %q, want [test step]", got)
	}
	if got := abandonedSteps("level=ERROR msg=\"shutdown: step abandoned, still running past the deadline\" what=simulator took=12s", thirdPartySteps); len(got) != 0 {
		t.Errorf("abandonedSteps(simulator, except third-party) = %q", got)
	}
	// Steps registered before it (stopped after it) still ran.
	for _, what := range []string{"mqtt bridge", "embedded broker", "store"} {
		if !strings.Contains(l, `msg=stopped what="`+what+`"`) && !strings.Contains(l, "msg=stopped what="+what+" ") {
			t.Errorf("step %q did not run after the abandoned one:\n%s", what, tail(l, 30))
		}
	}
}
