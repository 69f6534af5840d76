package rthub

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation byte = 0x0
	opText         byte = 0x1
	opBinary       byte = 0x2
	opClose        byte = 0x8
	opPing         byte = 0x9
	opPong         byte = 0xA
)

const (
	bitFin  byte = 0x80
	bitRsv1 byte = 0x40
	bitRsv2 byte = 0x20
	bitRsv3 byte = 0x10
	bitMask byte = 0x80
)

// frameHeaderLen returns the size of an unmasked server frame header for a
// payload of n bytes.
func frameHeaderLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// appendFrame appends one complete unmasked server frame (FIN set).
func appendFrame(dst []byte, op byte, rsv1 bool, payload []byte) []byte {
	b0 := bitFin | op
	if rsv1 {
		b0 |= bitRsv1
	}
	n := len(payload)
	switch {
	case n <= 125:
		dst = append(dst, b0, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// textFrame returns payload as one complete text frame in a new slice.
func textFrame(payload []byte) []byte {
	return appendFrame(make([]byte, 0, frameHeaderLen(len(payload))+len(payload)), opText, false, payload)
}

// closeFrame returns a complete close frame with code and reason (reason is cut
// to fit the 125-byte control frame limit on a rune boundary).
func closeFrame(code CloseCode, reason string) []byte {
	if len(reason) > 123 {
		reason = truncateBytes(reason, 123)
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	p = append(p, reason...)
	return appendFrame(make([]byte, 0, 2+len(p)), opClose, false, p)
}

func truncateBytes(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// pingFrame is the hub's keepalive ping, shared by every connection.
var pingFrame = appendFrame(nil, opPing, false, nil)

// frameHeader is a parsed client frame header.
type frameHeader struct {
	fin    bool
	rsv    byte // the three RSV bits, in place
	op     byte
	masked bool
	length int64
	mask   [4]byte
}

// protocolError is a framing violation; it closes the connection with code.
type protocolError struct {
	code CloseCode
	msg  string
}

func (e *protocolError) Error() string { return "rthub: " + e.msg }

// errControlFlood ends the read loop of a client that keeps sending control
// frames past Limits.ControlFrames; it is closed with 1008.
var errControlFlood = errors.New("rthub: control frame flood")

func errProtocol(format string, args ...any) error {
	return &protocolError{code: CloseProtocolError, msg: fmt.Sprintf(format, args...)}
}

// readFrameHeader reads and validates one client frame header from r into buf
// (at least 14 bytes, reused by the caller so reading allocates nothing).
func readFrameHeader(r io.Reader, buf []byte) (frameHeader, error) {
	var h frameHeader
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return h, err
	}
	h.fin = buf[0]&bitFin != 0
	h.rsv = buf[0] & (bitRsv1 | bitRsv2 | bitRsv3)
	h.op = buf[0] & 0x0F
	h.masked = buf[1]&bitMask != 0
	n := int(buf[1] & 0x7F)
	extra := 0
	switch n {
	case 126:
		extra = 2
	case 127:
		extra = 8
	}
	if h.masked {
		extra += 4
	}
	if extra > 0 {
		if _, err := io.ReadFull(r, buf[2:2+extra]); err != nil {
			return h, err
		}
	}
	p := buf[2:]
	switch n {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(p))
		p = p[2:]
	case 127:
		u := binary.BigEndian.Uint64(p)
		if u > 1<<62 {
			return h, errProtocol("frame length out of range")
		}
		h.length = int64(u)
		p = p[8:]
	default:
		h.length = int64(n)
	}
	if h.masked {
		copy(h.mask[:], p[:4])
	}
	switch h.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin {
			return h, errProtocol("fragmented control frame")
		}
		if h.length > 125 {
			return h, errProtocol("control frame payload over 125 bytes")
		}
	default:
		return h, errProtocol("reserved opcode %d", h.op)
	}
	if !h.masked {
		return h, errProtocol("unmasked client frame")
	}
	return h, nil
}

// unmask applies the client's masking key to p in place.
func unmask(p []byte, mask [4]byte) {
	ws.Cipher(p, mask, 0)
}
