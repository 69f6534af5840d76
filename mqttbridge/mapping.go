package mqttbridge

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/org/rthub"
)

// maxTopicLen is the longest MQTT topic or filter, in bytes (MQTT 5 §1.5.4:
// a UTF-8 string is at most 65,535 bytes).
const maxTopicLen = 65535

// levelKind is what one level of a topic pattern matches.
type levelKind uint8

const (
	levelLiteral levelKind = iota // exactly this text
	levelVar                      // {name}: one level, captured
	levelPlus                     // +: one level, not captured
	levelHash                     // #: the rest (zero or more levels), last only
)

type level struct {
	kind levelKind
	text string // the literal, or the variable's name
	vari int    // index into pattern.vars for levelVar
}

// pattern is a parsed topic pattern: "sensors/{device}/reading".
type pattern struct {
	src    string
	levels []level
	vars   []string // variable names, in order of appearance
	filter string   // the MQTT subscription filter: "sensors/+/reading"
}

// parsePattern parses a topic pattern (syntax in the package doc, "Mapping").
func parsePattern(s string) (*pattern, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("topic pattern is empty")
	case len(s) > maxTopicLen:
		return nil, fmt.Errorf("topic pattern is longer than %d bytes", maxTopicLen)
	case !utf8.ValidString(s):
		return nil, fmt.Errorf("topic pattern %q is not valid UTF-8", s)
	case strings.ContainsRune(s, 0):
		return nil, fmt.Errorf("topic pattern %q contains NUL", s)
	case strings.HasPrefix(s, "$share/"):
		return nil, fmt.Errorf("topic pattern %q: use Config.ShareGroup for shared subscriptions", s)
	}
	p := &pattern{src: s}
	parts := strings.Split(s, "/")
	filter := make([]string, len(parts))
	for i, part := range parts {
		switch {
		case part == "#":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("topic pattern %q: '#' must be the last level", s)
			}
			p.levels = append(p.levels, level{kind: levelHash})
			filter[i] = "#"
		case part == "+":
			p.levels = append(p.levels, level{kind: levelPlus})
			filter[i] = "+"
		case strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}"):
			name := part[1 : len(part)-1]
			if !validVarName(name) {
				return nil, fmt.Errorf("topic pattern %q: bad variable name %q (want letters, digits and '_', not starting with a digit)", s, name)
			}
			for _, v := range p.vars {
				if v == name {
					return nil, fmt.Errorf("topic pattern %q: variable {%s} appears twice", s, name)
				}
			}
			p.levels = append(p.levels, level{kind: levelVar, text: name, vari: len(p.vars)})
			p.vars = append(p.vars, name)
			filter[i] = "+"
		case strings.ContainsAny(part, "+#{}"):
			return nil, fmt.Errorf("topic pattern %q: level %q mixes text with a wildcard or brace ('+', '#' and '{name}' must be a whole level)", s, part)
		default:
			p.levels = append(p.levels, level{kind: levelLiteral, text: part})
			filter[i] = part
		}
	}
	p.filter = strings.Join(filter, "/")
	return p, nil
}

func validVarName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// varIndex returns the index of variable name, or -1.
func (p *pattern) varIndex(name string) int {
	for i, v := range p.vars {
		if v == name {
			return i
		}
	}
	return -1
}

// match reports whether topic matches p with MQTT semantics, storing the
// captured variables in vals (len(p.vars) long) when it does. As in MQTT, '+'
// matches an empty level, "a/#" matches "a", and a pattern starting with a
// wildcard never matches a topic starting with '$'.
func (p *pattern) match(topic string, vals []string) bool {
	if topic == "" || topic[0] == '$' && p.levels[0].kind != levelLiteral {
		return false
	}
	pos := 0 // start of the topic's next level; -1 once there is none
	for _, l := range p.levels {
		if l.kind == levelHash {
			return true
		}
		if pos < 0 {
			return false
		}
		var seg string
		if end := strings.IndexByte(topic[pos:], '/'); end < 0 {
			seg, pos = topic[pos:], -1
		} else {
			seg, pos = topic[pos:pos+end], pos+end+1
		}
		switch l.kind {
		case levelLiteral:
			if seg != l.text {
				return false
			}
		case levelVar:
			vals[l.vari] = seg
		}
	}
	return pos < 0
}

// overlaps reports whether some topic matches both a and b.
func overlaps(a, b *pattern) bool {
	i := 0
	for ; i < len(a.levels) && i < len(b.levels); i++ {
		la, lb := a.levels[i], b.levels[i]
		if la.kind == levelHash || lb.kind == levelHash {
			// '#' matches no '$' topic at the first level, so a literal
			// "$SYS" there and a leading '#' have no topic in common.
			if i == 0 && (la.kind == levelLiteral && strings.HasPrefix(la.text, "$") ||
				lb.kind == levelLiteral && strings.HasPrefix(lb.text, "$")) {
				return false
			}
			return true
		}
		if la.kind == levelLiteral && lb.kind == levelLiteral {
			if la.text != lb.text {
				return false
			}
			continue
		}
		if i == 0 && (la.kind == levelLiteral && strings.HasPrefix(la.text, "$") ||
			lb.kind == levelLiteral && strings.HasPrefix(lb.text, "$")) {
			return false
		}
	}
	if len(a.levels) == len(b.levels) {
		return true
	}
	// One is longer: only a trailing '#' on the longer one matches the
	// shorter one's topics (as the parent level).
	long := a
	if len(b.levels) > len(a.levels) {
		long = b
	}
	return i == len(long.levels)-1 && long.levels[i].kind == levelHash
}

// expandTopic returns the topic of a pattern made of literal levels and
// variables, every variable set to v.
func (p *pattern) expandTopic(v string) string {
	parts := make([]string, len(p.levels))
	for i, l := range p.levels {
		if l.kind == levelVar {
			parts[i] = v
		} else {
			parts[i] = l.text
		}
	}
	return strings.Join(parts, "/")
}

// template is a room or key template: "device:{device}".
type template struct {
	src   string
	parts []tplPart
}

type tplPart struct {
	lit  string
	vari int // -1 for a literal
}

// parseTemplate parses s, whose {name} placeholders must be variables of p.
func parseTemplate(s string, p *pattern) (*template, error) {
	t := &template{src: s}
	rest := s
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			t.parts = append(t.parts, tplPart{lit: rest, vari: -1})
			break
		}
		if rest[i] == '}' {
			return nil, fmt.Errorf("template %q: '}' without '{'", s)
		}
		if i > 0 {
			t.parts = append(t.parts, tplPart{lit: rest[:i], vari: -1})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("template %q: '{' without '}'", s)
		}
		name := rest[i+1 : i+j]
		v := p.varIndex(name)
		if v < 0 {
			return nil, fmt.Errorf("template %q: unknown variable {%s} (topic pattern %q has %s)", s, name, p.src, varList(p.vars))
		}
		t.parts = append(t.parts, tplPart{vari: v})
		rest = rest[i+j+1:]
	}
	return t, nil
}

func varList(vars []string) string {
	if len(vars) == 0 {
		return "no variables"
	}
	return "{" + strings.Join(vars, "}, {") + "}"
}

// expand fills t with vals.
func (t *template) expand(vals []string) string {
	if len(t.parts) == 1 && t.parts[0].vari < 0 {
		return t.parts[0].lit
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.vari < 0 {
			b.WriteString(p.lit)
		} else {
			b.WriteString(vals[p.vari])
		}
	}
	return b.String()
}

// usesVar reports whether t uses variable v.
func (t *template) usesVar(v int) bool {
	for _, p := range t.parts {
		if p.vari == v {
			return true
		}
	}
	return false
}

// validRoomTemplate checks that t can produce a valid room name: with each of
// the pattern's nvars variables set to a one-character segment, the result
// must be a valid room.
func validRoomTemplate(t *template, nvars int) error {
	probe := make([]string, nvars)
	for i := range probe {
		probe[i] = "x"
	}
	if err := rthub.ValidRoom(t.expand(probe)); err != nil {
		return fmt.Errorf("room template %q cannot produce a valid room: %v", t.src, err)
	}
	return nil
}

// validVarValue reports whether a topic level may be put in a room name: it
// must be one valid room segment, so a device named "7:admin" cannot reach
// room "device:7:admin".
func validVarValue(v string) bool {
	return v != "" && !strings.Contains(v, ":") && rthub.ValidRoom(v) == nil
}
