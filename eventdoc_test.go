package rthub

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

type docInner struct {
	Metric string  `json:"metric"`
	Avg    float64 `json:"avg"`
}

type docPayload struct {
	Device  string              `json:"device"`
	At      time.Time           `json:"at"`
	Values  map[string]float64  `json:"values"`
	Items   []docInner          `json:"items,omitempty"`
	Extra   *docInner           `json:"extra"`
	Raw     json.RawMessage     `json:"raw"`
	ByName  map[string]docInner `json:"by_name"`
	Count   int64               `json:"count,string"`
	secret  string
	Skipped string `json:"-"`
}

func TestWriteEventReference(t *testing.T) {
	evs := []EventInfo{{Name: "sensor:data", Type: reflect.TypeFor[docPayload](), Summary: "one reading", Rooms: []string{"device:{id}", "staff"}},
		{Name: "ping:n", Type: reflect.TypeFor[int]()}}
	var b strings.Builder
	if err := WriteEventReference(&b, evs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| [`sensor:data`](#sensordata) | `device:{id}`, `staff` | one reading |",
		"## `sensor:data`",
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

var describedEvent = NewEvent[docInner]("test:described")

func TestEventDescribe(t *testing.T) {
	ev := describedEvent.Describe("described", "r:1")
	for _, info := range Events() {
		if info.Name == ev.Name() {
			if info.Summary != "described" || len(info.Rooms) != 1 || info.Rooms[0] != "r:1" {
				t.Fatalf("info %+v", info)
			}
			return
		}
	}
	t.Fatal("event not listed")
}
