package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// This file holds the two packet formats: Engine.IO v4 packets (one per
// WebSocket message, or several in a polling payload separated by 0x1e) and
// the Socket.IO v5 packets carried in Engine.IO "message" packets.

// Engine.IO packet types (the first character of a packet).
const (
	eioOpen    = '0'
	eioClose   = '1'
	eioPing    = '2'
	eioPong    = '3'
	eioMessage = '4'
	eioUpgrade = '5'
	eioNoop    = '6'
)

// recordSep separates the packets of a polling payload.
const recordSep = 0x1e

// errBadPacket is returned for a packet that is not valid Engine.IO or
// Socket.IO.
var errBadPacket = errors.New("socketio: malformed packet")

// splitPayload splits a polling payload into its packets. It never returns
// an empty packet: an empty payload or an empty record is malformed.
func splitPayload(b []byte) ([][]byte, error) {
	if len(b) == 0 {
		return nil, errBadPacket
	}
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, recordSep)
		var p []byte
		if i < 0 {
			p, b = b, nil
		} else {
			p, b = b[:i], b[i+1:]
			if len(b) == 0 {
				return nil, errBadPacket // a trailing separator
			}
		}
		if len(p) == 0 {
			return nil, errBadPacket
		}
		out = append(out, p)
	}
	return out, nil
}

// Socket.IO packet types (the first character of an Engine.IO message).
const (
	sioConnect      = 0
	sioDisconnect   = 1
	sioEvent        = 2
	sioAck          = 3
	sioConnectError = 4
	sioBinaryEvent  = 5
	sioBinaryAck    = 6
)

// maxAckID bounds a client's acknowledgement id (socket.io-client counts
// from 0 and never comes near it).
const maxAckID = 1<<53 - 1

// sioPacket is a decoded Socket.IO packet.
type sioPacket struct {
	typ         int
	attachments int             // binary packets only
	nsp         string          // "/" when absent
	id          int64           // acknowledgement id; -1 when absent
	data        json.RawMessage // the JSON payload, nil when absent
}

// parseSIO decodes a Socket.IO packet (the body of an Engine.IO message).
// The JSON payload is checked to be valid JSON; for EVENT and ACK it must
// be an array (an EVENT's with a string first element), for CONNECT an
// object.
func parseSIO(b []byte) (sioPacket, error) {
	p := sioPacket{nsp: "/", id: -1}
	if len(b) == 0 || b[0] < '0' || b[0] > '6' {
		return p, errBadPacket
	}
	p.typ = int(b[0] - '0')
	b = b[1:]
	if p.typ == sioBinaryEvent || p.typ == sioBinaryAck {
		i := bytes.IndexByte(b, '-')
		if i <= 0 || i > 6 {
			return p, errBadPacket
		}
		n, err := strconv.Atoi(string(b[:i]))
		if err != nil || n < 0 {
			return p, errBadPacket
		}
		p.attachments = n
		b = b[i+1:]
	}
	if len(b) > 0 && b[0] == '/' {
		i := bytes.IndexByte(b, ',')
		if i < 0 {
			p.nsp, b = string(b), nil
		} else {
			p.nsp, b = string(b[:i]), b[i+1:]
		}
		if len(p.nsp) > 256 {
			return p, errBadPacket
		}
	}
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i > 0 {
		if i > 16 {
			return p, errBadPacket
		}
		id, err := strconv.ParseInt(string(b[:i]), 10, 64)
		if err != nil || id > maxAckID {
			return p, errBadPacket
		}
		p.id = id
		b = b[i:]
	}
	if len(b) > 0 {
		if !json.Valid(b) {
			return p, errBadPacket
		}
		p.data = json.RawMessage(b)
	}
	switch p.typ {
	case sioConnect:
		if p.data != nil && !isJSON(p.data, '{') {
			return p, errBadPacket
		}
	case sioEvent, sioBinaryEvent:
		if !isJSON(p.data, '[') {
			return p, errBadPacket
		}
	case sioAck, sioBinaryAck:
		if !isJSON(p.data, '[') || p.id < 0 {
			return p, errBadPacket
		}
	case sioDisconnect:
		if p.data != nil {
			return p, errBadPacket
		}
	case sioConnectError:
		return p, errBadPacket // the server's packet, never a client's
	}
	return p, nil
}

// isJSON reports whether v is a JSON value starting with open ('{' or '[').
func isJSON(v json.RawMessage, open byte) bool {
	v = bytes.TrimLeft(v, " \t\r\n")
	return len(v) > 0 && v[0] == open
}

// eventArgs splits an EVENT's payload into its name and arguments.
func eventArgs(data json.RawMessage) (name string, args []json.RawMessage, err error) {
	if err := json.Unmarshal(data, &args); err != nil || len(args) == 0 {
		return "", nil, errBadPacket
	}
	if err := json.Unmarshal(args[0], &name); err != nil {
		return "", nil, errBadPacket
	}
	return name, args[1:], nil
}

// appendEvent appends the Engine.IO message of a Socket.IO EVENT for
// namespace "/": 42["name",arg,...]. Each arg must be valid JSON.
func appendEvent(dst []byte, name string, args ...[]byte) []byte {
	dst = append(dst, '4', '2', '[')
	dst = strconv.AppendQuote(dst, name) // hub event names are ASCII letters, digits and "_-.@/:": Go and JSON quote them alike
	for _, a := range args {
		dst = append(dst, ',')
		dst = append(dst, a...)
	}
	return append(dst, ']')
}

// appendAck appends the Engine.IO message of a Socket.IO ACK for
// namespace "/": 43<id>[arg].
func appendAck(dst []byte, id int64, arg []byte) []byte {
	dst = append(dst, '4', '3')
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, '[')
	dst = append(dst, arg...)
	return append(dst, ']')
}

// connectErrorPacket is the Engine.IO message of a Socket.IO CONNECT_ERROR
// for namespace nsp: 44{"message":…,"data":{…}}.
func connectErrorPacket(nsp string, message string, data any) []byte {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
		Data    any    `json:"data,omitempty"`
	}{message, data})
	out := []byte("44")
	if nsp != "/" {
		out = append(out, nsp...)
		out = append(out, ',')
	}
	return append(out, b...)
}

// appendEventBytes is appendEvent for a hub event: name is a hub event
// name (no escapes), data valid JSON, and offset, when not empty, a
// recovery offset (tag.seq: base64url and digits, no escapes).
func appendEventBytes(dst, name, data []byte, offset string) []byte {
	dst = append(dst, '4', '2', '[', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ',')
	dst = append(dst, data...)
	if offset != "" {
		dst = append(dst, ',', '"')
		dst = append(dst, offset...)
		dst = append(dst, '"')
	}
	return append(dst, ']')
}
