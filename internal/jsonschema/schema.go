// Package jsonschema builds JSON Schema (draft 2020-12) models of Go types,
// following the rules of encoding/json exactly, and validates JSON documents
// against them.
//
// A [Builder] turns reflect.Types into [Schema] values; named struct types
// become entries of $defs (see [Builder.Defs]) so that recursive types and
// shared types are written once. A [Validator] checks raw JSON against the
// schema of one type, strictly: unknown object members are refused
// (additionalProperties false), although encoding/json would ignore them,
// because a contract that silently drops what a client sent hides bugs.
//
// # Type mapping
//
//   - bool → boolean; integers → integer (sized ones with minimum/maximum up
//     to 32 bits, unsigned with minimum 0); floats → number; string →
//     string; json.Number → number;
//   - time.Time → string, format date-time; []byte → string,
//     contentEncoding base64; a json.RawMessage, an interface or a type
//     implementing json.Marshaler → {} (any JSON); a type implementing
//     encoding.TextMarshaler (and not json.Marshaler) → string;
//   - slices → array (not nullable: see below); arrays [N]T → array of
//     exactly N items; maps with string, integer or TextMarshaler keys →
//     object with additionalProperties (integer keys get propertyNames with
//     an integer pattern);
//   - pointers → the pointee's schema, nullable;
//   - structs → object with properties in field order, additionalProperties
//     false, every field without omitempty/omitzero required; embedded
//     structs are flattened by encoding/json's rules (depth, then tag,
//     conflicts dropped), fields promoted through an embedded pointer are
//     not required; json:"-" is skipped; json:",string" → string.
//   - channels, functions, complex numbers, unsafe pointers and maps with
//     other keys cannot be encoded: [Builder.Add] returns an error wrapping
//     [ErrUnsupported].
//
// A nil slice or map encodes as null, yet the schema does not allow null for
// a slice or map field: the contract is that the sender sends [] or {}, and
// a client typing `T[]` need not check for null. Mark the field omitempty (or
// use a pointer) where absence is meaningful.
//
// # Constraints
//
// A struct field may add constraints with the tag jsonschema, a
// comma-separated list of key=value:
//
//	Note string `json:"note,omitempty" jsonschema:"maxLength=200"`
//
// Keys: minimum, maximum (numbers), minLength, maxLength (strings, in
// characters), pattern (strings; a regular expression in the syntax common
// to RE2 and ECMA-262, unanchored, as JSON Schema says), enum (strings or
// numbers, separated by '|'), minItems, maxItems (slices, arrays). A comma
// inside a pattern or enum value is kept when what follows it is not a key=.
// A constraint on a pointer applies to the pointee. An unknown key, a value
// that does not parse, or a key that does not fit the field's type is an
// error of [Builder.Add] wrapping [ErrBadTag]: found when the schema is
// built, never when a document is validated.
package jsonschema

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
)

// Version is the $schema URI of JSON Schema draft 2020-12.
const Version = "https://json-schema.org/draft/2020-12/schema"

// Schema is one JSON Schema node, the subset this package generates. The
// zero Schema is the empty schema, which every JSON value satisfies.
// Schemas a [Builder] returns are shared: treat them as read-only.
type Schema struct {
	// Ref is a reference to a definition: "#/$defs/" + name (see
	// [Builder.Defs]); the other fields are then empty (except Description).
	Ref string
	// Type lists the JSON types allowed ("string", "number", "integer",
	// "boolean", "object", "array", "null"); empty means any.
	Type []string
	// AnyOf lists alternatives; a nullable $ref or enum is
	// anyOf [{type: null}, schema].
	AnyOf []*Schema

	Description     string
	Format          string // "date-time"
	ContentEncoding string // "base64"

	// Object keywords. Properties keeps field order; Closed writes
	// additionalProperties false.
	Properties           []Property
	Required             []string
	AdditionalProperties *Schema
	Closed               bool
	PropertyNames        *Schema

	// Array keywords.
	Items              *Schema
	MinItems, MaxItems *int

	// Constraints.
	Minimum, Maximum     *float64
	MinLength, MaxLength *int
	Pattern              string
	Enum                 []any // strings or float64s

	// Defs holds the definitions of a document's root ($defs).
	Defs map[string]*Schema

	re    *regexp.Regexp    // Pattern, compiled
	strOK func(string) bool // a check beyond Pattern: integer keys in range, ,string values
}

// Property is one member of an object schema.
type Property struct {
	Name   string
	Schema *Schema
	// Optional is true for a member the encoder may leave out (omitempty,
	// omitzero, promoted through an embedded pointer); false means it is in
	// Required.
	Optional bool
}

// Nullable reports whether s allows null.
func (s *Schema) Nullable() bool {
	for _, t := range s.Type {
		if t == "null" {
			return true
		}
	}
	for _, a := range s.AnyOf {
		if a.Nullable() {
			return true
		}
	}
	return false
}

// IsAny reports whether s is the empty schema (any JSON value).
func (s *Schema) IsAny() bool {
	return s.Ref == "" && len(s.Type) == 0 && len(s.AnyOf) == 0 && len(s.Enum) == 0 &&
		len(s.Properties) == 0 && s.Items == nil && s.AdditionalProperties == nil && !s.Closed
}

// RefName returns the definition name s refers to, or "".
func (s *Schema) RefName() string {
	const p = "#/$defs/"
	if len(s.Ref) > len(p) && s.Ref[:len(p)] == p {
		return s.Ref[len(p):]
	}
	return ""
}

// MapRefs returns a deep copy of s with every $ref rewritten by f (f gets
// and returns the whole reference), e.g. to move definitions to
// "#/components/schemas/" in an AsyncAPI document. Defs are copied too.
func (s *Schema) MapRefs(f func(ref string) string) *Schema {
	if s == nil {
		return nil
	}
	c := *s
	if c.Ref != "" {
		c.Ref = f(c.Ref)
	}
	c.AnyOf = mapList(s.AnyOf, f)
	if s.Properties != nil {
		c.Properties = make([]Property, len(s.Properties))
		for i, p := range s.Properties {
			p.Schema = p.Schema.MapRefs(f)
			c.Properties[i] = p
		}
	}
	c.AdditionalProperties = s.AdditionalProperties.MapRefs(f)
	c.PropertyNames = s.PropertyNames.MapRefs(f)
	c.Items = s.Items.MapRefs(f)
	if s.Defs != nil {
		c.Defs = make(map[string]*Schema, len(s.Defs))
		for k, d := range s.Defs {
			c.Defs[k] = d.MapRefs(f)
		}
	}
	return &c
}

func mapList(l []*Schema, f func(string) string) []*Schema {
	if l == nil {
		return nil
	}
	out := make([]*Schema, len(l))
	for i, s := range l {
		out[i] = s.MapRefs(f)
	}
	return out
}

// MarshalJSON writes s with its keywords in a fixed order and properties in
// field order, so generated documents are deterministic and readable. $defs
// are written sorted by name.
func (s *Schema) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	n := 0
	key := func(k string) {
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		writeString(&b, k)
		b.WriteByte(':')
	}
	val := func(k string, v any) error {
		key(k)
		data, err := marshal(v)
		b.Write(data)
		return err
	}
	if s.Ref != "" {
		key("$ref")
		writeString(&b, s.Ref)
	}
	if s.Description != "" {
		key("description")
		writeString(&b, s.Description)
	}
	switch len(s.Type) {
	case 0:
	case 1:
		key("type")
		writeString(&b, s.Type[0])
	default:
		if err := val("type", s.Type); err != nil {
			return nil, err
		}
	}
	if s.AnyOf != nil {
		if err := val("anyOf", s.AnyOf); err != nil {
			return nil, err
		}
	}
	if s.Format != "" {
		key("format")
		writeString(&b, s.Format)
	}
	if s.ContentEncoding != "" {
		key("contentEncoding")
		writeString(&b, s.ContentEncoding)
	}
	if s.Enum != nil {
		if err := val("enum", s.Enum); err != nil {
			return nil, err
		}
	}
	for _, c := range []struct {
		k string
		v *float64
	}{{"minimum", s.Minimum}, {"maximum", s.Maximum}} {
		if c.v != nil {
			key(c.k)
			b.WriteString(strconv.FormatFloat(*c.v, 'g', -1, 64))
		}
	}
	for _, c := range []struct {
		k string
		v *int
	}{{"minLength", s.MinLength}, {"maxLength", s.MaxLength}, {"minItems", s.MinItems}, {"maxItems", s.MaxItems}} {
		if c.v != nil {
			key(c.k)
			b.WriteString(strconv.Itoa(*c.v))
		}
	}
	if s.Pattern != "" {
		key("pattern")
		writeString(&b, s.Pattern)
	}
	if s.Items != nil {
		if err := val("items", s.Items); err != nil {
			return nil, err
		}
	}
	if s.Properties != nil {
		key("properties")
		b.WriteByte('{')
		for i, p := range s.Properties {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(&b, p.Name)
			b.WriteByte(':')
			data, err := p.Schema.MarshalJSON()
			if err != nil {
				return nil, err
			}
			b.Write(data)
		}
		b.WriteByte('}')
	}
	if s.Required != nil {
		if err := val("required", s.Required); err != nil {
			return nil, err
		}
	}
	if s.PropertyNames != nil {
		if err := val("propertyNames", s.PropertyNames); err != nil {
			return nil, err
		}
	}
	switch {
	case s.Closed:
		key("additionalProperties")
		b.WriteString("false")
	case s.AdditionalProperties != nil:
		if err := val("additionalProperties", s.AdditionalProperties); err != nil {
			return nil, err
		}
	}
	if s.Defs != nil {
		// encoding/json writes map keys sorted.
		if err := val("$defs", s.Defs); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeString(b *bytes.Buffer, s string) {
	data, _ := marshal(s) // a string always marshals
	b.Write(data)
}

// marshal is json.Marshal without HTML escaping: patterns and descriptions
// keep their '<', '>' and '&'.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
