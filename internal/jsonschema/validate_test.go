package jsonschema_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub/internal/jsonschema"
)

type Ack struct {
	ID   int64              `json:"id" jsonschema:"minimum=1"`
	Note string             `json:"note,omitempty" jsonschema:"maxLength=5"`
	Tags []Tag              `json:"tags,omitempty" jsonschema:"maxItems=2"`
	Sub  *Ack               `json:"sub,omitempty"`
	Mode string             `json:"mode,omitempty" jsonschema:"enum=on|off"`
	Pct  float64            `json:"pct,omitempty" jsonschema:"minimum=0,maximum=100"`
	At   *time.Time         `json:"at,omitempty"`
	Vals map[string]float64 `json:"vals,omitempty"`
	Bin  []byte             `json:"bin,omitempty"`
	Key  map[uint8]string   `json:"key,omitempty"`
	N    int                `json:"n,omitempty,string"`
	Raw  json.RawMessage    `json:"raw,omitempty"`
}

type Tag struct {
	Name string `json:"name" jsonschema:"pattern=^[a-z]+$"`
}

func TestValidate(t *testing.T) {
	t.Parallel()
	v, err := jsonschema.NewValidator(reflect.TypeFor[Ack](), jsonschema.Limits{MaxBytes: 512, MaxDepth: 6})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, doc string
		want      string // "" = valid
		kind      error
	}{
		{"minimal", `{"id":1}`, "", nil},
		{"full", `{"id":2,"note":"héllo","tags":[{"name":"a"}],"sub":{"id":3},"mode":"on","pct":99.5,"at":"2026-12-02T04:00:00Z","vals":{"t":1},"bin":"aGk=","key":{"7":"x"},"n":"12","raw":[1,{}]}`, "", nil},
		{"nullPointer", `{"id":1,"sub":null,"at":null}`, "", nil},
		{"missing", `{}`, "/id: expected a value (required), got none", jsonschema.ErrMismatch},
		{"wrongType", `{"id":"1"}`, "/id: expected integer, got string", jsonschema.ErrMismatch},
		{"float", `{"id":1.5}`, "/id: expected integer, got number 1.5", jsonschema.ErrMismatch},
		{"exponent", `{"id":1e3}`, "/id: expected integer, got number 1e3", jsonschema.ErrMismatch},
		{"overflow", `{"id":99999999999999999999}`, "/id: expected a 64-bit integer, got 99999999999999999999", jsonschema.ErrMismatch},
		{"minimum", `{"id":0}`, "/id: expected at least 1, got 0", jsonschema.ErrMismatch},
		{"maxLength", `{"id":1,"note":"toolong"}`, "/note: expected at most 5 characters, got 7", jsonschema.ErrMismatch},
		{"nullString", `{"id":1,"note":null}`, "/note: expected string, got null", jsonschema.ErrMismatch},
		{"unknown", `{"id":1,"zz":1,"yy":2}`, "/yy: expected no such member (unknown field), got number", jsonschema.ErrMismatch},
		{"nested", `{"id":1,"tags":[{"name":"a"},{"name":"B"}]}`, `/tags/1/name: expected a string matching ^[a-z]+$, got "B"`, jsonschema.ErrMismatch},
		{"maxItems", `{"id":1,"tags":[{"name":"a"},{"name":"b"},{"name":"c"}]}`, "/tags: expected at most 2 items, got 3", jsonschema.ErrMismatch},
		{"recursive", `{"id":1,"sub":{"id":1,"sub":{"id":-1}}}`, "/sub/sub/id: expected at least 1, got -1", jsonschema.ErrMismatch},
		{"enum", `{"id":1,"mode":"auto"}`, `/mode: expected one of "on", "off", got "auto"`, jsonschema.ErrMismatch},
		{"maximum", `{"id":1,"pct":100.5}`, "/pct: expected at most 100, got 100.5", jsonschema.ErrMismatch},
		{"dateTime", `{"id":1,"at":"yesterday"}`, `/at: expected an RFC 3339 date-time, got "yesterday"`, jsonschema.ErrMismatch},
		{"mapValue", `{"id":1,"vals":{"a/b":"x"}}`, "/vals/a~1b: expected number, got string", jsonschema.ErrMismatch},
		{"base64", `{"id":1,"bin":"***"}`, "/bin: expected base64, got a string that is not", jsonschema.ErrMismatch},
		{"intKey", `{"id":1,"key":{"x":"y"}}`, `/key/x: expected a member name matching ^[0-9]+$, got "x"`, jsonschema.ErrMismatch},
		{"quoted", `{"id":1,"n":12}`, "/n: expected string, got number", jsonschema.ErrMismatch},
		{"root", `[]`, "(root): expected object, got array", jsonschema.ErrMismatch},
		{"null", `null`, "(root): expected object, got null", jsonschema.ErrMismatch},
		{"syntax", `{"id":`, "/id: expected a JSON value, got end of input", jsonschema.ErrSyntax},
		{"trailing", `{"id":1} 2`, "(root): expected one JSON value, got more after it", jsonschema.ErrSyntax},
		{"deep", `{"id":1,"raw":[[[[[[[]]]]]]]}`, "/raw/0/0/0/0/0: expected at most 6 levels of nesting, got more", jsonschema.ErrTooDeep},
		{"dup", `{"id":1,"id":2}`, "/id: expected each member once, got a duplicate", jsonschema.ErrMismatch},
		{"large", `{"id":1,"raw":"` + strings.Repeat("x", 600) + `"}`, "(root): expected at most 512 bytes, got 617 bytes", jsonschema.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := v.Validate([]byte(tt.doc))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				// Valid documents decode into the type.
				var a Ack
				if err := json.Unmarshal([]byte(tt.doc), &a); err != nil {
					t.Fatalf("valid, yet encoding/json refuses it: %v", err)
				}
				return
			}
			var ve *jsonschema.Error
			if !errors.As(err, &ve) || !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v (%T), want an *Error wrapping %v", err, err, tt.kind)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
		})
	}
}

// Whatever Go encodes validates against the schema of its type (the
// constraints aside, which a zero value need not meet).
func TestEncodedValuesValidate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 4, 0, 0, 123, time.FixedZone("x", 3600))
	vals := []any{
		Reading{Device: "d1", At: now, Values: map[string]float64{"t": 1}, Level: new(int), Extra: &Extra{Tag: "x"}, ByID: map[int]Device{-3: {ID: "p"}}},
		Device{ID: "a", Parent: &Device{ID: "b"}},
		[]Device{{ID: "x"}},
		map[string][]int{"a": {1}},
		[3]int{1, 2, 3},
	}
	for i, val := range vals {
		v, err := jsonschema.NewValidator(reflect.TypeOf(val), jsonschema.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		data, err := json.Marshal(val)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Validate(data); err != nil {
			t.Errorf("%d: %s: %v", i, data, err)
		}
	}
}

// FuzzValidate feeds arbitrary input (it comes from the network): Validate
// never panics, and whatever it accepts encoding/json decodes into the type.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{`{"id":1}`, `{"id":1,"tags":[{"name":"a"}],"sub":{"id":2}}`, `{"id":1,"vals":{"x":1e308}}`,
		`{"id":1,"key":{"-1":"x"}}`, `[[[[`, `"\u00e9"`, `{"id":1,"n":"3","bin":"aGk="}`, `{"id":1,"at":"2026-01-01T00:00:00Z"}`} {
		f.Add([]byte(s))
	}
	v, err := jsonschema.NewValidator(reflect.TypeFor[Ack](), jsonschema.Limits{MaxBytes: 4096, MaxDepth: 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := v.Validate(data)
		if err == nil {
			var a Ack
			if uerr := json.Unmarshal(data, &a); uerr != nil {
				t.Fatalf("valid per the schema, refused by encoding/json: %v\n%q", uerr, data)
			}
			return
		}
		var ve *jsonschema.Error
		if !errors.As(err, &ve) {
			t.Fatalf("error %v is not an *Error", err)
		}
	})
}

// typical is an emit such as a dashboard sends.
var typical = []byte(`{"id":42,"note":"ok","tags":[{"name":"door"},{"name":"temp"}],"pct":12.5,"at":"2026-12-02T04:00:00Z","vals":{"temperature":21.5,"humidity":40}}`)

func BenchmarkValidate(b *testing.B) {
	v, err := jsonschema.NewValidator(reflect.TypeFor[Ack](), jsonschema.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(typical)))
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Validate(typical); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshal is the decoding that follows validation, for scale.
func BenchmarkUnmarshal(b *testing.B) {
	b.SetBytes(int64(len(typical)))
	b.ReportAllocs()
	for b.Loop() {
		var a Ack
		if err := json.Unmarshal(typical, &a); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleValidator_Validate() {
	type Ack struct {
		ID   int64  `json:"id" jsonschema:"minimum=1"`
		Note string `json:"note,omitempty" jsonschema:"maxLength=200"`
	}
	v, err := jsonschema.NewValidator(reflect.TypeFor[Ack](), jsonschema.Limits{})
	if err != nil {
		panic(err)
	}
	fmt.Println(v.Validate([]byte(`{"id":3,"note":"checked"}`)))
	err = v.Validate([]byte(`{"id":"3"}`))
	var ve *jsonschema.Error
	if errors.As(err, &ve) {
		fmt.Println(ve.Pointer, "|", err)
	}
	// Output:
	// <nil>
	// /id | /id: expected integer, got string
}
