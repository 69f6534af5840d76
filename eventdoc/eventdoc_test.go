package eventdoc_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/eventdoc"
)

type docInner struct {
	Metric string  `json:"metric"`
	Avg    float64 `json:"avg"`
}

type docPayload struct {
	Device string              `json:"device"`
	At     time.Time           `json:"at"`
	Values map[string]float64  `json:"values"`
	Items  []docInner          `json:"items,omitempty"`
	Extra  *docInner           `json:"extra"`
	Raw    json.RawMessage     `json:"raw"`
	ByName map[string]docInner `json:"by_name"`
	Count  int64               `json:"count,string"`
	//lint:ignore U1000 the reference must leave unexported fields out
	secret  string
	Skipped string `json:"-"`
}

func TestWrite(t *testing.T) {
	t.Parallel()
	evs := []eventdoc.Event{
		{Name: "sensor:data", Type: reflect.TypeFor[docPayload](), Summary: "one reading", Rooms: []string{"device:{id}", "staff"}},
		{Name: "ping:n", Type: reflect.TypeFor[int]()},
	}
	var b strings.Builder
	if err := eventdoc.Write(&b, evs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| [`sensor:data`](#sensordata) | `device:{id}`, `staff` | one reading |",
		"| [`ping:n`](#pingn) | — |  |",
		"## `sensor:data`",
		"Rooms: `device:{id}`, `staff`.",
		"| `device` | string |  |",
		"| `at` | string (RFC 3339 time) |  |",
		"| `values` | object of number |  |",
		"| `items` | array of object | omitted when empty |",
		"| `items[].metric` | string |  |",
		"| `extra` | object | may be null |",
		"| `extra.avg` | number |  |",
		"| `raw` | any JSON |  |",
		"| `by_name.*.metric` | string |  |",
		"| `count` | integer | encoded as a string |",
		"Payload (`data`): integer (Go type `int`)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reference lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"secret", "Skipped"} {
		if strings.Contains(out, bad) {
			t.Errorf("reference shows %s", bad)
		}
	}
}

// failingWriter fails every write with errWrite.
type failingWriter struct{}

var errWrite = errors.New("write failed")

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestWrite_writerError(t *testing.T) {
	t.Parallel()
	err := eventdoc.Write(failingWriter{}, []eventdoc.Event{{Name: "a:b", Type: reflect.TypeFor[string]()}})
	if !errors.Is(err, errWrite) {
		t.Fatalf("Write = %v, want %v", err, errWrite)
	}
}

// Events of TestDeclared: declared once per process, as programs do.
var (
	declaredDescribed = eventdoc.Describe(rthub.NewEvent[docInner]("test:described"), "first", "r:0")
	declaredBare      = rthub.NewEvent[int]("test:bare")
)

// TestDeclared: every declared event is listed, sorted, with its payload type;
// a described one with what Describe recorded last (copied), a bare one with
// nothing.
func TestDeclared(t *testing.T) {
	t.Parallel()
	rooms := []string{"r:1"}
	if ev := eventdoc.Describe(declaredDescribed, "described", rooms...); ev != declaredDescribed {
		t.Fatalf("Describe returned %v, want its argument", ev)
	}
	rooms[0] = "changed by the caller"

	evs := eventdoc.Declared()
	byName := make(map[string]eventdoc.Event)
	for i, ev := range evs {
		if i > 0 && evs[i-1].Name >= ev.Name {
			t.Errorf("not sorted: %q before %q", evs[i-1].Name, ev.Name)
		}
		byName[ev.Name] = ev
	}
	tests := []struct {
		name    string
		typ     reflect.Type
		summary string
		rooms   []string
	}{
		{declaredDescribed.Name(), reflect.TypeFor[docInner](), "described", []string{"r:1"}},
		{declaredBare.Name(), reflect.TypeFor[int](), "", nil},
	}
	for _, tt := range tests {
		ev, ok := byName[tt.name]
		if !ok {
			t.Errorf("%s not listed in %v", tt.name, evs)
			continue
		}
		if ev.Type != tt.typ || ev.Summary != tt.summary || !reflect.DeepEqual(ev.Rooms, tt.rooms) {
			t.Errorf("%s = %+v, want type %v, summary %q, rooms %q", tt.name, ev, tt.typ, tt.summary, tt.rooms)
		}
	}

	// The result is the caller's: changing it changes nothing recorded.
	byName[declaredDescribed.Name()].Rooms[0] = "x"
	for _, ev := range eventdoc.Declared() {
		if ev.Name == declaredDescribed.Name() && ev.Rooms[0] != "r:1" {
			t.Errorf("Declared shares its Rooms: %q", ev.Rooms)
		}
	}
}

type Reading struct {
	Device string    `json:"device"`
	At     time.Time `json:"at"`
	Value  *float64  `json:"value,omitempty"`
}

func ExampleWrite() {
	evs := []eventdoc.Event{{
		Name:    "sensor:data",
		Type:    reflect.TypeFor[Reading](),
		Summary: "One reading of one device.",
		Rooms:   []string{"device:{id}", "staff"},
	}}
	// A program passes eventdoc.Declared() instead, the events it declares.
	if err := eventdoc.Write(os.Stdout, evs); err != nil {
		panic(err)
	}
	// Output:
	// | event | rooms | what |
	// |---|---|---|
	// | [`sensor:data`](#sensordata) | `device:{id}`, `staff` | One reading of one device. |
	//
	// ## `sensor:data`
	//
	// One reading of one device.
	//
	// Rooms: `device:{id}`, `staff`.
	//
	// Payload (`data`): object (Go type `eventdoc_test.Reading`)
	//
	// | field | JSON type | note |
	// |---|---|---|
	// | `device` | string |  |
	// | `at` | string (RFC 3339 time) |  |
	// | `value` | number | omitted when empty; may be null |
}
