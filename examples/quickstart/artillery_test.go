//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/org/rthub/examples/internal/hubhttp"
	"github.com/org/rthub/internal/testenv"
)

// artilleryUsers is how many virtual users the test's short run creates:
// --overrides replaces the scenario's 20 s of phases with this many arrivals
// over artilleryPhase seconds. Each user's session lasts about 6 s (the
// scenario's think steps), so a run takes about 12 s plus Artillery's start.
const (
	artilleryUsers = 20
	artilleryPhase = 4
)

// TestArtilleryScenario runs load-tests/artillery-fanout.yml, as its README
// says (npx artillery run, a token per virtual user minted from JWT_SECRET),
// against a quickstart hub on loopback: with the hub's secret every virtual
// user completes and Artillery exits 0; with another secret the hub refuses
// every handshake (401) and the scenario's ensure checks make Artillery exit
// 1. Artillery's counts are checked against the hub's own.
//
// It needs load-tests/node_modules (npm ci in load-tests, which .ci/run
// does); the test never installs anything and, with telemetry off and npm
// offline, reaches nothing but the hub on loopback.
func TestArtilleryScenario(t *testing.T) {
	dir, npx := artilleryInstalled(t)
	const hubSecret = "artillery-test-secret-0123456789abcdef"
	tests := []struct {
		name     string
		secret   string // JWT_SECRET given to Artillery
		wantExit int
		want     map[string]int // Artillery's aggregate counters (absent = 0)
		atLeast  map[string]int // counters that must reach a minimum
		wantHub  func(st hubhttp.Stats) error
		wantOut  []string // lines Artillery prints
	}{
		{
			name:   "tokensPerUser",
			secret: hubSecret,
			want: map[string]int{
				"vusers.created":          artilleryUsers,
				"vusers.completed":        artilleryUsers,
				"vusers.failed":           0,
				"websocket.messages_sent": 2 * artilleryUsers,
			},
			wantHub: func(st hubhttp.Stats) error {
				if st.Hub.Accepted != artilleryUsers || st.Hub.Throttled != 0 || st.Hub.Unauthorized != 0 {
					return fmt.Errorf("accepted %d, throttled %d, unauthorized %d; want %d, 0, 0",
						st.Hub.Accepted, st.Hub.Throttled, st.Hub.Unauthorized, artilleryUsers)
				}
				if st.Hub.MessagesIn < 2*artilleryUsers {
					return fmt.Errorf("%d client messages read, want at least %d (a join and a ping each)",
						st.Hub.MessagesIn, 2*artilleryUsers)
				}
				return nil
			},
			wantOut: []string{"ok: maxErrorRate < 0", "ok: websocket.messages_sent >= vusers.created * 2"},
		},
		{
			name:     "wrongSecretFailsTheRun",
			secret:   "not-the-hub-secret-0123456789abcdefgh",
			wantExit: 1,
			want: map[string]int{
				"vusers.created":   artilleryUsers,
				"vusers.completed": 0,
				"vusers.failed":    artilleryUsers,
			},
			// Artillery 2.0.34 counts each refused handshake's error twice
			// (when the socket fails and when the scenario ends).
			atLeast: map[string]int{"errors.Unexpected server response: 401": artilleryUsers},
			wantHub: func(st hubhttp.Stats) error {
				if st.Hub.Accepted != 0 || st.Hub.Unauthorized != artilleryUsers {
					return fmt.Errorf("accepted %d, unauthorized %d; want 0, %d",
						st.Hub.Accepted, st.Hub.Unauthorized, artilleryUsers)
				}
				return nil
			},
			wantOut: []string{"fail: maxErrorRate < 0", "fail: websocket.messages_sent >= vusers.created * 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cfg := config{addr: "127.0.0.1:0", secret: []byte(hubSecret), interval: time.Second}
			ready := make(chan listening, 1)
			done := make(chan error, 1)
			hubCtx, stopHub := context.WithCancel(ctx)
			go func() { done <- run(hubCtx, cfg, ready) }()
			var addr string
			select {
			case l := <-ready:
				addr = l.addr
			case err := <-done:
				stopHub()
				t.Fatalf("quickstart: %v", err)
			}
			defer func() {
				stopHub()
				if err := <-done; err != nil {
					t.Errorf("quickstart: %v", err)
				}
			}()

			report := filepath.Join(t.TempDir(), "report.json")
			exit, out := runArtillery(ctx, t, dir, npx, report, tt.secret, "ws://"+addr+"/ws")
			if exit != tt.wantExit {
				t.Fatalf("artillery exit status %d, want %d; output:\n%s", exit, tt.wantExit, out)
			}
			for _, line := range tt.wantOut {
				if !strings.Contains(out, line) {
					t.Errorf("artillery output has no %q; output:\n%s", line, out)
				}
			}
			counters, err := reportCounters(report)
			if err != nil {
				t.Fatalf("%v; output:\n%s", err, out)
			}
			for name, want := range tt.want {
				if got := counters[name]; got != want {
					t.Errorf("artillery %s = %d, want %d (all: %v)", name, got, want, counters)
				}
			}
			for name, least := range tt.atLeast {
				if got := counters[name]; got < least {
					t.Errorf("artillery %s = %d, want at least %d (all: %v)", name, got, least, counters)
				}
			}
			st, err := hubStats(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.wantHub(st); err != nil {
				t.Errorf("hub: %v", err)
			}
		})
	}
}

// artilleryInstalled returns load-tests and the npx to run Artillery with,
// or skips the test (fails it under RTHUB_REQUIRE_SERVICES=1) saying what to
// install.
func artilleryInstalled(t *testing.T) (dir, npx string) {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "load-tests"))
	if err != nil {
		t.Fatal(err)
	}
	npx, err = exec.LookPath("npx")
	if err != nil {
		notInstalled(t, "npx not found: install Node.js 20+ with npm (Debian bookworm's 18 is too old) to run the Artillery scenario")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		notInstalled(t, "node not found: install Node.js 20+ (Debian bookworm's 18 is too old) to run the Artillery scenario")
	}
	v, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	if !nodeAtLeast(string(v), 20, 0) {
		notInstalled(t, "node %s: Artillery 2.0.34 (load-tests/package.json) needs Node.js 20+", strings.TrimSpace(string(v)))
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "artillery", "package.json")); err != nil {
		notInstalled(t, "Artillery not installed: run npm ci in load-tests (as .ci/run does) to run this test")
	}
	return dir, npx
}

// notInstalled skips the test, or fails it under RTHUB_REQUIRE_SERVICES=1.
func notInstalled(t *testing.T, format string, args ...any) {
	t.Helper()
	if testenv.Required() {
		t.Fatalf("%s=1 but "+format, append([]any{testenv.Require}, args...)...)
	}
	t.Skipf(format, args...)
}

var nodeVersion = regexp.MustCompile(`^v(\d+)\.(\d+)\.`)

// nodeAtLeast reports whether `node --version` output v is major.minor or later.
func nodeAtLeast(v string, major, minor int) bool {
	m := nodeVersion.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return false
	}
	ma, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	return ma > major || ma == major && mi >= minor
}

func TestNodeAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"v20.20.2\n", true},
		{"v20.19.0", true},
		{"v20.18.3", false},
		{"v18.20.4", false},
		{"v22.1.0", true},
		{"garbage", false},
	} {
		if got := nodeAtLeast(tc.v, 20, 19); got != tc.want {
			t.Errorf("nodeAtLeast(%q, 20, 19) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// runArtillery runs the scenario the README's way, shortened by --overrides,
// writing Artillery's JSON report to report. It returns the exit status and
// the combined output. npx runs in its own process group, killed whole if ctx
// ends first.
func runArtillery(ctx context.Context, t *testing.T, dir, npx, report, secret, wsURL string) (int, string) {
	t.Helper()
	overrides := fmt.Sprintf(`{"config":{"phases":[{"name":"test","duration":%d,"arrivalCount":%d}]}}`,
		artilleryPhase, artilleryUsers)
	cmd := exec.CommandContext(ctx, npx, "--no", "artillery", "run",
		"--overrides", overrides, "--output", report, "artillery-fanout.yml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"JWT_SECRET="+secret,
		"RTHUB_WS_URL="+wsURL,
		"ARTILLERY_DISABLE_TELEMETRY=true", // no usage report to the network
		"npm_config_offline=true",          // npx finds the installed Artillery, never the registry
		"npm_config_update_notifier=false",
		"NO_COLOR=1",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	t.Logf("npx artillery run: %v in %v", err, time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("artillery did not finish: %v; output:\n%s", ctx.Err(), out.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	default:
		t.Fatalf("npx artillery run: %v; output:\n%s", err, out.String())
		return -1, ""
	}
}

// reportCounters reads the aggregate counters of Artillery's JSON report.
func reportCounters(path string) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("artillery report: %w", err)
	}
	var r struct {
		Aggregate struct {
			Counters map[string]int `json:"counters"`
		} `json:"aggregate"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("artillery report %s: %w", path, err)
	}
	return r.Aggregate.Counters, nil
}

// hubStats reads the quickstart's GET /stats.
func hubStats(ctx context.Context, addr string) (hubhttp.Stats, error) {
	var st hubhttp.Stats
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
