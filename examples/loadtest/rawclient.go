package main

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// The raw client is the load tool's light subscriber (-client raw): one
// goroutine and a 4 KiB buffer per connection, frames read with gobwas/ws, the
// tick's "t" and "s" read straight from the bytes. It costs the shared CPU a
// fraction of what the full Go client (reconnection, handlers, JSON decoding
// of every message) does, so a fanout run on one machine measures the server,
// not the load generator. With -compression it offers permessage-deflate
// and inflates compressed frames. It does not reconnect: use the Go client
// for the scenarios that test reconnection.

func (w *worker) dialRaw(s *slot, i int) {
	w.sem <- struct{}{}
	start := time.Now()
	nc, br, err := w.rawHandshake(i)
	<-w.sem
	w.mu.Lock()
	w.cur.Attempts++
	if err != nil {
		w.cur.Failures++
		if len(w.cur.Errors) < 3 {
			w.cur.Errors = append(w.cur.Errors, err.Error())
		}
		w.mu.Unlock()
		close(s.ready)
		return
	}
	w.cur.Handshake.Record(time.Since(start))
	w.cur.LastUp = time.Now().UnixNano()
	w.mu.Unlock()
	s.nc.Store(&nc)
	s.up.Store(true)
	w.connected.Add(1)
	close(s.ready)
	w.readRaw(s, nc, br)
	if s.up.Swap(false) {
		w.connected.Add(-1)
	}
}

// rawHandshake connects as client i's subject (workerConfig.subject), reads the welcome and
// joins the room.
func (w *worker) rawHandshake(i int) (net.Conn, *bufio.Reader, error) {
	tok, err := w.token(i)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	return w.rawConnect(ctx, i, tok)
}

// rawConnect connects with tok (from source address i when there are
// several), reads the welcome and joins the room; ctx bounds the dial and
// the handshake.
func (w *worker) rawConnect(ctx context.Context, i int, tok string) (net.Conn, *bufio.Reader, error) {
	d := ws.Dialer{
		Header:    ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + tok}}),
		Protocols: []string{"rthub.v1"},
		Timeout:   30 * time.Second,
	}
	if w.cfg.Compression {
		// Offer permessage-deflate without context takeover (what the hub accepts);
		// compressed frames are inflated in readRaw.
		p := wsflate.DefaultParameters
		p.ClientNoContextTakeover, p.ServerNoContextTakeover = true, true
		d.Extensions = []httphead.Option{p.Option()}
	}
	if len(w.cfg.SourceAddrs) > 0 {
		src := &net.TCPAddr{IP: net.ParseIP(w.cfg.SourceAddrs[i%len(w.cfg.SourceAddrs)])}
		d.NetDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: src, Timeout: 30 * time.Second}
			return nd.DialContext(ctx, network, addr)
		}
	}
	nc, hbr, _, err := d.Dial(ctx, w.cfg.URL)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(nc, 4096)
	if hbr != nil {
		br = hbr // holds the frames that came with the handshake response
	}
	hsDeadline := time.Now().Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok {
		hsDeadline = dl
	}
	_ = nc.SetDeadline(hsDeadline)
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) }) // cancelled: unblock the reads
	fail := func(err error) (net.Conn, *bufio.Reader, error) {
		stop()
		nc.Close()
		return nil, nil, err
	}
	if _, _, _, err := readFrame(br, nil); err != nil { // the welcome
		return fail(err)
	}
	join, _ := json.Marshal(map[string]any{"id": 1, "op": "join", "room": w.cfg.Room})
	if err := writeFrame(nc, ws.OpText, join); err != nil {
		return fail(err)
	}
	for { // until the join's reply; a refusal fails the dial
		op, p, _, err := readFrame(br, nil)
		if err != nil {
			return fail(err)
		}
		if op == ws.OpText && bytes.Contains(p, []byte(`"type":"reply"`)) {
			if !bytes.Contains(p, []byte(`"ok":true`)) {
				return fail(fmt.Errorf("join refused: %.200s", p))
			}
			break
		}
	}
	if !stop() { // ctx ended as the join succeeded: the deadline is (being) cut
		nc.Close()
		return nil, nil, ctx.Err()
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, br, nil
}

// readRaw reads events until the connection ends, answering pings.
func (w *worker) readRaw(s *slot, nc net.Conn, br *bufio.Reader) {
	buf := make([]byte, 0, 4096)
	var inflated bytes.Buffer
	var fr io.ReadCloser
	for {
		op, p, compressed, err := readFrame(br, buf)
		if err != nil {
			return
		}
		if compressed { // RFC 7692: append the stripped tail, inflate the message
			src := io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff}))
			if fr == nil {
				fr = flate.NewReader(src)
			} else if err := fr.(flate.Resetter).Reset(src, nil); err != nil {
				return
			}
			inflated.Reset()
			if _, err := inflated.ReadFrom(fr); err != nil && err != io.ErrUnexpectedEOF {
				return
			}
			p = inflated.Bytes()
		}
		switch op {
		case ws.OpPing:
			if writeFrame(nc, ws.OpPong, p) != nil {
				return
			}
		case ws.OpClose:
			_ = writeFrame(nc, ws.OpClose, p)
			nc.Close()
			return
		case ws.OpText:
			if t, seq, ok := parseTick(p); ok {
				w.record(s, time.Now(), t, seq)
			}
		}
		buf = p[:0]
	}
}

// readFrame reads one whole frame into buf (grown as needed); compressed
// reports RSV1 (permessage-deflate).
func readFrame(br *bufio.Reader, buf []byte) (ws.OpCode, []byte, bool, error) {
	h, err := ws.ReadHeader(br)
	if err != nil {
		return 0, nil, false, err
	}
	if h.Length > 16<<20 {
		return 0, nil, false, fmt.Errorf("frame of %d bytes", h.Length)
	}
	if int64(cap(buf)) < h.Length {
		buf = make([]byte, h.Length)
	}
	buf = buf[:h.Length]
	if _, err := io.ReadFull(br, buf); err != nil {
		return 0, nil, false, err
	}
	if !h.Fin {
		return 0, nil, false, fmt.Errorf("fragmented frames are not supported by the raw client")
	}
	return h.OpCode, buf, h.Rsv1(), nil
}

// writeFrame writes one masked client frame.
func writeFrame(nc net.Conn, op ws.OpCode, p []byte) error {
	f := ws.NewFrame(op, true, append([]byte(nil), p...))
	f = ws.MaskFrameInPlace(f)
	return ws.WriteFrame(nc, f)
}

// parseTick reads the tick's "t" and "s" from an event frame without
// decoding the JSON: the data object starts {"t":…,"s":… (see tick).
func parseTick(p []byte) (t int64, seq uint64, ok bool) {
	i := bytes.Index(p, []byte(`"data":{"t":`))
	if i < 0 {
		return 0, 0, false
	}
	rest := p[i+len(`"data":{"t":`):]
	j := bytes.IndexByte(rest, ',')
	if j < 0 {
		return 0, 0, false
	}
	t, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	rest = rest[j+1:]
	if !bytes.HasPrefix(rest, []byte(`"s":`)) {
		return 0, 0, false
	}
	rest = rest[len(`"s":`):]
	k := bytes.IndexAny(rest, ",}")
	if k < 0 {
		return 0, 0, false
	}
	seq, err = strconv.ParseUint(string(rest[:k]), 10, 64)
	return t, seq, err == nil
}
