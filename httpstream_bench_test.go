package rthub

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkIdleMemoryHTTPStream is BenchmarkIdleMemory for HTTP stream
// connections (the WebSocket fallback): N idle authenticated streams, each
// in one room, opened by a child process; it reports the server's memory
// per connection. b.N is irrelevant; run on a quiet machine with
//
//	go test -run '^$' -bench 'IdleMemory' -benchtime 1x .
//
// to compare both transports (docs/performance.md).
func BenchmarkIdleMemoryHTTPStream(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			h, url := benchHub(b, func(o *Options) { o.HTTPStream.Enabled = true })
			heap0, stack0, rss0 := memNow()
			startFleetSpec(b, url+"|"+strconv.Itoa(n)+"|0|http")
			waitConns(b, h, n)
			heap1, stack1, rss1 := memNow()
			for b.Loop() {
			}
			b.ReportMetric(float64(heap1+stack1-heap0-stack0)/float64(n), "heap+stack-B/conn")
			b.ReportMetric(float64(stack1-stack0)/float64(n), "stack-B/conn")
			b.ReportMetric(float64(rss1-rss0)/float64(n), "rss-B/conn")
		})
	}
}

// TestIdleStreamFleet runs the benchmark's fleet at a small size, so that
// its harness keeps working.
func TestIdleStreamFleet(t *testing.T) {
	t.Parallel()
	h, url := benchHub(t, func(o *Options) { o.HTTPStream.Enabled = true })
	startFleetSpec(t, url+"|20|0|http")
	waitConns(t, h, 20)
}

// runStreamFleet is the child process of an HTTP stream fleet: it opens
// count streams, then reads and discards their events until stdin closes.
func runStreamFleet(url string, n int) {
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/")
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	conns := make([]net.Conn, n)
	var failed int
	var mu sync.Mutex
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}, Timeout: 30 * time.Second}
			nc, err := nd.Dial("tcp", addr)
			if err == nil {
				_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
				_, err = fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nAuthorization: Bearer %s\r\n\r\n", addr, fleetToken(i))
			}
			var status string
			if err == nil {
				status, err = bufio.NewReaderSize(nc, 64).ReadString('\n')
			}
			if err == nil && !strings.HasPrefix(status, "HTTP/1.1 200 ") {
				err = fmt.Errorf("status %q", status)
			}
			if err != nil {
				mu.Lock()
				failed++
				if failed < 5 {
					fmt.Fprintln(os.Stderr, "stream fleet:", err)
				}
				mu.Unlock()
				if nc != nil {
					nc.Close()
				}
				return
			}
			_ = nc.SetDeadline(time.Time{})
			conns[i] = nc
		})
	}
	wg.Wait()
	fmt.Printf("ready %d %d\n", n-failed, failed)
	for _, nc := range conns {
		if nc != nil {
			go func() { _, _ = io.Copy(io.Discard, nc) }()
		}
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
