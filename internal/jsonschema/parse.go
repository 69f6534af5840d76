package jsonschema

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// parser reads one JSON document into the values encoding/json's any would
// hold (map[string]any, []any, string, json.Number, bool, nil), keeping the
// JSON Pointer of where it is for errors. It refuses a member name given
// twice in one object (encoding/json would decode both into a struct, the
// last winning, which a validator of the last one cannot vouch for) and
// nesting deeper than the limit, before going deeper.
type parser struct {
	data     []byte
	pos      int
	maxDepth int
	w        *walker // for the pointer
}

func (p *parser) syntax(what string) error {
	got := "end of input"
	if p.pos < len(p.data) {
		got = fmt.Sprintf("%q at byte %d", p.data[p.pos], p.pos)
	}
	return &Error{Pointer: string(p.w.ptr), Expected: what, Got: got, err: ErrSyntax}
}

func (p *parser) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\r', '\n':
			p.pos++
		default:
			return
		}
	}
}

// document parses the whole input: one value and nothing after it.
func (p *parser) document() (any, error) {
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos < len(p.data) {
		p.w.ptr = p.w.ptr[:0]
		return nil, &Error{Expected: "one JSON value", Got: "more after it", err: ErrSyntax}
	}
	return v, nil
}

func (p *parser) value(depth int) (any, error) {
	p.space()
	if p.pos >= len(p.data) {
		return nil, p.syntax("a JSON value")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		return p.str()
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	}
	return nil, p.syntax("a JSON value")
}

func (p *parser) literal(lit string) error {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return p.syntax(lit)
	}
	p.pos += len(lit)
	return nil
}

func (p *parser) deeper(depth int) error {
	if depth >= p.maxDepth {
		return &Error{Pointer: string(p.w.ptr), Expected: fmt.Sprintf("at most %d levels of nesting", p.maxDepth), Got: "more", err: ErrTooDeep}
	}
	return nil
}

func (p *parser) object(depth int) (any, error) {
	if err := p.deeper(depth); err != nil {
		return nil, err
	}
	p.pos++ // {
	obj := map[string]any{}
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return obj, nil
	}
	for {
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.syntax("a member name")
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		n := p.w.push(k)
		if _, dup := obj[k]; dup {
			return nil, &Error{Pointer: string(p.w.ptr), Expected: "each member once", Got: "a duplicate", err: ErrMismatch}
		}
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.syntax("':'")
		}
		p.pos++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.w.ptr = p.w.ptr[:n]
		obj[k] = v
		p.space()
		if p.pos < len(p.data) {
			switch p.data[p.pos] {
			case ',':
				p.pos++
				continue
			case '}':
				p.pos++
				return obj, nil
			}
		}
		return nil, p.syntax("',' or '}'")
	}
}

func (p *parser) array(depth int) (any, error) {
	if err := p.deeper(depth); err != nil {
		return nil, err
	}
	p.pos++ // [
	arr := []any{}
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return arr, nil
	}
	for i := 0; ; i++ {
		n := p.w.push(strconv.Itoa(i))
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		p.w.ptr = p.w.ptr[:n]
		arr = append(arr, v)
		p.space()
		if p.pos < len(p.data) {
			switch p.data[p.pos] {
			case ',':
				p.pos++
				continue
			case ']':
				p.pos++
				return arr, nil
			}
		}
		return nil, p.syntax("',' or ']'")
	}
}

// str reads a string. The common case, no escapes and valid UTF-8, is
// copied as is; anything else is decoded by encoding/json, so escapes,
// surrogates and invalid UTF-8 come out exactly as it decodes them.
func (p *parser) str() (string, error) {
	start := p.pos
	p.pos++ // "
	plain := true
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			raw := p.data[start:p.pos]
			if plain && utf8.Valid(raw) {
				return string(raw[1 : len(raw)-1]), nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				p.pos = start
				return "", p.syntax("a valid string")
			}
			return s, nil
		case c == '\\':
			plain = false
			p.pos += 2
		case c < 0x20:
			return "", p.syntax("a string without control characters")
		default:
			p.pos++
		}
	}
	return "", p.syntax("the end of the string")
}

// number reads a number by the JSON grammar, as a json.Number.
func (p *parser) number() (any, error) {
	start := p.pos
	digits := func() bool {
		n := p.pos
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
		}
		return p.pos > n
	}
	if p.data[p.pos] == '-' {
		p.pos++
	}
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
	} else if !digits() {
		return nil, p.syntax("a digit")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if !digits() {
			return nil, p.syntax("a digit")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if !digits() {
			return nil, p.syntax("a digit")
		}
	}
	return json.Number(p.data[start:p.pos]), nil
}
