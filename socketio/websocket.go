package socketio

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// This file holds the WebSocket transport: a session opened on WebSocket,
// and the upgrade of a polling session (probe 2probe/3probe, then 5).

// serveWebSocket upgrades r. With ss nil it opens a session on WebSocket;
// otherwise it probes and upgrades ss, a polling session.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, ss *session) {
	if ss != nil {
		ss.mu.Lock()
		ok := ss.transport == transportPolling && !ss.upgrading && !ss.closed
		ss.mu.Unlock()
		if !ok {
			eioError(w, http.StatusBadRequest, eioBadRequest)
			return
		}
	} else {
		var ok bool
		if ss, ok = s.newSession(r, transportWebSocket); !ok {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "socket.io server full or closed", http.StatusServiceUnavailable)
			return
		}
	}
	up := ws.HTTPUpgrader{Timeout: s.opts.WriteTimeout}
	nc, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		ss.mu.Lock()
		fresh := ss.ws == nil && ss.transport == transportWebSocket
		ss.mu.Unlock()
		if fresh { // a session opened on this WebSocket: it has no other transport
			ss.close(closeTransport)
		}
		return
	}
	_ = nc.SetDeadline(time.Time{})
	var rd io.Reader = nc
	if n := rw.Reader.Buffered(); n > 0 {
		rd = io.MultiReader(io.LimitReader(rw.Reader, int64(n)), nc)
	}
	// Client messages are small and few: a small buffer (idle memory counts).
	rd = bufio.NewReaderSize(rd, 512)
	if ss.transport == transportPolling {
		if !ss.probe(nc, rd) {
			_ = nc.Close()
			return
		}
		s.stats.upgrades.Add(1)
	} else {
		ss.mu.Lock()
		ss.ws = nc
		closed := ss.closed
		ss.mu.Unlock()
		if closed {
			_ = nc.Close()
			return
		}
		ss.enqueue(ss.openPacket(false))
	}
	// The reader runs on a goroutine of its own and this handler returns:
	// net/http then releases its per-connection state (buffers, the
	// handshake's grown stack), as the hub does for its connections.
	if !s.spawn(func() { ss.writeLoop(nc) }) || !s.spawn(func() { ss.readLoop(rd) }) {
		ss.close(closeServer)
		_ = nc.Close()
	}
}

// probe runs the upgrade of a polling session on nc: 2probe → 3probe, then
// 5 (upgrade) switches the session's transport. While it waits for 5, the
// session's polls are answered with noop so the client's last poll ends.
func (ss *session) probe(nc net.Conn, rd io.Reader) bool {
	o := ss.srv.opts
	_ = nc.SetReadDeadline(time.Now().Add(o.PingTimeout))
	msg, binary, err := readMessage(rd, o.MaxPayload, nil)
	if err != nil || binary || string(msg) != "2probe" {
		return false
	}
	_ = nc.SetWriteDeadline(time.Now().Add(o.WriteTimeout))
	if err := writeFrames(nc, [][]byte{[]byte("3probe")}, nil); err != nil {
		return false
	}
	ss.mu.Lock()
	ss.upgrading = true
	ss.mu.Unlock()
	ss.kick()
	for {
		msg, binary, err = readMessage(rd, o.MaxPayload, nil)
		if err != nil {
			ss.mu.Lock()
			ss.upgrading = false
			ss.mu.Unlock()
			return false
		}
		if !binary && len(msg) == 1 && msg[0] == eioUpgrade {
			break
		}
		if !binary && len(msg) > 0 && msg[0] == eioNoop {
			continue
		}
		ss.close(closeProtocol)
		return false
	}
	_ = nc.SetDeadline(time.Time{})
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return false
	}
	ss.transport, ss.upgrading, ss.ws = transportWebSocket, false, nc
	ss.mu.Unlock()
	ss.kick()
	return true
}

// readLoop reads the client's messages until the WebSocket closes (the
// session's close closes it; the Server owns and waits for this
// goroutine), then closes the session.
func (ss *session) readLoop(rd io.Reader) {
	ctx := ss.ctx
	onPing := func(p []byte) {
		ss.mu.Lock()
		ss.pong = p
		ss.mu.Unlock()
		ss.kick()
	}
	for {
		msg, binary, err := readMessage(rd, ss.srv.opts.MaxPayload, onPing)
		if err != nil {
			reason := closeTransport
			if errors.Is(err, errTooBig) || errors.Is(err, errBadFrame) {
				reason = closeProtocol
			}
			ss.close(reason)
			return
		}
		if !ss.lockIn(ctx) {
			return
		}
		ok := ss.handlePacket(ctx, msg, binary)
		ss.unlockIn()
		if !ok {
			return
		}
	}
}

// writeLoop writes the session's queue to the WebSocket until the session
// closes. Its owner is the Server (Server.spawn; Close waits for it); the
// session's close stops it.
func (ss *session) writeLoop(nc net.Conn) {
	o := ss.srv.opts
	for {
		select {
		case <-ss.wake:
		case <-ss.done:
			_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
			_ = ws.WriteFrame(nc, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "")))
			_ = nc.Close()
			return
		}
		packets := ss.take()
		ss.mu.Lock()
		pong := ss.pong
		ss.pong = nil
		ss.mu.Unlock()
		if len(packets) > 0 || pong != nil {
			_ = nc.SetWriteDeadline(time.Now().Add(o.WriteTimeout))
			ss.srv.stats.packets.Add(uint64(len(packets)))
			if err := writeFrames(nc, packets, pong); err != nil {
				ss.close(closeTransport)
				continue
			}
		}
		if drained, why := ss.drained(); drained {
			ss.close(why)
		}
	}
}

var (
	errTooBig   = errors.New("socketio: message too big")
	errBadFrame = errors.New("socketio: bad WebSocket frame")
)

// readMessage reads one message from a client's WebSocket (masked frames,
// fragments reassembled up to max bytes). Control frames are handled here:
// a ping's payload goes to onPing (if not nil: the writer answers it, the
// reader never writes), a pong is skipped, a close ends the read with
// io.EOF.
func readMessage(rd io.Reader, max int, onPing func([]byte)) (msg []byte, binary bool, err error) {
	var first ws.OpCode
	for {
		h, err := ws.ReadHeader(rd)
		if err != nil {
			return nil, false, err
		}
		if !h.Masked || h.Rsv != 0 {
			return nil, false, errBadFrame
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 || !h.Fin {
				return nil, false, errBadFrame
			}
			payload := make([]byte, h.Length)
			if _, err := io.ReadFull(rd, payload); err != nil {
				return nil, false, err
			}
			ws.Cipher(payload, h.Mask, 0)
			switch h.OpCode {
			case ws.OpClose:
				return nil, false, io.EOF
			case ws.OpPing:
				if onPing != nil {
					onPing(payload)
				}
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpContinuation && first == 0:
			return nil, false, errBadFrame
		case h.OpCode != ws.OpContinuation && first != 0:
			return nil, false, errBadFrame
		case h.OpCode != ws.OpContinuation:
			first = h.OpCode
		}
		if int64(len(msg))+h.Length > int64(max) {
			return nil, false, errTooBig
		}
		start := len(msg)
		msg = append(msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(rd, msg[start:]); err != nil {
			return nil, false, err
		}
		ws.Cipher(msg[start:], h.Mask, 0)
		if h.Fin {
			if len(msg) == 0 {
				return nil, false, errBadFrame
			}
			return msg, first == ws.OpBinary, nil
		}
	}
}

// writeFrames writes packets as text frames (and a pong first, if any) in
// one write, from a pooled buffer.
func writeFrames(nc net.Conn, packets [][]byte, pong []byte) error {
	bp := framePool.Get().(*bytes.Buffer)
	defer func() {
		if bp.Cap() <= 64<<10 {
			bp.Reset()
			framePool.Put(bp)
		}
	}()
	if pong != nil {
		_ = ws.WriteFrame(bp, ws.NewPongFrame(pong))
	}
	for _, p := range packets {
		_ = ws.WriteHeader(bp, ws.Header{Fin: true, OpCode: ws.OpText, Length: int64(len(p))})
		bp.Write(p)
	}
	_, err := nc.Write(bp.Bytes())
	return err
}

var framePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
