package rthub

import (
	"bytes"
	stdflate "compress/flate"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
)

// inflateStd decompresses a permessage-deflate message body with the
// standard library's decoder (independent of the server's klauspost one).
func inflateStd(body []byte) ([]byte, error) {
	fr := stdflate.NewReader(io.MultiReader(bytes.NewReader(body), bytes.NewReader(deflateEnd)))
	defer fr.Close()
	return io.ReadAll(fr)
}

// deflateStd compresses p as one permessage-deflate message body with the
// standard library's encoder.
func deflateStd(p []byte) []byte {
	var buf bytes.Buffer
	fw, _ := stdflate.NewWriter(&buf, stdflate.BestCompression)
	_, _ = fw.Write(p)
	_ = fw.Flush()
	return bytes.TrimSuffix(buf.Bytes(), deflateTail)
}

// zipBomb returns a permessage-deflate message body that inflates to
// 1+258*k zero bytes, built directly (compressing megabytes of zeros is slow
// under the race detector): one fixed-Huffman block holding a literal 0 and k
// copies of <length 258, distance 1>, 13 bits each, then the empty stored
// block of a flush with its 00 00 ff ff tail removed.
func zipBomb(k int) []byte {
	var w bitWriter
	w.bits(0b010, 3) // BFINAL 0, BTYPE 01 (fixed Huffman)
	w.code(0x30, 8)  // literal 0
	for range k {
		w.code(0xC5, 8) // length code 285: 258
		w.code(0, 5)    // distance code 0: 1
	}
	w.code(0, 7) // end of block
	w.bits(0, 3) // BFINAL 0, BTYPE 00 (stored)
	if w.n > 0 {
		w.out = append(w.out, byte(w.acc))
	}
	return w.out
}

// bitWriter writes a DEFLATE bit stream (RFC 1951 §3.1.1).
type bitWriter struct {
	out []byte
	acc uint64
	n   uint
}

// bits writes the n low bits of v, least significant first.
func (w *bitWriter) bits(v uint64, n uint) {
	w.acc |= v << w.n
	w.n += n
	for w.n >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.n -= 8
	}
}

// code writes an n-bit Huffman code, most significant bit first.
func (w *bitWriter) code(c uint64, n uint) {
	var r uint64
	for i := range n {
		r |= (c >> i & 1) << (n - 1 - i)
	}
	w.bits(r, n)
}

func TestZipBomb(t *testing.T) {
	t.Parallel()
	for _, k := range []int{0, 1, 4, 1000} {
		got, err := inflateStd(zipBomb(k))
		if err != nil || len(got) != 1+258*k || bytes.ContainsFunc(got, func(r rune) bool { return r != 0 }) {
			t.Errorf("zipBomb(%d) inflates to %d bytes, %v; want %d zeros", k, len(got), err, 1+258*k)
		}
	}
}

// rawDeflateOffer is what a raw client offers: permessage-deflate with no context
// takeover either way (wsflate.DefaultParameters).
var rawDeflateOffer = []httphead.Option{wsflate.DefaultParameters.Option()}

// upgradeResponse sends a WebSocket upgrade request with extra headers over
// net/http and returns the response status, headers and body (empty for 101).
func upgradeResponse(t *testing.T, url string, hdr http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http"+strings.TrimPrefix(url, "ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	for k, v := range hdr {
		req.Header[k] = v
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body []byte
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ = io.ReadAll(resp.Body)
	}
	return resp.StatusCode, resp.Header, body
}

// deflateParamsOf parses a Sec-WebSocket-Extensions response header; ok is
// false if it does not accept permessage-deflate.
func deflateParamsOf(t *testing.T, v string) (p wsflate.Parameters, ok bool) {
	t.Helper()
	if v == "" {
		return p, false
	}
	opts, parsed := httphead.ParseOptions([]byte(v), nil)
	if !parsed || len(opts) != 1 || string(opts[0].Name) != wsflate.ExtensionName {
		t.Fatalf("Sec-WebSocket-Extensions: %q", v)
	}
	if err := p.Parse(opts[0]); err != nil {
		t.Fatalf("Sec-WebSocket-Extensions %q: %v", v, err)
	}
	return p, true
}

func TestCompress_Negotiation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		mode  CompressionMode
		offer string // Sec-WebSocket-Extensions of the request; "" = none
		want  bool   // permessage-deflate accepted
	}{
		{"noContextTakeoverOffer", CompressionAuto, "permessage-deflate; client_no_context_takeover; server_no_context_takeover", true},
		{"bareOffer", CompressionAuto, "permessage-deflate", true},
		{"browserOffer", CompressionAuto, "permessage-deflate; client_max_window_bits", true},
		{"serverNoContextTakeoverOnly", CompressionAuto, "permessage-deflate; server_no_context_takeover", true},
		{"secondOfferAccepted", CompressionAuto, "x-webkit-deflate-frame, permessage-deflate", true},
		{"clientWindowBits", CompressionAuto, "permessage-deflate; client_max_window_bits=10", true},
		// The hub cannot shrink its compression window: it declines.
		{"serverWindowBits", CompressionAuto, "permessage-deflate; server_max_window_bits=10", false},
		{"fallbackOffer", CompressionAuto, "permessage-deflate; server_max_window_bits=10, permessage-deflate", true},
		// RFC 7692 §5: an offer with an unknown parameter is declined, the
		// handshake still succeeds.
		{"unknownParameter", CompressionAuto, "permessage-deflate; foo=bar", false},
		{"badWindowBits", CompressionAuto, "permessage-deflate; client_max_window_bits=99", false},
		{"noOffer", CompressionAuto, "", false},
		{"otherExtensionOnly", CompressionAuto, "x-webkit-deflate-frame", false},
		{"disabled", CompressionDisabled, "permessage-deflate; client_no_context_takeover; server_no_context_takeover", false},
		{"disabledBare", CompressionDisabled, "permessage-deflate", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, url := conformHub(t, func(o *Options) { o.Compression.Mode = tc.mode })
			hdr := http.Header{"Authorization": {"Bearer " + testToken(t, "alice", time.Hour, "staff")}}
			if tc.offer != "" {
				hdr.Set("Sec-WebSocket-Extensions", tc.offer)
			}
			status, resp, _ := upgradeResponse(t, url, hdr)
			if status != http.StatusSwitchingProtocols {
				t.Fatalf("status = %d, want 101", status)
			}
			ext := resp.Get("Sec-WebSocket-Extensions")
			p, ok := deflateParamsOf(t, ext)
			if ok != tc.want {
				t.Fatalf("Sec-WebSocket-Extensions = %q, want deflate accepted: %v", ext, tc.want)
			}
			if ok && (!p.ServerNoContextTakeover || !p.ClientNoContextTakeover) {
				t.Errorf("Sec-WebSocket-Extensions = %q, want server_no_context_takeover and client_no_context_takeover", ext)
			}
		})
	}
}

// TestCompress_Libraries negotiates with real client libraries and checks
// events of both sizes and commands arrive intact.
func TestCompress_Libraries(t *testing.T) {
	t.Parallel()
	for name, mode := range map[string]websocket.CompressionMode{
		"noContextTakeover": websocket.CompressionNoContextTakeover,
		"contextTakeover":   websocket.CompressionContextTakeover,
		"disabled":          websocket.CompressionDisabled,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, url := conformHub(t, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{
				HTTPHeader:      http.Header{"Authorization": {"Bearer " + testToken(t, "alice", time.Hour, "staff")}},
				Subprotocols:    []string{Subprotocol},
				CompressionMode: mode,
			})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			t.Cleanup(func() { c.CloseNow() })
			c.SetReadLimit(1 << 20)
			ext := resp.Header.Get("Sec-WebSocket-Extensions")
			p, ok := deflateParamsOf(t, ext)
			if want := mode != websocket.CompressionDisabled; ok != want {
				t.Fatalf("Sec-WebSocket-Extensions = %q, want deflate: %v", ext, want)
			}
			if ok && (!p.ServerNoContextTakeover || !p.ClientNoContextTakeover) {
				t.Errorf("Sec-WebSocket-Extensions = %q, want both no_context_takeover", ext)
			}
			wc := &wsClient{t: t, c: c}
			wc.read() // welcome
			for _, n := range []int{10, 5000, 100000} {
				want, _ := json.Marshal(map[string]string{"s": strings.Repeat("x", n)})
				if err := h.Publish(t.Context(), "staff", "news:item", json.RawMessage(want)); err != nil {
					t.Fatal(err)
				}
				if ev := wc.readType("event"); string(ev.Data) != string(want) {
					t.Fatalf("event of %d bytes: got %d bytes of data", n, len(ev.Data))
				}
			}
			// A command big enough for the client to compress it.
			r := wc.cmd("emit", map[string]any{"event": "chat:message", "room": "staff", "data": map[string]string{"text": strings.Repeat("hi ", 2000)}})
			if !r.OK {
				t.Fatalf("emit: %+v", r.Error)
			}
		})
	}
}

// eventOfSize returns JSON data that makes the event envelope of news:item
// in room staff exactly n bytes long.
func eventOfSize(t *testing.T, n int) json.RawMessage {
	t.Helper()
	// The frame also carries its stream position: offsets below 10 here, and
	// the memory broker's 16-character epochs.
	base := len(appendPosition(nil, appendEvent(nil, "news:item", "staff", []byte(`""`)),
		StreamPosition{Offset: 1, Epoch: strings.Repeat("e", 16)}))
	if n < base {
		t.Fatalf("envelope cannot be %d bytes", n)
	}
	return json.RawMessage(`"` + strings.Repeat("a", n-base) + `"`)
}

func TestCompress_EventFrames(t *testing.T) {
	t.Parallel()
	h, url := conformHub(t, nil)
	tok := testToken(t, "alice", time.Hour, "staff")
	defl := dialRaw(t, url, rawOpts{token: tok, extensions: rawDeflateOffer})
	plain := dialRaw(t, url, rawOpts{token: tok})
	if !defl.deflate {
		t.Fatalf("deflate not negotiated: %v", defl.hs.Extensions)
	}
	if plain.deflate {
		t.Fatalf("deflate negotiated without an offer")
	}
	defl.next(nil) // welcome
	plain.next(nil)
	threshold := h.opts.Compression.Threshold
	tests := []struct {
		size       int
		compressed bool
	}{
		{100, false},
		{threshold - 1, false},
		{threshold, true},
		{4096, true},
		{200000, true},
	}
	for _, tc := range tests {
		data := eventOfSize(t, tc.size)
		if err := h.Publish(t.Context(), "staff", "news:item", data); err != nil {
			t.Fatal(err)
		}
		for _, rc := range []*rawConn{defl, plain} {
			m := rc.next(nil)
			if want := tc.compressed && rc.deflate; m.compressed != want {
				t.Errorf("event of %d bytes (deflate client: %v): RSV1 = %v, want %v", tc.size, rc.deflate, m.compressed, want)
			}
			if len(m.payload) != tc.size || m.msg.Type != "event" || string(m.msg.Data) != string(data) {
				t.Errorf("event of %d bytes decoded to %d bytes %q...", tc.size, len(m.payload), m.payload[:min(len(m.payload), 60)])
			}
		}
	}
}

// TestCompress_BadInput runs bad-input cases on connections that negotiated
// permessage-deflate (16 distinct bad inputs; the five "valid" cases are not bad).
func TestCompress_BadInput(t *testing.T) {
	t.Parallel()
	limit := 64 << 10
	ping := `{"id":1,"op":"ping"}`
	z := func(s string) string { return string(deflateStd([]byte(s))) }
	bomb := string(zipBomb(5 << 20 / 258)) // inflates to 5 MiB
	if len(bomb) > limit {
		t.Fatalf("bomb is %d bytes compressed, want it under MaxMessageSize", len(bomb))
	}
	random := make([]byte, 600)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.UintN(256))
	}
	exact := z(padded(1, limit))
	tests := []badCase{
		{name: "valid/compressedCommand", send: [][]byte{cframe(true, bitRsv1, opText, z(ping))}, replies: []string{"1:ok"}},
		{name: "valid/uncompressedCommand", send: [][]byte{text(ping)}, replies: []string{"1:ok"}},
		{name: "valid/compressedFragments", send: [][]byte{
			cframe(false, bitRsv1, opText, z(ping)[:3]),
			cframe(true, 0, opContinuation, z(ping)[3:]),
		}, replies: []string{"1:ok"}},
		{name: "valid/exactlyMaxAfterInflating", send: [][]byte{cframe(true, bitRsv1, opText, exact)}, replies: []string{"1:ok"}},
		{name: "valid/emptyCompressedMessage", send: [][]byte{cframe(true, bitRsv1, opText, z(""))}},
		// An empty payload is not a DEFLATE stream (RFC 7692 §7.2.3.6: an
		// empty message is sent as the single byte 0x00).
		{name: "emptyPayloadRSV1", send: [][]byte{cframe(true, bitRsv1, opText, "")}, close: CloseInvalidPayload},
		{name: "overMaxAfterInflating", send: [][]byte{cframe(true, bitRsv1, opText, z(padded(1, limit+1)))}, close: CloseMessageTooBig},
		{name: "zipBomb", send: [][]byte{cframe(true, bitRsv1, opText, bomb)}, close: CloseMessageTooBig},
		{name: "zipBombFragmented", send: [][]byte{
			cframe(false, bitRsv1, opText, bomb[:len(bomb)/2]),
			cframe(true, 0, opContinuation, bomb[len(bomb)/2:]),
		}, close: CloseMessageTooBig},
		{name: "garbageDeflate", send: [][]byte{cframe(true, bitRsv1, opText, "\xff\xff\xff\xff garbage")}, close: CloseInvalidPayload},
		{name: "randomDeflate", send: [][]byte{cframe(true, bitRsv1, opText, string(random))}, close: CloseInvalidPayload},
		{name: "truncatedDeflate", send: [][]byte{cframe(true, bitRsv1, opText, z(strings.Repeat(ping, 50))[:20])}, close: CloseInvalidPayload},
		{name: "compressedInvalidUTF8", send: [][]byte{cframe(true, bitRsv1, opText, z("{\"id\":1,\"op\":\"ping\",\"x\":\"\xff\"}"))}, close: CloseInvalidPayload},
		{name: "compressedBinary", send: [][]byte{cframe(true, bitRsv1, opBinary, z(ping))}, close: CloseUnsupportedData},
		{name: "rsv1OnContinuation", send: [][]byte{
			cframe(false, bitRsv1, opText, z(ping)[:3]),
			cframe(true, bitRsv1, opContinuation, z(ping)[3:]),
		}, close: CloseProtocolError},
		{name: "rsv1OnUncompressedContinuation", send: [][]byte{
			cframe(false, 0, opText, ping[:5]),
			cframe(true, bitRsv1, opContinuation, ping[5:]),
		}, close: CloseProtocolError},
		{name: "rsv1OnPing", send: [][]byte{cframe(true, bitRsv1, opPing, "")}, close: CloseProtocolError},
		{name: "rsv1OnClose", send: [][]byte{cframe(true, bitRsv1, opClose, closeBody(1000, ""))}, close: CloseProtocolError},
		{name: "rsv2Compressed", send: [][]byte{cframe(true, bitRsv1|bitRsv2, opText, z(ping))}, close: CloseProtocolError},
		{name: "compressedMalformedJSON", send: [][]byte{cframe(true, bitRsv1, opText, z(`{"id":1,"op":`))}, replies: []string{"1:bad_request"}},
		{name: "compressedOversizedWire", send: [][]byte{cframe(true, bitRsv1, opText, string(random)+strings.Repeat("x", limit))}, close: CloseMessageTooBig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runBadCase(t, tc, nil, rawOpts{extensions: rawDeflateOffer})
		})
	}
}

// TestCompress_DisabledRSV1 checks a client that sends compressed frames
// without having negotiated compression is refused.
func TestCompress_DisabledRSV1(t *testing.T) {
	t.Parallel()
	_, url := conformHub(t, func(o *Options) { o.Compression.Mode = CompressionDisabled })
	rc := dialRaw(t, url, rawOpts{token: testToken(t, "alice", time.Hour, "staff"), extensions: rawDeflateOffer})
	if rc.deflate {
		t.Fatal("deflate negotiated with CompressionDisabled")
	}
	rc.write(cframe(true, bitRsv1, opText, string(deflateStd([]byte(`{"id":1,"op":"ping"}`)))))
	if code, _ := rc.expectClose(); code != ws.StatusProtocolError {
		t.Fatalf("close code = %d, want 1002", code)
	}
}

func TestInflate(t *testing.T) {
	t.Parallel()
	const limit = 1000
	tests := []struct {
		name    string
		body    []byte
		want    string
		wantErr error
	}{
		{"empty", deflateStd(nil), "", nil},
		{"emptyBody", nil, "", ErrBadRequest}, // RFC 7692: an empty message is 0x00
		{"small", deflateStd([]byte("hello")), "hello", nil},
		{"atLimit", deflateStd(bytes.Repeat([]byte("a"), limit)), strings.Repeat("a", limit), nil},
		{"overLimit", deflateStd(bytes.Repeat([]byte("a"), limit+1)), "", ErrMessageTooBig},
		{"bomb", zipBomb(4000), "", ErrMessageTooBig},
		{"garbage", []byte{0xff, 0xff, 0xff}, "", ErrBadRequest},
		{"truncated", deflateStd(bytes.Repeat([]byte("abcdefgh"), 100))[:10], "", ErrBadRequest},
		{"finalBlock", func() []byte { // a sender may end with BFINAL set
			var buf bytes.Buffer
			fw, _ := stdflate.NewWriter(&buf, 1)
			_, _ = fw.Write([]byte("done"))
			_ = fw.Close()
			return buf.Bytes()
		}(), "done", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := inflate(tc.body, limit)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("inflate err = %v, want %v", err, tc.wantErr)
			}
			if string(got) != tc.want {
				t.Errorf("inflate = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestInflate_BombMemory checks inflate stops at the limit instead of
// allocating what the data inflates to (100 MiB here). It is not parallel so
// that the allocation counter sees only this test.
func TestInflate_BombMemory(t *testing.T) {
	bomb := zipBomb(100 << 20 / 258) // 100 MiB
	const limit = 64 << 10
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := inflate(bomb, limit)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMessageTooBig) {
		t.Fatalf("inflate err = %v, want ErrMessageTooBig", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 2<<20 {
		t.Errorf("inflate allocated %d bytes for a %d-byte limit, want under 2 MiB", got, limit)
	}
}

func TestCompressor_RoundTrip(t *testing.T) {
	t.Parallel()
	comp := newCompressor(1)
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 100, 1024, 70000} {
		p := make([]byte, n)
		for i := range p {
			p[i] = "abc{}\":, "[r.IntN(9)]
		}
		body, err := comp.compress(nil, p)
		if err != nil {
			t.Fatalf("compress %d bytes: %v", n, err)
		}
		if bytes.HasSuffix(body, deflateTail) && n > 0 {
			t.Errorf("compressed %d bytes ends with the 00 00 ff ff tail", n)
		}
		got, err := inflateStd(body)
		if err != nil || !bytes.Equal(got, p) {
			t.Errorf("round trip of %d bytes: %d bytes, %v", n, len(got), err)
		}
		got, err = inflate(body, int64(n))
		if err != nil || !bytes.Equal(got, p) {
			t.Errorf("inflate of %d bytes: %d bytes, %v", n, len(got), err)
		}
	}
}

// FuzzInflate: inflate never panics and never returns more than the limit.
func FuzzInflate(f *testing.F) {
	f.Add([]byte{})
	f.Add(deflateStd([]byte(`{"id":1,"op":"ping"}`)))
	f.Add(zipBomb(100))
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		const limit = 4096
		out, err := inflate(body, limit)
		if err != nil {
			if !errors.Is(err, ErrMessageTooBig) && !errors.Is(err, ErrBadRequest) {
				t.Fatalf("inflate err = %v, want ErrMessageTooBig or ErrBadRequest", err)
			}
			return
		}
		if len(out) > limit {
			t.Fatalf("inflate returned %d bytes, limit %d", len(out), limit)
		}
	})
}
