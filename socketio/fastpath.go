package socketio

import (
	"bytes"
	"strconv"
)

// This file holds the fast path of the gateway's hot loop: reading an
// event frame of the hub without encoding/json. The hub writes every event
// the same way (rthub's appendEventCID and appendPosition):
//
//	{"type":"event","event":E,"room":R[,"cid":C],"data":D[,"offset":N,"epoch":P]}
//
// where E and R are names (no escapes) and D is valid JSON. Anything else
// goes through encoding/json.

// hubEvent is an event frame's parts, slices of the frame.
type hubEvent struct {
	event, room, data, epoch []byte
	offset                   uint64
	positioned               bool
}

var (
	evPrefix = []byte(`{"type":"event","event":"`)
	evRoom   = []byte(`","room":"`)
	evCID    = []byte(`,"cid":"`)
	evData   = []byte(`,"data":`)
	evOffset = []byte(`,"offset":`)
	evEpoch  = []byte(`,"epoch":"`)
)

// parseHubEvent splits an event frame; ok is false for anything it does not
// recognize (the caller falls back to encoding/json).
func parseHubEvent(b []byte) (e hubEvent, ok bool) {
	rest, ok := bytes.CutPrefix(b, evPrefix)
	if !ok {
		return e, false
	}
	i := bytes.IndexByte(rest, '"')
	if i <= 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return e, false
	}
	e.event, rest = rest[:i], rest[i:]
	if rest, ok = bytes.CutPrefix(rest, evRoom); !ok {
		return e, false
	}
	i = bytes.IndexByte(rest, '"')
	if i <= 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return e, false
	}
	e.room, rest = rest[:i], rest[i+1:]
	if r, ok := bytes.CutPrefix(rest, evCID); ok {
		j := 0 // skip the JSON string
		for ; j < len(r) && r[j] != '"'; j++ {
			if r[j] == '\\' {
				j++
			}
		}
		if j >= len(r) {
			return e, false
		}
		rest = r[j+1:]
	}
	if rest, ok = bytes.CutPrefix(rest, evData); !ok || len(rest) < 2 || rest[len(rest)-1] != '}' {
		return e, false
	}
	rest = rest[:len(rest)-1]
	// A position is the frame's tail: ,"offset":N,"epoch":"P". A JSON
	// value cannot end the way that tail does, so data never looks like it.
	if k := bytes.LastIndex(rest, evOffset); k >= 0 && len(rest) > 0 && rest[len(rest)-1] == '"' {
		tail := rest[k+len(evOffset):]
		d := 0
		for d < len(tail) && tail[d] >= '0' && tail[d] <= '9' {
			d++
		}
		if ep, ok := bytes.CutPrefix(tail[d:], evEpoch); ok && d > 0 && bytes.IndexByte(ep, '"') == len(ep)-1 && bytes.IndexByte(ep, '\\') < 0 {
			off, err := strconv.ParseUint(string(tail[:d]), 10, 64)
			if err == nil {
				e.offset, e.epoch, e.positioned = off, ep[:len(ep)-1], true
				rest = rest[:k]
			}
		}
	}
	if len(rest) == 0 {
		return e, false
	}
	e.data = rest
	return e, true
}
