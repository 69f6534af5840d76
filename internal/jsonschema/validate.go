package jsonschema

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinels that an [*Error] wraps, for [errors.Is].
var (
	// ErrMismatch means the document is JSON that does not match the schema.
	ErrMismatch = errors.New("jsonschema: document does not match the schema")
	// ErrSyntax means the document is not valid JSON.
	ErrSyntax = errors.New("jsonschema: not valid JSON")
	// ErrTooLarge means the document is longer than Limits.MaxBytes.
	ErrTooLarge = errors.New("jsonschema: document too large")
	// ErrTooDeep means the document nests arrays and objects deeper than
	// Limits.MaxDepth.
	ErrTooDeep = errors.New("jsonschema: document nested too deep")
)

// Error is why a document failed validation: where, as a JSON Pointer (RFC
// 6901; "" is the whole document), and what was expected there. It wraps
// one of [ErrMismatch], [ErrSyntax], [ErrTooLarge], [ErrTooDeep].
type Error struct {
	Pointer  string // e.g. "/values/temp"
	Expected string // e.g. "number"
	Got      string // e.g. "string"; may be empty
	err      error
}

// Error returns e.g. "/values/temp: expected number, got string"; the whole
// document is written "(root)".
func (e *Error) Error() string {
	p := e.Pointer
	if p == "" {
		p = "(root)"
	}
	s := p + ": expected " + e.Expected
	if e.Got != "" {
		s += ", got " + e.Got
	}
	return s
}

// Unwrap returns the sentinel of the kind of failure.
func (e *Error) Unwrap() error { return e.err }

// Limits bounds the work of one validation. Zero fields take the defaults.
type Limits struct {
	// MaxBytes refuses longer documents (ErrTooLarge) before parsing them.
	// Default 1 MiB.
	MaxBytes int
	// MaxDepth refuses documents whose arrays and objects nest deeper
	// (ErrTooDeep), found while parsing, before going deeper. Default 64.
	MaxDepth int
}

// Default limits.
const (
	DefaultMaxBytes = 1 << 20
	DefaultMaxDepth = 64
)

// Validator checks JSON documents against the schema of one Go type. It is
// immutable and safe for concurrent use.
type Validator struct {
	root *Schema
	defs map[string]*Schema
	lim  Limits
}

// NewValidator returns a validator of documents that encode a t, with its own
// definitions. The error is [Builder.Add]'s.
func NewValidator(t reflect.Type, lim Limits) (*Validator, error) {
	b := NewBuilder()
	s, err := b.Add(t)
	if err != nil {
		return nil, err
	}
	return b.Validator(s, lim), nil
}

// Validator returns a validator of s, a schema this Builder returned,
// resolving references in the Builder's definitions as they are now. Add
// no more types to the Builder afterwards.
func (b *Builder) Validator(s *Schema, lim Limits) *Validator {
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxBytes
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultMaxDepth
	}
	return &Validator{root: s, defs: b.defs, lim: lim}
}

// Schema returns the validator's schema (read-only).
func (v *Validator) Schema() *Schema { return v.root }

// Validate checks that raw is one JSON value that matches the schema and
// returns nil, or an [*Error] saying where and why not (the first problem
// found: object members in schema order, then unknown members sorted by
// name). The size is checked before parsing and the nesting while parsing,
// against the [Limits]; a member name given twice in one object is refused.
func (v *Validator) Validate(raw []byte) error {
	if len(raw) > v.lim.MaxBytes {
		return &Error{Expected: fmt.Sprintf("at most %d bytes", v.lim.MaxBytes), Got: strconv.Itoa(len(raw)) + " bytes", err: ErrTooLarge}
	}
	w := walker{v: v, ptr: make([]byte, 0, 64)}
	p := parser{data: raw, maxDepth: v.lim.MaxDepth, w: &w}
	doc, err := p.document()
	if err != nil {
		return err
	}
	w.ptr = w.ptr[:0]
	return w.check(v.root, doc)
}

// walker validates a decoded document, keeping the JSON Pointer of where it
// is.
type walker struct {
	v   *Validator
	ptr []byte
}

func (w *walker) fail(expected, got string) error {
	return &Error{Pointer: string(w.ptr), Expected: expected, Got: got, err: ErrMismatch}
}

// push appends a reference token to the pointer and returns the old length.
func (w *walker) push(tok string) int {
	n := len(w.ptr)
	w.ptr = append(w.ptr, '/')
	for i := 0; i < len(tok); i++ {
		switch tok[i] {
		case '~':
			w.ptr = append(w.ptr, '~', '0')
		case '/':
			w.ptr = append(w.ptr, '~', '1')
		default:
			w.ptr = append(w.ptr, tok[i])
		}
	}
	return n
}

func jsonType(x any) string {
	switch x.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", x)
}

func (w *walker) check(s *Schema, x any) error {
	if s.Ref != "" {
		d := w.v.defs[s.RefName()]
		if d == nil {
			return fmt.Errorf("jsonschema: unresolved $ref %q", s.Ref)
		}
		s = d
	}
	if len(s.AnyOf) > 0 {
		var last error
		for _, a := range s.AnyOf {
			if last = w.check(a, x); last == nil {
				break
			}
		}
		if last != nil {
			return last
		}
	}
	if len(s.Type) > 0 {
		got := jsonType(x)
		ok := false
		for _, t := range s.Type {
			if t == got || (t == "integer" && got == "number" && isInteger(x.(json.Number))) {
				ok = true
				break
			}
		}
		if !ok {
			exp := strings.Join(s.Type, " or ")
			if got == "number" && slices.Contains(s.Type, "integer") {
				got = "number " + string(x.(json.Number))
			}
			return w.fail(exp, got)
		}
	}
	switch x := x.(type) {
	case string:
		return w.checkString(s, x)
	case json.Number:
		return w.checkNumber(s, x)
	case []any:
		return w.checkArray(s, x)
	case map[string]any:
		return w.checkObject(s, x)
	}
	return nil
}

func isInteger(n json.Number) bool {
	s := string(n)
	return !strings.ContainsAny(s, ".eE")
}

func (w *walker) checkString(s *Schema, x string) error {
	if s.MinLength != nil || s.MaxLength != nil {
		n := utf8.RuneCountInString(x)
		if s.MinLength != nil && n < *s.MinLength {
			return w.fail(fmt.Sprintf("at least %d characters", *s.MinLength), strconv.Itoa(n))
		}
		if s.MaxLength != nil && n > *s.MaxLength {
			return w.fail(fmt.Sprintf("at most %d characters", *s.MaxLength), strconv.Itoa(n))
		}
	}
	if s.re != nil && !s.re.MatchString(x) {
		return w.fail("a string matching "+s.Pattern, strconv.Quote(truncate(x, 40)))
	}
	if s.strOK != nil && !s.strOK(x) {
		return w.fail("a string holding a JSON value of the field's Go type (,string option)", strconv.Quote(truncate(x, 40)))
	}
	if s.Enum != nil && !slices.Contains(s.Enum, any(x)) {
		return w.fail("one of "+enumList(s.Enum), strconv.Quote(truncate(x, 40)))
	}
	if s.ContentEncoding == "base64" && !validBase64(x) {
		return w.fail("base64", "a string that is not")
	}
	if s.Format == "date-time" && new(time.Time).UnmarshalText([]byte(x)) != nil {
		return w.fail("an RFC 3339 date-time", strconv.Quote(truncate(x, 40)))
	}
	return nil
}

func (w *walker) checkNumber(s *Schema, n json.Number) error {
	if slices.Contains(s.Type, "integer") && !slices.Contains(s.Type, "number") {
		str := string(n)
		if _, err := strconv.ParseInt(str, 10, 64); err != nil {
			if _, err := strconv.ParseUint(str, 10, 64); err != nil {
				return w.fail("a 64-bit integer", str)
			}
		}
	}
	if s.Minimum == nil && s.Maximum == nil && s.Enum == nil {
		return nil
	}
	f, err := n.Float64()
	if err != nil {
		return w.fail("a number within float64 range", string(n))
	}
	if s.Minimum != nil && f < *s.Minimum {
		return w.fail("at least "+strconv.FormatFloat(*s.Minimum, 'g', -1, 64), string(n))
	}
	if s.Maximum != nil && f > *s.Maximum {
		return w.fail("at most "+strconv.FormatFloat(*s.Maximum, 'g', -1, 64), string(n))
	}
	if s.Enum != nil && !slices.Contains(s.Enum, any(f)) {
		return w.fail("one of "+enumList(s.Enum), string(n))
	}
	return nil
}

func (w *walker) checkArray(s *Schema, x []any) error {
	if s.MinItems != nil && len(x) < *s.MinItems {
		return w.fail(fmt.Sprintf("at least %d items", *s.MinItems), strconv.Itoa(len(x)))
	}
	if s.MaxItems != nil && len(x) > *s.MaxItems {
		return w.fail(fmt.Sprintf("at most %d items", *s.MaxItems), strconv.Itoa(len(x)))
	}
	if s.Items == nil {
		return nil
	}
	for i, e := range x {
		n := w.push(strconv.Itoa(i))
		if err := w.check(s.Items, e); err != nil {
			return err
		}
		w.ptr = w.ptr[:n]
	}
	return nil
}

func (w *walker) checkObject(s *Schema, x map[string]any) error {
	for _, p := range s.Properties {
		val, ok := x[p.Name]
		n := w.push(p.Name)
		if !ok {
			if !p.Optional {
				return w.fail("a value (required)", "none")
			}
		} else if err := w.check(p.Schema, val); err != nil {
			return err
		}
		w.ptr = w.ptr[:n]
	}
	if s.Closed && len(x) > 0 {
		var unknown []string
		for k := range x {
			if !slices.ContainsFunc(s.Properties, func(p Property) bool { return p.Name == k }) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			slices.Sort(unknown)
			w.push(unknown[0])
			return w.fail("no such member (unknown field)", jsonType(x[unknown[0]]))
		}
	}
	if s.AdditionalProperties == nil && s.PropertyNames == nil {
		return nil
	}
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		n := w.push(k)
		if s.PropertyNames != nil && s.PropertyNames.re != nil && !s.PropertyNames.re.MatchString(k) {
			return w.fail("a member name matching "+s.PropertyNames.Pattern, strconv.Quote(truncate(k, 40)))
		}
		if s.PropertyNames != nil && s.PropertyNames.strOK != nil && !s.PropertyNames.strOK(k) {
			return w.fail("a member name that is an integer in the key type's range", strconv.Quote(truncate(k, 40)))
		}
		if s.AdditionalProperties != nil {
			if err := w.check(s.AdditionalProperties, x[k]); err != nil {
				return err
			}
		}
		w.ptr = w.ptr[:n]
	}
	return nil
}

// numberPattern is the syntax of a JSON number.
const numberPattern = `^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`

var (
	integerKey   = regexp.MustCompile(`^-?[0-9]+$`)
	unsignedKey  = regexp.MustCompile(`^[0-9]+$`)
	quotedString = regexp.MustCompile(`^".*"$`)
	numberRE     = regexp.MustCompile(numberPattern)
)

// validBase64 reports whether encoding/json would decode s into a []byte.
func validBase64(s string) bool {
	_, err := base64.StdEncoding.DecodeString(s)
	return err == nil
}

func enumList(vals []any) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		data, _ := json.Marshal(v)
		parts[i] = string(data)
	}
	return strings.Join(parts, ", ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
