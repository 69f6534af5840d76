package rthub

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// This file holds the wire forms of resuming (docs/protocol.md §5): stream
// positions in events and replies, the reset message and the handshake's
// since parameter.

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
