package socketio

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/org/rthub"
)

// This file holds the gateway: a Socket.IO connection is one connection of
// the hub, made through the hub's own ServeHTTP over an in-memory pipe and
// driven in rthub's protocol (docs/protocol.md). The hub checks the token,
// the room policy, emits, rate limits and resumes exactly as for any other
// client; this file translates frames to Socket.IO packets and back.

// maxHubFrame bounds a frame read from the hub (a join reply with state is
// at most about 1 MiB, the hub's queue 4 MiB by default).
const maxHubFrame = 16 << 20

// hijackWriter is the http.ResponseWriter the gateway hands the hub: it
// records a refusal, or hands over one end of the pipe when the hub
// upgrades (hijacks).
type hijackWriter struct {
	header   http.Header
	status   int
	body     bytes.Buffer // a refusal's JSON, at most 4 KiB kept
	conn     net.Conn
	hijacked chan struct{}
	once     sync.Once
}

func (w *hijackWriter) Header() http.Header { return w.header }

func (w *hijackWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *hijackWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if room := 4096 - w.body.Len(); room > 0 {
		w.body.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

// Hijack hands over the hub's end of the pipe (once).
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	err := errors.New("socketio: hijacked twice")
	w.once.Do(func() {
		err = nil
		close(w.hijacked)
	})
	if err != nil {
		return nil, nil, err
	}
	return w.conn, bufio.NewReadWriter(bufio.NewReaderSize(w.conn, 512), bufio.NewWriterSize(w.conn, 512)), nil
}

// RefusedError is a Socket.IO connect the hub refused; the client gets it as
// connect_error, err.message being Message and err.data {code, status}.
type RefusedError struct {
	Status  int    // the HTTP status the hub answered (401, 429, 503, …)
	Code    string // the hub's error code (token_expired, rate_limited, …)
	Message string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("socketio: the hub refused the connect: %d %s: %s", e.Status, e.Code, e.Message)
}

// welcomeMsg is the hub's welcome (docs/protocol.md §2.1).
type welcomeMsg struct {
	Type    string                `json:"type"`
	User    string                `json:"user"`
	Rooms   []string              `json:"rooms"`
	Streams map[string]streamInfo `json:"streams"`
}

type streamInfo struct {
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered"`
}

// dialHub makes a hub connection for a session: a handshake request built
// from the session's (its address, Origin, Host, X-Forwarded-For) with the
// token as a bearer, served by the hub over a pipe. It returns the pipe's
// client end, a reader positioned after the welcome, and the welcome.
func (s *Server) dialHub(ctx context.Context, ss *session, token, since string) (net.Conn, *bufio.Reader, []byte, *welcomeMsg, error) {
	var key [16]byte
	_, _ = rand.Read(key[:])
	u := &url.URL{Path: "/"}
	if since != "" {
		u.RawQuery = "since=" + since
	}
	req := (&http.Request{
		Method: http.MethodGet, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Connection":            {"Upgrade"},
			"Upgrade":               {"websocket"},
			"Sec-Websocket-Version": {"13"},
			"Sec-Websocket-Key":     {base64.StdEncoding.EncodeToString(key[:])},
		},
		Host: ss.host, RemoteAddr: ss.remote, RequestURI: u.RequestURI(),
	}).WithContext(ctx)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	ss.mu.Lock()
	origin := ss.origin
	ss.mu.Unlock()
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if ss.userAgent != "" {
		req.Header.Set("User-Agent", ss.userAgent)
	}
	for _, v := range ss.forwarded {
		req.Header.Add("X-Forwarded-For", v)
	}
	server, client := net.Pipe()
	hw := &hijackWriter{header: http.Header{}, conn: server, hijacked: make(chan struct{})}
	done := make(chan struct{})
	if !s.spawn(func() {
		defer close(done)
		s.hub.ServeHTTP(hw, req)
	}) {
		_ = client.Close()
		_ = server.Close()
		return nil, nil, nil, nil, &RefusedError{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: "the server is closing"}
	}
	fail := func(err error) (net.Conn, *bufio.Reader, []byte, *welcomeMsg, error) {
		_ = client.Close()
		_ = server.Close()
		<-done
		return nil, nil, nil, nil, err
	}
	select {
	case <-hw.hijacked:
	case <-done:
		select {
		case <-hw.hijacked:
		default:
			_ = client.Close()
			_ = server.Close()
			return nil, nil, nil, nil, refusal(hw)
		}
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	dl, _ := ctx.Deadline()
	_ = client.SetDeadline(dl)
	br := bufio.NewReaderSize(client, 1024) // longer frames are read past it
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return fail(fmt.Errorf("socketio: reading the hub's upgrade: %w", err))
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fail(fmt.Errorf("socketio: the hub answered %d to an upgrade", resp.StatusCode))
	}
	<-done // the hub's handler has returned; its connection runs on
	op, payload, err := readHubFrame(br)
	if err != nil || op != ws.OpText {
		if err == nil {
			err = errors.New("socketio: the hub's first frame is not the welcome")
		}
		return fail(err)
	}
	var wm welcomeMsg
	if err := json.Unmarshal(payload, &wm); err != nil || wm.Type != "welcome" {
		return fail(errors.New("socketio: the hub's first frame is not the welcome"))
	}
	_ = client.SetDeadline(time.Time{})
	return client, br, payload, &wm, nil
}

// refusal reads the hub's refusal from hw.
func refusal(hw *hijackWriter) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(hw.body.Bytes(), &body)
	e := &RefusedError{Status: hw.status, Code: body.Error.Code, Message: body.Error.Message}
	if e.Code == "" {
		e.Code = "internal"
	}
	if e.Message == "" {
		e.Message = http.StatusText(hw.status)
	}
	return e
}

// readHubFrame reads one frame the hub wrote (unmasked, never fragmented:
// the hub writes every message in one frame).
func readHubFrame(br *bufio.Reader) (ws.OpCode, []byte, error) {
	return readHubFrameInto(br, nil)
}

// readHubFrameInto is readHubFrame reading into buf when it is large
// enough.
func readHubFrameInto(br *bufio.Reader, buf []byte) (ws.OpCode, []byte, error) {
	h, err := ws.ReadHeader(br)
	if err != nil {
		return 0, nil, err
	}
	if h.Length > maxHubFrame || !h.Fin || h.Masked {
		return 0, nil, errBadFrame
	}
	payload := buf[:0]
	if int64(cap(buf)) < h.Length {
		payload = make([]byte, h.Length)
	}
	payload = payload[:h.Length]
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, nil, err
	}
	return h.OpCode, payload, nil
}

// hubFramePool holds the buffers readLoop reads frames into: every packet
// made from a frame is a copy, so a frame's buffer goes back at once.
var hubFramePool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// Kinds of pending hub commands.
const (
	pkAck    = iota // an event the client may want acknowledged
	pkJoin          // rthub:join: tracked for recovery
	pkLeave         // rthub:leave: tracked for recovery
	pkRejoin        // a client room joined again on recovery
)

type pending struct {
	ack  int64 // the client's acknowledgement id, -1 for none
	kind uint8
	room string
}

// socket is a session's Socket.IO connection on namespace "/": one hub
// connection, read by its own goroutine (readLoop) and written by the
// goroutines handling the client's packets, one at a time (wlock).
type socket struct {
	ss       *session
	sid, pid string
	nc       net.Conn // the gateway's end of the pipe
	br       *bufio.Reader
	wlock    chan struct{} // cap 1: one writer to the hub at a time, waiting bounded by ctx
	closing  chan struct{} // closed by close
	readDone chan struct{} // closed when readLoop has returned (and filed the tracker if it was second)
	pinging  atomic.Bool   // a pong to the hub is being written

	// Owned by readLoop once it runs (set before it starts).
	t         *tracker // nil without recovery
	connected bool     // the CONNECT packet is queued
	held      [][]byte // packets before it (while rejoins are pending)
	rejoins   int
	recovered bool
	welcome   []byte

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]pending

	closeOnce sync.Once
	keep      atomic.Bool  // keep the tracker for recovery
	phases    atomic.Int32 // readLoop's exit and close: the second one files the tracker
}

// connect handles the client's CONNECT to "/": a hub connection with the
// auth payload's token, resuming the session pid names (recovery). A
// refusal is answered with CONNECT_ERROR; the session stays, and the
// client may connect again.
func (ss *session) connect(ctx context.Context, data json.RawMessage) {
	srv := ss.srv
	var auth struct {
		Token  json.RawMessage `json:"token"`
		PID    string          `json:"pid"`
		Offset string          `json:"offset"`
	}
	if data != nil {
		_ = json.Unmarshal(data, &auth)
	}
	var token string
	_ = json.Unmarshal(auth.Token, &token)
	var t *tracker
	recovering := false
	if srv.rec != nil {
		if auth.PID != "" {
			srv.endLive(ctx, auth.PID)
			if old := srv.rec.take(auth.PID, time.Now()); old != nil && old.rewind(auth.Offset) {
				t, recovering = old, true
			}
		}
		if t == nil {
			t = newTracker(srv.opts.Recovery.Log)
		}
	}
	var since string
	var rejoin map[string]rthub.StreamPosition
	complete := true
	if recovering {
		since, rejoin, complete = t.since()
	}
	hctx, cancel := context.WithTimeout(ctx, srv.opts.HandshakeTimeout)
	nc, br, welcome, wm, err := srv.dialHub(hctx, ss, token, since)
	cancel()
	if err != nil {
		srv.stats.refused.Add(1)
		if recovering { // the state stays for the next try
			srv.rec.put(auth.PID, t, time.Now().Add(srv.opts.Recovery.Window))
		}
		var re *RefusedError
		if !errors.As(err, &re) {
			re = &RefusedError{Status: http.StatusServiceUnavailable, Code: "internal", Message: "the hub did not answer"}
			srv.opts.Logger.Warn("socketio: hub handshake failed", "err", err)
		}
		if re.Status == http.StatusTooManyRequests || re.Status >= 500 {
			// Transient (rate limited, draining, failing): the transport
			// closes and socket.io-client reconnects with its backoff. A
			// CONNECT_ERROR would stop it until the app connects again.
			ss.close(closeTransport)
			return
		}
		ss.enqueue(connectErrorPacket("/", re.Message, map[string]any{"code": re.Code, "status": re.Status}))
		return
	}
	k := &socket{ss: ss, sid: randomID(15), nc: nc, br: br, wlock: make(chan struct{}, 1),
		closing: make(chan struct{}), readDone: make(chan struct{}), t: t, pending: make(map[uint64]pending), welcome: welcome}
	k.phases.Store(2)
	if t != nil {
		k.pid = randomID(15)
		if recovering && t.user != wm.User {
			// Another subject's session: nothing of it is resumed.
			t, recovering, rejoin, complete = newTracker(srv.opts.Recovery.Log), false, nil, false
			k.t = t
		}
		if recovering {
			k.pid = auth.PID
		}
		t.user = wm.User
		in := make(map[string]bool, len(wm.Rooms))
		for _, name := range wm.Rooms {
			in[name] = true
			st := wm.Streams[name]
			pos := rthub.StreamPosition{Offset: st.Offset, Epoch: st.Epoch}
			t.join(name, true, &pos) // a resumed room keeps its position: the replays follow it
			if st.Recovered != nil && !*st.Recovered {
				complete = false
				t.reset(name, pos) // nothing replayed: the stream goes on from here
			}
		}
		for name, rt := range t.rooms {
			if rt.server && !in[name] {
				t.leave(name)
				complete = false
			}
		}
	}
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		_ = nc.Close()
		return
	}
	ss.sock = k
	ss.connectBy = 0
	ss.mu.Unlock()
	srv.stats.connects.Add(1)
	k.recovered = recovering && complete
	if len(rejoin) == 0 {
		k.finishConnect()
	} else {
		k.rejoins = len(rejoin)
	}
	if !srv.spawn(k.readLoop) {
		ss.close(closeServer)
		return
	}
	for room, p := range rejoin {
		k.command(ctx, pending{ack: -1, kind: pkRejoin, room: room}, hubCommand{Op: "join", Room: room, Since: &p})
	}
}

// finishConnect queues CONNECT, the rthub:welcome event and what came
// before them.
func (k *socket) finishConnect() {
	if k.recovered {
		k.ss.srv.stats.recovered.Add(1)
	} else if k.t != nil && k.pid != "" {
		// A new pid: socket.recovered is false on the client.
		k.pid = randomID(15)
	}
	b, _ := json.Marshal(struct {
		SID string `json:"sid"`
		PID string `json:"pid,omitempty"`
	}{k.sid, k.pid})
	packets := append([][]byte{append([]byte("40"), b...), appendEvent(nil, "rthub:welcome", k.welcome)}, k.held...)
	k.held, k.connected = nil, true
	if k.pid != "" {
		srv := k.ss.srv
		srv.mu.Lock()
		srv.live[k.pid] = k
		srv.mu.Unlock()
	}
	k.ss.enqueue(packets...)
}

// endLive closes the session whose socket has pid, if it is still open (its
// client is back on another transport before the old one timed out), and
// waits, bounded by ctx, until its state is filed for recovery.
func (s *Server) endLive(ctx context.Context, pid string) {
	s.mu.Lock()
	k := s.live[pid]
	s.mu.Unlock()
	if k == nil {
		return
	}
	k.ss.close(closeTransport)
	select {
	case <-k.readDone:
	case <-ctx.Done():
	}
}

// hubCommand is a command to the hub (docs/protocol.md §2.2).
type hubCommand struct {
	ID     uint64                `json:"id,omitempty"`
	Op     string                `json:"op"`
	Event  string                `json:"event,omitempty"`
	Room   string                `json:"room,omitempty"`
	Data   json.RawMessage       `json:"data,omitempty"`
	Since  *rthub.StreamPosition `json:"since,omitempty"`
	State  bool                  `json:"state,omitempty"`
	Token  string                `json:"token,omitempty"`
	Target *string               `json:"target,omitempty"`
	RPC    string                `json:"rpc,omitempty"`
}

// command sends cmd to the hub; p says what to do with its reply.
func (k *socket) command(ctx context.Context, p pending, cmd hubCommand) {
	if p.kind != pkAck || p.ack >= 0 {
		k.mu.Lock()
		// Rejoins are bounded by the rooms the hub let the connection
		// into; the client's commands by MaxPendingAcks.
		if p.kind != pkRejoin && len(k.pending) >= k.ss.srv.opts.MaxPendingAcks {
			k.mu.Unlock()
			if p.ack >= 0 {
				k.ss.enqueue(appendAck(nil, p.ack, errorAck("rate_limited", "too many events awaiting acknowledgement")))
			}
			return
		}
		k.nextID++
		cmd.ID = k.nextID
		k.pending[cmd.ID] = p
		k.mu.Unlock()
	}
	b, err := json.Marshal(cmd)
	if err == nil {
		err = k.write(ctx, ws.OpText, b)
	}
	if err != nil {
		if cmd.ID != 0 {
			k.mu.Lock()
			delete(k.pending, cmd.ID)
			k.mu.Unlock()
		}
		if p.ack >= 0 {
			k.ss.enqueue(appendAck(nil, p.ack, errorAck("internal", "the hub connection failed")))
		}
	}
}

// write sends one masked frame to the hub, bounded by ctx and WriteTimeout.
func (k *socket) write(ctx context.Context, op ws.OpCode, payload []byte) error {
	select {
	case k.wlock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-k.closing:
		return net.ErrClosed
	}
	defer func() { <-k.wlock }()
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], uint32(time.Now().UnixNano()))
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: mask, Length: int64(len(payload))}
	var buf bytes.Buffer
	buf.Grow(len(payload) + 14)
	_ = ws.WriteHeader(&buf, h)
	start := buf.Len()
	buf.Write(payload)
	ws.Cipher(buf.Bytes()[start:], mask, 0)
	_ = k.nc.SetWriteDeadline(time.Now().Add(k.ss.srv.opts.WriteTimeout))
	_, err := k.nc.Write(buf.Bytes())
	return err
}

// event handles a client EVENT: rthub:* events are the hub's commands,
// others are emits (Options.Route gives the room).
func (k *socket) event(ctx context.Context, ack int64, data json.RawMessage) {
	name, args, err := eventArgs(data)
	refuse := func(code, msg string) {
		if ack >= 0 {
			k.ss.enqueue(appendAck(nil, ack, errorAck(code, msg)))
		}
	}
	if err != nil {
		refuse("bad_request", "an event is an array starting with its name")
		return
	}
	str := func(i int) (string, bool) {
		var v string
		if i >= len(args) || json.Unmarshal(args[i], &v) != nil {
			return "", false
		}
		return v, true
	}
	p := pending{ack: ack, kind: pkAck}
	switch name {
	case "rthub:join":
		var j struct {
			Room  string `json:"room"`
			State bool   `json:"state"`
		}
		if r, ok := str(0); ok {
			j.Room = r
		} else if len(args) == 0 || json.Unmarshal(args[0], &j) != nil {
			refuse("bad_request", `rthub:join takes a room, or {room, state}`)
			return
		}
		p.kind, p.room = pkJoin, j.Room
		k.command(ctx, p, hubCommand{Op: "join", Room: j.Room, State: j.State})
	case "rthub:leave":
		r, ok := str(0)
		if !ok {
			refuse("bad_request", "rthub:leave takes a room")
			return
		}
		p.kind, p.room = pkLeave, r
		k.command(ctx, p, hubCommand{Op: "leave", Room: r})
	case "rthub:presence":
		r, ok := str(0)
		if !ok {
			refuse("bad_request", "rthub:presence takes a room")
			return
		}
		k.command(ctx, p, hubCommand{Op: "presence", Room: r})
	case "rthub:viewing":
		target, _ := str(0)
		k.command(ctx, p, hubCommand{Op: "viewing", Target: &target})
	case "rthub:refresh":
		tok, ok := str(0)
		if !ok {
			refuse("bad_request", "rthub:refresh takes a token")
			return
		}
		k.command(ctx, p, hubCommand{Op: "refresh", Token: tok})
	default:
		if strings.HasPrefix(name, "rthub:") {
			refuse("unknown_event", "no such rthub event")
			return
		}
		if k.ss.srv.opts.IsRPC(name) {
			var req json.RawMessage
			switch len(args) {
			case 0:
			case 1:
				req = args[0]
			default:
				refuse("bad_request", "an RPC call takes one argument, the request")
				return
			}
			k.command(ctx, p, hubCommand{Op: "call", RPC: name, Data: req})
			return
		}
		room, d, err := k.ss.srv.opts.Route(name, args)
		if err != nil {
			refuse("bad_request", err.Error())
			return
		}
		k.command(ctx, p, hubCommand{Op: "emit", Event: name, Room: room, Data: d})
	}
}

// hubMsg is any message of the hub (docs/protocol.md §2.1).
type hubMsg struct {
	Type   string          `json:"type"`
	ID     uint64          `json:"id"`
	OK     bool            `json:"ok"`
	Data   json.RawMessage `json:"data"`
	Error  json.RawMessage `json:"error"`
	Event  string          `json:"event"`
	Room   string          `json:"room"`
	Offset *uint64         `json:"offset"`
	Epoch  string          `json:"epoch"`
}

// readLoop reads the hub's frames and queues their Socket.IO packets,
// until the hub connection ends. It never writes to the hub (a pong is
// written by a goroutine of its own), so a hub that stops reading cannot
// stall it; and it never blocks on the client (enqueue closes a session
// that overflows), so it never stalls the hub's writers. Its owner is the
// Server (wg); close stops it.
func (k *socket) readLoop() {
	defer close(k.readDone)
	defer k.phaseDone()
	for {
		// Wait for a frame before taking a buffer: an idle connection holds none.
		if _, err := k.br.Peek(1); err != nil {
			k.hubClosed(ws.StatusAbnormalClosure, "")
			return
		}
		bp := hubFramePool.Get().(*[]byte)
		op, payload, err := readHubFrameInto(k.br, *bp)
		if err != nil {
			hubFramePool.Put(bp)
			k.hubClosed(ws.StatusAbnormalClosure, "")
			return
		}
		switch op {
		case ws.OpText:
			k.fromHub(payload)
			hubFramePool.Put(bp)
		case ws.OpPing:
			payload = bytes.Clone(payload)
			hubFramePool.Put(bp)
			if k.pinging.CompareAndSwap(false, true) {
				k.ss.srv.wg.Go(func() {
					defer k.pinging.Store(false)
					ctx, cancel := context.WithTimeout(context.Background(), k.ss.srv.opts.WriteTimeout)
					defer cancel()
					_ = k.write(ctx, ws.OpPong, payload)
				})
			}
		case ws.OpClose:
			payload = bytes.Clone(payload)
			hubFramePool.Put(bp)
			code, reason := ws.StatusNoStatusRcvd, ""
			if len(payload) >= 2 {
				code, reason = ws.StatusCode(binary.BigEndian.Uint16(payload)), string(payload[2:])
			}
			_ = k.nc.Close()
			k.hubClosed(code, reason)
			return
		}
	}
}

// fromHub translates one hub message.
func (k *socket) fromHub(payload []byte) {
	if e, ok := parseHubEvent(payload); ok {
		if k.t != nil && e.positioned {
			off := k.t.sent(string(e.room), rthub.StreamPosition{Offset: e.offset, Epoch: string(e.epoch)})
			k.emit(appendEventBytes(make([]byte, 0, len(e.event)+len(e.data)+len(off)+10), e.event, e.data, off))
			return
		}
		k.emit(appendEventBytes(make([]byte, 0, len(e.event)+len(e.data)+8), e.event, e.data, ""))
		return
	}
	var m hubMsg
	if err := json.Unmarshal(payload, &m); err != nil {
		return
	}
	switch m.Type {
	case "event":
		data := []byte(m.Data)
		if len(data) == 0 {
			data = []byte("null")
		}
		if k.t != nil && m.Offset != nil {
			off := k.t.sent(m.Room, rthub.StreamPosition{Offset: *m.Offset, Epoch: m.Epoch})
			k.emit(appendEvent(nil, m.Event, data, strconv.AppendQuote(nil, off)))
			return
		}
		k.emit(appendEvent(nil, m.Event, data))
	case "reply":
		k.reply(m)
	default:
		if k.t != nil {
			switch m.Type {
			case "left":
				k.t.leave(m.Room)
			case "joined":
				k.t.join(m.Room, true, nil)
			case "reset":
				if m.Offset != nil {
					off := k.t.sent(m.Room, rthub.StreamPosition{Offset: *m.Offset, Epoch: m.Epoch})
					k.emit(appendEvent(nil, "rthub:reset", payload, strconv.AppendQuote(nil, off)))
					return
				}
			}
		}
		if m.Type != "" && len(m.Type) <= 32 && isName(m.Type) {
			k.emit(appendEvent(nil, "rthub:"+m.Type, payload))
		}
	}
}

// isName reports whether s is made of ASCII letters and digits (a hub
// message type).
func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// emit queues a packet for the client, or holds it until CONNECT.
func (k *socket) emit(p []byte) {
	if k.connected {
		k.ss.enqueue(p)
		return
	}
	if len(k.held) >= k.ss.srv.opts.QueuePackets {
		k.ss.srv.stats.overflows.Add(1)
		k.ss.close(closeOverflow)
		return
	}
	k.held = append(k.held, p)
}

// reply handles the hub's reply to one of the gateway's commands.
func (k *socket) reply(m hubMsg) {
	k.mu.Lock()
	p, ok := k.pending[m.ID]
	delete(k.pending, m.ID)
	k.mu.Unlock()
	if !ok {
		return
	}
	var pos struct {
		Offset    *uint64 `json:"offset"`
		Epoch     string  `json:"epoch"`
		Recovered *bool   `json:"recovered"`
	}
	if m.OK && len(m.Data) > 0 {
		_ = json.Unmarshal(m.Data, &pos)
	}
	if k.t != nil {
		var sp *rthub.StreamPosition
		if pos.Offset != nil {
			sp = &rthub.StreamPosition{Offset: *pos.Offset, Epoch: pos.Epoch}
		}
		switch {
		case p.kind == pkJoin && m.OK:
			k.t.join(p.room, false, sp)
		case p.kind == pkLeave && m.OK:
			k.t.leave(p.room)
		case p.kind == pkRejoin && !m.OK:
			k.t.leave(p.room) // not in the room any more
		case p.kind == pkRejoin && (pos.Recovered == nil || !*pos.Recovered) && sp != nil:
			k.t.reset(p.room, *sp) // nothing replayed: the stream goes on from here
		}
	}
	if p.kind == pkRejoin {
		if !m.OK || pos.Recovered == nil || !*pos.Recovered {
			k.recovered = false
		}
		if k.rejoins--; k.rejoins == 0 && !k.connected {
			k.finishConnect()
		}
		return
	}
	if p.ack < 0 {
		return
	}
	var arg []byte
	if m.OK {
		data := m.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		arg, _ = json.Marshal(struct {
			OK   bool            `json:"ok"`
			Data json.RawMessage `json:"data"`
		}{true, data})
	} else {
		arg, _ = json.Marshal(struct {
			OK    bool            `json:"ok"`
			Error json.RawMessage `json:"error"`
		}{false, m.Error})
	}
	k.emit(appendAck(nil, p.ack, arg))
}

// reconnectCode reports whether a hub close code tells the client to
// reconnect (docs/protocol.md §3).
func reconnectCode(code ws.StatusCode) bool {
	switch {
	case code == ws.StatusGoingAway, code == ws.StatusAbnormalClosure, code == ws.StatusInternalServerError,
		code == ws.StatusNoStatusRcvd:
		return true
	case code >= 4000 && code <= 4099:
		return true
	}
	return false
}

// hubClosed ends the socket after the hub closed its connection: the
// client gets rthub:disconnect {code, reason}; then, for a close it should
// reconnect from, the transport closes (socket.io-client reconnects, and
// recovers); otherwise DISCONNECT (it does not).
func (k *socket) hubClosed(code ws.StatusCode, reason string) {
	select {
	case <-k.closing:
		return // the gateway closed it
	default:
	}
	b, _ := json.Marshal(struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}{int(code), reason})
	k.emit(appendEvent(nil, "rthub:disconnect", b))
	ss := k.ss
	if reconnectCode(code) {
		ss.drainWith(closeHub)
		return
	}
	k.emit([]byte("41"))
	ss.drainWith(closeClient)
}

// close closes the hub connection (once); keep says whether its tracker is
// kept for recovery.
func (k *socket) close(keep bool) {
	k.closeOnce.Do(func() {
		k.keep.Store(keep)
		close(k.closing)
		_ = k.nc.Close()
		k.phaseDone()
	})
}

// phaseDone is called when readLoop returns and when close runs; the
// second files the tracker for recovery (readLoop no longer touches it).
func (k *socket) phaseDone() {
	if k.phases.Add(-1) != 0 {
		return
	}
	srv := k.ss.srv
	if k.pid != "" {
		srv.mu.Lock()
		if srv.live[k.pid] == k {
			delete(srv.live, k.pid)
		}
		srv.mu.Unlock()
	}
	if srv.rec != nil && k.t != nil && k.keep.Load() && k.pid != "" && k.connected {
		srv.rec.put(k.pid, k.t, time.Now().Add(srv.opts.Recovery.Window))
	}
}
