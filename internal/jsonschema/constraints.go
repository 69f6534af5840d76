package jsonschema

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// constraints is a parsed jsonschema struct tag.
type constraints struct {
	minimum, maximum     *float64
	minLength, maxLength *int
	minItems, maxItems   *int
	pattern              string
	re                   *regexp.Regexp
	enum                 []string
}

// constraintKeys are the keys of the jsonschema tag.
var constraintKeys = []string{"minimum", "maximum", "minLength", "maxLength", "pattern", "enum", "minItems", "maxItems"}

// parseConstraints parses a jsonschema tag: key=value pairs separated by
// commas; a piece that does not start with a known key= continues the
// previous value (so a pattern may contain commas).
func parseConstraints(tag, at string) (*constraints, error) {
	var pairs [][2]string
	for piece := range strings.SplitSeq(tag, ",") {
		k, v, ok := strings.Cut(piece, "=")
		if ok && isKey(k) {
			pairs = append(pairs, [2]string{k, v})
			continue
		}
		if len(pairs) == 0 || (pairs[len(pairs)-1][0] != "pattern" && pairs[len(pairs)-1][0] != "enum") {
			return nil, fmt.Errorf("%w: %s: %q is not key=value with a key of %s", ErrBadTag, at, piece, strings.Join(constraintKeys, ", "))
		}
		pairs[len(pairs)-1][1] += "," + piece
	}
	c := &constraints{}
	seen := map[string]bool{}
	for _, p := range pairs {
		k, v := p[0], p[1]
		if seen[k] {
			return nil, fmt.Errorf("%w: %s: %s given twice", ErrBadTag, at, k)
		}
		seen[k] = true
		bad := func(what string) error {
			return fmt.Errorf("%w: %s: %s=%q: %s", ErrBadTag, at, k, v, what)
		}
		switch k {
		case "minimum", "maximum":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, bad("not a number")
			}
			if k == "minimum" {
				c.minimum = &f
			} else {
				c.maximum = &f
			}
		case "minLength", "maxLength", "minItems", "maxItems":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, bad("not a non-negative integer")
			}
			switch k {
			case "minLength":
				c.minLength = &n
			case "maxLength":
				c.maxLength = &n
			case "minItems":
				c.minItems = &n
			default:
				c.maxItems = &n
			}
		case "pattern":
			re, err := regexp.Compile(v)
			if err != nil || v == "" {
				return nil, bad("not a regular expression")
			}
			c.pattern, c.re = v, re
		case "enum":
			if v == "" {
				return nil, bad("no values")
			}
			c.enum = strings.Split(v, "|")
		}
	}
	if c.minimum != nil && c.maximum != nil && *c.minimum > *c.maximum {
		return nil, fmt.Errorf("%w: %s: minimum above maximum", ErrBadTag, at)
	}
	if c.minLength != nil && c.maxLength != nil && *c.minLength > *c.maxLength {
		return nil, fmt.Errorf("%w: %s: minLength above maxLength", ErrBadTag, at)
	}
	if c.minItems != nil && c.maxItems != nil && *c.minItems > *c.maxItems {
		return nil, fmt.Errorf("%w: %s: minItems above maxItems", ErrBadTag, at)
	}
	return c, nil
}

func isKey(k string) bool {
	for _, c := range constraintKeys {
		if c == k {
			return true
		}
	}
	return false
}

// apply adds c to s, the schema of a field of Go type t (pointers already
// removed from s; t may still be one). A key that does not fit s's JSON type
// is an error.
func (c *constraints) apply(s *Schema, t reflect.Type, at string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	kind := ""
	if len(s.Type) > 0 {
		kind = s.Type[0]
	}
	numeric := kind == "number" || kind == "integer"
	str := kind == "string" && s.ContentEncoding == ""
	arr := kind == "array"
	misfit := func(k string) error {
		return fmt.Errorf("%w: %s: %s does not apply to %v (JSON %s)", ErrBadTag, at, k, t, kind)
	}
	if c.minimum != nil || c.maximum != nil {
		if !numeric {
			return misfit(first(c.minimum != nil, "minimum", "maximum"))
		}
		if c.minimum != nil && (s.Minimum == nil || *c.minimum > *s.Minimum) {
			s.Minimum = c.minimum
		}
		if c.maximum != nil && (s.Maximum == nil || *c.maximum < *s.Maximum) {
			s.Maximum = c.maximum
		}
	}
	if c.minLength != nil || c.maxLength != nil || c.pattern != "" {
		if !str {
			return misfit(first(c.minLength != nil, "minLength", first(c.maxLength != nil, "maxLength", "pattern")))
		}
		s.MinLength, s.MaxLength = c.minLength, c.maxLength
		s.Pattern, s.re = c.pattern, c.re
	}
	if c.minItems != nil || c.maxItems != nil {
		if !arr {
			return misfit(first(c.minItems != nil, "minItems", "maxItems"))
		}
		if c.minItems != nil {
			s.MinItems = c.minItems
		}
		if c.maxItems != nil {
			s.MaxItems = c.maxItems
		}
	}
	if c.enum != nil {
		switch {
		case str:
			for _, v := range c.enum {
				s.Enum = append(s.Enum, v)
			}
		case numeric:
			for _, v := range c.enum {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil || (kind == "integer" && f != float64(int64(f))) {
					return fmt.Errorf("%w: %s: enum value %q is not a JSON %s", ErrBadTag, at, v, kind)
				}
				s.Enum = append(s.Enum, f)
			}
		default:
			return misfit("enum")
		}
	}
	return nil
}

func first(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}
