package rthub

// The conformance echo server: a WebSocket echo (text and binary) built on the
// hub's own handshake negotiation, frame reader (msgReader), deflate code and
// vectored writes, for running an external conformance suite against that
// code. It is for conformance only: it lives in a test file, so it is neither
// API nor compiled into anyone's binary. docs/conformance.md says how
// to point Autobahn|Testsuite's fuzzingclient at it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
)

const (
	// echoAddrEnv, when set, makes TestConformanceEcho serve the echo server
	// on that address (for Autobahn) instead of running its self-check.
	echoAddrEnv = "RTHUB_ECHO_ADDR"
	// echoForEnv is how long to serve, as a time.Duration; default 30m.
	echoForEnv = "RTHUB_ECHO_FOR"
	// echoAutobahnLimit is the message limit when serving Autobahn: its 9.*
	// cases send messages of up to 16 MiB.
	echoAutobahnLimit = 16 << 20
)

// echoOptions configures an echoServer.
type echoOptions struct {
	// limit is the message limit (the hub's Options.MaxMessageSize).
	limit int64
	// compression is the hub's permessage-deflate configuration; the zero
	// value is the hub's default (negotiated, threshold 1 KiB, level 1).
	compression      CompressionOptions
	handshakeTimeout time.Duration
	writeTimeout     time.Duration
	// closeTimeout bounds the wait for the client to close TCP after the
	// server closed the connection for a protocol violation.
	closeTimeout time.Duration
}

// echoServer echoes every message back as it came (text as text, binary as
// binary), compressed when permessage-deflate was negotiated and the message
// is at least the compression threshold. Pings are answered at once.
//
// Goroutines: the http.Server's, its handlers', and one per connection; all
// are counted in wg (handlers and connections are added under mu while the
// server is open), and close stops and waits for them.
type echoServer struct {
	opts echoOptions
	comp *compressor
	srv  *http.Server

	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	served int               // connections upgraded
	sent   map[CloseCode]int // close codes the server sent
}

// startEcho serves an echo server on ln until close is called.
func startEcho(ln net.Listener, o echoOptions) (*echoServer, error) {
	if err := o.compression.setDefaults(); err != nil {
		return nil, err
	}
	if o.limit <= 0 {
		o.limit = 64 << 10
	}
	if o.handshakeTimeout <= 0 {
		o.handshakeTimeout = 10 * time.Second
	}
	if o.writeTimeout <= 0 {
		o.writeTimeout = 10 * time.Second
	}
	if o.closeTimeout <= 0 {
		o.closeTimeout = time.Second
	}
	e := &echoServer{
		opts:  o,
		comp:  newCompressor(o.compression.Level),
		conns: make(map[net.Conn]struct{}),
		sent:  make(map[CloseCode]int),
	}
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: o.handshakeTimeout}
	e.wg.Go(func() { _ = e.srv.Serve(ln) })
	return e, nil
}

// close stops the server, closes every connection and waits for all of the
// server's goroutines.
func (e *echoServer) close() {
	e.mu.Lock()
	e.closed = true
	for nc := range e.conns {
		_ = nc.Close()
	}
	e.mu.Unlock()
	_ = e.srv.Close()
	e.wg.Wait()
}

// enter counts a goroutine in wg unless the server is closed.
func (e *echoServer) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

func (e *echoServer) summary() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	codes := make([]CloseCode, 0, len(e.sent))
	for c := range e.sent {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var b strings.Builder
	fmt.Fprintf(&b, "%d connections; close frames sent:", e.served)
	for _, c := range codes {
		fmt.Fprintf(&b, " %d×%d", e.sent[c], c)
	}
	return b.String()
}

// ServeHTTP checks the handshake like Hub.ServeHTTP (without auth, origin or
// subprotocol checks) and upgrades with the hub's permessage-deflate
// negotiation.
func (e *echoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !e.enter() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer e.wg.Done()
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") || !validWebSocketKey(r.Header.Get("Sec-WebSocket-Key")) {
		http.Error(w, "not a WebSocket handshake", http.StatusBadRequest)
		return
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "WebSocket version 13 only", http.StatusUpgradeRequired)
		return
	}
	neg := &negotiator{}
	up := ws.HTTPUpgrader{Timeout: e.opts.handshakeTimeout}
	if e.opts.compression.Mode == CompressionAuto {
		up.Negotiate = neg.negotiate
	}
	nc, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	_ = nc.SetDeadline(time.Time{})
	c := &echoConn{e: e, nc: nc, rd: nc, raw: syscallConn(nc), wv: newWritev(0), deflate: neg.accepted()}
	// Keep frames the client sent with its request, as the hub does.
	if n := rw.Reader.Buffered(); n > 0 {
		pre := make([]byte, n)
		_, _ = io.ReadFull(rw.Reader, pre)
		c.rd = io.MultiReader(bytes.NewReader(pre), nc)
	}
	if !e.enter() {
		_, _ = nc.Write(closeFrame(CloseGoingAway, "server shutting down"))
		_ = nc.Close()
		return
	}
	e.mu.Lock()
	e.conns[nc] = struct{}{}
	e.served++
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		c.serve()
		e.mu.Lock()
		delete(e.conns, nc)
		e.mu.Unlock()
	}()
}

// echoConn is one echo connection; its goroutine reads and writes.
type echoConn struct {
	e       *echoServer
	nc      net.Conn
	rd      io.Reader
	raw     syscall.RawConn // nil: blocking writes only
	wv      *writev
	deflate bool
	hdr     [14]byte
}

func (c *echoConn) serve() {
	defer c.nc.Close()
	mr := msgReader{
		limit:   c.e.opts.limit,
		deflate: c.deflate,
		binary:  true,
		control: func(op byte, payload []byte) error {
			if op != opPing {
				return nil
			}
			return c.write(appendFrame(nil, opPong, false, payload))
		},
	}
	for {
		op, msg, err := mr.read(c.rd, c.hdr[:])
		if err != nil {
			c.end(err)
			return
		}
		if err := c.write(c.frame(op, msg)); err != nil {
			return
		}
	}
}

// frame builds the echo of one message: compressed once, like a hub
// broadcast, if deflate was negotiated and that makes it smaller.
func (c *echoConn) frame(op byte, msg []byte) []byte {
	th := c.e.opts.compression.Threshold
	if op == opText {
		p := preparedMessage{payload: msg, comp: c.e.comp, threshold: th}
		return p.frame(c.deflate)
	}
	// preparedMessage builds text frames only; the same choice for binary.
	if c.deflate && len(msg) >= th {
		body, err := c.e.comp.compress(make([]byte, 0, len(msg)/2+16), msg)
		if err == nil && len(body) < len(msg) {
			return appendFrame(make([]byte, 0, frameHeaderLen(len(body))+len(body)), opBinary, true, body)
		}
	}
	return appendFrame(make([]byte, 0, frameHeaderLen(len(msg))+len(msg)), opBinary, false, msg)
}

// write writes one frame the way the hub's flush does: a non-blocking
// vectored write, and what the socket did not take at once written blocking,
// bounded by writeTimeout.
func (c *echoConn) write(frame []byte) error {
	bufs := net.Buffers{frame}
	if c.raw != nil {
		_, rest, err := tryWritev(c.raw, bufs, c.wv)
		if err != nil || rest == nil {
			return err
		}
		bufs = rest
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.e.opts.writeTimeout))
	_, err := bufs.WriteTo(c.nc)
	_ = c.nc.SetWriteDeadline(time.Time{}) // the non-blocking path refuses to write past a deadline
	return err
}

// end answers the error that ended the read loop as the hub's
// conn.closeForReadError and conn.awaitClose do.
func (c *echoConn) end(err error) {
	code, reason, ok := readErrorClose(err)
	if !ok {
		return // the network failed: nothing can be sent
	}
	c.e.mu.Lock()
	c.e.sent[code]++
	c.e.mu.Unlock()
	if c.write(closeFrame(code, reason)) != nil {
		return
	}
	if _, peer := errors.AsType[peerClosed](err); peer {
		return // the closing handshake is complete: the server closes TCP first (RFC 6455 §7.1.1)
	}
	// After a violation the server stops parsing and waits, bounded, for the
	// client to close TCP.
	_ = c.nc.SetReadDeadline(time.Now().Add(c.e.opts.closeTimeout))
	_, _ = io.Copy(io.Discard, c.nc)
}

// readErrorClose is the close frame the hub sends for an error of
// msgReader.read (see conn.closeForReadError); ok is false for network
// errors, which are answered with nothing.
func readErrorClose(err error) (code CloseCode, reason string, ok bool) {
	var pe *protocolError
	var pc peerClosed
	switch {
	case errors.As(err, &pc):
		code = pc.code
		if code == 0 || code == 1005 {
			code = CloseNormal
		}
		return code, "", true // the peer's code echoed (RFC 6455 §5.5.1)
	case errors.As(err, &pe):
		return pe.code, pe.msg, true
	case errors.Is(err, ErrMessageTooBig):
		return CloseMessageTooBig, "message too big", true
	case errors.Is(err, ErrBadRequest):
		return CloseInvalidPayload, "bad compressed data", true
	}
	return 0, "", false
}

// TestConformanceEcho runs a quick self-check of the conformance echo server
// with third-party clients. With RTHUB_ECHO_ADDR set it serves the echo server
// there instead, for Autobahn|Testsuite (docs/conformance.md).
func TestConformanceEcho(t *testing.T) {
	if addr := os.Getenv(echoAddrEnv); addr != "" {
		serveEchoForAutobahn(t, addr)
		return
	}
	t.Parallel()
	const limit = 64 << 10 // the hub's default MaxMessageSize
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := startEcho(ln, echoOptions{limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
	url := "ws://" + ln.Addr().String()

	t.Run("textAndBinary", func(t *testing.T) {
		t.Parallel()
		c := dialEcho(t, url, websocket.CompressionDisabled)
		notUTF8 := make([]byte, 256)
		for i := range notUTF8 {
			notUTF8[i] = byte(i)
		}
		for _, m := range []struct {
			typ  websocket.MessageType
			data []byte
		}{
			{websocket.MessageText, []byte("hello")},
			{websocket.MessageText, []byte("κόσμε 𝄞")},
			{websocket.MessageText, nil},
			{websocket.MessageBinary, notUTF8},
			{websocket.MessageBinary, nil},
		} {
			echoRoundTrip(t, c, m.typ, m.data)
		}
	})

	t.Run("fragmented", func(t *testing.T) {
		t.Parallel()
		// A third-party client's fragments: coder/websocket writes one frame
		// per Write of an uncompressed message.
		c := dialEcho(t, url, websocket.CompressionDisabled)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		w, err := c.Writer(ctx, websocket.MessageBinary)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range []string{"\xff\xfe", "", "binary in three frames"} {
			if _, err := w.Write([]byte(part)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		expectEcho(t, c, websocket.MessageBinary, []byte("\xff\xfebinary in three frames"))

		// Exact frames: control frames between fragments, a rune split
		// across fragments, empty fragments.
		rc := dialRaw(t, url, rawOpts{})
		rc.write(
			cframe(false, 0, opText, "Hello, \xe2\x82"),
			cframe(true, 0, opPing, "mid"),
			cframe(false, 0, opContinuation, ""),
			cframe(true, 0, opPong, "unsolicited"),
			cframe(true, 0, opContinuation, "\xac world"),
		)
		expectRawFrame(t, rc, opPong, false, "mid")
		expectRawFrame(t, rc, opText, false, "Hello, € world")
	})

	t.Run("nearLimit", func(t *testing.T) {
		t.Parallel()
		c := dialEcho(t, url, websocket.CompressionDisabled)
		big := make([]byte, limit)
		r := rand.New(rand.NewPCG(3, 4))
		for i := range big {
			big[i] = byte(r.UintN(256))
		}
		echoRoundTrip(t, c, websocket.MessageBinary, big)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageBinary, append(big, 0)); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.Read(ctx)
		if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
			t.Fatalf("message of limit+1 bytes: read = %v, want close 1009", err)
		}
	})

	t.Run("deflate", func(t *testing.T) {
		t.Parallel()
		// A third-party client's compression: coder/websocket asks for context
		// takeover, the server's answer rules it out, and messages of every
		// size round-trip both ways.
		c := dialEcho(t, url, websocket.CompressionContextTakeover)
		for _, n := range []int{10, 1500, 20000, limit} {
			echoRoundTrip(t, c, websocket.MessageText, []byte(strings.Repeat("compressible ", n/13+1)[:n]))
			echoRoundTrip(t, c, websocket.MessageBinary, bytes.Repeat([]byte{0, 1, 2, 3}, n/4))
		}

		// On the wire: the echo of a message at or over the threshold is
		// compressed (RSV1 on a single frame), a smaller one is not.
		rc := dialRaw(t, url, rawOpts{extensions: rawDeflateOffer})
		if !rc.deflate {
			t.Fatal("permessage-deflate not negotiated")
		}
		long := strings.Repeat("the same words again ", 200)
		rc.write(cframe(true, bitRsv1, opText, string(deflateStd([]byte(long)))))
		expectRawFrame(t, rc, opText, true, long)
		rc.write(text(long)) // sent plain, echoed compressed
		expectRawFrame(t, rc, opText, true, long)
		rc.write(cframe(true, bitRsv1, opText, string(deflateStd([]byte("short")))))
		expectRawFrame(t, rc, opText, false, "short")
		bin := bytes.Repeat([]byte{0xff, 0, 0xfe}, 3000)
		z := deflateStd(bin)
		rc.write(cframe(false, bitRsv1, opBinary, string(z[:10])), cframe(true, 0, opContinuation, string(z[10:])))
		expectRawFrame(t, rc, opBinary, true, string(bin))
	})

	t.Run("negotiation", func(t *testing.T) {
		t.Parallel()
		// The offers of Autobahn's 12.* and 13.* cases (autobahn's
		// PerMessageDeflateOffer) and what the hub answers: it accepts every
		// offer it can serve with no context takeover in both directions, and
		// declines server_max_window_bits (13.3 to 13.6: those cases report
		// "Unimplemented", and testdata/autobahn/fuzzingclient.json excludes them).
		const base = "permessage-deflate; client_no_context_takeover; client_max_window_bits"
		for _, tc := range []struct {
			cases, offer string
			want         bool
		}{
			{"12.*, 13.1", base, true},
			{"13.2", base + "; server_no_context_takeover", true},
			{"13.3", base + "; server_max_window_bits=8", false},
			{"13.4", base + "; server_max_window_bits=15", false},
			{"13.5", base + "; server_no_context_takeover; server_max_window_bits=8", false},
			{"13.6", base + "; server_no_context_takeover; server_max_window_bits=15", false},
			{"13.7", base + "; server_no_context_takeover; server_max_window_bits=8, " + base + "; server_no_context_takeover, " + base, true},
		} {
			status, hdr, _ := upgradeResponse(t, url, http.Header{"Sec-WebSocket-Extensions": {tc.offer}})
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("%s: status %d, want 101", tc.cases, status)
			}
			ext := hdr.Get("Sec-WebSocket-Extensions")
			p, ok := deflateParamsOf(t, ext)
			if ok != tc.want {
				t.Errorf("%s: offer %q answered %q, want deflate accepted: %v", tc.cases, tc.offer, ext, tc.want)
			}
			if ok && (!p.ServerNoContextTakeover || !p.ClientNoContextTakeover || p.ServerMaxWindowBits != 0 || p.ClientMaxWindowBits != 0) {
				t.Errorf("%s: answered %q, want exactly both no_context_takeover parameters", tc.cases, ext)
			}
		}
	})

	t.Run("pingPong", func(t *testing.T) {
		t.Parallel()
		rc := dialRaw(t, url, rawOpts{})
		longest := strings.Repeat("p", 125)
		rc.write(cframe(true, 0, opPing, "abc"), cframe(true, 0, opPing, ""), cframe(true, 0, opPing, longest))
		expectRawFrame(t, rc, opPong, false, "abc")
		expectRawFrame(t, rc, opPong, false, "")
		expectRawFrame(t, rc, opPong, false, longest)
	})

	t.Run("closeHandshake", func(t *testing.T) {
		t.Parallel()
		// The client's code is echoed and the server closes TCP at once.
		for _, tc := range []struct {
			body string
			want ws.StatusCode
		}{
			{closeBody(3001, "bye"), 3001},
			{closeBody(1000, ""), 1000},
			{"", 1000}, // no code: answered with 1000
		} {
			rc := dialRaw(t, url, rawOpts{})
			rc.write(cframe(true, 0, opClose, tc.body))
			h, p, err := rc.readFrame(5 * time.Second)
			if err != nil || h.OpCode != ws.OpClose {
				t.Fatalf("close %q: got opcode %d, %v; want a close frame", tc.body, h.OpCode, err)
			}
			if code, _ := ws.ParseCloseFrameData(p); code != tc.want {
				t.Errorf("close %q: answered %d, want %d", tc.body, code, tc.want)
			}
			if d := rc.expectEOF(time.Second); d > 500*time.Millisecond {
				t.Errorf("server closed TCP after %v, want at once", d)
			}
		}
		// A third-party client's close handshake with a code and a reason.
		c := dialEcho(t, url, websocket.CompressionDisabled)
		if err := c.Close(websocket.StatusCode(4000), "done"); err != nil {
			t.Fatalf("close handshake: %v", err)
		}
	})

	t.Run("violations", func(t *testing.T) {
		t.Parallel()
		bomb := string(zipBomb(limit/258 + 1)) // inflates past the limit
		over := strings.Repeat("o", limit/2+1)
		for _, tc := range []struct {
			name    string
			deflate bool
			send    [][]byte
			want    CloseCode
		}{
			{"unmasked", false, [][]byte{frameBytes(bitFin|opText, false, []byte("x"))}, CloseProtocolError},
			{"rsv1WithoutDeflate", false, [][]byte{cframe(true, bitRsv1, opText, "x")}, CloseProtocolError},
			{"rsv2", false, [][]byte{cframe(true, bitRsv2, opBinary, "x")}, CloseProtocolError},
			{"reservedOpcode", false, [][]byte{cframe(true, 0, 0x3, "x")}, CloseProtocolError},
			{"reservedControlOpcode", false, [][]byte{cframe(true, 0, 0xB, "")}, CloseProtocolError},
			{"fragmentedPing", false, [][]byte{cframe(false, 0, opPing, "a")}, CloseProtocolError},
			{"ping126", false, [][]byte{cframe(true, 0, opPing, strings.Repeat("p", 126))}, CloseProtocolError},
			{"continuationWithoutMessage", false, [][]byte{cframe(true, 0, opContinuation, "x")}, CloseProtocolError},
			{"binaryInsideText", false, [][]byte{cframe(false, 0, opText, "a"), cframe(true, 0, opBinary, "b")}, CloseProtocolError},
			{"invalidUTF8", false, [][]byte{text("bad \xff")}, CloseInvalidPayload},
			{"invalidUTF8AcrossFragments", false, [][]byte{cframe(false, 0, opText, "\xe2\x82"), cframe(true, 0, opContinuation, "(")}, CloseInvalidPayload},
			{"closeOneByteBody", false, [][]byte{cframe(true, 0, opClose, "\x03")}, CloseProtocolError},
			{"closeCode1005", false, [][]byte{cframe(true, 0, opClose, closeBody(1005, ""))}, CloseProtocolError},
			{"closeCode2999", false, [][]byte{cframe(true, 0, opClose, closeBody(2999, ""))}, CloseProtocolError},
			{"closeReasonInvalidUTF8", false, [][]byte{cframe(true, 0, opClose, closeBody(1000, "\xff"))}, CloseInvalidPayload},
			{"overLimit", false, [][]byte{cframe(true, 0, opBinary, strings.Repeat("x", limit+1))}, CloseMessageTooBig},
			{"overLimitFragments", false, [][]byte{cframe(false, 0, opBinary, over), cframe(true, 0, opContinuation, over)}, CloseMessageTooBig},
			{"rsv1OnContinuation", true, [][]byte{cframe(false, bitRsv1, opText, "\x00"), cframe(true, bitRsv1, opContinuation, "")}, CloseProtocolError},
			{"rsv1OnPing", true, [][]byte{cframe(true, bitRsv1, opPing, "")}, CloseProtocolError},
			{"badDeflateData", true, [][]byte{cframe(true, bitRsv1, opBinary, "\xff\xff\xff\xff garbage")}, CloseInvalidPayload},
			{"zipBomb", true, [][]byte{cframe(true, bitRsv1, opBinary, bomb)}, CloseMessageTooBig},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				o := rawOpts{}
				if tc.deflate {
					o.extensions = rawDeflateOffer
				}
				rc := dialRaw(t, url, o)
				if rc.deflate != tc.deflate {
					t.Fatalf("deflate negotiated: %v, want %v", rc.deflate, tc.deflate)
				}
				rc.write(tc.send...)
				// The close must be the first frame: no echo of the bad
				// message, no pong for a bad ping.
				h, p, err := rc.readFrame(5 * time.Second)
				if err != nil {
					t.Fatalf("read: %v, want a close frame", err)
				}
				if h.OpCode != ws.OpClose {
					t.Fatalf("got opcode %d (%d bytes), want a close frame", h.OpCode, len(p))
				}
				if code, reason := ws.ParseCloseFrameData(p); CloseCode(code) != tc.want {
					t.Fatalf("close code %d (%q), want %d", code, reason, tc.want)
				}
			})
		}
	})
}

// dialEcho connects a coder/websocket client to the echo server.
func dialEcho(t *testing.T, url string, mode websocket.CompressionMode) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{CompressionMode: mode})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(1 << 20)
	return c
}

// echoRoundTrip sends one message and checks it comes back unchanged.
func echoRoundTrip(t *testing.T, c *websocket.Conn, typ websocket.MessageType, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, data); err != nil {
		t.Fatalf("write %v of %d bytes: %v", typ, len(data), err)
	}
	expectEcho(t, c, typ, data)
}

func expectEcho(t *testing.T, c *websocket.Conn, typ websocket.MessageType, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	gotTyp, got, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read echo of %v of %d bytes: %v", typ, len(data), err)
	}
	if gotTyp != typ || !bytes.Equal(got, data) {
		t.Fatalf("echo = %v of %d bytes, want %v of %d bytes (equal: %v)", gotTyp, len(got), typ, len(data), bytes.Equal(got, data))
	}
}

// expectRawFrame reads the next frame and checks it is a single frame of op,
// compressed (RSV1) or not, carrying payload (after inflating).
func expectRawFrame(t *testing.T, rc *rawConn, op byte, compressed bool, payload string) {
	t.Helper()
	h, p, err := rc.readFrame(10 * time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if byte(h.OpCode) != op || !h.Fin || h.Rsv1() != compressed || h.Rsv2() || h.Rsv3() {
		t.Fatalf("frame: opcode %d fin %v rsv1 %v, want opcode %d, fin, rsv1 %v", h.OpCode, h.Fin, h.Rsv1(), op, compressed)
	}
	if compressed {
		if p, err = inflateStd(p); err != nil {
			t.Fatalf("inflate: %v", err)
		}
	}
	if string(p) != payload {
		t.Fatalf("payload of %d bytes, want %d bytes: %.40q…", len(p), len(payload), p)
	}
}

// serveEchoForAutobahn serves the echo server on addr until RTHUB_ECHO_FOR
// elapses (default 30m, cut to the test's deadline) or the process is
// interrupted, then logs what it served.
func serveEchoForAutobahn(t *testing.T, addr string) {
	d := 30 * time.Minute
	if s := os.Getenv(echoForEnv); s != "" {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a positive duration such as 30m", echoForEnv, s)
		}
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < d+5*time.Second {
		d = time.Until(dl) - 5*time.Second
		t.Logf("serving for %v only, within go test's -timeout (use -timeout 0)", d.Round(time.Second))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// Every non-empty message is compressed when that makes it smaller (the
	// hub's threshold is 1 KiB), so Autobahn's 12.* and 13.* cases check the
	// compressor on all their message sizes.
	e, err := startEcho(ln, echoOptions{limit: echoAutobahnLimit, compression: CompressionOptions{Threshold: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(t.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t.Logf("echo server on ws://%s for %v (Ctrl-C stops it); limit %d bytes, permessage-deflate without context takeover",
		ln.Addr(), d.Round(time.Second), int64(echoAutobahnLimit))
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
	e.close()
	t.Log(e.summary())
}
