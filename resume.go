package rthub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// This file holds the wire forms of resuming (docs/protocol.md §5): stream
// positions in events and replies, the reset message, the handshake's since
// parameter, and what the hub hands the broker per publication.

// info is what a welcome or a join reply says about the room's stream.
func (r joinResult) info() streamInfo {
	si := streamInfo{Offset: r.pos.Offset, Epoch: r.pos.Epoch}
	if r.resumed {
		rec := r.recovered
		si.Recovered = &rec
	}
	return si
}

// appendFrameFor builds the text frame of a publication for one connection.
func appendFrameFor(body []byte, pos StreamPosition) []byte {
	return textFrame(appendPosition(make([]byte, 0, len(body)+48), body, pos))
}

// Publications carry the event as the hub will send it, minus the stream
// position, which only the broker assigns:
//
//	{"type":"event","event":"e","room":"r","data":…}
//
// or, when one connection is to be left out (WithExcept), the same object
// with a first member "except":"<conn id>", which the hub removes again.
const exceptPrefix = `{"except":"`

func appendPublication(dst []byte, except, cid, event, room string, data []byte) []byte {
	if except != "" {
		dst = append(dst, exceptPrefix...)
		dst = append(dst, except...) // connection IDs are [0-9a-f-]
		dst = append(dst, `",`...)
		n := len(dst)
		dst = appendEventCID(dst, cid, event, room, data)
		return append(dst[:n], dst[n+1:]...) // drop the event's own "{"
	}
	return appendEventCID(dst, cid, event, room, data)
}

// MetaSeparator starts and ends a metadata record that a broker wrapper may
// put before a publication's data, e.g. otelrthub's trace context:
// "\x1e" + meta + "\x1e" + data. The hub skips such a record, so a node
// without the wrapper still sends clients the data alone. The record must not
// contain the separator.
const MetaSeparator = '\x1e'

// SplitMeta splits a publication's data into its leading metadata record
// (without the separators; nil if there is none, or it is not terminated)
// and the rest. See [MetaSeparator].
func SplitMeta(data []byte) (meta, rest []byte) {
	if len(data) == 0 || data[0] != MetaSeparator {
		return nil, data
	}
	i := bytes.IndexByte(data[1:], MetaSeparator)
	if i < 0 {
		return nil, data
	}
	return data[1 : i+1], data[i+2:]
}

// skipMeta returns data without a leading metadata record.
func skipMeta(data []byte) []byte {
	_, rest := SplitMeta(data)
	return rest
}

// splitPublication undoes appendPublication's except member (and skips a
// metadata record).
func splitPublication(data []byte) (except string, body []byte) {
	data = skipMeta(data)
	if !bytes.HasPrefix(data, []byte(exceptPrefix)) {
		return "", data
	}
	rest := data[len(exceptPrefix):]
	i := bytes.IndexByte(rest, '"')
	if i < 0 || i+1 >= len(rest) || rest[i+1] != ',' {
		return "", data
	}
	body = rest[i+1:] // ",…}": the object's other members
	b := make([]byte, 0, len(body))
	b = append(b, '{')
	b = append(b, body[1:]...)
	return string(rest[:i]), b
}

// appendPosition appends body (a JSON object) with the stream position added
// as its last members "offset" and "epoch".
func appendPosition(dst, body []byte, pos StreamPosition) []byte {
	if len(body) == 0 || body[len(body)-1] != '}' {
		return append(dst, body...)
	}
	dst = append(dst, body[:len(body)-1]...)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	dst = append(dst, `,"epoch":`...)
	dst = appendJSONString(dst, pos.Epoch)
	return append(dst, '}')
}

// appendReset is the message telling a room's members that events were lost:
// {"type":"reset","room":"r","offset":N,"epoch":"e"}.
func appendReset(dst []byte, room string, pos StreamPosition) []byte {
	dst = append(dst, `{"type":"reset","room":`...)
	dst = appendJSONString(dst, room)
	return appendPosition(dst, []byte("}"), pos)
}

// parseSince reads the handshake's since parameter: base64url (unpadded) of a
// JSON object mapping rooms to positions, {"room":{"offset":N,"epoch":"e"}}.
func parseSince(v string, maxRooms int) (map[string]StreamPosition, error) {
	if v == "" {
		return nil, nil
	}
	if len(v) > 16<<10 {
		return nil, fmt.Errorf("%w: since parameter too long", ErrBadRequest)
	}
	raw, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("%w: since parameter is not base64url", ErrBadRequest)
	}
	var m map[string]StreamPosition
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: since parameter is not a JSON object of positions", ErrBadRequest)
	}
	if len(m) > maxRooms {
		return nil, fmt.Errorf("%w: since names more rooms than a connection may join", ErrBadRequest)
	}
	for room := range m {
		if err := ValidRoom(room); err != nil {
			return nil, fmt.Errorf("%w: since: %v", ErrBadRequest, err)
		}
	}
	return m, nil
}
