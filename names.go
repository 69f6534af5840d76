package rthub

import (
	"fmt"
	"slices"
	"strings"
)

// MaxRoomLen is the maximum length, in bytes, of a room name, an event name and a
// room or event pattern: 128.
const MaxRoomLen = 128

// maxSegments is the most segments a valid name or pattern can have: every segment
// but the last takes at least two bytes (one character and a ':').
const maxSegments = (MaxRoomLen + 1) / 2

// roomChars marks the bytes allowed inside a segment: ASCII letters, digits and
// "_-.@/". The separator ':' is handled on its own.
var roomChars = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_-.@/" {
		t[c] = true
	}
	return t
}()

// ValidRoom reports whether name is a legal room name, and why not.
//
// A room name is 1 to [MaxRoomLen] (128) bytes of ASCII letters, digits and the
// characters _ - . : @ /. The colon separates segments ("device:42:temp" has three),
// and no segment may be empty: no leading or trailing ':' and no "::". Wildcards
// ('*') and placeholders ('{sub}') belong to patterns, never to room names. Event
// names follow the same rules.
//
// The returned error wraps [ErrBadRoom] and says what is wrong; it quotes at most
// the first 64 bytes of name. ValidRoom does not allocate when name is valid.
func ValidRoom(name string) error {
	if msg, at := checkName(name); msg != "" {
		return badName("", name, msg, at)
	}
	return nil
}

// ValidPattern checks the syntax of a room or event pattern. The error wraps
// [ErrBadRoom] and says what is wrong, quoting at most 64 bytes of pattern.
//
// A pattern is 1 to [MaxRoomLen] bytes of segments separated by ':', none empty.
// Each segment is one of:
//
//   - a literal, in the room name character set (see [ValidRoom]);
//   - "*", which matches exactly one segment of the room;
//   - "{sub}", which matches the segment equal to the connection's subject
//     ([Identity].Subject); a pattern with {sub} never matches for an empty subject
//     or a subject containing ':', and never matches through [Match];
//   - "**", only as the last segment, which matches one or more remaining segments.
//
// A wildcard or placeholder inside a literal ("dev*", "user{sub}") is invalid.
func ValidPattern(pattern string) error {
	var buf [maxSegments]patSeg
	if _, msg, at := parsePattern(pattern, buf[:0]); msg != "" {
		return badName("pattern ", pattern, msg, at)
	}
	return nil
}

// Match reports whether room matches pattern (syntax in [ValidPattern]). It is false
// when pattern or room is invalid, and for every pattern containing {sub}, since
// Match knows no subject. Examples: "device:*" matches "device:42" but neither
// "device" nor "device:42:temp"; "device:**" matches "device:42" and
// "device:42:temp"; "*" matches every single-segment room.
//
// Match parses pattern on each call, without allocating; the hub compiles its
// policy's patterns once instead.
func Match(pattern, room string) bool {
	if msg, _ := checkName(room); msg != "" {
		return false
	}
	var buf [maxSegments]patSeg
	segs, msg, _ := parsePattern(pattern, buf[:0])
	if msg != "" {
		return false
	}
	return matchSegs(segs, room, "")
}

// checkName checks a room or event name. It returns "" if name is valid, otherwise
// a short reason and the offset of the offending byte (-1 if none applies).
func checkName(name string) (msg string, at int) {
	switch {
	case name == "":
		return "empty", -1
	case len(name) > MaxRoomLen:
		return "longer than 128 bytes", -1
	case name[0] == ':':
		return "leading ':'", -1
	case name[len(name)-1] == ':':
		return "trailing ':'", -1
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == ':' {
			if name[i-1] == ':' { // i > 0: name[0] != ':'
				return "empty segment '::'", i
			}
			continue
		}
		if !roomChars[c] {
			return "illegal", i
		}
	}
	return "", -1
}

// validSegment reports whether s can stand as one segment of a room name: what
// {sub} requires of a subject.
func validSegment(s string) bool {
	if s == "" || len(s) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !roomChars[s[i]] {
			return false
		}
	}
	return true
}

// badName builds the error of ValidRoom and ValidPattern.
func badName(kind, s, msg string, at int) error {
	if msg == "illegal" {
		msg = "illegal " + describeByte(s[at])
	}
	if at >= 0 {
		msg = fmt.Sprintf("%s at offset %d", msg, at)
	}
	return fmt.Errorf("%w: %s%s: %s", ErrBadRoom, kind, quoteTrunc(s), msg)
}

// quoteTrunc quotes s for an error message, ASCII only, cut to its first 64 bytes.
func quoteTrunc(s string) string {
	const limit = 64
	if len(s) <= limit {
		return fmt.Sprintf("%+q", s)
	}
	return fmt.Sprintf("%+q... (%d bytes)", s[:limit], len(s))
}

// describeByte names a byte for an error message.
func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return fmt.Sprintf("character %q", rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// segKind is the kind of one pattern segment.
type segKind uint8

const (
	segLit   segKind = iota // literal text
	segStar                 // "*": exactly one segment
	segSub                  // "{sub}": the segment equal to the subject
	segDStar                // "**", last only: one or more segments
)

// patSeg is one segment of a parsed pattern.
type patSeg struct {
	lit  string // for segLit
	kind segKind
}

// parsePattern splits pattern into segs (appending to segs, which needs room for
// maxSegments to avoid allocating). msg is "" on success, otherwise a reason and
// the offset of the offending byte (-1 if none applies).
func parsePattern(pattern string, segs []patSeg) (_ []patSeg, msg string, at int) {
	switch {
	case pattern == "":
		return segs, "empty", -1
	case len(pattern) > MaxRoomLen:
		return segs, "longer than 128 bytes", -1
	}
	for start := 0; start <= len(pattern); {
		end := strings.IndexByte(pattern[start:], ':')
		if end < 0 {
			end = len(pattern)
		} else {
			end += start
		}
		seg := pattern[start:end]
		switch seg {
		case "":
			switch {
			case start == 0:
				return segs, "leading ':'", -1
			case end == len(pattern):
				return segs, "trailing ':'", -1
			default:
				return segs, "empty segment '::'", start
			}
		case "*":
			segs = append(segs, patSeg{kind: segStar})
		case "{sub}":
			segs = append(segs, patSeg{kind: segSub})
		case "**":
			if end != len(pattern) {
				return segs, "'**' is allowed only as the last segment", start
			}
			segs = append(segs, patSeg{kind: segDStar})
		default:
			for i := 0; i < len(seg); i++ {
				switch c := seg[i]; {
				case roomChars[c]:
				case c == '*':
					return segs, "'*' or '**' must be a whole segment", start + i
				case c == '{' || c == '}':
					return segs, "the only placeholder is '{sub}', as a whole segment", start + i
				default:
					return segs, "illegal", start + i
				}
			}
			segs = append(segs, patSeg{kind: segLit, lit: seg})
		}
		start = end + 1
	}
	return segs, "", -1
}

// matchSegs matches a parsed pattern against room, which must be a valid room name;
// sub is the subject {sub} stands for ("" never matches). It does not allocate.
func matchSegs(segs []patSeg, room, sub string) bool {
	pos := 0 // start of the next room segment; len(room)+1 once all are consumed
	for _, sg := range segs {
		if pos > len(room) {
			return false // the room has fewer segments than the pattern
		}
		if sg.kind == segDStar {
			return true // a valid room has at least one non-empty segment left
		}
		end := strings.IndexByte(room[pos:], ':')
		if end < 0 {
			end = len(room)
		} else {
			end += pos
		}
		seg := room[pos:end]
		switch sg.kind {
		case segLit:
			if seg != sg.lit {
				return false
			}
		case segStar:
			if seg == "" {
				return false
			}
		case segSub:
			if sub == "" || seg != sub {
				return false
			}
		}
		pos = end + 1
	}
	return pos == len(room)+1
}

// pattern is a compiled room or event pattern. It is immutable.
type pattern struct {
	raw    string
	segs   []patSeg
	hasSub bool // some segment is {sub}
	wild   bool // some segment is * or **
}

// compilePattern parses s once for repeated matching.
func compilePattern(s string) (pattern, error) {
	var buf [maxSegments]patSeg
	segs, msg, at := parsePattern(s, buf[:0])
	if msg != "" {
		return pattern{}, badName("pattern ", s, msg, at)
	}
	p := pattern{raw: s, segs: slices.Clone(segs)}
	for _, sg := range segs {
		switch sg.kind {
		case segSub:
			p.hasSub = true
		case segStar, segDStar:
			p.wild = true
		}
	}
	return p, nil
}

// match reports whether the valid room name room matches p, with {sub} standing
// for sub. It does not allocate.
func (p *pattern) match(room, sub string) bool {
	return matchSegs(p.segs, room, sub)
}

// expand returns the concrete room of a pattern without wildcards, {sub} replaced
// by sub; ok is false when the result is not a valid room name (sub empty, with ':'
// or illegal characters, or the result too long).
func (p *pattern) expand(sub string) (room string, ok bool) {
	if !p.hasSub {
		return p.raw, true
	}
	if !validSegment(sub) {
		return "", false
	}
	var b strings.Builder
	for i, sg := range p.segs {
		if i > 0 {
			b.WriteByte(':')
		}
		if sg.kind == segSub {
			b.WriteString(sub)
		} else {
			b.WriteString(sg.lit)
		}
	}
	room = b.String()
	if msg, _ := checkName(room); msg != "" {
		return "", false
	}
	return room, true
}
