package rthub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"golang.org/x/time/rate"
)

// queueState reports the frames and bytes queued to the hub's only
// connection, and the control frames it holds pending.
func queueState(h *Hub) (frames, bytes, ctrl int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, c := range h.conns {
		c.mu.Lock()
		if c.queue != nil {
			frames = len(c.queue.bufs)
		}
		bytes = c.queued
		if c.pingDue {
			ctrl++
		}
		if c.pongLocked() != nil {
			ctrl++
		}
		c.mu.Unlock()
	}
	return frames, bytes, ctrl
}

// A client that never reads and pings as fast as it can: the pongs owed to
// it must stay within the queue bounds (only the latest ping is answered),
// not pile up until WriteTimeout (281,153 frames / 35.7 MB were seen).
func TestControl_PongsBounded(t *testing.T) {
	t.Parallel()
	const maxMsgs, maxBytes = 256, 64 << 10
	h, url := conformHub(t, func(o *Options) {
		o.SendQueueMessages = maxMsgs
		o.SendQueueBytes = maxBytes
		o.Limits.ControlFrames = -1 // no limit: only the queue bound is tested
		o.WriteTimeout = time.Minute
	})
	rc := dialRaw(t, url, rawOpts{token: testToken(t, "mallory", time.Hour, "staff")})
	waitConnCount(t, h, 1)

	var most atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			f, b, ctrl := queueState(h)
			if f > maxMsgs || b > maxBytes || ctrl > 2 {
				most.Store(int64(f))
			}
		}
	}()
	ping := cframe(true, 0, opPing, strings.Repeat("p", 125))
	burst := bytes.Repeat(ping, 1000)
	for range 200 { // 200,000 pings: 25 MB of pongs owed, more than the socket buffers hold
		_ = rc.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := rc.nc.Write(burst); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	<-done
	if n := most.Load(); n != 0 {
		t.Fatalf("queue went past its bounds: %d frames (max %d) while the client pinged without reading", n, maxMsgs)
	}
	if st := h.Stats(); st.SlowConsumers != 0 {
		t.Errorf("SlowConsumers = %d: pongs must not count as data", st.SlowConsumers)
	}
}

// A client that floods control frames is closed with 1008 like one that
// floods commands, and the close is counted as abuse.
func TestControl_FloodClosed(t *testing.T) {
	t.Parallel()
	for _, op := range []byte{opPing, opPong} {
		t.Run(map[byte]string{opPing: "ping", opPong: "pong"}[op], func(t *testing.T) {
			t.Parallel()
			h, url := conformHub(t, nil)
			rc := dialRaw(t, url, rawOpts{token: testToken(t, "mallory", time.Hour, "staff")})
			rc.write(bytes.Repeat(cframe(true, 0, op, "x"), 200))
			code, _ := rc.expectClose()
			if code != ws.StatusCode(ClosePolicyViolation) {
				t.Fatalf("close code = %d, want %d", code, ClosePolicyViolation)
			}
			// The close frame can reach us before the close is counted.
			deadline := time.Now().Add(10 * time.Second)
			for h.Stats().AbuseCloses == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if st := h.Stats(); st.AbuseCloses != 1 || st.RateLimited == 0 {
				t.Errorf("AbuseCloses = %d, RateLimited = %d; want 1 and > 0", st.AbuseCloses, st.RateLimited)
			}
		})
	}
}

// A client that pings within the limit gets a pong for each ping and stays.
func TestControl_WithinLimit(t *testing.T) {
	t.Parallel()
	h, url := conformHub(t, func(o *Options) {
		o.Limits.ControlFrames = rate.Every(10 * time.Millisecond)
		o.Limits.ControlBurst = 2

	})
	rc := dialRaw(t, url, rawOpts{token: testToken(t, "alice", time.Hour, "staff")})
	for i := range 20 {
		rc.write(cframe(true, 0, opPing, "k"))
		for {
			hd, _, err := rc.readFrame(5 * time.Second)
			if err != nil {
				t.Fatalf("ping %d: %v", i, err)
			}
			if hd.OpCode == ws.OpPong {
				break
			}
		}
		time.Sleep(15 * time.Millisecond)
	}
	if st := h.Stats(); st.RateLimited != 0 || st.AbuseCloses != 0 {
		t.Errorf("RateLimited = %d, AbuseCloses = %d; want 0", st.RateLimited, st.AbuseCloses)
	}
}

func TestConn_PingPong(t *testing.T) {
	t.Parallel()
	t.Run("pongEchoesPayload", func(t *testing.T) {
		t.Parallel()
		_, url := conformHub(t, nil)
		rc := dialRaw(t, url, rawOpts{token: testToken(t, "alice", time.Hour, "staff")})
		for _, p := range []string{"", "hello-123", strings.Repeat("z", 125), "\x00\xff"} {
			rc.write(cframe(true, 0, opPing, p))
			var pongs []string
			for len(pongs) == 0 {
				h, b, err := rc.readFrame(5 * time.Second)
				if err != nil {
					t.Fatalf("ping %q: %v", p, err)
				}
				if h.OpCode == ws.OpPong {
					if !h.Fin || h.Rsv != 0 {
						t.Errorf("pong header %+v", h)
					}
					pongs = append(pongs, string(b))
				}
			}
			if pongs[0] != p {
				t.Errorf("pong payload = %q, want %q", pongs[0], p)
			}
		}
	})

	fast := func(o *Options) {
		// PongTimeout leaves the answering client's reader some slack on a
		// loaded machine (-race, parallel tests).
		o.PingInterval = 100 * time.Millisecond
		o.PongTimeout = time.Second
	}

	// One hub, two clients: one never sends anything and must be closed with
	// 4001; the other answers pings and must stay.
	t.Run("keepalive", func(t *testing.T) {
		t.Parallel()
		h, url := conformHub(t, fast)

		c, _, err := dialErr(url, testToken(t, "bob", time.Hour, "staff"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		// coder/websocket answers pings only while a Read is in progress.
		msgs := make(chan serverMsg, 16)
		rerr := make(chan error, 1)
		go func() {
			for {
				_, b, err := c.Read(context.Background())
				if err != nil {
					rerr <- err
					return
				}
				var m serverMsg
				_ = json.Unmarshal(b, &m)
				msgs <- m
			}
		}()

		start := time.Now()
		rc := dialRaw(t, url, rawOpts{token: testToken(t, "alice", time.Hour, "staff")})
		var pings []time.Time
		for {
			hd, p, err := rc.readFrame(5 * time.Second)
			if err != nil {
				t.Fatalf("read: %v (after %v)", err, time.Since(start))
			}
			if hd.OpCode == ws.OpPing {
				if len(p) != 0 {
					t.Errorf("ping payload %q", p)
				}
				pings = append(pings, time.Now())
				continue
			}
			if hd.OpCode != ws.OpClose {
				continue
			}
			took := time.Since(start)
			code, _ := ws.ParseCloseFrameData(p)
			if code != ws.StatusCode(ClosePingTimeout) {
				t.Fatalf("close code = %d, want %d", code, ClosePingTimeout)
			}
			// Closed at the first tick after PongTimeout of silence: never
			// earlier, and a tick (plus scheduling slack) later at most.
			// The upper bound is loose: CI machines are noisy.
			if took < time.Second || took > 8*time.Second {
				t.Errorf("closed after %v, want within [1s, 8s]", took)
			}
			break
		}
		if len(pings) < 2 {
			t.Errorf("got %d pings before the timeout, want at least 2", len(pings))
		}
		if n := len(pings); n >= 2 {
			if avg := pings[n-1].Sub(pings[0]) / time.Duration(n-1); avg < 25*time.Millisecond {
				t.Errorf("pings %v apart on average, want about 50ms", avg)
			}
		}

		// The answering client has been through several ping rounds; give
		// it a few more, then it must still work.
		select {
		case err := <-rerr:
			t.Fatalf("answering client ended: %v (close %d)", err, websocket.CloseStatus(err))
		case <-time.After(500 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":7,"op":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case m := <-msgs:
				if m.Type != "reply" || m.ID != 7 {
					continue
				}
				if !m.OK {
					t.Fatalf("ping reply %+v", m.Error)
				}
				if got := h.Stats().PingTimeouts; got != 1 {
					t.Errorf("PingTimeouts = %d, want 1", got)
				}
				return
			case err := <-rerr:
				t.Fatalf("answering client ended: %v (close %d)", err, websocket.CloseStatus(err))
			case <-ctx.Done():
				t.Fatal("no reply to ping")
			}
		}
	})
}

// BenchmarkPingFlood: 100 clients that never read ping as fast as they can
// (200,000 pings of 125 bytes each: 25 MB of pongs owed per client). It
// reports the server's heap and RSS growth per client, to compare with the
// per-connection queue bound (SendQueueBytes, 64 KiB here), with the
// control-frame limit off (only the single pong slot bounds them) and on
// (the default: flooders are closed with 1008). b.N is ignored; run with
// -benchtime=1x.
func BenchmarkPingFlood(b *testing.B) {
	for _, limited := range []bool{false, true} {
		b.Run(fmt.Sprintf("limited=%v", limited), func(b *testing.B) {
			for b.Loop() {
			}
			h, url := benchHub(b, func(o *Options) {
				o.SendQueueBytes = 64 << 10
				o.SendQueueMessages = 256
				o.WriteTimeout = time.Minute
				if !limited {
					o.Limits.ControlFrames = -1
				}
			})
			heap0, _, rss0 := memNow()
			const clients = 100
			burst := bytes.Repeat(cframe(true, 0, opPing, strings.Repeat("p", 125)), 1000)
			var wg sync.WaitGroup
			for i := range clients {
				rc, err := dialRawErr(url, rawOpts{token: testToken(b, fmt.Sprintf("mallory%d", i), time.Hour, "bench")})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { rc.nc.Close() })
				wg.Go(func() {
					for range 200 {
						_ = rc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
						if _, err := rc.nc.Write(burst); err != nil {
							return // closed (1008) or stuck: either way done
						}
					}
				})
			}
			wg.Wait()
			time.Sleep(200 * time.Millisecond)
			heap1, _, rss1 := memNow()
			st := h.Stats()
			b.ReportMetric(float64(int64(heap1)-int64(heap0))/clients, "heap-B/client")
			b.ReportMetric(float64(int64(rss1)-int64(rss0))/clients, "rss-B/client")
			b.ReportMetric(float64(st.AbuseCloses), "abuse-closes")
		})
	}
}
