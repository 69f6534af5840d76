package jsonschema_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub/internal/jsonschema"
)

type Device struct {
	ID     string  `json:"id"`
	Parent *Device `json:"parent"`
}

type Base struct {
	Kind string `json:"kind"`
	Seq  int    `json:"seq,omitempty"`
}

type Extra struct {
	Tag string `json:"tag"`
}

type Reading struct {
	Base
	*Extra
	Device  string             `json:"device" jsonschema:"minLength=1,maxLength=8,pattern=^[a-z0-9]+$"`
	At      time.Time          `json:"at"`
	Values  map[string]float64 `json:"values"`
	Note    string             `json:"note,omitempty" jsonschema:"maxLength=5"`
	Level   *int               `json:"level" jsonschema:"minimum=0,maximum=10"`
	Count   int64              `json:"count,string"`
	Blob    []byte             `json:"blob,omitzero"`
	Raw     json.RawMessage    `json:"raw,omitempty"`
	Any     any                `json:"any,omitempty"`
	Addr    netip.Addr         `json:"addr,omitzero"`
	Mode    string             `json:"mode,omitempty" jsonschema:"enum=on|off"`
	Small   int8               `json:"small,omitempty"`
	Hidden  string             `json:"-"`
	Dash    string             `json:"-,"` //lint:ignore SA5008 a field named "-", as encoding/json documents
	ByID    map[int]Device     `json:"by_id,omitempty"`
	Pair    [2]bool            `json:"pair,omitempty"`
	Inline  struct{ X int }    `json:"inline,omitempty"`
	private int                //lint:ignore U1000 unexported fields are not encoded
}

func TestSchemaMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		typ  reflect.Type
		want string
	}{
		{"bool", reflect.TypeFor[bool](), `{"type":"boolean"}`},
		{"int", reflect.TypeFor[int](), `{"type":"integer"}`},
		{"uint16", reflect.TypeFor[uint16](), `{"type":"integer","minimum":0,"maximum":65535}`},
		{"int8", reflect.TypeFor[int8](), `{"type":"integer","minimum":-128,"maximum":127}`},
		{"float", reflect.TypeFor[float32](), `{"type":"number"}`},
		{"string", reflect.TypeFor[string](), `{"type":"string"}`},
		{"bytes", reflect.TypeFor[[]byte](), `{"type":"string","contentEncoding":"base64"}`},
		{"time", reflect.TypeFor[time.Time](), `{"type":"string","format":"date-time"}`},
		{"timePtr", reflect.TypeFor[*time.Time](), `{"type":["string","null"],"format":"date-time"}`},
		{"raw", reflect.TypeFor[json.RawMessage](), `{}`},
		{"any", reflect.TypeFor[any](), `{}`},
		{"number", reflect.TypeFor[json.Number](), `{"type":"number"}`},
		{"text", reflect.TypeFor[netip.Addr](), `{"type":"string"}`},
		{"slice", reflect.TypeFor[[]string](), `{"type":"array","items":{"type":"string"}}`},
		{"array", reflect.TypeFor[[3]int](), `{"type":"array","minItems":3,"maxItems":3,"items":{"type":"integer"}}`},
		{"map", reflect.TypeFor[map[string]bool](), `{"type":"object","additionalProperties":{"type":"boolean"}}`},
		{"intMap", reflect.TypeFor[map[int]bool](), `{"type":"object","propertyNames":{"pattern":"^-?[0-9]+$"},"additionalProperties":{"type":"boolean"}}`},
		{"anon", reflect.TypeFor[struct {
			A string `json:"a"`
			B *int   `json:"b,omitempty"`
		}](), `{"type":"object","properties":{"a":{"type":"string"},"b":{"type":["integer","null"]}},"required":["a"],"additionalProperties":false}`},
		{"recursive", reflect.TypeFor[Device](), `{"$ref":"#/$defs/Device","$defs":{"Device":{"type":"object","properties":{"id":{"type":"string"},"parent":{"anyOf":[{"type":"null"},{"$ref":"#/$defs/Device"}]}},"required":["id","parent"],"additionalProperties":false}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := jsonschema.Document(tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestStructFields(t *testing.T) {
	t.Parallel()
	b := jsonschema.NewBuilder()
	if _, err := b.Add(reflect.TypeFor[Reading]()); err != nil {
		t.Fatal(err)
	}
	s := b.Defs()["Reading"]
	var names []string
	for _, p := range s.Properties {
		n := p.Name
		if p.Optional {
			n += "?"
		}
		names = append(names, n)
	}
	want := "kind seq? tag? device at values note? level count blob? raw? any? addr? mode? small? - by_id? pair? inline?"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("fields:\ngot  %s\nwant %s", got, want)
	}
	if got := strings.Join(s.Required, " "); got != "kind device at values level count -" {
		t.Errorf("required: %s", got)
	}
	if got := strings.Join(b.DefNames(), " "); got != "Reading Device" {
		t.Errorf("defs: %s", got)
	}
}

// Conflicting embedded fields follow encoding/json: the shallower wins, a
// tagged one beats an untagged one at the same depth, a tie drops both.
func TestEmbeddedConflicts(t *testing.T) {
	t.Parallel()
	type A struct{ X, Y, Z int }
	type B struct {
		X int
		Y int `json:"Y"`
	}
	type C struct {
		A
		B
		Z string
	}
	s, err := jsonschema.Document(reflect.TypeFor[C]())
	if err != nil {
		t.Fatal(err)
	}
	c := s.Defs["C"]
	var got []string
	for _, p := range c.Properties {
		got = append(got, p.Name+":"+p.Schema.Type[0])
	}
	if strings.Join(got, " ") != "Y:integer Z:string" {
		t.Errorf("got %v", got)
	}
	// And encoding/json agrees.
	data, _ := json.Marshal(C{})
	if string(data) != `{"Y":0,"Z":""}` {
		t.Errorf("encoding/json: %s", data)
	}
}

func TestNameCollisions(t *testing.T) {
	t.Parallel()
	type Device struct{ N int } // same name as the package-level Device
	type Page[T any] struct{ Items []T }
	b := jsonschema.NewBuilder("Events")
	type Events struct{ E bool }
	for _, typ := range []reflect.Type{reflect.TypeFor[Device](), reflect.TypeFor[Events](), reflect.TypeFor[Page[Extra]]()} {
		if _, err := b.Add(typ); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Add(reflect.TypeFor[struct{ D pkgDevice }]()); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(b.DefNames(), " ")
	if got != "Device Jsonschema_testEvents PageExtra Extra Jsonschema_testDevice" {
		t.Errorf("names: %s", got)
	}
}

type pkgDevice = Device // the package-level Device, by another name

func TestUnsupported(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		typ  reflect.Type
		err  error
		msg  string
	}{
		{"chan", reflect.TypeFor[chan int](), jsonschema.ErrUnsupported, "chan int"},
		{"func", reflect.TypeFor[struct{ F func() }](), jsonschema.ErrUnsupported, ".F"},
		{"complex", reflect.TypeFor[[]complex64](), jsonschema.ErrUnsupported, "complex64"},
		{"mapKey", reflect.TypeFor[map[bool]int](), jsonschema.ErrUnsupported, "map key"},
		{"unknownKey", reflect.TypeFor[struct {
			A string `jsonschema:"maxlen=3"`
		}](), jsonschema.ErrBadTag, "maxlen=3"},
		{"badNumber", reflect.TypeFor[struct {
			A int `jsonschema:"minimum=x"`
		}](), jsonschema.ErrBadTag, "not a number"},
		{"misfit", reflect.TypeFor[struct {
			A int `jsonschema:"maxLength=3"`
		}](), jsonschema.ErrBadTag, "does not apply"},
		{"badPattern", reflect.TypeFor[struct {
			A string `jsonschema:"pattern=a("`
		}](), jsonschema.ErrBadTag, "regular expression"},
		{"badEnum", reflect.TypeFor[struct {
			A int `jsonschema:"enum=1|x"`
		}](), jsonschema.ErrBadTag, `"x"`},
		{"minOverMax", reflect.TypeFor[struct {
			A int `jsonschema:"minimum=3,maximum=1"`
		}](), jsonschema.ErrBadTag, "minimum above maximum"},
		{"quoted", reflect.TypeFor[struct {
			A int `json:",string" jsonschema:"minimum=1"`
		}](), jsonschema.ErrBadTag, ",string"},
		{"object", reflect.TypeFor[struct {
			D Device `jsonschema:"minimum=1"`
		}](), jsonschema.ErrBadTag, "an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := jsonschema.Document(tt.typ)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want %v containing %q", err, tt.err, tt.msg)
			}
		})
	}
}

// A pattern or an enum value may contain commas.
func TestTagCommas(t *testing.T) {
	t.Parallel()
	s, err := jsonschema.Document(reflect.TypeFor[struct {
		A string `json:"a" jsonschema:"pattern=^[a-z]{1,3}$,maxLength=3"`
		B string `json:"b" jsonschema:"enum=x,y|z"`
	}]())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(s)
	want := `{"type":"object","properties":{"a":{"type":"string","maxLength":3,"pattern":"^[a-z]{1,3}$"},"b":{"type":"string","enum":["x,y","z"]}},"required":["a","b"],"additionalProperties":false}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// Patterns keep '<', '>' and '&' (no HTML escaping in generated documents).
func TestNoHTMLEscaping(t *testing.T) {
	t.Parallel()
	s, err := jsonschema.Document(reflect.TypeFor[struct {
		A string `json:"a" jsonschema:"pattern=^[<>&]+$,enum=<|&"`
	}]())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // as package contract writes its documents
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); !strings.Contains(got, `"enum":["<","&"],"pattern":"^[<>&]+$"`) {
		t.Errorf("got %s", got)
	}
}
