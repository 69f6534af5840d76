package rthub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ProtocolVersion is the wire protocol version this package speaks
// (docs/protocol.md), negotiated as the WebSocket subprotocol [Subprotocol].
const ProtocolVersion = 1

// Subprotocol is the WebSocket subprotocol name of protocol version 1.
const Subprotocol = "rthub.v1"

// tokenProtocolPrefix marks a Sec-WebSocket-Protocol entry that carries a token,
// the way browsers (which cannot set headers on a WebSocket) send one.
const tokenProtocolPrefix = "rthub.bearer."

// Client → server operations.
const (
	cmdJoin     = "join"
	cmdLeave    = "leave"
	cmdEmit     = "emit"
	cmdRefresh  = "refresh"
	cmdPing     = "ping"
	cmdPresence = "presence"
	cmdViewing  = "viewing"
	cmdCall     = "call"
	cmdCancel   = "cancel"
)

// command is one decoded client → server message.
type command struct {
	ID     uint64          `json:"id"`
	Op     string          `json:"op"`
	Room   string          `json:"room"`
	Event  string          `json:"event"`
	Token  string          `json:"token"`
	Target string          `json:"target"`
	Since  *StreamPosition `json:"since"`
	State  bool            `json:"state"`
	Data   json.RawMessage `json:"data"`
	// RPC, Timeout (milliseconds) and Call are the call and cancel
	// commands' (docs/protocol.md §2.5); Idem is the idempotency key of an
	// emit or a call.
	RPC     string `json:"rpc"`
	Timeout int64  `json:"timeout"`
	Call    uint64 `json:"call"`
	Idem    string `json:"idem"`
}

// decodeCommand parses one client message. The error wraps [ErrBadRequest] (not
// a JSON object, wrong field types) or [ErrUnknownOp]. Input is untrusted: it
// never panics, and allocations are bounded by the message size, which the reader
// already bounded.
func decodeCommand(b []byte) (command, error) {
	var cmd command
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	if i == len(b) || b[i] != '{' {
		return cmd, fmt.Errorf("%w: message is not a JSON object", ErrBadRequest)
	}
	if err := json.Unmarshal(b, &cmd); err != nil {
		id := cmd.ID
		if id == 0 {
			id = commandID(b)
		}
		return command{ID: id}, fmt.Errorf("%w: invalid JSON command", ErrBadRequest)
	}
	switch cmd.Op {
	case cmdJoin, cmdLeave, cmdPresence:
		if cmd.Room == "" {
			return cmd, fmt.Errorf("%w: %s needs a room", ErrBadRequest, cmd.Op)
		}
	case cmdEmit:
		if cmd.Room == "" || cmd.Event == "" {
			return cmd, fmt.Errorf("%w: emit needs an event and a room", ErrBadRequest)
		}
	case cmdRefresh:
		if cmd.Token == "" {
			return cmd, fmt.Errorf("%w: refresh needs a token", ErrBadRequest)
		}
	case cmdCall:
		if cmd.RPC == "" {
			return cmd, fmt.Errorf("%w: call needs an rpc", ErrBadRequest)
		}
		if cmd.Timeout < 0 {
			return cmd, fmt.Errorf("%w: call timeout is negative", ErrBadRequest)
		}
	case cmdCancel:
		if cmd.Call == 0 {
			return cmd, fmt.Errorf("%w: cancel needs the id of a call", ErrBadRequest)
		}
	case cmdPing, cmdViewing:
	case "":
		return cmd, fmt.Errorf("%w: missing op", ErrBadRequest)
	default:
		return cmd, fmt.Errorf("%w: %q", ErrUnknownOp, truncate(cmd.Op, 32))
	}
	if cmd.Idem != "" && (cmd.Op != cmdEmit && cmd.Op != cmdCall || !validIdemKey(cmd.Idem)) {
		return cmd, fmt.Errorf("%w: idem must be 1-%d bytes of printable ASCII, on emit or call", ErrBadRequest, MaxIdempotencyKeyLen)
	}
	return cmd, nil
}

// commandID returns the top-level "id" of a message that is not valid JSON,
// read up to the syntax error, so that the bad_request reply carries the id
// of the command it answers (json.Unmarshal decodes nothing from invalid
// JSON). It is 0 when no id precedes the error.
func commandID(b []byte) uint64 {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0
	}
	var id uint64
	for {
		tok, err := dec.Token()
		if err != nil {
			return id
		}
		key, ok := tok.(string)
		if !ok {
			return id // the end of the object
		}
		if tok, err = dec.Token(); err != nil {
			return id
		}
		switch v := tok.(type) {
		case json.Number:
			// Field names match case-insensitively, as in json.Unmarshal.
			if strings.EqualFold(key, "id") {
				if n, err := strconv.ParseUint(v.String(), 10, 64); err == nil {
					id = n
				}
			}
		case json.Delim: // skip a nested object or array
			for depth := 1; depth > 0; {
				if tok, err = dec.Token(); err != nil {
					return id
				}
				switch tok {
				case json.Delim('{'), json.Delim('['):
					depth++
				case json.Delim('}'), json.Delim(']'):
					depth--
				}
			}
		}
	}
}

// truncate shortens s to at most n bytes on a rune boundary, for error messages
// that quote client input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return truncateBytes(s, n) + "…"
}

// appendEvent appends the JSON envelope of an event frame. data must be valid
// JSON; event and room are quoted as JSON strings.
func appendEvent(dst []byte, event, room string, data []byte) []byte {
	return appendEventCID(dst, "", event, room, data)
}

// appendEventCID is appendEvent with a "cid" member (a correlation ID) when
// cid is not empty.
func appendEventCID(dst []byte, cid, event, room string, data []byte) []byte {
	dst = append(dst, `{"type":"event","event":`...)
	dst = appendJSONString(dst, event)
	dst = append(dst, `,"room":`...)
	dst = appendJSONString(dst, room)
	if cid != "" {
		dst = append(dst, `,"cid":`...)
		dst = appendJSONString(dst, cid)
	}
	dst = append(dst, `,"data":`...)
	if len(data) == 0 {
		data = []byte("null")
	}
	dst = append(dst, data...)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Server → client messages other than events. They are rare (once per connection
// or per command), so they go through encoding/json.

type welcomeMsg struct {
	Type    string   `json:"type"`
	Version int      `json:"version"`
	Conn    string   `json:"conn"`
	User    string   `json:"user"`
	Roles   []string `json:"roles"`
	Rooms   []string `json:"rooms"`
	Expires int64    `json:"expires"`
	Ping    int64    `json:"ping"`
	// Streams gives, for each room in Rooms, its stream position at the join
	// (and, when the client asked to resume, whether it was recovered).
	Streams map[string]streamInfo `json:"streams,omitempty"`
}

// streamInfo is where a join left a connection in a room's stream, as sent
// in the welcome and in join replies.
type streamInfo struct {
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered,omitempty"` // set only when the client gave a since position
}

type replyMsg struct {
	Type  string      `json:"type"`
	ID    uint64      `json:"id"`
	OK    bool        `json:"ok,omitempty"`
	Data  any         `json:"data,omitempty"`
	Error *ReplyError `json:"error,omitempty"`
}

type roomMsg struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Reason string `json:"reason,omitempty"`
}

type expiringMsg struct {
	Type    string `json:"type"`
	Expires int64  `json:"expires"`
}

// replyErrorFor turns any error into what a client may see: the code and a
// short message. Only messages of rthub's own sentinels pass; anything else
// becomes "internal" with no details.
func replyErrorFor(err error) *ReplyError {
	var re *ReplyError
	if errors.As(err, &re) {
		return re
	}
	code := ErrorCode(err)
	if code == "internal" {
		return &ReplyError{Code: code, Message: "internal error"}
	}
	return &ReplyError{Code: code, Message: clientMessage(err)}
}

// clientMessage strips the "rthub: " prefix and bounds the length of an error
// message that goes to a client.
func clientMessage(err error) string {
	msg := err.Error()
	const prefix = "rthub: "
	if len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		msg = msg[len(prefix):]
	}
	return truncate(msg, 200)
}
