package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/gobwas/ws"
)

// The churn scenario's clients (the controller's side is churn.go). Each
// slot holds one raw connection (rawclient.go: one goroutine, no
// reconnection logic of its own) at a time: it connects with a fresh token,
// joins the room, lives a random lifetime reading what the room sends
// (presence events) and answering pings, ends the connection — a clean
// WebSocket close or an abrupt TCP drop — and connects again at once, until
// the worker stops it.

// churnSpec is one worker's share of the churn: slots First … First+Slots-1
// of the run (subjects are numbered over the whole run, so a user's slots
// may be in several workers).
type churnSpec struct {
	Slots     int           `json:"slots"`
	First     int           `json:"first"`
	MinLife   time.Duration `json:"min_life"`
	MaxLife   time.Duration `json:"max_life"`
	AbruptPct float64       `json:"abrupt_pct"` // percent of closes that are TCP drops, half FIN and half RST
	PerUser   int           `json:"per_user"`   // slots sharing one subject
	TokenTTL  time.Duration `json:"token_ttl"`
}

// closes counts how churn connections ended.
type closes struct {
	Clean  int `json:"clean,omitempty"`  // close frame 1000 sent, the server's close awaited (≤ 2 s)
	FIN    int `json:"fin,omitempty"`    // TCP closed without a close frame
	RST    int `json:"rst,omitempty"`    // TCP reset (SO_LINGER 0): as a network failure
	Server int `json:"server,omitempty"` // the server ended it first: token expiry, slow consumer, shutdown
}

func (a *closes) add(b closes) {
	a.Clean += b.Clean
	a.FIN += b.FIN
	a.RST += b.RST
	a.Server += b.Server
}

type closeMode int

const (
	closeClean closeMode = iota
	closeFIN
	closeRST
)

// startChurn starts spec's slots (once per worker); stopChurn ends them.
// Their goroutines are counted in w.wg, which run waits for.
func (w *worker) startChurn(spec churnSpec) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.churnStop != nil {
		return
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.churnStop = cancel
	for i := range spec.Slots {
		g := spec.First + i
		w.wg.Go(func() { w.churnSlot(ctx, spec, g) })
	}
}

// stopChurn makes every slot close its connection (as its drawn close mode
// says) and return.
func (w *worker) stopChurn() {
	w.mu.Lock()
	stop := w.churnStop
	w.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// churnSlot is slot g's loop: connect, live, close, again, until ctx ends.
func (w *worker) churnSlot(ctx context.Context, spec churnSpec, g int) {
	rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
	sub := fmt.Sprintf("churn-%d", g/max(spec.PerUser, 1))
	for ctx.Err() == nil {
		nc, br, ok := w.churnDial(ctx, g, sub, spec.TokenTTL)
		if !ok {
			// A failed dial (counted) waits 1–2 s, as a client's backoff would.
			t := time.NewTimer(time.Second + time.Duration(rng.Int64N(int64(time.Second))))
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		life := spec.MinLife + time.Duration(rng.Int64N(int64(spec.MaxLife-spec.MinLife)+1))
		mode := closeClean
		if rng.Float64()*100 < spec.AbruptPct {
			mode = closeFIN + closeMode(rng.IntN(2))
		}
		w.connected.Add(1)
		alive := liveFor(ctx, nc, br, life)
		w.connected.Add(-1)
		var c closes
		switch {
		case !alive:
			_ = nc.Close()
			c.Server++
		case mode == closeClean:
			endConn(nc, br, mode)
			c.Clean++
		case mode == closeFIN:
			endConn(nc, br, mode)
			c.FIN++
		default:
			endConn(nc, br, mode)
			c.RST++
		}
		w.mu.Lock()
		w.cur.Closes.add(c)
		w.mu.Unlock()
	}
}

// churnDial connects slot g as sub with a token valid for ttl, counting the
// attempt; a dial cut short because the churn is stopping is not counted.
func (w *worker) churnDial(ctx context.Context, g int, sub string, ttl time.Duration) (net.Conn, *bufio.Reader, bool) {
	tok, err := signTokenTTL(w.cfg.Secret, sub, w.cfg.Roles, ttl)
	if err == nil {
		select {
		case w.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, nil, false
		}
	}
	start := time.Now()
	var nc net.Conn
	var br *bufio.Reader
	if err == nil {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		nc, br, err = w.rawConnect(dctx, g, tok)
		cancel()
		<-w.sem
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil && ctx.Err() != nil {
		w.cur.Cut++ // the server may have accepted it
		return nil, nil, false
	}
	w.cur.Attempts++
	if err != nil {
		w.cur.Failures++
		if len(w.cur.Errors) < 3 {
			w.cur.Errors = append(w.cur.Errors, err.Error())
		}
		return nil, nil, false
	}
	w.cur.Handshake.Record(time.Since(start))
	return nc, br, true
}

// liveFor reads and discards what the server sends for life (or until ctx
// ends), answering pings, and reports whether the connection is still up:
// false when the server closed it first.
func liveFor(ctx context.Context, nc net.Conn, br *bufio.Reader, life time.Duration) bool {
	_ = nc.SetReadDeadline(time.Now().Add(life))
	stop := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 0, 512)
	for {
		op, p, _, err := readFrame(br, buf)
		if err != nil {
			return errors.Is(err, os.ErrDeadlineExceeded)
		}
		switch op {
		case ws.OpPing:
			_ = nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if writeFrame(nc, ws.OpPong, p) != nil {
				return false
			}
		case ws.OpClose:
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			_ = writeFrame(nc, ws.OpClose, p) // echo the status, as RFC 6455 asks
			return false
		}
		buf = p[:0]
	}
}

// endConn ends a live connection: clean sends close 1000 and waits (at most
// 2 s) for the server's close frame; FIN closes the socket without a close
// frame; RST resets it (SO_LINGER 0), as a network failure would.
func endConn(nc net.Conn, br *bufio.Reader, mode closeMode) {
	switch mode {
	case closeClean:
		_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
		if writeFrame(nc, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")) == nil {
			for {
				// A frame the lifetime's deadline cut in half may make this
				// misread; the close is still clean from our side.
				op, _, _, err := readFrame(br, nil)
				if err != nil || op == ws.OpClose {
					break
				}
			}
		}
	case closeRST:
		raw := nc
		if t, ok := nc.(interface{ NetConn() net.Conn }); ok { // TLS (wss)
			raw = t.NetConn()
		}
		if tc, ok := raw.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	_ = nc.Close()
}
