package jsonschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks the parser against encoding/json: the same documents are
// valid JSON, and they decode to the same values (numbers as json.Number),
// except that the parser refuses duplicate member names and deep nesting.
func FuzzParse(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e3,"x\u00e9\ud83d\ude00",true,false,null]}`, `"\ud800"`, "\"\xff\"", `[1,]`,
		`{"a":1,"a":2}`, `01`, `-`, `1.`, `1e`, ` {"b" : { } } `, `[[[[[[[[[[]]]]]]]]]]`, "\"\t\"", `"\/"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w := walker{v: &Validator{}}
		p := parser{data: data, maxDepth: 8, w: &w}
		got, err := p.document()
		valid := json.Valid(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%q: error %v is not an *Error", data, err)
			}
			if errors.Is(err, ErrSyntax) && valid {
				t.Fatalf("%q: parser says %v, encoding/json says valid", data, err)
			}
			return
		}
		if !valid {
			t.Fatalf("%q: parser accepts what encoding/json refuses", data)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: parser %#v, encoding/json %#v", data, got, want)
		}
	})
}
