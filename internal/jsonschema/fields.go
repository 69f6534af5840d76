package jsonschema

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// field is one JSON member of a struct, as encoding/json sees it.
type field struct {
	name     string
	goName   string // the Go field name, for errors
	typ      reflect.Type
	tagged   bool // the name came from a json tag
	index    []int
	optional bool // omitempty, omitzero or promoted through an embedded pointer
	quoted   bool // ,string on a bool, number or string field
	tag      string
}

// jsonFields lists the members of struct type t by the rules of
// encoding/json's typeFields: breadth first through embedded structs; of
// several fields with the same name the shallowest wins, then a tagged one;
// any other tie drops the name.
func jsonFields(t reflect.Type) ([]field, error) {
	type queued struct {
		typ    reflect.Type
		index  []int
		viaPtr bool
	}
	current := []queued{}
	next := []queued{{typ: t}}
	visited := map[reflect.Type]bool{}
	var fields []field
	var count map[reflect.Type]int
	nextCount := map[reflect.Type]int{}
	for len(next) > 0 {
		current, next = next, current[:0]
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, q := range current {
			if visited[q.typ] {
				continue
			}
			visited[q.typ] = true
			for i := range q.typ.NumField() {
				sf := q.typ.Field(i)
				if sf.Anonymous {
					ft := sf.Type
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue // unexported non-struct embedded field
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !validTag(name) {
					name = ""
				}
				index := append(slices.Clone(q.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				quoted := false
				if hasOpt(opts, "string") {
					switch ft.Kind() {
					case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
						reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
						reflect.Float32, reflect.Float64, reflect.String:
						quoted = true
					}
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					tagged := name != ""
					if name == "" {
						name = sf.Name
					}
					fields = append(fields, field{
						name: name, goName: sf.Name, typ: sf.Type, tagged: tagged, index: index,
						optional: q.viaPtr || hasOpt(opts, "omitempty") || hasOpt(opts, "omitzero"),
						quoted:   quoted, tag: sf.Tag.Get("jsonschema"),
					})
					if count[q.typ] > 1 {
						// Two embedded copies of q.typ at this depth: the
						// name annihilates itself; add it again to say so.
						fields = append(fields, fields[len(fields)-1])
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, queued{typ: ft, index: index, viaPtr: q.viaPtr || sf.Type.Kind() == reflect.Pointer})
				}
			}
		}
	}
	// Sort by name, then depth, then tagged first, then index: the order
	// typeFields uses to pick dominant fields.
	slices.SortStableFunc(fields, func(a, b field) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := len(a.index) - len(b.index); c != 0 {
			return c
		}
		if a.tagged != b.tagged {
			if a.tagged {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	out := fields[:0:0]
	for i := 0; i < len(fields); {
		j := i + 1
		for j < len(fields) && fields[j].name == fields[i].name {
			j++
		}
		if f, ok := dominant(fields[i:j]); ok {
			out = append(out, f)
		}
		i = j
	}
	slices.SortFunc(out, func(a, b field) int { return slices.Compare(a.index, b.index) })
	for _, f := range out {
		if f.tag != "" && f.quoted {
			return nil, fmt.Errorf("%w: field %s: constraints on a ,string field", ErrBadTag, f.goName)
		}
	}
	return out, nil
}

// dominant picks the field that wins among fields of one name, sorted as
// above; false when there is a tie.
func dominant(fs []field) (field, bool) {
	if len(fs) > 1 && len(fs[0].index) == len(fs[1].index) && fs[0].tagged == fs[1].tagged {
		return field{}, false
	}
	return fs[0], true
}

func hasOpt(opts, want string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// validTag mirrors encoding/json's isValidTag.
func validTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c > 127):
			return false
		}
	}
	return true
}
