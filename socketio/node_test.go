package socketio_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/socketio"
)

// nodeDir is the npm package of the JavaScript tests (socket.io-client,
// playwright-core, React), installed by `npm ci` there.
const nodeDir = "testdata/node"

// nodeTools returns node, or skips (fails under RTHUB_REQUIRE_SERVICES=1)
// without it or without the package's node_modules.
func nodeTools(t *testing.T, pkgs ...string) string {
	t.Helper()
	node := testenv.Tool(t, "node", "install Node.js ≥ 20 (Debian package nodejs)")
	for _, p := range append([]string{"socket.io-client"}, pkgs...) {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", p)); err != nil {
			testenv.Missing(t, "socketio/%s has no node_modules/%s; to run this test: (cd socketio/%s && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)", nodeDir, p, nodeDir)
		}
	}
	return node
}

// runNode runs a scenario of testdata/node/node.mjs against ts.
func runNode(t *testing.T, ts *testServer, scenario string, env ...string) {
	t.Helper()
	node := nodeTools(t)
	env = append(env, "URL="+ts.URL, "SCENARIO="+scenario)
	if stderr, err := testenv.RunScript(t, node, nodeDir, "node.mjs", env, time.Minute, func(string) string { return "" }); err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr)
	}
}

// TestNode_basic: socket.io-client v4 connects with auth.token, gets the
// auto-joined room's events, joins a room (ack: the hub's reply), is
// refused a forbidden join and stays connected, emits with an ack round
// trip (ok, bad_payload with the field, forbidden, unknown_event), asks
// presence, leaves, and ends with io server disconnect when the hub
// disconnects the user (4101, told as rthub:disconnect). On each
// transport: polling only, WebSocket only, and polling upgraded to
// WebSocket (the client's default).
func TestNode_basic(t *testing.T) {
	for _, tr := range []string{"", "polling", "websocket"} {
		name := tr
		if name == "" {
			name = "upgrade"
		}
		t.Run(name, func(t *testing.T) {
			ts := newTestServer(t, socketio.Options{}, nil)
			runNode(t, ts, "basic", "TRANSPORTS="+tr)
		})
	}
}

// TestNode_badToken: malformed, expired and missing tokens get
// connect_error whose data carries the hub's code and status, as does a
// WebSocket from another site's origin (forbidden_origin, 403); a client
// whose auth function then gives a good token connects.
func TestNode_badToken(t *testing.T) {
	ts := newTestServer(t, socketio.Options{}, nil)
	runNode(t, ts, "badtoken")
}

// TestNode_expiry: a token that expires closes the hub connection with
// 4002: the client is told (rthub:disconnect), its transport closes and it
// reconnects, calling its auth function for a fresh token; rthub:refresh
// moves the expiry, and a refresh for another subject ends with 4100 and
// io server disconnect (no reconnection); rthub:viewing shows in presence.
func TestNode_expiry(t *testing.T) {
	ts := newTestServer(t, socketio.Options{}, nil)
	runNode(t, ts, "expiry")
}

// TestNode_limits: a connect the hub refuses for a transient reason (here
// too_many_connections, 429) closes the transport instead of answering
// connect_error, so socket.io-client keeps reconnecting with its backoff,
// and gets in once the limit allows.
func TestNode_limits(t *testing.T) {
	ts := newTestServer(t, socketio.Options{}, func(o *rthub.Options) { o.Limits.MaxConnsPerUser = 1 })
	runNode(t, ts, "limits")
}

// TestNode_recovery: with recovery on, a client whose network drops
// reconnects with socket.recovered true and gets the events published
// meanwhile, in the auto-joined room and in the room it joined, each once
// and in order; after an outage longer than the rooms' history (100
// events), recovered is false.
func TestNode_recovery(t *testing.T) {
	for _, tr := range []string{"websocket", "polling"} {
		t.Run(tr, func(t *testing.T) {
			ts := newTestServer(t, socketio.Options{Recovery: socketio.RecoveryOptions{Window: time.Minute}}, nil)
			runNode(t, ts, "recovery", "TRANSPORTS="+tr)
		})
	}
}

// chromiumPath is Debian's Chromium: the tests never download a browser.
const chromiumPath = "/usr/bin/chromium"

// TestBrowser type-checks and runs a React page written as a Socket.IO app (usePresence
// over user:online/user:offline and rthub:presence, socket.io-client v4
// bundled as is) in headless Chromium, served from the gateway's origin:
// it connects with a token and upgrades to WebSocket, gets room events,
// joins a room, is refused a forbidden join, gets an ack; two tabs see each
// other online; after a network outage the page reconnects with
// socket.recovered true and shows the events published meanwhile; a tab
// with a bad token gets connect_error with the hub's code. Screenshots go
// to RTHUB_JS_ARTIFACTS (default rthub-js-artifacts in the temporary
// directory).
func TestBrowser(t *testing.T) {
	node := nodeTools(t, "playwright-core", "react-dom", "esbuild", "typescript")
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Missing(t, "%s not found: install Debian's chromium (apt-get install chromium)", chromiumPath)
	}
	// The page type-checks (docs/socketio.md quotes it).
	tsc := exec.CommandContext(t.Context(), node, "node_modules/typescript/bin/tsc", "--noEmit", "-p", "page/tsconfig.json")
	tsc.Dir = nodeDir
	if out, err := tsc.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
	page := filepath.Join(t.TempDir(), "page")
	build := exec.CommandContext(t.Context(), node, "page/build.mjs", page)
	build.Dir = nodeDir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the page: %v\n%s", err, out)
	}
	ts := newTestServer(t, socketio.Options{Recovery: socketio.RecoveryOptions{Window: time.Minute}}, nil)
	ts.serve("/page/", http.StripPrefix("/page/", http.FileServer(http.Dir(page))))
	artifacts := os.Getenv("RTHUB_JS_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "rthub-js-artifacts")
	}
	env := []string{"URL=" + ts.URL, "CHROMIUM=" + chromiumPath, "ARTIFACTS=" + artifacts}
	if stderr, err := testenv.RunScript(t, node, nodeDir, "browser.mjs", env, 2*time.Minute, func(string) string { return "" }); err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr)
	}
}
