package drill_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub/examples/drill"
	"github.com/org/rthub/internal/testenv"
)

// chromiumPath is Debian's Chromium (package chromium): the tests never
// download a browser.
const chromiumPath = "/usr/bin/chromium"

// TestBrowserFallback: Chromium behind a proxy that kills every WebSocket
// 200 ms after the upgrade falls back to the HTTP stream within 5 s and
// receives every event, with 3 hub nodes on a real Redis behind real nginx
// (round robin, no sticky sessions: the stream's POSTs land on any node and
// are relayed through Redis). The page and its driver are in
// clients/js/test/fallback-page.
func TestBrowserFallback(t *testing.T) {
	e := env(t)
	node := testenv.Tool(t, "node", "install Node.js ≥ 20 (Debian package nodejs)")
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Missing(t, "%s not found: install Debian's chromium (apt-get install chromium)", chromiumPath)
	}
	jsDir, err := filepath.Abs("../../clients/js")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"esbuild", "playwright-core", "typescript"} {
		if _, err := os.Stat(filepath.Join(jsDir, "node_modules", p)); err != nil {
			testenv.Missing(t, "%s has no node_modules/%s; to run this test: (cd %s && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)", jsDir, p, jsDir)
		}
	}
	dist := filepath.Join(t.TempDir(), "dist")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, node, filepath.Join(jsDir, "scripts/build.mjs"), dist).CombinedOutput(); err != nil {
		t.Fatalf("building clients/js: %v\n%s", err, out)
	}

	cl, err := drill.StartCluster(ctx, e, drill.ClusterOptions{HTTPStream: true, Origins: []string{"127.0.0.1:*"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var deflated atomic.Int64 // streams sent compressed (Chromium accepts deflate)
	proxy := startKillProxy(t, "127.0.0.1:"+strconv.Itoa(cl.Nginx.Port), dist, filepath.Join(jsDir, "test/fallback-page/index.html"), &deflated)

	pubTok, err := drill.Token(cl.Secret, "pub", "publisher")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := drill.Token(cl.Secret, "browser", "drill")
	if err != nil {
		t.Fatal(err)
	}
	// Events of 2 KB: over the hub's compression threshold (1 KiB), so the
	// compressed stream carries each one as the broadcast's shared
	// compressed bytes.
	pub := drill.StartPublisher(drill.PublisherOptions{Targets: cl.Targets, Token: pubTok, Pad: 2000,
		Rates: map[string]float64{drill.BroadcastRoom: 20, "room:fb": 20}})
	stopped := false
	defer func() {
		if !stopped {
			pub.Stop()
		}
	}()
	stderr, err := testenv.RunScript(t, node, jsDir, "test/fallback-page/drive.mjs",
		[]string{"PAGE=" + proxy, "TOKEN=" + tok, "CHROMIUM=" + chromiumPath}, 90*time.Second,
		func(line string) string {
			if line != "@@stop" {
				return ""
			}
			pub.Stop()
			stopped = true
			b, _ := json.Marshal(pub.Accepted())
			return string(b)
		})
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	st, err := cl.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var relayed uint64
	for _, n := range st {
		relayed += n.Hub.RelayedPosts
	}
	t.Logf("POSTs relayed to the stream's node: %d; streams compressed: %d", relayed, deflated.Load())
	if deflated.Load() == 0 {
		t.Error("no stream was compressed (Content-Encoding: deflate)")
	}
	if relayed == 0 {
		t.Error("no POST was relayed: did every one land on the stream's node?")
	}
	if n := pub.Errors(); n > 0 {
		t.Logf("note: %d publications failed (%s): not expected by the page", n, pub.LastError())
	}
}

// startKillProxy serves the fallback page and the built package, and
// passes /ws on to upstream (nginx): plain requests (the HTTP stream and
// its POSTs) through a reverse proxy, WebSocket upgrades byte for byte,
// each killed 200 ms after the upgrade response came back. It returns the
// page's URL; the test's cleanup stops it and every connection.
func startKillProxy(t *testing.T, upstream, dist, page string, deflated *atomic.Int64) string {
	t.Helper()
	target := &url.URL{Scheme: "http", Host: upstream}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the hub's origin check compares it with Origin
		},
		FlushInterval: -1, // the stream's events pass at once
		ModifyResponse: func(r *http.Response) error {
			if r.Header.Get("Content-Encoding") == "deflate" {
				deflated.Add(1)
			}
			return nil
		},
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	track := func(cs ...net.Conn) {
		mu.Lock()
		for _, c := range cs {
			open[c] = struct{}{}
		}
		mu.Unlock()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, page) })
	mux.Handle("/dist/", http.StripPrefix("/dist/", http.FileServer(http.Dir(dist))))
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			rp.ServeHTTP(w, r)
			return
		}
		uc, err := net.DialTimeout("tcp", upstream, 2*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		cc, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			uc.Close()
			return
		}
		track(cc, uc)
		kill := func() { cc.Close(); uc.Close() }
		if err := r.Write(uc); err != nil {
			kill()
			return
		}
		wg.Go(func() { _, _ = io.Copy(uc, brw); kill() }) // owner: the proxy; ends when either side closes
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			n, err := uc.Read(buf) // the response head (101, or a refusal)
			if err == nil {
				_, err = cc.Write(buf[:n])
			}
			if err != nil {
				kill()
				return
			}
			if bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 101 ")) {
				time.AfterFunc(200*time.Millisecond, kill)
			}
			_, _ = io.Copy(cc, uc)
			kill()
		})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { _ = srv.Serve(ln) }) // owner: the cleanup below
	t.Cleanup(func() {
		_ = srv.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String() + "/"
}
