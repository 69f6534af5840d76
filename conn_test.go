package rthub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

// This file tests the WebSocket transport (conn.go, frame.go) over real
// loopback sockets against a real hub. Inputs no well-behaved library would
// send are written byte by byte with rawConn.
//
// Distinct bad inputs sent over real sockets: 75 in TestConn_BadInput, 1 in
// TestConn_PipelinedJoins (joins past MaxRoomsPerConn), 16 in
// TestCompress_BadInput and 1 in TestCompress_DisabledRSV1: 93. Refused
// handshakes: 13 in TestConn_HandshakeRefusals, 4 in TestConn_Subprotocol and
// 1 in TestConn_RefusedAfterShutdown: 18.

// testAlert is a registered event that no role of testPolicy may emit.
var testAlert = NewEvent[chatMessage]("test:alert")

// conformHub is testHub with testAlert registered and a short CloseTimeout, so
// closing handshakes with clients that never answer end quickly.
func conformHub(t testing.TB, mod func(*Options)) (*Hub, string) {
	t.Helper()
	return testHub(t, func(o *Options) {
		o.Handlers = append(o.Handlers, testAlert.Handle(func(context.Context, Incoming[chatMessage]) error { return nil }))
		o.CloseTimeout = time.Second
		if mod != nil {
			mod(o)
		}
	})
}

// rawOpts configures dialRaw.
type rawOpts struct {
	token      string            // sent as Authorization: Bearer
	protocols  []string          // offered subprotocols; nil means rthub.v1
	extensions []httphead.Option // offered extensions (permessage-deflate)
	hdr        http.Header       // extra request headers
}

// rawConn is a WebSocket client that writes frames as raw bytes and reads
// server frames one by one.
type rawConn struct {
	t       testing.TB
	nc      net.Conn
	r       io.Reader // nc, or a reader holding frames read with the handshake
	hs      ws.Handshake
	deflate bool // permessage-deflate was negotiated
}

func dialRaw(t testing.TB, url string, o rawOpts) *rawConn {
	t.Helper()
	rc, err := dialRawErr(url, o)
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	rc.t = t
	t.Cleanup(func() { rc.nc.Close() })
	return rc
}

func dialRawErr(url string, o rawOpts) (*rawConn, error) {
	hdr := o.hdr.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	if o.token != "" {
		hdr.Set("Authorization", "Bearer "+o.token)
	}
	protos := o.protocols
	if protos == nil {
		protos = []string{Subprotocol}
	}
	d := ws.Dialer{
		Header:     ws.HandshakeHeaderHTTP(hdr),
		Protocols:  protos,
		Extensions: o.extensions,
		Timeout:    10 * time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{nc: nc, r: nc, hs: hs}
	if br != nil {
		rc.r = br // it holds frames that arrived with the handshake response
	}
	for _, e := range hs.Extensions {
		if string(e.Name) == "permessage-deflate" {
			rc.deflate = true
		}
	}
	return rc, nil
}

// testMask is the masking key of rawConn's frames.
var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// frameBytes builds one frame with first byte b0 (FIN, RSV bits, opcode) and
// the shortest length encoding; a masked frame is masked with testMask.
func frameBytes(b0 byte, masked bool, payload []byte) []byte {
	b := []byte{b0}
	var m byte
	if masked {
		m = bitMask
	}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, m|byte(n))
	case n <= 0xFFFF:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if masked {
		b = append(b, testMask[:]...)
	}
	start := len(b)
	b = append(b, payload...)
	if masked {
		ws.Cipher(b[start:], testMask, 0)
	}
	return b
}

// cframe returns a masked client frame; rsv holds RSV bits in place (bitRsv1...).
func cframe(fin bool, rsv, op byte, payload string) []byte {
	b0 := rsv | op
	if fin {
		b0 |= bitFin
	}
	return frameBytes(b0, true, []byte(payload))
}

// text returns a complete masked text frame.
func text(s string) []byte { return cframe(true, 0, opText, s) }

// closeBody returns a close frame body: code then reason.
func closeBody(code uint16, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, code)) + reason
}

// padded returns a ping command of exactly n bytes.
func padded(id, n int) string {
	s := fmt.Sprintf(`{"id":%d,"op":"ping","pad":""}`, id)
	return s[:len(s)-2] + strings.Repeat("a", n-len(s)) + `"}`
}

func (rc *rawConn) write(frames ...[]byte) {
	rc.t.Helper()
	_ = rc.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.nc.Write(bytes.Join(frames, nil)); err != nil {
		rc.t.Fatalf("raw write: %v", err)
	}
}

// readFrame reads the next server frame.
func (rc *rawConn) readFrame(d time.Duration) (ws.Header, []byte, error) {
	_ = rc.nc.SetReadDeadline(time.Now().Add(d))
	h, err := ws.ReadHeader(rc.r)
	if err != nil {
		return h, nil, err
	}
	if h.Masked {
		return h, nil, errors.New("server frame is masked")
	}
	if h.Length > 16<<20 {
		return h, nil, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(rc.r, p); err != nil {
		return h, nil, err
	}
	return h, p, nil
}

// rawMsg is one data message as rawConn received it.
type rawMsg struct {
	compressed bool // RSV1 was set
	payload    []byte
	msg        serverMsg
}

// next returns the next text message (inflated if compressed), recording
// pongs and skipping pings. A close frame or a read error fails the test.
func (rc *rawConn) next(pongs *[]string) rawMsg {
	rc.t.Helper()
	for {
		h, p, err := rc.readFrame(10 * time.Second)
		if err != nil {
			rc.t.Fatalf("raw read: %v", err)
		}
		switch h.OpCode {
		case ws.OpPing:
			continue
		case ws.OpPong:
			if pongs != nil {
				*pongs = append(*pongs, string(p))
			}
			continue
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			rc.t.Fatalf("server closed with %d %q; want a message", code, reason)
		case ws.OpText:
		default:
			rc.t.Fatalf("server sent opcode %d", h.OpCode)
		}
		if !h.Fin {
			rc.t.Fatalf("server sent a fragmented message")
		}
		m := rawMsg{compressed: h.Rsv1(), payload: p}
		if m.compressed {
			if !rc.deflate {
				rc.t.Fatalf("RSV1 set without permessage-deflate")
			}
			if m.payload, err = inflateStd(p); err != nil {
				rc.t.Fatalf("inflate server message: %v", err)
			}
		}
		if err := json.Unmarshal(m.payload, &m.msg); err != nil {
			rc.t.Fatalf("server message %q: %v", m.payload, err)
		}
		return m
	}
}

// repliesUntil reads until the reply to id and returns every reply before it
// as "id:code" ("id:ok" for success), and the pong payloads seen.
func (rc *rawConn) repliesUntil(id uint64) (replies, pongs []string) {
	rc.t.Helper()
	for {
		m := rc.next(&pongs).msg
		if m.Type != "reply" {
			continue
		}
		if m.ID == id {
			if !m.OK {
				rc.t.Fatalf("reply %d = %+v, want ok", id, m.Error)
			}
			return replies, pongs
		}
		code := "ok"
		if !m.OK {
			code = "<nil error>"
			if m.Error != nil {
				code = m.Error.Code
			}
		}
		replies = append(replies, fmt.Sprintf("%d:%s", m.ID, code))
	}
}

// expectClose reads until the server's close frame, echoes it and returns its
// code and reason. Anything but a close frame before the connection ends
// fails the test.
func (rc *rawConn) expectClose() (ws.StatusCode, string) {
	rc.t.Helper()
	for {
		h, p, err := rc.readFrame(10 * time.Second)
		if err != nil {
			rc.t.Fatalf("read before close frame: %v", err)
		}
		if h.OpCode != ws.OpClose {
			continue
		}
		code, reason := ws.ParseCloseFrameData(p)
		rc.write(cframe(true, 0, opClose, closeBody(uint16(code), "")))
		return code, reason
	}
}

// expectEOF reads until the server closes the TCP connection and returns how
// long that took; a reset or a timeout fails the test.
func (rc *rawConn) expectEOF(limit time.Duration) time.Duration {
	rc.t.Helper()
	start := time.Now()
	for {
		_, _, err := rc.readFrame(limit)
		if err == nil {
			continue
		}
		if !errors.Is(err, io.EOF) {
			rc.t.Fatalf("after the close frames: %v, want EOF", err)
		}
		return time.Since(start)
	}
}

// waitConnCount waits until the hub has n connections.
func waitConnCount(t testing.TB, h *Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for h.Stats().Connections != n {
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d connections, want %d", h.Stats().Connections, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newObserver returns a well-behaved client in room device:1.
func newObserver(t testing.TB, url string) *wsClient {
	t.Helper()
	obs := dial(t, url, testToken(t, "bob", time.Hour, "staff"))
	if r := obs.cmd("join", map[string]any{"room": "device:1"}); !r.OK {
		t.Fatalf("observer join: %+v", r.Error)
	}
	return obs
}

var observerSeq atomic.Int64

// checkObserver publishes a fresh event to device:1 and checks obs gets it.
func checkObserver(t testing.TB, h *Hub, obs *wsClient) {
	t.Helper()
	want := fmt.Sprintf(`{"n":%d}`, observerSeq.Add(1))
	if err := h.Publish(t.Context(), "device:1", "sensor:data", json.RawMessage(want)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	for {
		ev := obs.readType("event")
		if ev.Event != "sensor:data" {
			continue // e.g. a chat relayed to the staff room
		}
		if string(ev.Data) != want {
			t.Fatalf("observer got %s, want %s", ev.Data, want)
		}
		return
	}
}

// badCase is one input of the bad-input table and its documented outcome.
type badCase struct {
	name string
	send [][]byte
	// close, if set, is the code the server must close with. Otherwise the
	// connection must stay open: replies lists the replies ("id:code", or
	// "id:ok") that must arrive before the reply to a final ping, and pongs the
	// pong payloads.
	close   CloseCode
	replies []string
	pongs   []string
}

// badInputs is the bad-input table. It holds 75 distinct bad inputs: every
// case except the ten named valid/..., which check the transport accepts what
// it must (fragments, interleaved control frames, boundaries, closes).
func badInputs(t testing.TB) []badCase {
	long := strings.Repeat("r", MaxRoomLen+1)
	limit := 64 << 10
	return []badCase{
		// Not a command. Without a readable id there is nobody to reply to.
		{name: "malformedJSON", send: [][]byte{text(`{"id":1,"op":"join","room":`)}, replies: []string{"1:bad_request"}},
		{name: "malformedJSONMissingBrace", send: [][]byte{text(`{"id":1,"op":"ping"`)}, replies: []string{"1:bad_request"}},
		{name: "malformedJSONTrailingGarbage", send: [][]byte{text(`{"id":1,"op":"ping"}}`)}, replies: []string{"1:bad_request"}},
		{name: "twoObjects", send: [][]byte{text(`{"id":1,"op":"ping"} {"id":2,"op":"ping"}`)}, replies: []string{"1:bad_request"}},
		{name: "malformedJSONNoID", send: [][]byte{text(`{"op":"ping",`)}},
		{name: "array", send: [][]byte{text(`[{"id":1,"op":"ping"}]`)}},
		{name: "number", send: [][]byte{text(`42`)}},
		{name: "string", send: [][]byte{text(`"ping"`)}},
		{name: "null", send: [][]byte{text(`null`)}},
		{name: "empty", send: [][]byte{text(``)}},
		{name: "whitespace", send: [][]byte{text(" \n\t ")}},
		{name: "unknownOp", send: [][]byte{text(`{"id":1,"op":"subscribe","room":"staff"}`)}, replies: []string{"1:unknown_op"}},
		{name: "missingOp", send: [][]byte{text(`{"id":1}`)}, replies: []string{"1:bad_request"}},
		{name: "emptyOp", send: [][]byte{text(`{"id":1,"op":""}`)}, replies: []string{"1:bad_request"}},
		{name: "joinWithoutRoom", send: [][]byte{text(`{"id":1,"op":"join"}`)}, replies: []string{"1:bad_request"}},
		// An empty room is treated as a missing field (bad_request), not bad_room.
		{name: "joinEmptyRoom", send: [][]byte{text(`{"id":1,"op":"join","room":""}`)}, replies: []string{"1:bad_request"}},
		{name: "leaveWithoutRoom", send: [][]byte{text(`{"id":1,"op":"leave"}`)}, replies: []string{"1:bad_request"}},
		{name: "emitWithoutEvent", send: [][]byte{text(`{"id":1,"op":"emit","room":"staff","data":{}}`)}, replies: []string{"1:bad_request"}},
		{name: "emitWithoutRoom", send: [][]byte{text(`{"id":1,"op":"emit","event":"chat:message","data":{}}`)}, replies: []string{"1:bad_request"}},
		{name: "refreshWithoutToken", send: [][]byte{text(`{"id":1,"op":"refresh"}`)}, replies: []string{"1:bad_request"}},
		{name: "roomNotString", send: [][]byte{text(`{"id":1,"op":"join","room":7}`)}, replies: []string{"1:bad_request"}},
		{name: "opNotString", send: [][]byte{text(`{"id":1,"op":5}`)}, replies: []string{"1:bad_request"}},
		{name: "dataOfWrongKind", send: [][]byte{text(`{"id":1,"op":"join","room":"device:1","event":{}}`)}, replies: []string{"1:bad_request"}},
		{name: "idString", send: [][]byte{text(`{"id":"x","op":"ping"}`)}},
		{name: "idNegative", send: [][]byte{text(`{"id":-1,"op":"ping"}`)}},
		{name: "idFraction", send: [][]byte{text(`{"id":1.5,"op":"ping"}`)}},
		{name: "roomWithSpace", send: [][]byte{text(`{"id":1,"op":"join","room":"device 7"}`)}, replies: []string{"1:bad_room"}},
		{name: "roomEmptySegment", send: [][]byte{text(`{"id":1,"op":"join","room":"device::7"}`)}, replies: []string{"1:bad_room"}},
		{name: "roomNonASCII", send: [][]byte{text(`{"id":1,"op":"join","room":"devicé"}`)}, replies: []string{"1:bad_room"}},
		{name: "roomTooLong", send: [][]byte{text(`{"id":1,"op":"join","room":"` + long + `"}`)}, replies: []string{"1:bad_room"}},
		{name: "leaveBadRoom", send: [][]byte{text(`{"id":1,"op":"leave","room":"a b"}`)}, replies: []string{"1:bad_room"}},
		{name: "emitBadRoom", send: [][]byte{text(`{"id":1,"op":"emit","event":"chat:message","room":"a b","data":{}}`)}, replies: []string{"1:bad_room"}},
		{name: "joinForbiddenRoom", send: [][]byte{text(`{"id":1,"op":"join","room":"admin"}`)}, replies: []string{"1:forbidden"}},
		{name: "emitForbiddenEvent", send: [][]byte{text(`{"id":1,"op":"emit","event":"test:alert","room":"staff","data":{"text":"x"}}`)}, replies: []string{"1:forbidden"}},
		{name: "emitForbiddenInRoom", send: [][]byte{
			text(`{"id":1,"op":"join","room":"device:1"}`),
			text(`{"id":2,"op":"emit","event":"chat:message","room":"device:1","data":{"text":"x"}}`),
		}, replies: []string{"1:ok", "2:forbidden"}},
		{name: "emitRoomNotJoined", send: [][]byte{
			text(`{"id":1,"op":"leave","room":"staff"}`),
			text(`{"id":2,"op":"emit","event":"chat:message","room":"staff","data":{"text":"x"}}`),
		}, replies: []string{"1:ok", "2:forbidden"}},
		{name: "emitUnknownEvent", send: [][]byte{text(`{"id":1,"op":"emit","event":"no:such","room":"staff","data":{}}`)}, replies: []string{"1:unknown_event"}},
		{name: "emitBadPayload", send: [][]byte{text(`{"id":1,"op":"emit","event":"chat:message","room":"staff","data":{"text":5}}`)}, replies: []string{"1:bad_payload"}},
		{name: "emitPayloadNotObject", send: [][]byte{text(`{"id":1,"op":"emit","event":"chat:message","room":"staff","data":[1]}`)}, replies: []string{"1:bad_payload"}},
		{name: "valid/emit", send: [][]byte{text(`{"id":1,"op":"emit","event":"chat:message","room":"staff","data":{"text":"hi"}}`)}, replies: []string{"1:ok"}},
		{name: "refreshGarbageToken", send: [][]byte{text(`{"id":1,"op":"refresh","token":"garbage"}`)}, replies: []string{"1:token_malformed"}},

		// Data frames.
		{name: "binary", send: [][]byte{cframe(true, 0, opBinary, `{"id":1,"op":"ping"}`)}, close: CloseUnsupportedData},
		{name: "binaryFragment", send: [][]byte{cframe(false, 0, opBinary, `{"id":1,`)}, close: CloseUnsupportedData},
		{name: "invalidUTF8", send: [][]byte{text("{\"id\":1,\"op\":\"ping\",\"x\":\"\xff\"}")}, close: CloseInvalidPayload},
		{name: "overlongUTF8", send: [][]byte{text("{\"id\":1,\"op\":\"ping\",\"x\":\"\xc0\xaf\"}")}, close: CloseInvalidPayload},
		{name: "surrogateUTF8", send: [][]byte{text("{\"id\":1,\"op\":\"ping\",\"x\":\"\xed\xa0\x80\"}")}, close: CloseInvalidPayload},
		{name: "invalidUTF8AcrossFragments", send: [][]byte{
			cframe(false, 0, opText, "{\"id\":1,\"op\":\"ping\",\"x\":\"\xe2\x82"),
			cframe(true, 0, opContinuation, "\x28\"}"),
		}, close: CloseInvalidPayload},
		{name: "valid/runeSplitAcrossFragments", send: [][]byte{
			cframe(false, 0, opText, "{\"id\":1,\"op\":\"ping\",\"x\":\"\xe2\x82"),
			cframe(true, 0, opContinuation, "\xac\"}"),
		}, replies: []string{"1:ok"}},
		{name: "valid/exactlyMaxMessageSize", send: [][]byte{text(padded(1, limit))}, replies: []string{"1:ok"}},
		{name: "oversizedFrame", send: [][]byte{text(padded(1, limit+1))}, close: CloseMessageTooBig},
		{name: "oversizedFragments", send: [][]byte{
			cframe(false, 0, opText, padded(1, limit)[:limit/2]),
			cframe(false, 0, opContinuation, padded(1, limit)[limit/2:limit-10]),
			cframe(true, 0, opContinuation, strings.Repeat("a", 11)),
		}, close: CloseMessageTooBig},
		{name: "valid/fragmentedCommand", send: [][]byte{
			cframe(false, 0, opText, `{"id":1,"op":`),
			cframe(false, 0, opContinuation, `"join","room"`),
			cframe(true, 0, opContinuation, `:"device:5"}`),
		}, replies: []string{"1:ok"}},
		{name: "valid/pingBetweenFragments", send: [][]byte{
			cframe(false, 0, opText, `{"id":1,`),
			cframe(true, 0, opPing, "mid"),
			cframe(false, 0, opContinuation, `"op":`),
			cframe(true, 0, opPong, "unsolicited"),
			cframe(true, 0, opContinuation, `"ping"}`),
		}, replies: []string{"1:ok"}, pongs: []string{"mid"}},
		{name: "valid/emptyFragments", send: [][]byte{
			cframe(false, 0, opText, ``),
			cframe(false, 0, opContinuation, ``),
			cframe(true, 0, opContinuation, `{"id":1,"op":"ping"}`),
		}, replies: []string{"1:ok"}},
		{name: "continuationWithoutMessage", send: [][]byte{cframe(true, 0, opContinuation, `{"id":1,"op":"ping"}`)}, close: CloseProtocolError},
		{name: "textInsideFragmentedMessage", send: [][]byte{
			cframe(false, 0, opText, `{"id":1,`),
			cframe(true, 0, opText, `{"id":2,"op":"ping"}`),
		}, close: CloseProtocolError},
		{name: "binaryInsideFragmentedMessage", send: [][]byte{
			cframe(false, 0, opText, `{"id":1,`),
			cframe(true, 0, opBinary, `"op":"ping"}`),
		}, close: CloseProtocolError},

		// Framing.
		{name: "unmasked", send: [][]byte{frameBytes(bitFin|opText, false, []byte(`{"id":1,"op":"ping"}`))}, close: CloseProtocolError},
		{name: "unmaskedPing", send: [][]byte{frameBytes(bitFin|opPing, false, nil)}, close: CloseProtocolError},
		{name: "rsv1WithoutDeflate", send: [][]byte{cframe(true, bitRsv1, opText, `{"id":1,"op":"ping"}`)}, close: CloseProtocolError},
		{name: "rsv2", send: [][]byte{cframe(true, bitRsv2, opText, `{"id":1,"op":"ping"}`)}, close: CloseProtocolError},
		{name: "rsv3", send: [][]byte{cframe(true, bitRsv3, opText, `{"id":1,"op":"ping"}`)}, close: CloseProtocolError},
		{name: "rsv2OnPing", send: [][]byte{cframe(true, bitRsv2, opPing, ``)}, close: CloseProtocolError},
		{name: "opcode3", send: [][]byte{cframe(true, 0, 0x3, `{"id":1,"op":"ping"}`)}, close: CloseProtocolError},
		{name: "opcodeB", send: [][]byte{cframe(true, 0, 0xB, ``)}, close: CloseProtocolError},
		{name: "pingPayload126", send: [][]byte{cframe(true, 0, opPing, strings.Repeat("p", 126))}, close: CloseProtocolError},
		{name: "closePayload126", send: [][]byte{cframe(true, 0, opClose, closeBody(1000, strings.Repeat("r", 124)))}, close: CloseProtocolError},
		{name: "fragmentedPing", send: [][]byte{cframe(false, 0, opPing, `a`), cframe(true, 0, opContinuation, `b`)}, close: CloseProtocolError},
		{name: "length64TopBit", send: [][]byte{{bitFin | opText, bitMask | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}}, close: CloseProtocolError},
		{name: "length64Max", send: [][]byte{{bitFin | opText, bitMask | 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}}, close: CloseProtocolError},
		{name: "length64Huge", send: [][]byte{{bitFin | opText, bitMask | 127, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}}, close: CloseMessageTooBig},

		// Close frames.
		{name: "closeOneByteBody", send: [][]byte{cframe(true, 0, opClose, "\x03")}, close: CloseProtocolError},
		{name: "closeCode1005", send: [][]byte{cframe(true, 0, opClose, closeBody(1005, ""))}, close: CloseProtocolError},
		{name: "closeCode1006", send: [][]byte{cframe(true, 0, opClose, closeBody(1006, ""))}, close: CloseProtocolError},
		{name: "closeCode1015", send: [][]byte{cframe(true, 0, opClose, closeBody(1015, ""))}, close: CloseProtocolError},
		{name: "closeCode999", send: [][]byte{cframe(true, 0, opClose, closeBody(999, ""))}, close: CloseProtocolError},
		{name: "closeCode0", send: [][]byte{cframe(true, 0, opClose, closeBody(0, ""))}, close: CloseProtocolError},
		{name: "closeCode2999", send: [][]byte{cframe(true, 0, opClose, closeBody(2999, ""))}, close: CloseProtocolError},
		{name: "closeCode5000", send: [][]byte{cframe(true, 0, opClose, closeBody(5000, ""))}, close: CloseProtocolError},
		{name: "closeReasonInvalidUTF8", send: [][]byte{cframe(true, 0, opClose, closeBody(1000, "bye\xff"))}, close: CloseInvalidPayload},
		{name: "valid/closeMidMessage", send: [][]byte{cframe(false, 0, opText, `{"id":1,`), cframe(true, 0, opClose, closeBody(1000, ""))}, close: CloseNormal},
		{name: "valid/close1000", send: [][]byte{cframe(true, 0, opClose, closeBody(1000, "bye"))}, close: CloseNormal},
		{name: "valid/closeEmptyBody", send: [][]byte{cframe(true, 0, opClose, "")}, close: CloseNormal},
		{name: "valid/closeCode4101", send: [][]byte{cframe(true, 0, opClose, closeBody(4101, "app"))}, close: CloseDisconnected},
		{name: "refreshOtherSubject", send: [][]byte{text(`{"id":1,"op":"refresh","token":"` + testToken(t, "mallory", time.Hour, "staff") + `"}`)}, close: CloseUnauthorized},
	}
}

func TestConn_BadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range badInputs(t) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runBadCase(t, tc, nil, rawOpts{})
		})
	}
}

// runBadCase runs one bad-input case on a fresh hub (options adjusted by mod)
// with a raw client (alice, staff; o without a token) and an observer that
// must keep receiving events.
func runBadCase(t *testing.T, tc badCase, mod func(*Options), o rawOpts) {
	t.Helper()
	h, url := conformHub(t, mod)
	obs := newObserver(t, url)
	o.token = testToken(t, "alice", time.Hour, "staff")
	rc := dialRaw(t, url, o)
	rc.write(tc.send...)
	if tc.close != 0 {
		code, reason := rc.expectClose()
		if CloseCode(code) != tc.close {
			t.Fatalf("close code = %d (%q), want %d", code, reason, tc.close)
		}
		// After a protocol error the server stops parsing and waits
		// (CloseTimeout at most) for the client to close TCP.
		rc.nc.Close()
		waitConnCount(t, h, 1)
	} else {
		rc.write(text(`{"id":99,"op":"ping"}`))
		replies, pongs := rc.repliesUntil(99)
		if got, want := strings.Join(replies, " "), strings.Join(tc.replies, " "); got != want {
			t.Errorf("replies = [%s], want [%s]", got, want)
		}
		if got, want := strings.Join(pongs, " "), strings.Join(tc.pongs, " "); got != want {
			t.Errorf("pongs = [%s], want [%s]", got, want)
		}
		if n := h.Stats().Connections; n != 2 {
			t.Errorf("hub has %d connections, want 2", n)
		}
	}
	checkObserver(t, h, obs)
}

func TestConn_PipelinedJoins(t *testing.T) {
	t.Parallel()
	const n = 10000
	// A small queue: replies to pipelined commands must not overflow it
	// however fast the client writes (the read loop waits for the writer).
	h, url := conformHub(t, func(o *Options) {
		o.SendQueueMessages = 32
		o.Limits.Commands = -1 // this test is about backpressure, not rate limits
	})
	obs := newObserver(t, url)
	rc := dialRaw(t, url, rawOpts{token: testToken(t, "alice", time.Hour, "staff")})
	welcome := rc.next(nil).msg
	if welcome.Type != "welcome" {
		t.Fatalf("first message = %+v, want welcome", welcome)
	}
	free := h.opts.MaxRoomsPerConn - len(welcome.Rooms)

	var buf []byte
	for i := 1; i <= n; i++ {
		buf = append(buf, text(fmt.Sprintf(`{"id":%d,"op":"join","room":"device:%d"}`, i, i))...)
	}
	// Write while reading: the replies must not pile up in the server's queue.
	werr := make(chan error, 1)
	go func() {
		_ = rc.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := rc.nc.Write(buf)
		werr <- err
	}()
	for i := 1; i <= n; i++ {
		m := rc.next(nil).msg
		if m.Type != "reply" || m.ID != uint64(i) {
			t.Fatalf("message %d = %+v, want reply %d", i, m, i)
		}
		switch {
		case i <= free && !m.OK:
			t.Fatalf("join %d: %+v, want ok", i, m.Error)
		case i > free && (m.Error == nil || m.Error.Code != "too_many_rooms"):
			t.Fatalf("join %d: ok=%v %+v, want too_many_rooms", i, m.OK, m.Error)
		}
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	rc.write(text(`{"id":20000,"op":"ping"}`))
	if r, _ := rc.repliesUntil(20000); len(r) != 0 {
		t.Errorf("extra replies %v", r)
	}
	if got := len(h.Rooms()); got < free {
		t.Errorf("hub has %d rooms, want at least %d", got, free)
	}
	checkObserver(t, h, obs)
}

// TestConn_PipelinedWithHandshake sends a command in the same write as the
// upgrade request: the bytes net/http buffered must not be lost.
func TestConn_PipelinedWithHandshake(t *testing.T) {
	t.Parallel()
	_, url := conformHub(t, nil)
	addr := strings.TrimPrefix(url, "ws://")
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Protocol: rthub.v1\r\nAuthorization: Bearer " + testToken(t, "alice", time.Hour, "staff") + "\r\n\r\n"
	msg := append([]byte(req), text(`{"id":1,"op":"ping"}`)...)
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(msg); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %d, want 101", resp.StatusCode)
	}
	rc := &rawConn{t: t, nc: nc, r: br}
	if r, _ := rc.repliesUntil(1); len(r) != 0 {
		t.Errorf("extra replies %v", r)
	}
}

// TestHub_PingsSpread: connections are pinged in slots spread over the
// PingInterval, not all at the same instant.
func TestHub_PingsSpread(t *testing.T) {
	t.Parallel()
	const conns, interval = 40, 2 * time.Second
	_, url := testHub(t, func(o *Options) { o.PingInterval = interval })
	start := time.Now()
	rcs := make([]*rawConn, conns)
	dialed := make([]time.Time, conns)
	for i := range rcs { // one user each: a user's handshakes are rate-limited
		rcs[i] = dialRaw(t, url, rawOpts{token: testToken(t, fmt.Sprintf("u%d", i), time.Hour, "staff")})
		rcs[i].next(nil) // welcome
		dialed[i] = time.Now()
	}
	// Read each connection for one interval (and some) from when it was
	// connected: its pings' times. (A connection dialed after its slot of
	// the first round came gets its first ping a round later: the window
	// starts at its own connect, so a slow machine's dials do not fail it.)
	pings := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	for i, rc := range rcs {
		wg.Go(func() {
			end := dialed[i].Add(interval + 600*time.Millisecond)
			for {
				h, _, err := rc.readFrame(time.Until(end))
				if err != nil {
					return // the deadline
				}
				if h.OpCode == ws.OpPing {
					pings[i] = append(pings[i], time.Since(start))
				}
			}
		})
	}
	wg.Wait()
	first, last := time.Duration(1<<62), time.Duration(0)
	for i, p := range pings {
		if len(p) == 0 || len(p) > 2 { // two: its slot came again in the extra 600 ms
			t.Errorf("connection %d (connected at %v) pinged %d times in the %v after (%v), want once", i, dialed[i].Sub(start), len(p), interval+600*time.Millisecond, p)
			continue
		}
		first, last = min(first, p[0]), max(last, p[0])
	}
	if last-first < interval/2 {
		t.Errorf("pings from %v to %v: not spread over the %v interval", first, last, interval)
	}
}
