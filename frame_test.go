package rthub

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// header returns a masked frame header (mask 1 2 3 4) with first byte b0 and
// length n, encoded with the given number of length bytes (0, 2 or 8).
func header(b0 byte, n uint64, lenBytes int) []byte {
	b := []byte{b0, 0}
	switch lenBytes {
	case 0:
		b[1] = bitMask | byte(n)
	case 2:
		b[1] = bitMask | 126
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	case 8:
		b[1] = bitMask | 127
		b = binary.BigEndian.AppendUint64(b, n)
	}
	return append(b, 1, 2, 3, 4)
}

func TestReadFrameHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      []byte
		want    frameHeader // checked when wantErr is nil
		wantErr error       // io errors, or a *protocolError's code via closeCode
		code    CloseCode
	}{
		{name: "text", in: header(bitFin|opText, 5, 0), want: frameHeader{fin: true, op: opText, masked: true, length: 5, mask: [4]byte{1, 2, 3, 4}}},
		{name: "len125", in: header(opText, 125, 0), want: frameHeader{op: opText, masked: true, length: 125, mask: [4]byte{1, 2, 3, 4}}},
		{name: "len16", in: header(bitFin|opContinuation, 126, 2), want: frameHeader{fin: true, op: opContinuation, masked: true, length: 126, mask: [4]byte{1, 2, 3, 4}}},
		{name: "len16Max", in: header(bitFin|opBinary, 0xFFFF, 2), want: frameHeader{fin: true, op: opBinary, masked: true, length: 0xFFFF, mask: [4]byte{1, 2, 3, 4}}},
		{name: "len64", in: header(bitFin|opText, 0x10000, 8), want: frameHeader{fin: true, op: opText, masked: true, length: 0x10000, mask: [4]byte{1, 2, 3, 4}}},
		{name: "len64Max", in: header(bitFin|opText, 1<<62, 8), want: frameHeader{fin: true, op: opText, masked: true, length: 1 << 62, mask: [4]byte{1, 2, 3, 4}}},
		{name: "rsvKept", in: header(bitFin|bitRsv1|bitRsv3|opText, 0, 0), want: frameHeader{fin: true, rsv: bitRsv1 | bitRsv3, op: opText, masked: true, mask: [4]byte{1, 2, 3, 4}}},
		{name: "ping125", in: header(bitFin|opPing, 125, 0), want: frameHeader{fin: true, op: opPing, masked: true, length: 125, mask: [4]byte{1, 2, 3, 4}}},
		{name: "closeLen16Small", in: header(bitFin|opClose, 2, 2), want: frameHeader{fin: true, op: opClose, masked: true, length: 2, mask: [4]byte{1, 2, 3, 4}}},
		{name: "len64TopBit", in: header(bitFin|opText, 1<<63, 8), code: CloseProtocolError},
		{name: "len64OverMax", in: header(bitFin|opText, 1<<62+1, 8), code: CloseProtocolError},
		{name: "ping126", in: header(bitFin|opPing, 126, 2), code: CloseProtocolError},
		{name: "pongLen64", in: header(bitFin|opPong, 1<<40, 8), code: CloseProtocolError},
		{name: "fragmentedClose", in: header(opClose, 2, 0), code: CloseProtocolError},
		{name: "opcode3", in: header(bitFin|0x3, 0, 0), code: CloseProtocolError},
		{name: "opcode7", in: header(bitFin|0x7, 0, 0), code: CloseProtocolError},
		{name: "opcodeB", in: header(bitFin|0xB, 0, 0), code: CloseProtocolError},
		{name: "opcodeF", in: header(bitFin|0xF, 0, 0), code: CloseProtocolError},
		{name: "unmasked", in: []byte{bitFin | opText, 5}, code: CloseProtocolError},
		{name: "unmaskedLen64", in: []byte{bitFin | opText, 127, 0, 0, 0, 0, 0, 1, 0, 0}, code: CloseProtocolError},
		{name: "empty", in: nil, wantErr: io.EOF},
		{name: "oneByte", in: []byte{bitFin | opText}, wantErr: io.ErrUnexpectedEOF},
		{name: "shortMask", in: []byte{bitFin | opText, bitMask | 5, 1, 2}, wantErr: io.ErrUnexpectedEOF},
		{name: "shortLen64", in: []byte{bitFin | opText, bitMask | 127, 0, 0, 0}, wantErr: io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf [14]byte
			got, err := readFrameHeader(bytes.NewReader(tc.in), buf[:])
			var pe *protocolError
			switch {
			case tc.code != 0:
				if !errors.As(err, &pe) || pe.code != tc.code {
					t.Fatalf("err = %v, want a protocol error with code %d", err, tc.code)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			case got != tc.want:
				t.Fatalf("header = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzReadFrameHeader: readFrameHeader never panics and accepts only what
// RFC 6455 allows a client: masked frames, defined opcodes, lengths up to
// 2^62, control frames unfragmented and at most 125 bytes. What it accepts,
// gobwas' ws.ReadHeader parses the same way.
func FuzzReadFrameHeader(f *testing.F) {
	f.Add(header(bitFin|opText, 5, 0))
	f.Add(header(opText, 300, 2))
	f.Add(header(bitFin|opContinuation, 1<<20, 8))
	f.Add(header(bitFin|opText, 1<<63, 8))
	f.Add(header(bitFin|opText, 1<<62, 8))
	f.Add(header(bitFin|opPing, 126, 2))
	f.Add(header(opPing, 0, 0))
	f.Add(header(bitFin|bitRsv2|0xB, 0, 0))
	f.Add([]byte{bitFin | opText, 5, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{bitFin | opClose, bitMask | 127, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		var buf [14]byte
		r := bytes.NewReader(b)
		h, err := readFrameHeader(r, buf[:])
		if err != nil {
			return
		}
		if h.length < 0 || h.length > 1<<62 {
			t.Fatalf("length %d", h.length)
		}
		if !h.masked {
			t.Fatalf("accepted an unmasked frame")
		}
		switch h.op {
		case opContinuation, opText, opBinary:
		case opClose, opPing, opPong:
			if !h.fin || h.length > 125 {
				t.Fatalf("accepted control frame fin=%v length=%d", h.fin, h.length)
			}
		default:
			t.Fatalf("accepted opcode %d", h.op)
		}
		if h.rsv&^(bitRsv1|bitRsv2|bitRsv3) != 0 {
			t.Fatalf("rsv %#x outside the RSV bits", h.rsv)
		}
		used := len(b) - r.Len()
		g, err := ws.ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("ws.ReadHeader refuses what readFrameHeader accepts: %v", err)
		}
		if g.Fin != h.fin || byte(g.OpCode) != h.op || g.Rsv != h.rsv>>4 || !g.Masked || g.Length != h.length || g.Mask != h.mask {
			t.Fatalf("readFrameHeader = %+v, ws.ReadHeader = %+v", h, g)
		}
		want := 2 + 4 + map[byte]int{126: 2, 127: 8}[b[1]&0x7F]
		if used != want {
			t.Fatalf("read %d header bytes, want %d", used, want)
		}
	})
}

func TestAppendFrame(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 125, 126, 127, 0xFFFF, 0x10000, 70000} {
		for _, op := range []byte{opText, opBinary, opClose, opPing, opPong} {
			if op >= opClose && n > 125 {
				continue
			}
			for _, rsv1 := range []bool{false, true} {
				payload := bytes.Repeat([]byte{'x'}, n)
				b := appendFrame([]byte("prefix"), op, rsv1, payload)
				if !bytes.HasPrefix(b, []byte("prefix")) {
					t.Fatalf("prefix lost")
				}
				b = b[len("prefix"):]
				r := bytes.NewReader(b)
				h, err := ws.ReadHeader(r)
				if err != nil {
					t.Fatalf("n=%d op=%d: ws.ReadHeader: %v", n, op, err)
				}
				hl := len(b) - r.Len()
				if hl != frameHeaderLen(n) {
					t.Errorf("n=%d: header is %d bytes, frameHeaderLen says %d", n, hl, frameHeaderLen(n))
				}
				wantHL := 2
				if n > 125 {
					wantHL = 4
				}
				if n > 0xFFFF {
					wantHL = 10
				}
				if hl != wantHL {
					t.Errorf("n=%d: header is %d bytes, want %d (shortest encoding)", n, hl, wantHL)
				}
				if !h.Fin || h.OpCode != ws.OpCode(op) || h.Rsv1() != rsv1 || h.Rsv2() || h.Rsv3() || h.Masked || h.Length != int64(n) {
					t.Errorf("n=%d op=%d rsv1=%v: header %+v", n, op, rsv1, h)
				}
				if !bytes.Equal(b[hl:], payload) {
					t.Errorf("n=%d: payload differs", n)
				}
			}
		}
	}
	if got := textFrame([]byte("hi")); !bytes.Equal(got, []byte{bitFin | opText, 2, 'h', 'i'}) {
		t.Errorf("textFrame(hi) = %v", got)
	}
	if !bytes.Equal(pingFrame, []byte{bitFin | opPing, 0}) {
		t.Errorf("pingFrame = %v", pingFrame)
	}
}

func TestCloseFrame(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code   CloseCode
		reason string
		want   string
	}{
		{CloseNormal, "", ""},
		{CloseDisconnected, "bye", "bye"},
		{CloseGoingAway, strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{CloseGoingAway, strings.Repeat("a", 200), strings.Repeat("a", 123)},
		// 'a' then 3-byte runes: byte 123 falls inside a rune, which is dropped.
		{ClosePolicyViolation, "a" + strings.Repeat("€", 60), "a" + strings.Repeat("€", 40)},
		{ClosePolicyViolation, "ab" + strings.Repeat("€", 60), "ab" + strings.Repeat("€", 40)},
		{ClosePolicyViolation, strings.Repeat("€", 60), strings.Repeat("€", 41)},
	}
	for _, tc := range tests {
		b := closeFrame(tc.code, tc.reason)
		r := bytes.NewReader(b)
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := io.ReadAll(r)
		if h.OpCode != ws.OpClose || !h.Fin || h.Length > 125 || int(h.Length) != len(p) {
			t.Errorf("closeFrame(%d, %d bytes): header %+v", tc.code, len(tc.reason), h)
		}
		code, reason := ws.ParseCloseFrameData(p)
		if code != ws.StatusCode(tc.code) || reason != tc.want || !utf8.ValidString(reason) {
			t.Errorf("closeFrame(%d, %q...) = %d %q, want %d %q", tc.code, tc.reason[:min(10, len(tc.reason))], code, reason, tc.code, tc.want)
		}
	}
}

func TestParseClosePayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want CloseCode
		err  CloseCode // close code of the protocol error; 0 = none
	}{
		{"empty", "", 1005, 0},
		{"normal", closeBody(1000, ""), 1000, 0},
		{"withReason", closeBody(1001, "going"), 1001, 0},
		{"appCode", closeBody(4999, "x"), 4999, 0},
		{"registered3000", closeBody(3000, ""), 3000, 0},
		{"code1014", closeBody(1014, ""), 1014, 0},
		{"oneByte", "\x03", 0, CloseProtocolError},
		{"code0", closeBody(0, ""), 0, CloseProtocolError},
		{"code999", closeBody(999, ""), 0, CloseProtocolError},
		{"code1004", closeBody(1004, ""), 0, CloseProtocolError},
		{"code1005", closeBody(1005, ""), 0, CloseProtocolError},
		{"code1006", closeBody(1006, ""), 0, CloseProtocolError},
		{"code1015", closeBody(1015, ""), 0, CloseProtocolError},
		{"code1016", closeBody(1016, ""), 0, CloseProtocolError},
		{"code2999", closeBody(2999, ""), 0, CloseProtocolError},
		{"code5000", closeBody(5000, ""), 0, CloseProtocolError},
		{"code65535", closeBody(65535, ""), 0, CloseProtocolError},
		{"invalidUTF8Reason", closeBody(1000, "\xff"), 0, CloseInvalidPayload},
		{"truncatedRuneReason", closeBody(1000, "\xe2\x82"), 0, CloseInvalidPayload},
	}
	for _, tc := range tests {
		got, err := parseClosePayload([]byte(tc.in))
		var pe *protocolError
		switch {
		case tc.err != 0:
			if !errors.As(err, &pe) || pe.code != tc.err {
				t.Errorf("%s: err = %v, want protocol error %d", tc.name, err, tc.err)
			}
		case err != nil || got != tc.want:
			t.Errorf("%s: parseClosePayload = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}

func TestValidCloseCode(t *testing.T) {
	t.Parallel()
	for code := range 70000 {
		c := uint16(code)
		if code > 0xFFFF {
			break
		}
		want := (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
		if got := validCloseCode(c); got != want {
			t.Errorf("validCloseCode(%d) = %v, want %v", c, got, want)
		}
	}
}
