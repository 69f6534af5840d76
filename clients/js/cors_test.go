package js_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/token"
)

// corsHub is a hub of TestFallbackCrossOrigin behind a handler that refuses
// every WebSocket upgrade (503, as a proxy that blocks them) and counts the
// requests the browser sent, by kind.
type corsHub struct {
	hub                               *rthub.Hub
	url                               string // ws://127.0.0.1:port/ws
	upgrades, preflights, gets, posts atomic.Int64
	mu                                sync.Mutex
	forbidden                         []string // Op of each forbidden_origin refusal
}

func startCORSHub(t *testing.T, secret []byte, origins []string) *corsHub {
	t.Helper()
	ch := &corsHub{}
	hub, err := rthub.New(rthub.Options{
		Auth:       rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy:     rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"device:*"}}}},
		Origin:     rthub.OriginOptions{Patterns: origins},
		HTTPStream: rthub.HTTPStreamOptions{Enabled: true},
		OnRefused: func(_ context.Context, r rthub.Refusal) {
			if r.Code == "forbidden_origin" {
				ch.mu.Lock()
				ch.forbidden = append(ch.forbidden, r.Op)
				ch.mu.Unlock()
			}
		},
		DrainWindow:  50 * time.Millisecond,
		CloseTimeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ch.hub = hub
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
			ch.upgrades.Add(1)
			http.Error(w, "no WebSocket here", http.StatusServiceUnavailable)
			return
		case r.Method == http.MethodOptions:
			ch.preflights.Add(1)
		case r.Method == http.MethodGet:
			ch.gets.Add(1)
		case r.Method == http.MethodPost:
			ch.posts.Add(1)
		}
		hub.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
	})
	ch.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	return ch
}

func (ch *corsHub) counts() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"upgrades": ch.upgrades.Load(), "preflights": ch.preflights.Load(),
		"gets": ch.gets.Load(), "posts": ch.posts.Load(), "forbidden_origin": ch.forbidden})
	return string(b)
}

// TestFallbackCrossOrigin runs test/cors-page/drive.mjs in headless Chromium:
// a page served from one origin (127.0.0.1:A) uses withFallback() against
// hubs on other origins (127.0.0.1:B, :C) that refuse every WebSocket
// upgrade, so the client moves to the HTTP stream, whose fetches carry an
// Authorization header and are preflighted. The hub that allows the page's
// origin (OriginOptions.Patterns) answers the preflights: the client goes
// live on the stream, its POSTed commands get replies, it receives the
// events published, and a bad token's 401 is readable (4100, not a blind
// 1006). The hub that does not allow it refuses the preflights (403
// forbidden_origin): the browser never sends the stream's GET, and the
// client never goes live.
func TestFallbackCrossOrigin(t *testing.T) {
	node, dir := browserTools(t)
	dist := built(t)
	mux := http.NewServeMux()
	mux.Handle("GET /dist/", http.StripPrefix("/dist/", http.FileServer(http.Dir(dist))))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(dir, "test", "cors-page", "index.html"))
	})
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	pageURL, err := url.Parse(web.URL)
	if err != nil {
		t.Fatal(err)
	}

	secret := []byte("js-cors-test-secret-0123456789abcdef")
	ok := startCORSHub(t, secret, []string{pageURL.Host})
	no := startCORSHub(t, secret, nil) // same-origin only, the default
	tok, err := token.Sign(secret, token.Claims{Subject: "pat", Roles: []string{"staff"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var published []int
	env := []string{"PAGE=" + web.URL + "/", "HUB_OK=" + ok.url, "HUB_NO=" + no.url, "TOKEN=" + tok, "CHROMIUM=" + chromiumPath}
	runDriver(t, node, dir, "test/cors-page/drive.mjs", env, 2*time.Minute, func(line string) string {
		if line != "@@publish" {
			return ""
		}
		for i := 1; i <= 20; i++ {
			if err := ok.hub.Publish(t.Context(), "device:cors", "cors:seq", map[string]int{"seq": i}); err != nil {
				t.Errorf("publish: %v", err)
			}
			published = append(published, i)
		}
		b, _ := json.Marshal(published)
		return string(b)
	})
	t.Logf("allowed hub saw %s", ok.counts())
	t.Logf("other hub saw %s", no.counts())
	if ok.upgrades.Load() == 0 || ok.preflights.Load() == 0 || ok.gets.Load() == 0 || ok.posts.Load() == 0 {
		t.Errorf("allowed hub: want WebSocket upgrades, preflights, stream GETs and POSTs: %s", ok.counts())
	}
	if no.preflights.Load() == 0 || no.gets.Load() != 0 || no.posts.Load() != 0 {
		t.Errorf("other hub: want preflights and no stream GET or POST (the browser stops at the refused preflight): %s", no.counts())
	}
	no.mu.Lock()
	nForbidden := len(no.forbidden)
	no.mu.Unlock()
	if nForbidden == 0 {
		t.Errorf("other hub recorded no forbidden_origin refusal")
	}
	if n := no.hub.Stats().Accepted; n != 0 {
		t.Errorf("other hub accepted %d connections", n)
	}
}
