package js_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/internal/testenv"
)

// chromiumPath is Debian's Chromium (package chromium): the tests never
// download a browser.
const chromiumPath = "/usr/bin/chromium"

// maxJoinKeys bounds a joinCounter.
const maxJoinKeys = 1000

// joinCounter counts the client joins a test hub authorized, by
// "subject room", across the hub's instances (restarts): what the server
// saw of a page's joins, whatever the page says. Its policy hook only
// counts: it refuses nothing.
type joinCounter struct {
	mu sync.Mutex
	n  map[string]int
}

// policy returns p with an Authorize hook that counts client joins.
func (j *joinCounter) policy(p rthub.Policy) rthub.Policy {
	p.Authorize = func(_ context.Context, id *rthub.Identity, act rthub.Action, room, _ string) error {
		if act != rthub.ActionJoin {
			return nil
		}
		key := id.Subject + " " + room
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.n == nil {
			j.n = make(map[string]int)
		}
		if _, ok := j.n[key]; ok || len(j.n) < maxJoinKeys {
			j.n[key]++
		}
		return nil
	}
	return p
}

func (j *joinCounter) snapshot() map[string]int {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make(map[string]int, len(j.n))
	for k, v := range j.n {
		out[k] = v
	}
	return out
}

// hubView is what a test hub sees now, for the browser scripts' "@@stats".
type hubView struct {
	Connections int            `json:"connections"` // open connections of the current instance
	Accepted    uint64         `json:"accepted"`    // handshakes the current instance accepted
	Joins       map[string]int `json:"joins"`       // client joins by "subject room", all instances
	Rooms       []string       `json:"rooms"`       // rooms with a member
	Presence    map[string]int `json:"presence"`    // staff's presence: user → connections
}

func (h *testHub) view(ctx context.Context) hubView {
	v := hubView{Joins: h.joins.snapshot(), Rooms: []string{}, Presence: map[string]int{}}
	hub := h.cur.Load()
	if hub == nil {
		return v
	}
	st := hub.Stats()
	v.Connections, v.Accepted = st.Connections, st.Accepted
	v.Rooms = hub.Rooms()
	if p, err := hub.Presence(ctx, "staff"); err == nil {
		for _, u := range p.Users {
			v.Presence[u.User] = len(u.Conns)
		}
	}
	return v
}

// browserTools returns node, the package directory and Chromium, or skips
// the test (fails it under RTHUB_REQUIRE_SERVICES=1) without them.
func browserTools(t *testing.T) (node, dir string) {
	t.Helper()
	node, dir = tools(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Missing(t, "%s not found: install Debian's chromium (apt-get install chromium)", chromiumPath)
	}
	for _, p := range []string{"playwright-core", "react-dom"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", p)); err != nil {
			testenv.Missing(t, "%s has no node_modules/%s; to run this test: (cd %s && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)", dir, p, dir)
		}
	}
	return node, dir
}

// artifactsDir is where browser tests put screenshots: RTHUB_JS_ARTIFACTS,
// else rthub-js-artifacts in the system's temporary directory (never the
// work tree).
func artifactsDir() string {
	if a := os.Getenv("RTHUB_JS_ARTIFACTS"); a != "" {
		return a
	}
	return filepath.Join(os.TempDir(), "rthub-js-artifacts")
}

// runDriver runs a playwright-core script for at most limit, logging each
// line it prints and writing back on's answer (if any) to its stdin. The
// test fails unless the script prints PASS and exits 0.
func runDriver(t *testing.T, node, dir, script string, env []string, limit time.Duration, on func(line string) string) {
	t.Helper()
	if stderr, err := testenv.RunScript(t, node, dir, script, env, limit, on); err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr)
	}
}

// TestReactPage type-checks the React test page (test/react-page: the
// hooks typed by a registered contract, and type tests whose
// ts-expect-error lines must be errors), bundles it with the package as
// built (development React, <StrictMode>), and runs test/react-page/drive.mjs
// in headless Chromium against a real hub of the test server: StrictMode's
// double mount leaves one connection and one join per tab (counted by the
// hub: its stats and an Authorize hook that counts joins) and one client
// listener per hook (none leaked, also when a room's components come and
// go); two tabs each
// see the other arrive and leave (usePresence); live events reach both;
// two components in one room join it once and it is left when the last
// unmounts; the hub restarts (keeping its history) and the page reconnects
// and resumes, with the events published before, during and after the
// restart each shown once, in order. Screenshots go to RTHUB_JS_ARTIFACTS
// (default: rthub-js-artifacts in the temporary directory).
func TestReactPage(t *testing.T) {
	node, dir := browserTools(t)
	tsc := filepath.Join(dir, "node_modules", "typescript", "bin", "tsc")
	run(t, dir, nil, time.Minute, node, tsc, "--noEmit", "-p", "test/react-page/tsconfig.json")
	dist := built(t)
	page := filepath.Join(t.TempDir(), "page")
	run(t, dir, nil, time.Minute, node, "test/react-page/build.mjs", dist, page)
	web := httptest.NewServer(http.FileServer(http.Dir(page)))
	t.Cleanup(web.Close)

	srv := startServer(t)
	res, err := http.Post(srv.ctlURL+"/hub", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ ID, URL string }
	err = json.NewDecoder(res.Body).Decode(&h)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	th := srv.hub(h.ID)
	env := []string{
		"PAGE=" + web.URL + "/index.html", "HUB=" + h.URL, "CTL=" + srv.ctlURL, "HUB_ID=" + h.ID,
		"ARTIFACTS=" + artifactsDir(), "CHROMIUM=" + chromiumPath,
	}
	runDriver(t, node, dir, "test/react-page/drive.mjs", env, 2*time.Minute, func(line string) string {
		if line != "@@stats" {
			return ""
		}
		b, err := json.Marshal(th.view(t.Context()))
		if err != nil {
			t.Error(err)
		}
		return string(b)
	})
}
