package jsonschema

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ErrUnsupported means a Go type cannot be encoded by encoding/json (a
// channel, a function, a complex number, a map with an unsupported key), so
// it has no schema.
var ErrUnsupported = errors.New("jsonschema: type has no JSON encoding")

// ErrBadTag means a jsonschema struct tag is malformed or does not fit its
// field's type.
var ErrBadTag = errors.New("jsonschema: bad jsonschema tag")

var (
	timeType      = reflect.TypeFor[time.Time]()
	rawType       = reflect.TypeFor[json.RawMessage]()
	numberType    = reflect.TypeFor[json.Number]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	textType      = reflect.TypeFor[encoding.TextMarshaler]()
	textUnType    = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Builder builds schemas of Go types that share one set of definitions: each
// named struct type becomes a definition named after the Go type (see
// [Builder.Defs]). Names are deterministic for the same sequence of
// [Builder.Add] calls and never collide: a name already taken (by another
// type of the same name in another package, or reserved with
// [NewBuilder]) gets the package name as a prefix, then a number.
//
// A Builder is not safe for concurrent use.
type Builder struct {
	names    map[reflect.Type]string
	taken    map[string]bool
	defs     map[string]*Schema
	defOrder []string
}

// NewBuilder returns a Builder whose definitions will not use any of the
// reserved names.
func NewBuilder(reserved ...string) *Builder {
	b := &Builder{names: map[reflect.Type]string{}, taken: map[string]bool{}, defs: map[string]*Schema{}}
	for _, r := range reserved {
		b.taken[r] = true
	}
	return b
}

// Add returns the schema of t: a $ref for a named struct type (whose
// definition, and those of the types it uses, are added to the Builder's
// definitions), the schema itself otherwise. The error wraps
// [ErrUnsupported] or [ErrBadTag] and names the field at fault.
func (b *Builder) Add(t reflect.Type) (*Schema, error) {
	return b.schema(t, nil, "")
}

// Defs returns the definitions added so far, by name: the $defs of a
// document whose schemas came from this Builder.
func (b *Builder) Defs() map[string]*Schema {
	return b.defs
}

// DefNames returns the definition names in the order they were added (a
// type before the types its fields use).
func (b *Builder) DefNames() []string {
	return slices.Clone(b.defOrder)
}

// TypeName returns the definition name of t, a named struct type already
// added, or "".
func (b *Builder) TypeName(t reflect.Type) string {
	return b.names[t]
}

// DefType returns the Go type of the definition name, or nil.
func (b *Builder) DefType(name string) reflect.Type {
	for t, n := range b.names {
		if n == name {
			return t
		}
	}
	return nil
}

// Document returns a standalone schema of t: its schema with $schema's
// definitions. Use [Builder.Add] to share definitions between types.
func Document(t reflect.Type) (*Schema, error) {
	b := NewBuilder()
	s, err := b.Add(t)
	if err != nil {
		return nil, err
	}
	doc := *s
	if len(b.defs) > 0 {
		doc.Defs = b.defs
	}
	return &doc, nil
}

// schema returns the schema of t; c holds a field's constraints (nil for
// none), at names the field for errors.
func (b *Builder) schema(t reflect.Type, c *constraints, at string) (*Schema, error) {
	if t.Kind() == reflect.Pointer {
		// encoding/json writes null for a nil pointer, even one with a
		// MarshalJSON method.
		inner, err := b.schema(t.Elem(), c, at)
		if err != nil {
			return nil, err
		}
		return nullable(inner), nil
	}
	s, err := b.plain(t, c != nil, at)
	if err != nil {
		return nil, err
	}
	if c != nil {
		if s.Ref != "" || s.IsAny() {
			return nil, fmt.Errorf("%w: %s: constraints on %v (an object or any JSON)", ErrBadTag, at, t)
		}
		cs := *s
		if err := c.apply(&cs, t, at); err != nil {
			return nil, err
		}
		s = &cs
	}
	return s, nil
}

// plain is the schema of a non-pointer type (or a pointer with its own
// marshaler). fresh asks for a copy the caller may change.
func (b *Builder) plain(t reflect.Type, fresh bool, at string) (*Schema, error) {
	switch {
	case t == timeType:
		return &Schema{Type: []string{"string"}, Format: "date-time"}, nil
	case t == numberType:
		return &Schema{Type: []string{"number"}}, nil
	case t == rawType, implements(t, marshalerType):
		return &Schema{}, nil
	case implements(t, textType):
		return &Schema{Type: []string{"string"}}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		return &Schema{Type: []string{"boolean"}}, nil
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Uintptr:
		s := &Schema{Type: []string{"integer"}}
		if t.Kind() != reflect.Int && t.Kind() != reflect.Int64 {
			s.Minimum = ptr(0.0)
		}
		return s, nil
	case reflect.Int8, reflect.Int16, reflect.Int32:
		bits := t.Bits()
		return &Schema{Type: []string{"integer"}, Minimum: ptr(-float64(int64(1) << (bits - 1))), Maximum: ptr(float64(int64(1)<<(bits-1) - 1))}, nil
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return &Schema{Type: []string{"integer"}, Minimum: ptr(0.0), Maximum: ptr(float64(uint64(1)<<t.Bits() - 1))}, nil
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: []string{"number"}}, nil
	case reflect.String:
		return &Schema{Type: []string{"string"}}, nil
	case reflect.Interface:
		return &Schema{}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !implements(t.Elem(), marshalerType) && !implements(t.Elem(), textType) {
			return &Schema{Type: []string{"string"}, ContentEncoding: "base64"}, nil
		}
		items, err := b.schema(t.Elem(), nil, at+"[]")
		if err != nil {
			return nil, err
		}
		return &Schema{Type: []string{"array"}, Items: items}, nil
	case reflect.Array:
		items, err := b.schema(t.Elem(), nil, at+"[]")
		if err != nil {
			return nil, err
		}
		return &Schema{Type: []string{"array"}, Items: items, MinItems: ptr(t.Len()), MaxItems: ptr(t.Len())}, nil
	case reflect.Map:
		var names *Schema
		k := t.Key()
		switch {
		case k.Kind() == reflect.String:
		case implements(k, textUnType) || implements(k, textType):
		case isInt(k.Kind()):
			names = intKeys(k)
		default:
			return nil, fmt.Errorf("%w: %s: map key type %v", ErrUnsupported, orRoot(at), k)
		}
		v, err := b.schema(t.Elem(), nil, at+".*")
		if err != nil {
			return nil, err
		}
		return &Schema{Type: []string{"object"}, AdditionalProperties: v, PropertyNames: names}, nil
	case reflect.Struct:
		if t.Name() == "" {
			return b.object(t, at)
		}
		name, ok := b.names[t]
		if !ok {
			name = b.nameFor(t)
			b.names[t] = name
			b.defOrder = append(b.defOrder, name)
			b.defs[name] = &Schema{} // placeholder while recursing
			obj, err := b.object(t, at)
			if err != nil {
				delete(b.names, t)
				delete(b.defs, name)
				b.defOrder = b.defOrder[:len(b.defOrder)-1]
				delete(b.taken, name)
				return nil, err
			}
			*b.defs[name] = *obj
		}
		return &Schema{Ref: "#/$defs/" + name}, nil
	}
	return nil, fmt.Errorf("%w: %s: %v", ErrUnsupported, orRoot(at), t)
}

// object is the schema of struct type t, fields by encoding/json's rules.
func (b *Builder) object(t reflect.Type, at string) (*Schema, error) {
	fields, err := jsonFields(t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", orRoot(at), err)
	}
	s := &Schema{Type: []string{"object"}, Properties: []Property{}, Closed: true}
	for _, f := range fields {
		var where string
		if at != "" {
			where = at + "." + f.goName
		} else {
			where = t.String() + "." + f.goName
		}
		var ps *Schema
		if f.quoted {
			ps = quotedSchema(f.typ)
			if f.typ.Kind() == reflect.Pointer {
				ps = nullable(ps)
			}
			if f.tag != "" {
				return nil, fmt.Errorf("%w: %s: constraints on a ,string field", ErrBadTag, where)
			}
		} else {
			var c *constraints
			if f.tag != "" {
				c, err = parseConstraints(f.tag, where)
				if err != nil {
					return nil, err
				}
			}
			ps, err = b.schema(f.typ, c, where)
			if err != nil {
				return nil, err
			}
		}
		s.Properties = append(s.Properties, Property{Name: f.name, Schema: ps, Optional: f.optional})
		if !f.optional {
			s.Required = append(s.Required, f.name)
		}
	}
	return s, nil
}

// nameFor picks the definition name of a named type: its Go name (type
// arguments flattened: Page[main.Item] → PageItem), else with its package
// name in front, else with a number after.
func (b *Builder) nameFor(t reflect.Type) string {
	base := identifier(t.Name())
	pkg := t.PkgPath()
	if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
		pkg = pkg[i+1:]
	}
	pkg = identifier(pkg)
	if pkg != "" {
		pkg = strings.ToUpper(pkg[:1]) + pkg[1:]
	}
	cands := []string{base, pkg + base}
	for _, c := range cands {
		if c != "" && !b.taken[c] {
			b.taken[c] = true
			return c
		}
	}
	for i := 2; ; i++ {
		c := fmt.Sprintf("%s%d", cands[1], i)
		if !b.taken[c] {
			b.taken[c] = true
			return c
		}
	}
}

// identifier keeps the letters and digits of a type name, dropping package
// qualifiers of type arguments, and capitalises each part.
func identifier(s string) string {
	var out strings.Builder
	up := true
	for part := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == '[' || r == ']' || r == ',' || r == ' ' }) {
		if i := strings.LastIndexByte(part, '.'); i >= 0 {
			part = part[i+1:]
		}
		up = true
		for _, r := range part {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_':
				if up && out.Len() > 0 {
					r = unicode.ToUpper(r)
				}
				out.WriteRune(r)
				up = false
			default:
				up = true
			}
		}
	}
	if out.Len() > 0 && unicode.IsDigit([]rune(out.String())[0]) {
		return "T" + out.String()
	}
	return out.String()
}

func nullable(s *Schema) *Schema {
	if s.Nullable() || s.IsAny() {
		return s
	}
	if s.Ref == "" && len(s.Type) > 0 && s.Enum == nil {
		c := *s
		c.Type = append(slices.Clip(c.Type), "null")
		return &c
	}
	return &Schema{AnyOf: []*Schema{{Type: []string{"null"}}, s}}
}

func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || (t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface))
}

func isInt(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

func ptr[T any](v T) *T { return &v }

func orRoot(at string) string {
	if at == "" {
		return "(root)"
	}
	return at
}

// intKeys is the propertyNames schema of a map with integer keys: the
// pattern for JSON Schema, and a check of the key's range, as encoding/json
// decodes it, for the validator.
func intKeys(k reflect.Type) *Schema {
	bits := k.Bits()
	switch k.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &Schema{Pattern: `^-?[0-9]+$`, re: integerKey, strOK: func(s string) bool {
			_, err := strconv.ParseInt(s, 10, bits)
			return err == nil
		}}
	}
	return &Schema{Pattern: `^[0-9]+$`, re: unsignedKey, strOK: func(s string) bool {
		_, err := strconv.ParseUint(s, 10, bits)
		return err == nil
	}}
}

// quotedSchema is the schema of a field with the ,string option: a string
// holding the JSON encoding of the value. The pattern says so to other
// validators; strOK checks exactly what encoding/json decodes.
func quotedSchema(t reflect.Type) *Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch k := t.Kind(); {
	case k == reflect.Bool:
		return &Schema{Type: []string{"string"}, Enum: []any{"true", "false"}}
	case k == reflect.String:
		return &Schema{Type: []string{"string"}, Pattern: `^".*"$`, re: quotedString, strOK: func(s string) bool {
			var v string
			return json.Unmarshal([]byte(s), &v) == nil
		}}
	case k == reflect.Float32 || k == reflect.Float64:
		return &Schema{Type: []string{"string"}, Pattern: numberPattern, re: numberRE, strOK: func(s string) bool {
			_, err := strconv.ParseFloat(s, t.Bits())
			return err == nil && numberRE.MatchString(s)
		}}
	}
	s := intKeys(t)
	s.Type = []string{"string"}
	return s
}
