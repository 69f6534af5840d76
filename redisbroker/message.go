package redisbroker

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/org/rthub"
)

// How a publication travels through Redis. A message's metadata (its
// Except, Header and Key, see [rthub.Message]) is encoded as a sequence of items
// "<tag><n>:<n bytes>": tag 'x' is Except, tag 'y' the state Key, tag 'k' a
// header key followed by a 'v' item, its value; keys in sorted order. A message without metadata
// encodes to "". Items are length-prefixed, so any bytes may appear in them,
// and a reader skips items with a tag it does not know, so a later version
// can add some.
//
// On the room's channel a publication is one of
//
//	1:<offset>:<epoch>:<data>                 no metadata
//	2:<offset>:<epoch>:<m>:<metadata><data>   m = the metadata's length in bytes
//
// The leading digit is the format: a reader drops (and logs) a format it
// does not know. In the room's stream, an entry has field "d" (the data)
// and, when there is metadata, field "m"; other fields are ignored.

// appendMeta appends the encoded metadata of m.
func appendMeta(dst []byte, m rthub.Message) []byte {
	if m.Except != "" {
		dst = appendItem(dst, 'x', m.Except)
	}
	if m.Key != "" {
		dst = appendItem(dst, 'y', m.Key)
	}
	if len(m.Header) == 1 { // the common case (a traceparent): no sorting
		for k, v := range m.Header {
			dst = appendItem(appendItem(dst, 'k', k), 'v', v)
		}
		return dst
	}
	for _, k := range slices.Sorted(maps.Keys(m.Header)) {
		dst = appendItem(appendItem(dst, 'k', k), 'v', m.Header[k])
	}
	return dst
}

func appendItem(dst []byte, tag byte, s string) []byte {
	dst = append(dst, tag)
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// decodeMeta parses encoded metadata into msg's Except, Key and Header (nil
// when it has no entries). It reports false for malformed metadata.
func decodeMeta(meta string, msg *rthub.Message) bool {
	msg.Except, msg.Key, msg.Header = "", "", nil
	var key string
	haveKey := false
	for meta != "" {
		tag := meta[0]
		n, rest, _ := strings.Cut(meta[1:], ":")
		size, ok := parseLen(n)
		if !ok || size > len(rest) {
			return false
		}
		val := strings.Clone(rest[:size]) // not a slice of the whole message
		meta = rest[size:]
		switch tag {
		case 'x':
			msg.Except = val
		case 'y':
			msg.Key = val
		case 'k':
			if haveKey {
				return false
			}
			key, haveKey = val, true
		case 'v':
			if !haveKey {
				return false
			}
			if msg.Header == nil {
				msg.Header = make(map[string]string)
			}
			msg.Header[key] = val
			haveKey = false
		}
	}
	return !haveKey
}

// decode parses a room channel's message (see above).
func decode(room, msg string) (rthub.Publication, bool) {
	if len(msg) < 2 || msg[1] != ':' || (msg[0] != '1' && msg[0] != '2') {
		return rthub.Publication{}, false
	}
	format, rest := msg[0], msg[2:]
	off, rest, ok1 := strings.Cut(rest, ":")
	epoch, rest, ok2 := strings.Cut(rest, ":")
	n, err := strconv.ParseUint(off, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return rthub.Publication{}, false
	}
	p := rthub.Publication{Room: room, Offset: n, Epoch: epoch}
	if format == '2' {
		m, body, _ := strings.Cut(rest, ":")
		size, ok := parseLen(m)
		if !ok || size == 0 || size > len(body) || !decodeMeta(body[:size], &p.Message) {
			return rthub.Publication{}, false
		}
		rest = body[size:]
	}
	p.Data = []byte(rest)
	return p, true
}

// parseLen parses a length: decimal digits without a sign or a leading zero,
// at most 9 of them.
func parseLen(s string) (int, bool) {
	if s == "" || len(s) > 9 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}
