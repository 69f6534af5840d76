package rthub

import (
	"io"
	"unicode/utf8"
)

// msgReader reads complete data messages from a client and enforces the
// protocol on the way: masking, RSV bits, opcodes, fragmentation (control
// frames may come between the fragments of a message), the size limit (after
// reassembly and again after inflating), close-frame validity and the UTF-8
// of text messages.
//
// The hub's connections read through it (conn.readMessage), and so does the
// conformance echo server in conformance_test.go, so what an external suite
// checks against the echo server is the code the hub runs. The two differ only
// in what the fields below say: the hub refuses binary messages, and handles
// pings and pongs with its own rate limit and pong slot.
//
// A msgReader is configuration only; read takes the stream, so the reader
// escapes to the heap and the callbacks do not (reading a message allocates
// no closure).
type msgReader struct {
	// limit is the largest message in bytes, after reassembly and after
	// inflating (Options.MaxMessageSize for the hub).
	limit int64
	// deflate says permessage-deflate was negotiated: RSV1 may then mark the
	// first frame of a data message as compressed.
	deflate bool
	// binary accepts binary messages. Without it a binary message is refused
	// with 1003 (the hub speaks JSON text frames only).
	binary bool
	// frame, if set, runs after each frame header is read.
	frame func()
	// control, if set, handles a ping or a pong. payload is unmasked, at most
	// 125 bytes, and only valid during the call. An error ends the read with
	// that error.
	control func(op byte, payload []byte) error
	// yield makes read return opcode 0 and no error after a control frame
	// that came between messages (not inside a fragmented one), so that the
	// caller need not wait for the next message (the epoll read path).
	yield bool
}

// read reads frames from r until one complete data message and returns its opcode
// (opText or opBinary) and payload, inflated if it was compressed. Pings and
// pongs met on the way go to m.control. A close frame ends the read with
// peerClosed, a protocol violation with *protocolError, a message over the
// limit with ErrMessageTooBig, bad deflate data with ErrBadRequest; other
// errors are r's. hdr is frame header scratch of at least 14 bytes, reused
// across frames.
func (m *msgReader) read(r io.Reader, hdr []byte) (byte, []byte, error) {
	var (
		msg        []byte
		op         byte // the message's opcode once its first frame is read
		compressed bool
	)
	for {
		h, err := readFrameHeader(r, hdr)
		if err != nil {
			return 0, nil, err
		}
		if m.frame != nil {
			m.frame()
		}
		if h.rsv&^bitRsv1 != 0 || (h.rsv&bitRsv1 != 0 && (!m.deflate || h.op != opText && h.op != opBinary)) {
			return 0, nil, errProtocol("unexpected RSV bits")
		}
		if h.op >= opClose {
			payload := make([]byte, h.length)
			if _, err := io.ReadFull(r, payload); err != nil {
				return 0, nil, err
			}
			unmask(payload, h.mask)
			if h.op == opClose {
				code, err := parseClosePayload(payload)
				if err != nil {
					return 0, nil, err
				}
				return 0, nil, peerClosed{code: code}
			}
			if m.control != nil {
				if err := m.control(h.op, payload); err != nil {
					return 0, nil, err
				}
			}
			if m.yield && op == 0 {
				return 0, nil, nil
			}
			continue
		}
		inMessage := op != 0
		switch {
		case h.op == opContinuation && !inMessage:
			return 0, nil, errProtocol("continuation frame without a message")
		case h.op != opContinuation && inMessage:
			return 0, nil, errProtocol("new message inside a fragmented message")
		case h.op == opBinary && !m.binary:
			return 0, nil, &protocolError{code: CloseUnsupportedData, msg: "binary messages are not supported"}
		}
		if h.op != opContinuation {
			op = h.op
			compressed = h.rsv&bitRsv1 != 0
		}
		if int64(len(msg))+h.length > m.limit {
			return 0, nil, ErrMessageTooBig
		}
		start := len(msg)
		msg = append(msg, make([]byte, h.length)...)
		if _, err := io.ReadFull(r, msg[start:]); err != nil {
			return 0, nil, err
		}
		unmask(msg[start:], h.mask)
		if !h.fin {
			continue
		}
		if compressed {
			if msg, err = inflate(msg, m.limit); err != nil {
				return 0, nil, err
			}
		}
		if op == opText && !utf8.Valid(msg) {
			return 0, nil, &protocolError{code: CloseInvalidPayload, msg: "text message is not valid UTF-8"}
		}
		return op, msg, nil
	}
}
