// Command drillload is the client side of the multi-node benchmark (drill
// bench): it opens many lightweight WebSocket connections to one hub node,
// each joined to "bcast" automatically, and measures for every event the
// time from its publication (the "t" field the publisher sets) to its
// arrival. One process holds up to its file-descriptor limit of connections;
// the benchmark runs one per node.
//
//	drillload -url ws://127.0.0.1:8081/ws -conns 19000 -secret "$SECRET" -name w1
//
// It prints one JSON line {"connected":N,"failed":F} once every connection
// was tried, then, on SIGTERM or SIGINT, a JSON [Report] line, and exits.
// Connections are raw gobwas/ws (one goroutine and a 2 KiB buffer each), not
// the Go client, whose reconnection machinery would cost more than the hub
// connection it measures.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/org/rthub/token"
)

// Report is the worker's final line.
type Report struct {
	Conns      int      `json:"conns"`       // connections that were up at the end
	Closed     int64    `json:"closed"`      // connections the server closed
	Deliveries int64    `json:"deliveries"`  // events received
	Buckets    []uint64 `json:"buckets"`     // latency histogram, see BucketBound
	MaxNanos   int64    `json:"max_nanos"`   // highest latency
	SumNanos   int64    `json:"sum_nanos"`   // sum of latencies
	FirstNanos int64    `json:"first_nanos"` // first event's arrival (Unix ns)
	LastNanos  int64    `json:"last_nanos"`  // last event's arrival (Unix ns)
}

// Buckets: bucket i counts latencies up to BucketBound(i): 50 µs × 1.25^i.
const nBuckets = 64

func bucketOf(d time.Duration) int {
	b := 50 * time.Microsecond
	for i := range nBuckets - 1 {
		if d <= b {
			return i
		}
		b = b * 5 / 4
	}
	return nBuckets - 1
}

type stats struct {
	deliveries  atomic.Int64
	closed      atomic.Int64
	up          atomic.Int64
	max, sum    atomic.Int64
	first, last atomic.Int64
	buckets     [nBuckets]atomic.Uint64
}

func (s *stats) observe(now time.Time, sent int64) {
	d := now.UnixNano() - sent
	s.deliveries.Add(1)
	s.sum.Add(d)
	for {
		m := s.max.Load()
		if d <= m || s.max.CompareAndSwap(m, d) {
			break
		}
	}
	s.first.CompareAndSwap(0, now.UnixNano())
	s.last.Store(now.UnixNano())
	s.buckets[bucketOf(time.Duration(d))].Add(1)
}

func main() {
	url := flag.String("url", "", "hub WebSocket URL")
	conns := flag.Int("conns", 1000, "connections")
	secret := flag.String("secret", os.Getenv("DRILL_SECRET"), "HMAC secret for tokens")
	name := flag.String("name", "w", "subject prefix: connection i is <name>-<i>")
	parallel := flag.Int("parallel", 64, "handshakes at once")
	flag.Parse()
	if err := run(*url, *conns, []byte(*secret), *name, *parallel); err != nil {
		fmt.Fprintln(os.Stderr, "drillload:", err)
		os.Exit(1)
	}
}

func run(url string, n int, secret []byte, name string, parallel int) error {
	if url == "" || len(secret) < 32 {
		return errors.New("-url and -secret (32+ bytes) are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var st stats
	var mu sync.Mutex
	var open []net.Conn
	var failed atomic.Int64
	var lastErr atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() { // owner: run; the dial, then the reader until the connection ends
			tok, err := token.Sign(secret, token.Claims{Subject: fmt.Sprintf("%s-%d", name, i), Roles: []string{"drill"}, TTL: 24 * time.Hour})
			var c net.Conn
			var br *bufio.Reader
			if err == nil {
				d := ws.Dialer{
					Header:    ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + tok}}),
					Protocols: []string{"rthub.v1"},
					Timeout:   30 * time.Second,
				}
				c, br, _, err = d.Dial(ctx, url)
			}
			<-sem
			if err != nil {
				failed.Add(1)
				lastErr.Store(err.Error())
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			st.up.Add(1)
			read(c, br, &st)
			st.up.Add(-1)
		})
	}
	// Wait for every dial to have been tried.
	for range parallel {
		sem <- struct{}{}
	}
	msg := map[string]any{"connected": st.up.Load(), "failed": failed.Load()}
	if e, ok := lastErr.Load().(string); ok {
		msg["last_error"] = e
	}
	line, _ := json.Marshal(msg)
	fmt.Println(string(line))

	<-ctx.Done()
	rep := Report{Conns: int(st.up.Load()), Closed: st.closed.Load(), Deliveries: st.deliveries.Load(),
		MaxNanos: st.max.Load(), SumNanos: st.sum.Load(), FirstNanos: st.first.Load(), LastNanos: st.last.Load()}
	for i := range st.buckets {
		rep.Buckets = append(rep.Buckets, st.buckets[i].Load())
	}
	mu.Lock()
	for _, c := range open {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	line, _ = json.Marshal(rep)
	fmt.Println(string(line))
	return nil
}

var tField = []byte(`"t":`)

// read serves one connection: answers pings, records each event's latency.
func read(c net.Conn, br *bufio.Reader, st *stats) {
	defer c.Close()
	var r io.Reader = c
	if br != nil { // bytes the server sent with the handshake response
		r = io.MultiReader(br, c)
	}
	rd := bufio.NewReaderSize(r, 2048)
	buf := make([]byte, 0, 512)
	for {
		h, err := ws.ReadHeader(rd)
		if err != nil || h.Length > 1<<20 {
			st.closed.Add(1)
			return
		}
		if int64(cap(buf)) < h.Length {
			buf = make([]byte, h.Length)
		}
		buf = buf[:h.Length]
		if _, err := io.ReadFull(rd, buf); err != nil {
			st.closed.Add(1)
			return
		}
		now := time.Now()
		switch h.OpCode {
		case ws.OpPing:
			if err := ws.WriteFrame(c, ws.MaskFrameInPlace(ws.NewPongFrame(buf))); err != nil {
				return
			}
		case ws.OpClose:
			st.closed.Add(1)
			return
		case ws.OpText:
			if i := bytes.Index(buf, tField); i >= 0 {
				rest := buf[i+len(tField):]
				j := 0
				for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
					j++
				}
				if sent, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
					st.observe(now, sent)
				}
			}
		}
	}
}
