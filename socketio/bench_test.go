package socketio_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/org/rthub"
	"github.com/org/rthub/socketio"
	"github.com/org/rthub/token"
)

// The benchmarks compare clients connecting through the gateway with
// native rthub clients on the same hub: idle memory per connection and
// server CPU per delivered event. Their clients run in a child process
// (this test binary re-executed in fleet mode), so the numbers are the
// server's alone. Run them on a quiet machine:
//
//	go test -run '^$' -bench 'IdleMemory' -benchtime 1x ./socketio/
//	go test -run '^$' -bench 'Broadcast' -benchtime 200x ./socketio/

// fleetEnv makes the test binary a fleet of clients: url|count|kind|secret.
const fleetEnv = "RTHUB_SOCKETIO_FLEET"

// Client kinds of a fleet.
const (
	kindNative    = "native"    // rthub's protocol at /ws
	kindWebSocket = "websocket" // Socket.IO over WebSocket at /socket.io/
	kindPolling   = "polling"   // Socket.IO over HTTP long-polling
)

var benchKinds = []string{kindNative, kindWebSocket, kindPolling}

// runFleet is the child process: it connects count clients of kind, prints
// "ready OK FAILED", then reads and discards until stdin closes.
func runFleet(spec string) {
	parts := strings.Split(spec, "|")
	url, kind, secret := parts[0], parts[2], []byte(parts[3])
	n, _ := strconv.Atoi(parts[1])
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	var failed atomic.Int64
	tr := &http.Transport{MaxIdleConnsPerHost: n + 10, DisableCompression: true}
	hc := &http.Client{Transport: tr}
	ready := make(chan struct{})
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			tok, _ := token.Sign(secret, token.Claims{Subject: "u" + strconv.Itoa(i), Roles: []string{"bench"}})
			err := fleetClient(hc, url, kind, tok, sem, ready)
			if err != nil && failed.Add(1) < 5 {
				fmt.Fprintln(os.Stderr, "fleet:", err)
			}
		})
	}
	// Every client releases its semaphore slot once connected.
	for range cap(sem) {
		sem <- struct{}{}
	}
	fmt.Printf("ready %d %d\n", int64(n)-failed.Load(), failed.Load())
	close(ready)
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// fleetClient connects one client, releases sem, and reads until the
// process ends.
func fleetClient(hc *http.Client, url, kind, tok string, sem chan struct{}, ready chan struct{}) error {
	release := sync.OnceFunc(func() { <-sem })
	defer release()
	ctx := context.Background()
	wsURL := "ws" + strings.TrimPrefix(url, "http")
	switch kind {
	case kindNative:
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + tok}}), Protocols: []string{rthub.Subprotocol}}
		nc, _, _, err := d.Dial(ctx, wsURL+"/ws")
		if err != nil {
			return err
		}
		release()
		_, _ = io.Copy(io.Discard, nc)
	case kindWebSocket:
		nc, br, _, err := ws.Dial(ctx, wsURL+"/socket.io/?EIO=4&transport=websocket")
		if err != nil {
			return err
		}
		var rw io.ReadWriter = nc
		if br != nil { // the open packet may have come with the handshake
			rw = struct {
				io.Reader
				io.Writer
			}{io.MultiReader(br, nc), nc}
		}
		if _, err := wsutil.ReadServerText(rw); err != nil { // 0{…}
			return err
		}
		if err := wsutil.WriteClientText(rw, []byte(`40{"token":"`+tok+`"}`)); err != nil {
			return err
		}
		for {
			msg, err := wsutil.ReadServerText(rw)
			if err != nil {
				return err
			}
			if strings.HasPrefix(string(msg), "40") {
				break
			}
		}
		release()
		_, _ = io.Copy(io.Discard, rw)
	case kindPolling:
		base := url + "/socket.io/?EIO=4&transport=polling"
		body, err := fleetDo(hc, "GET", base, "")
		if err != nil {
			return err
		}
		sid := strings.TrimPrefix(strings.SplitN(body, `"sid":"`, 2)[1], "")
		sid = sid[:strings.IndexByte(sid, '"')]
		base += "&sid=" + sid
		if _, err := fleetDo(hc, "POST", base, `40{"token":"`+tok+`"}`); err != nil {
			return err
		}
		connected := false
		for {
			body, err := fleetDo(hc, "GET", base, "")
			if err != nil {
				return err
			}
			if !connected && strings.Contains(body, "40{") {
				connected = true
				release()
			}
		}
	}
	return nil
}

func fleetDo(hc *http.Client, method, url, body string) (string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	res, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %d %s", method, res.StatusCode, b)
	}
	return string(b), err
}

var benchSecret = []byte("socketio-bench-secret-0123456789abcdef")

// benchServer serves a hub at /ws and its gateway at /socket.io/ on a real
// listener (not httptest: its connection tracking adds state of its own).
func benchServer(b *testing.B) (*rthub.Hub, *socketio.Server, string) {
	b.Helper()
	hub, err := rthub.New(rthub.Options{
		Auth:         rthub.AuthOptions{Keys: map[string]any{"": benchSecret}},
		Policy:       rthub.Policy{Roles: map[string]rthub.RoleRules{"bench": {AutoJoin: []string{"bench"}}}},
		PingInterval: time.Hour,
		Limits:       rthub.Limits{HandshakesPerUser: 1e6, HandshakesPerIP: 1e6, HandshakeBurst: 1e6, MaxConnsPerIP: 1e6},
	})
	if err != nil {
		b.Fatal(err)
	}
	sio, err := socketio.New(hub, socketio.Options{PingInterval: time.Hour, PollTimeout: time.Hour, ConnectTimeout: time.Hour, MaxSessions: 1e6})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("/socket.io/", sio)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			b.Error(err)
		}
	}()
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = hub.Shutdown(ctx)
		_ = sio.Close()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return hub, sio, "http://" + ln.Addr().String()
}

// startFleet runs count clients of kind against url in a child process
// and waits until they are connected.
func startFleet(b *testing.B, url string, count int, kind string) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fleetEnv+"="+url+"|"+strconv.Itoa(count)+"|"+kind+"|"+string(benchSecret))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("fleet: %v", err)
	}
	var ok, failed int
	if _, err := fmt.Sscanf(line, "ready %d %d", &ok, &failed); err != nil || failed != 0 {
		b.Fatalf("fleet: %q", line)
	}
}

// waitFor polls cond for at most a minute.
func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not within a minute", what)
		}
	}
}

// memNow returns HeapInuse+StackInuse, StackInuse and VmRSS after a full
// GC.
func memNow() (heapStack, stack, rss uint64) {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.Fields(rest)[0], 10, 64)
				rss = kb * 1024
			}
		}
	}
	return ms.HeapInuse + ms.StackInuse, ms.StackInuse, rss
}

// BenchmarkIdleMemory holds N idle authenticated clients of each kind in
// one room and reports the server's memory per client (heap+stack from the
// runtime, RSS from /proc) and goroutines per client. b.N is irrelevant:
// run with -benchtime=1x.
func BenchmarkIdleMemory(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		for _, kind := range benchKinds {
			b.Run(fmt.Sprintf("kind=%s/conns=%d", kind, n), func(b *testing.B) {
				hub, _, url := benchServer(b)
				if path := os.Getenv("RTHUB_HEAPPROFILE"); path != "" {
					runtime.MemProfileRate = 64
					defer func() {
						f, err := os.Create(path + "." + kind)
						if err == nil {
							_ = pprof.WriteHeapProfile(f)
							f.Close()
						}
					}()
				}
				m0, s0, rss0 := memNow()
				g0 := runtime.NumGoroutine()
				startFleet(b, url, n, kind)
				waitFor(b, "connections", func() bool { return hub.Stats().Connections == n })
				m1, s1, rss1 := memNow()
				g1 := runtime.NumGoroutine()
				for b.Loop() {
				}
				// Signed: with no goroutine per connection the stack can shrink.
				b.ReportMetric((float64(m1)-float64(m0))/float64(n), "heap+stack-B/conn")
				b.ReportMetric((float64(s1)-float64(s0))/float64(n), "stack-B/conn")
				b.ReportMetric((float64(rss1)-float64(rss0))/float64(n), "rss-B/conn")
				b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")
			})
		}
	}
}

// BenchmarkBroadcast publishes one 200-byte event at a time to a room of
// 1,000 idle clients of each kind and waits until every client's copy is
// written; it reports wall and server CPU nanoseconds and allocations per
// delivery.
func BenchmarkBroadcast(b *testing.B) {
	const subs = 1000
	for _, kind := range benchKinds {
		b.Run("kind="+kind, func(b *testing.B) {
			hub, sio, url := benchServer(b)
			startFleet(b, url, subs, kind)
			waitFor(b, "connections", func() bool { return hub.Stats().Connections == subs })
			sent := func() uint64 { return hub.Stats().FramesSent }
			if kind != kindNative {
				sent = func() uint64 { return sio.Stats().Packets }
			}
			payload := map[string]any{"device": "d7", "values": map[string]float64{"t": 21.5, "h": 40}, "pad": strings.Repeat("x", 120)}
			ctx := context.Background()
			publish := func() {
				target := sent() + subs
				if err := hub.Publish(ctx, "bench", "sensor:data", payload); err != nil {
					b.Fatal(err)
				}
				waitFor(b, "deliveries", func() bool { return sent() >= target })
			}
			time.Sleep(200 * time.Millisecond) // the connect packets and welcomes are out
			for range 3 {
				publish()
			}
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			cpu0 := cpuTime()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				publish()
			}
			wall := time.Since(start)
			cpu := cpuTime() - cpu0
			runtime.ReadMemStats(&ms1)
			d := float64(b.N) * subs
			b.ReportMetric(float64(wall.Nanoseconds())/d, "wall-ns/delivery")
			b.ReportMetric(float64(cpu.Nanoseconds())/d, "cpu-ns/delivery")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/d, "allocs/delivery")
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
