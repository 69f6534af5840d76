package rthub

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestMsgReader checks the reader's contract with its two users, the hub's
// connections (binary refused) and the conformance echo server (binary
// echoed): the opcode returned, one frame callback per frame, control frames
// handed over in order, and a control callback's error ending the read. The
// protocol checks themselves run over real sockets in TestConn_BadInput,
// TestCompress_BadInput and TestConformanceEcho.
func TestMsgReader(t *testing.T) {
	t.Parallel()
	errStop := errors.New("stop")
	tests := []struct {
		name    string
		binary  bool
		yield   bool   // msgReader.yield (the epoll read path)
		stopOn  string // the control callback fails on a ping with this payload
		send    [][]byte
		wantOp  byte
		wantMsg string
		wantErr error // matched with errors.Is; a *protocolError by its code
		code    CloseCode
		frames  int
		control string // the control frames seen, "op:payload" joined by spaces
	}{
		{name: "text", send: [][]byte{text("hi")}, wantOp: opText, wantMsg: "hi", frames: 1},
		{name: "binaryRefused", send: [][]byte{cframe(true, 0, opBinary, "\xff")}, code: CloseUnsupportedData, frames: 1},
		{name: "binaryAccepted", binary: true, send: [][]byte{cframe(true, 0, opBinary, "\xff")}, wantOp: opBinary, wantMsg: "\xff", frames: 1},
		{name: "binaryFragmentsNotUTF8", binary: true, send: [][]byte{
			cframe(false, 0, opBinary, "\xe2"),
			cframe(true, 0, opPing, "p"),
			cframe(true, 0, opContinuation, "\x28"),
		}, wantOp: opBinary, wantMsg: "\xe2\x28", frames: 3, control: "9:p"},
		{name: "textFragmentsNotUTF8", binary: true, send: [][]byte{
			cframe(false, 0, opText, "\xe2"),
			cframe(true, 0, opContinuation, "\x28"),
		}, code: CloseInvalidPayload, frames: 2},
		{name: "controlInOrder", send: [][]byte{
			cframe(true, 0, opPong, "a"),
			cframe(false, 0, opText, "x"),
			cframe(true, 0, opPing, "b"),
			cframe(true, 0, opContinuation, "y"),
		}, wantOp: opText, wantMsg: "xy", frames: 4, control: "10:a 9:b"},
		{name: "controlErrorEndsRead", stopOn: "flood", send: [][]byte{
			cframe(true, 0, opPing, "ok"),
			cframe(true, 0, opPing, "flood"),
			text("never read"),
		}, wantErr: errStop, frames: 2, control: "9:ok 9:flood"},
		{name: "closeEndsRead", send: [][]byte{cframe(true, 0, opClose, closeBody(4001, "x")), text("never read")}, wantErr: peerClosed{code: 4001}, frames: 1},
		{name: "yieldAfterControl", yield: true, send: [][]byte{
			cframe(true, 0, opPong, "a"),
			text("next"),
		}, wantOp: 0, wantMsg: "", frames: 1, control: "10:a"},
		{name: "yieldNotInsideMessage", yield: true, send: [][]byte{
			cframe(false, 0, opText, "x"),
			cframe(true, 0, opPing, "b"),
			cframe(true, 0, opContinuation, "y"),
		}, wantOp: opText, wantMsg: "xy", frames: 3, control: "9:b"},
		{name: "yieldDataFirst", yield: true, send: [][]byte{text("hi"), cframe(true, 0, opPing, "b")}, wantOp: opText, wantMsg: "hi", frames: 1},
		{name: "overLimit", send: [][]byte{text(strings.Repeat("x", 11))}, wantErr: ErrMessageTooBig, frames: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var frames int
			var control []string
			mr := msgReader{
				limit:  10,
				binary: tc.binary,
				yield:  tc.yield,
				frame:  func() { frames++ },
				control: func(op byte, payload []byte) error {
					control = append(control, fmt.Sprintf("%d:%s", op, payload))
					if tc.stopOn != "" && string(payload) == tc.stopOn {
						return errStop
					}
					return nil
				},
			}
			var hdr [14]byte
			op, msg, err := mr.read(bytes.NewReader(bytes.Join(tc.send, nil)), hdr[:])
			switch {
			case tc.code != 0:
				var pe *protocolError
				if !errors.As(err, &pe) || pe.code != tc.code {
					t.Fatalf("err = %v, want a protocol error with code %d", err, tc.code)
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("err = %v", err)
			case op != tc.wantOp || string(msg) != tc.wantMsg:
				t.Fatalf("read = %d %q, want %d %q", op, msg, tc.wantOp, tc.wantMsg)
			}
			if frames != tc.frames {
				t.Errorf("frame callback ran %d times, want %d", frames, tc.frames)
			}
			if got := strings.Join(control, " "); got != tc.control {
				t.Errorf("control frames = [%s], want [%s]", got, tc.control)
			}
		})
	}
}
