package rthub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// fastClient is a lean raw WebSocket client for load-style tests: gobwas
// handshake, buffered frame reads, no JSON decoding beyond what a test needs.
type fastClient struct {
	nc net.Conn
	br *bufio.Reader
}

func fastDial(ctx context.Context, url, token string) (*fastClient, error) {
	d := ws.Dialer{
		Header:    ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}}),
		Protocols: []string{Subprotocol},
	}
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, 4096)
	}
	return &fastClient{nc: nc, br: br}, nil
}

// next returns the next data frame's payload, answering nothing (the tests
// using it run shorter than the ping interval). A close frame is returned as
// a CloseError.
func (f *fastClient) next() ([]byte, error) {
	for {
		h, err := ws.ReadHeader(f.br)
		if err != nil {
			return nil, err
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(f.br, p); err != nil {
			return nil, err
		}
		switch h.OpCode {
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return nil, CloseError{Code: CloseCode(code), Reason: reason}
		case ws.OpText:
			return p, nil
		}
	}
}

func (f *fastClient) sendText(b []byte) error {
	return ws.WriteFrame(f.nc, ws.MaskFrameInPlace(ws.NewTextFrame(bytes.Clone(b))))
}

// eventNumber extracts n from an event frame whose data is {"n":N}.
func eventNumber(p []byte) (int, bool) {
	i := bytes.Index(p, []byte(`"data":{"n":`))
	if i < 0 {
		return 0, false
	}
	rest := p[i+len(`"data":{"n":`):]
	j := bytes.IndexAny(rest, ",}")
	if j < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:j]))
	return n, err == nil
}

// TestHub_FanOut: every one of 1,000 clients in one room receives every one of
// 1,000 published events exactly once and in order.
func TestHub_FanOut(t *testing.T) {
	clients, events := 1000, 1000
	if testing.Short() {
		clients, events = 100, 200
	}
	h, url := testHub(t, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	fcs := make([]*fastClient, clients)
	for i := range fcs {
		fc, err := fastDial(ctx, url, testToken(t, fmt.Sprintf("u%d", i), time.Hour, "staff"))
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		fcs[i] = fc
		defer fc.nc.Close()
		if err := fc.sendText([]byte(`{"id":1,"op":"join","room":"device:1"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until every client's join was answered.
	for i, fc := range fcs {
		for {
			p, err := fc.next()
			if err != nil {
				t.Fatalf("client %d before join reply: %v", i, err)
			}
			if bytes.Contains(p, []byte(`"type":"reply"`)) {
				if !bytes.Contains(p, []byte(`"ok":true`)) {
					t.Fatalf("client %d join: %s", i, p)
				}
				break
			}
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i, fc := range fcs {
		wg.Go(func() {
			want := 0
			for want < events {
				p, err := fc.next()
				if err != nil {
					errs <- fmt.Errorf("client %d after %d events: %v", i, want, err)
					return
				}
				n, ok := eventNumber(p)
				if !ok {
					continue
				}
				if n != want {
					errs <- fmt.Errorf("client %d: got event %d, want %d (duplicate, loss or reorder)", i, n, want)
					return
				}
				want++
			}
		})
	}
	for n := range events {
		if err := h.Publish(ctx, "device:1", "sensor:data", map[string]int{"n": n}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Nothing extra: a probe event is the next thing every client reads.
	if err := h.Publish(ctx, "device:1", "probe", map[string]int{"n": events}); err != nil {
		t.Fatal(err)
	}
	for i, fc := range fcs[:10] {
		p, err := fc.next()
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := eventNumber(p); n != events || !bytes.Contains(p, []byte(`"probe"`)) {
			t.Fatalf("client %d: after the last event got %s, want the probe", i, p)
		}
	}
	if s := h.Stats(); s.SlowConsumers != 0 {
		t.Errorf("SlowConsumers = %d, want 0", s.SlowConsumers)
	}
}

// TestHub_SlowConsumer: a client that stops reading is closed with 4000 once
// its queue overflows; the publisher never blocks and everyone else receives
// every event.
func TestHub_SlowConsumer(t *testing.T) {
	t.Parallel()
	const readers, events = 20, 2000
	h, url := testHub(t, func(o *Options) {
		o.SendQueueMessages = 256
		o.CloseTimeout = 500 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	join := []byte(`{"id":1,"op":"join","room":"device:1"}`)
	waitReply := func(fc *fastClient) {
		for {
			p, err := fc.next()
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(p, []byte(`"type":"reply"`)) {
				return
			}
		}
	}
	slow, err := fastDial(ctx, url, testToken(t, "slow", time.Hour, "staff"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.nc.Close()
	if tc, ok := slow.nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	_ = slow.sendText(join)
	waitReply(slow)

	fcs := make([]*fastClient, readers)
	for i := range fcs {
		fc, err := fastDial(ctx, url, testToken(t, fmt.Sprintf("r%d", i), time.Hour, "staff"))
		if err != nil {
			t.Fatal(err)
		}
		defer fc.nc.Close()
		_ = fc.sendText(join)
		waitReply(fc)
		fcs[i] = fc
	}
	var wg sync.WaitGroup
	got := make([]atomic.Int64, readers)
	for i, fc := range fcs {
		wg.Go(func() {
			for got[i].Load() < events {
				p, err := fc.next()
				if err != nil {
					return
				}
				if n, ok := eventNumber(p); ok && int64(n) == got[i].Load() {
					got[i].Add(1)
				}
			}
		})
	}
	// Readers that read keep up: the publisher stays within 128 events of the
	// slowest reader (the queue holds 256), so only the client that does not
	// read at all can overflow. The 8 KB payloads fill its socket buffers.
	payload := bytes.Repeat([]byte("x"), 8000)
	minGot := func() int64 {
		m := int64(events)
		for i := range got {
			m = min(m, got[i].Load())
		}
		return m
	}
	start := time.Now()
	for n := range events {
		for int64(n)-minGot() > 128 {
			if ctx.Err() != nil {
				t.Fatal("readers stalled")
			}
			time.Sleep(time.Millisecond)
		}
		data := fmt.Appendf(nil, `{"n":%d,"pad":"%s"}`, n, payload)
		if err := h.Publish(ctx, "device:1", "sensor:data", json.RawMessage(data)); err != nil {
			t.Fatal(err)
		}
	}
	publishTook := time.Since(start)
	wg.Wait()
	for i := range got {
		if n := got[i].Load(); n != events {
			t.Errorf("reader %d got %d of %d events in order", i, n, events)
		}
	}
	if s := h.Stats(); s.SlowConsumers != 1 {
		t.Errorf("SlowConsumers = %d, want 1", s.SlowConsumers)
	}
	// The slow client, reading at last, finds its stream ends with 4000 (or a
	// reset, if the close frame could not be written in CloseTimeout).
	// The server dropped the slow connection (it may not be able to tell the
	// client: its socket buffers are full, so the close frame may not fit).
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().Connections != readers && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := h.Stats().Connections; n != readers {
		t.Errorf("Connections = %d after the overflow, want %d", n, readers)
	}
	var endErr error
	_ = slow.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	for endErr == nil {
		_, endErr = slow.next()
	}
	if code := CloseStatus(endErr); code != 0 && code != CloseSlowConsumer {
		t.Errorf("slow client ended with close %d, want %d", code, CloseSlowConsumer)
	}
	t.Logf("published %d events in %v; slow client ended with %v", events, publishTook, endErr)
}

// TestHub_WriteDelay: with a write delay, events published in quick
// succession to a connection go out in one write, in order.
func TestHub_WriteDelay(t *testing.T) {
	t.Parallel()
	// No pings: one could join the held frames (a connection's ping slot
	// may come at any point of the interval).
	h, url := testHub(t, func(o *Options) { o.WriteDelay = time.Second; o.PingInterval = time.Hour })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	fc, err := fastDial(ctx, url, testToken(t, "del", time.Hour, "staff"))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.nc.Close()
	if _, err := fc.next(); err != nil { // welcome
		t.Fatal(err)
	}
	publish := func(i int) {
		t.Helper()
		if err := h.Publish(ctx, "staff", "sensor:data", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(i int) {
		t.Helper()
		p, err := fc.next()
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := eventNumber(p); got != i {
			t.Fatalf("event %d: got n=%d", i, got)
		}
	}
	// The room was quiet: the first event is not held (a second is a
	// failure bound far above a write, far below the delay it would get).
	start := time.Now()
	publish(0)
	read(0)
	if d := time.Since(start); d >= time.Second {
		t.Fatalf("the first event of a quiet room took %v: it was held", d)
	}
	time.Sleep(50 * time.Millisecond) // the write of event 0 is over
	// The room is now busy: the next events wait together.
	before := h.Stats()
	const n = 4
	for i := 1; i <= n; i++ {
		publish(i)
	}
	for i := 1; i <= n; i++ {
		read(i)
	}
	// The counters move just after the write returns: the client may be quicker.
	after := h.Stats()
	for deadline := time.Now().Add(5 * time.Second); after.FramesSent-before.FramesSent < n && time.Now().Before(deadline); after = h.Stats() {
		time.Sleep(time.Millisecond)
	}
	if frames, writes := after.FramesSent-before.FramesSent, after.Writes-before.Writes; frames != n || writes != 1 {
		t.Errorf("%d frames in %d writes, want %d in 1", frames, writes, n)
	}
	if _, err := New(Options{Auth: AuthOptions{Keys: map[string]any{"": testSecret}}, WriteDelay: -1}); err == nil {
		t.Error("New accepted a negative WriteDelay")
	}
}
