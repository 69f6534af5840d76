package rthub

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
)

// The broadcast and memory benchmarks run their clients in a child process
// (this test binary re-executed in "fleet" mode): one process may hold at most
// ~19,900 sockets here, and 10,000 clients plus 10,000 server sockets would not
// fit; it also keeps the clients' CPU and memory out of the server's numbers.

const fleetEnv = "RTHUB_BENCH_FLEET" // url|count|deflate, or url|count|0|http for HTTP streams

// runFleet is the child process: it dials count clients, then reads and
// discards frames until stdin closes (the parent exits or kills it).
func runFleet(spec string) {
	parts := strings.Split(spec, "|")
	url := parts[0]
	n, _ := strconv.Atoi(parts[1])
	deflate := parts[2] == "1"
	if len(parts) > 3 && parts[3] == "http" {
		runStreamFleet(url, n) // httpstream_bench_test.go
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	conns := make([]net.Conn, n)
	var failed int
	var mu sync.Mutex
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			tok := fleetToken(i)
			d := ws.Dialer{
				Header:    ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + tok}}),
				Protocols: []string{Subprotocol},
				Timeout:   30 * time.Second,
			}
			if deflate {
				d.Extensions = append(d.Extensions, deflateOffer)
			}
			// Spread source addresses so ephemeral ports never run out.
			d.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
				la := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}
				nd := net.Dialer{LocalAddr: la}
				return nd.DialContext(ctx, network, addr)
			}
			nc, br, _, err := d.Dial(ctx, url)
			if err != nil {
				mu.Lock()
				failed++
				if failed < 5 {
					fmt.Fprintln(os.Stderr, "fleet dial:", err)
				}
				mu.Unlock()
				return
			}
			if br != nil {
				ws.PutReader(br)
			}
			conns[i] = nc
		})
	}
	wg.Wait()
	fmt.Printf("ready %d %d\n", n-failed, failed)
	for _, nc := range conns {
		if nc == nil {
			continue
		}
		go func() {
			br := bufio.NewReaderSize(nc, 8192)
			_, _ = io.Copy(io.Discard, br)
		}()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

func fleetToken(i int) string {
	s, err := signHS256(map[string]any{"sub": "u" + strconv.Itoa(i), "roles": []string{"bench"}}, testSecret)
	if err != nil {
		panic(err)
	}
	return s
}

// startFleet runs count clients against url in a child process and waits
// until they are connected.
func startFleet(tb testing.TB, url string, count int, deflate bool) {
	tb.Helper()
	d := "0"
	if deflate {
		d = "1"
	}
	startFleetSpec(tb, url+"|"+strconv.Itoa(count)+"|"+d)
}

// startFleetSpec runs the fleet process of spec (see fleetEnv) and waits
// until its clients are connected.
func startFleetSpec(tb testing.TB, spec string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fleetEnv+"="+spec)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
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
		tb.Fatalf("fleet: %v", err)
	}
	var ok, failed int
	if _, err := fmt.Sscanf(line, "ready %d %d", &ok, &failed); err != nil || failed != 0 {
		tb.Fatalf("fleet: %q", line)
	}
}

var benchPolicy = Policy{Roles: map[string]RoleRules{"bench": {AutoJoin: []string{"bench"}}}}

// benchHub serves a hub on a real listener (not httptest: its connection
// tracking adds per-connection state the library does not own).
func benchHub(tb testing.TB, mod func(*Options)) (*Hub, string) {
	tb.Helper()
	opts := Options{
		Auth:   AuthOptions{Keys: map[string]any{"": testSecret}},
		Policy: benchPolicy,
	}
	if mod != nil {
		mod(&opts)
	}
	h, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, "ws://" + ln.Addr().String() + "/"
}

func waitConns(tb testing.TB, h *Hub, n int) {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := h.Stats()
		if s.Connections >= n && h.roomSize("bench") >= n {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("only %d of %d connections", s.Connections, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// roomSize returns the number of local members of a room (tests only).
func (h *Hub) roomSize(name string) int {
	h.mu.RLock()
	rm := h.rooms[name]
	h.mu.RUnlock()
	if rm == nil {
		return 0
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return len(rm.members)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPayload returns JSON of about size bytes that looks like sensor data.
func benchPayload(size int) json.RawMessage {
	var sb strings.Builder
	sb.WriteString(`{"device":"dev-0042","readings":[`)
	for i := 0; sb.Len() < size-40; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"t":%d,"temp":%.2f,"hum":%.1f}`, 1764000000+i*5, 20.5+float64(i%17)*0.37, 40+float64(i%11)*1.3)
	}
	sb.WriteString(`]}`)
	return json.RawMessage(sb.String())
}

// BenchmarkBroadcast publishes one event at a time to a room of N real
// loopback subscribers and waits until every frame is written. It reports
// wall and server-CPU nanoseconds and allocations per delivered message.
func BenchmarkBroadcast(b *testing.B) {
	for _, subs := range []int{1000, 10000} {
		for _, size := range []int{200, 2048} {
			for _, deflate := range []bool{false, true} {
				name := fmt.Sprintf("subs=%d/size=%d/deflate=%v", subs, size, deflate)
				b.Run(name, func(b *testing.B) { benchBroadcast(b, subs, size, deflate) })
			}
		}
	}
}

func benchBroadcast(b *testing.B, subs, size int, deflate bool) {
	h, url := benchHub(b, func(o *Options) { o.PingInterval = time.Hour })
	// Every connection gets one welcome frame, then one per broadcast (no
	// pings: the interval is an hour).
	fc := countFrames(h)
	wait := func() { fc.wait(b, time.Minute) }
	target := &fc.target
	target.Store(int64(subs))
	startFleet(b, url, subs, deflate)
	waitConns(b, h, subs)
	wait()
	payload := benchPayload(size)
	ctx := context.Background()
	for range 3 { // warm up pools and buffers
		target.Add(int64(subs))
		_ = h.Publish(ctx, "bench", "sensor:data", payload)
		wait()
	}
	measureDeliveries(b, subs, func() {
		target.Add(int64(subs))
		if err := h.Publish(ctx, "bench", "sensor:data", payload); err != nil {
			b.Fatal(err)
		}
		wait()
	})
	s := h.Stats()
	b.ReportMetric(float64(s.BytesSent)/float64(s.FramesSent), "wire-B/frame")
	if s.SlowConsumers != 0 {
		b.Fatalf("%d slow consumers", s.SlowConsumers)
	}
}

// BenchmarkBareWriteLoop is the floor BenchmarkBroadcast is judged against:
// plain gobwas connections, no hub, the frame compiled once and written to
// every connection in a serial loop.
func BenchmarkBareWriteLoop(b *testing.B) {
	for _, subs := range []int{1000, 10000} {
		for _, size := range []int{200, 2048} {
			b.Run(fmt.Sprintf("subs=%d/size=%d", subs, size), func(b *testing.B) { benchBare(b, subs, size) })
		}
	}
}

func benchBare(b *testing.B, subs, size int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	up := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == Subprotocol }}
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := up.Upgrade(nc); err != nil {
				nc.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		<-acceptDone
		for _, nc := range conns {
			nc.Close()
		}
	})
	startFleet(b, "ws://"+ln.Addr().String()+"/", subs, false)
	payload := appendEvent(nil, "sensor:data", "bench", benchPayload(size))
	frame := textFrame(payload)
	// The fleet is ready when its handshakes are done; the server side may
	// still be appending the last connections.
	var cs []net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		cs = conns
		mu.Unlock()
		if len(cs) == subs {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d conns", len(cs), subs)
		}
	}
	measureDeliveries(b, subs, func() {
		for _, nc := range cs {
			_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := nc.Write(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// measureDeliveries runs one broadcast to subs connections per b.Loop
// iteration and reports wall time, server CPU (getrusage) and allocations
// per delivered message.
func measureDeliveries(b *testing.B, subs int, broadcast func()) {
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		broadcast()
	}
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&ms1)
	deliveries := float64(b.N) * float64(subs)
	b.ReportMetric(float64(wall.Nanoseconds())/deliveries, "wall-ns/delivery")
	b.ReportMetric(float64(cpu.Nanoseconds())/deliveries, "cpu-ns/delivery")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/deliveries, "allocs/delivery")
}

// BenchmarkIdleMemory holds N idle authenticated connections, each in one
// room, and reports the server's memory per connection: heap+stack from the
// runtime, RSS from /proc, goroutines, and the kernel's TCP buffer memory
// (/proc/net/sockstat: the whole machine's, both ends of every loopback
// connection). Each size runs on both read paths (read=auto is the epoll
// path on Linux). b.N is irrelevant; run with -benchtime=1x.
func BenchmarkIdleMemory(b *testing.B) {
	if os.Getenv("RTHUB_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 64 // fine-grained: see every connection's allocations
	}
	for _, n := range []int{1000, 10000, 19000} {
		for _, rm := range readModes {
			b.Run(fmt.Sprintf("conns=%d/read=%s", n, rm.name), func(b *testing.B) {
				// RTHUB_BENCH_PRESENCE=1 turns presence on in the room: each
				// connection is then also a person in its presence map.
				// RTHUB_BENCH_PRUNED=1 measures after the handshake rate
				// buckets were pruned (as the keepalive sweep does once they
				// are full again). RTHUB_BENCH_NETCONN=1 leaves the epoll
				// path's sockets in the runtime's netpoller (as before the
				// hub owned them), to compare in one sitting.
				h, url := benchHub(b, func(o *Options) {
					o.ReadMode = rm.mode
					o.testKeepNetConn = os.Getenv("RTHUB_BENCH_NETCONN") == "1"
					if os.Getenv("RTHUB_BENCH_PRESENCE") == "1" {
						o.Policy.Presence = []string{"bench"}
					}
				})
				heap0, stack0, rss0 := memNow()
				cls0 := memClasses()
				g0, sk0 := runtime.NumGoroutine(), tcpBufferBytes()
				startFleet(b, url, n, true)
				waitConns(b, h, n)
				if os.Getenv("RTHUB_BENCH_PRUNED") == "1" {
					// What an idle fleet costs once its handshake buckets
					// refilled and the keepalive sweep pruned them (it does
					// once per PingInterval).
					h.limits.prune(time.Now().Add(time.Hour))
				}
				heap1, stack1, rss1 := memNow()
				cls1 := memClasses()
				g1, sk1 := runtime.NumGoroutine(), tcpBufferBytes()
				if os.Getenv("RTHUB_MEMCLASSES") == "1" {
					logMemClasses(b, cls0, cls1, rss1-rss0, n)
				}
				if path := os.Getenv("RTHUB_HEAPPROFILE"); path != "" {
					// A heap profile with the connections alive, for pprof.
					f, err := os.Create(strings.ReplaceAll(path, "MODE", rm.name))
					if err != nil {
						b.Fatal(err)
					}
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
				for b.Loop() {
				}
				b.ReportMetric(float64(heap1+stack1-heap0-stack0)/float64(n), "heap+stack-B/conn")
				b.ReportMetric(float64(stack1-stack0)/float64(n), "stack-B/conn")
				b.ReportMetric(float64(rss1-rss0)/float64(n), "rss-B/conn")
				b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")
				b.ReportMetric(float64(sk1-sk0)/float64(n), "tcpbuf-B/conn")
			})
		}
	}
}

// tcpBufferBytes returns the memory of all TCP socket buffers of the
// machine (the "mem" pages of /proc/net/sockstat), or 0 if unknown.
func tcpBufferBytes() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				pages, _ := strconv.ParseInt(f[i+1], 10, 64)
				return pages * int64(os.Getpagesize())
			}
		}
	}
	return 0
}

// memNow returns HeapInuse, StackInuse and VmRSS after a full GC.
func memNow() (heap, stack, rss uint64) {
	for range 2 {
		runtime.GC()
	}
	debugFreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.StackInuse, readRSS()
}

// memClasses reads the runtime's /memory/classes/ metrics: every byte the
// runtime maps, by what it holds.
func memClasses() []metrics.Sample {
	var s []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") {
			s = append(s, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(s)
	return s
}

// logMemClasses logs, per connection, how each /memory/classes/ metric and
// the smaps_rollup fields moved while the fleet connected (RTHUB_MEMCLASSES=1):
// the runtime's account of the RSS difference.
func logMemClasses(tb testing.TB, before, after []metrics.Sample, rss uint64, n int) {
	tb.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, "per connection (%d): rss %+.0f B\n", n, float64(rss)/float64(n))
	for i := range after {
		d := float64(int64(after[i].Value.Uint64())-int64(before[i].Value.Uint64())) / float64(n)
		fmt.Fprintf(&sb, "  %-50s %+8.1f B\n", after[i].Name, d)
	}
	if b, err := os.ReadFile("/proc/self/smaps_rollup"); err == nil {
		sb.Write(b)
	}
	fmt.Fprint(os.Stderr, sb.String()) // not tb.Log: benchmark logs are cut at 10 lines
}

func readRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			kb, _ := strconv.ParseUint(f[0], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func debugFreeOSMemory() { debug.FreeOSMemory() }

// deflateOffer is what browsers offer for permessage-deflate.
var deflateOffer = httphead.Option{
	Name:       []byte("permessage-deflate"),
	Parameters: httphead.Parameters{},
}

func init() {
	deflateOffer.Parameters.Set([]byte("client_max_window_bits"), nil)
}

func signHS256(claims map[string]any, key []byte) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString(key)
}

// BenchmarkCoalescing publishes 200 events/s (200 B) to 1,000 subscribers, the
// rate at which deliveries outrun a one-frame-per-write server on two cores,
// and reports server CPU per delivery and frames per write system call, with
// coalescing (frames queued for a connection go out in one writev) and
// without (one frame per writev). b.N is the number of events.
func BenchmarkCoalescing(b *testing.B) {
	for _, tc := range []struct {
		name   string
		maxIov int
		delay  time.Duration
	}{
		{"coalesce=off", 1, 0},
		{"coalesce=on", 0, 0},
		{"coalesce=on/delay=2ms", 0, 2 * time.Millisecond},
		{"coalesce=on/delay=10ms", 0, 10 * time.Millisecond},
		{"coalesce=on/delay=20ms", 0, 20 * time.Millisecond},
	} {
		b.Run(tc.name, func(b *testing.B) { benchCoalescing(b, tc.maxIov, tc.delay) })
	}
}

func benchCoalescing(b *testing.B, maxIov int, delay time.Duration) {
	const subs, rate = 1000, 200
	h, url := benchHub(b, func(o *Options) {
		o.PingInterval = time.Hour
		o.testMaxIov = maxIov
		o.WriteDelay = delay
	})
	fc := countFrames(h)
	waitAll := func() { fc.wait(b, 2*time.Minute) }
	target := &fc.target
	target.Store(subs)
	startFleet(b, url, subs, false)
	waitConns(b, h, subs)
	waitAll()
	payload := benchPayload(200)
	ctx := context.Background()
	s0 := h.Stats()
	// measureDeliveries times one "broadcast" per loop; here one loop is the
	// whole paced run, so report per delivery by hand.
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	for b.Loop() {
		<-tick.C
		target.Add(subs)
		if err := h.Publish(ctx, "bench", "sensor:data", payload); err != nil {
			b.Fatal(err)
		}
	}
	waitAll()
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&ms1)
	s1 := h.Stats()
	deliveries := float64(b.N) * subs
	b.ReportMetric(float64(cpu.Nanoseconds())/deliveries, "cpu-ns/delivery")
	b.ReportMetric(float64(s1.FramesSent-s0.FramesSent)/float64(s1.Writes-s0.Writes), "frames/write")
	b.ReportMetric(deliveries/wall.Seconds(), "deliveries/s")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/deliveries, "allocs/delivery")
	if s1.SlowConsumers != 0 {
		b.Fatalf("%d slow consumers", s1.SlowConsumers)
	}
}

// frameCounter counts the frames a hub writes, through its flush hook, and
// wakes a waiter once target is reached: no spinning, which would burn the
// server CPU a benchmark measures.
type frameCounter struct {
	written, target atomic.Int64
	done            chan struct{}
}

func countFrames(h *Hub) *frameCounter {
	fc := &frameCounter{done: make(chan struct{}, 1)}
	h.testHookFlushed = func(n int) {
		if fc.written.Add(int64(n)) >= fc.target.Load() {
			select {
			case fc.done <- struct{}{}:
			default:
			}
		}
	}
	return fc
}

// wait blocks until target frames are written; a stall past timeout fails tb.
func (fc *frameCounter) wait(tb testing.TB, timeout time.Duration) {
	for fc.written.Load() < fc.target.Load() {
		select {
		case <-fc.done:
		case <-time.After(timeout):
			tb.Fatalf("writes stalled: %d of %d frames", fc.written.Load(), fc.target.Load())
		}
	}
}
