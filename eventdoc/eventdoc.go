// Package eventdoc generates a Markdown reference of the events a program
// declares with [rthub.NewEvent]: for each, a summary and its rooms (recorded
// with [Describe]) and the JSON fields of its payload, derived from the Go
// type. A test that compares the output with a committed file keeps the
// reference from drifting from the code (see examples/iotserver).
package eventdoc

import (
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/org/rthub"
)

// described holds what [Describe] recorded, by event name.
var described struct {
	sync.Mutex
	docs map[string]doc
}

type doc struct {
	summary string
	rooms   []string
}

// Describe records a one-line summary of e and the rooms it goes to
// (patterns such as "device:{id}" are fine: they are only shown), for
// [Declared]. It returns e, so a declaration reads
//
//	var SensorData = eventdoc.Describe(rthub.NewEvent[Reading]("sensor:data"),
//		"one reading of one device", "device:{id}", "staff")
//
// Describing an event again replaces what was recorded. It is safe for
// concurrent use.
func Describe[T any](e rthub.Event[T], summary string, rooms ...string) rthub.Event[T] {
	described.Lock()
	defer described.Unlock()
	if described.docs == nil {
		described.docs = make(map[string]doc)
	}
	described.docs[e.Name()] = doc{summary: summary, rooms: slices.Clone(rooms)}
	return e
}

// Event is one entry of a reference: an event's name and payload type, and
// what [Describe] recorded for it.
type Event struct {
	Name string
	Type reflect.Type // the payload's Go type
	// Summary and Rooms are what Describe recorded, if anything.
	Summary string
	Rooms   []string
}

// Declared lists every event declared with [rthub.NewEvent] in this process,
// sorted by name, each with what [Describe] recorded for it (nothing for an
// event never described: it is still listed, so none is left out).
func Declared() []Event {
	var out []Event
	for name, t := range rthub.Events() {
		out = append(out, Event{Name: name, Type: t})
	}
	described.Lock()
	defer described.Unlock()
	for i := range out {
		d := described.docs[out[i].Name]
		out[i].Summary, out[i].Rooms = d.summary, slices.Clone(d.rooms)
	}
	return out
}

// Write writes a Markdown reference of evs, in their order: a table of
// contents, then for each event its summary and rooms and the JSON fields of
// its payload, derived from the Go type by the rules of encoding/json. Run it
// from a test or a go:generate program on [Declared], so the reference cannot
// drift from the code. The only error is w's.
func Write(w io.Writer, evs []Event) error {
	var b strings.Builder
	b.WriteString("| event | rooms | what |\n|---|---|---|\n")
	for _, ev := range evs {
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s | %s |\n", ev.Name, anchor(ev.Name), codeList(ev.Rooms), ev.Summary)
	}
	for _, ev := range evs {
		fmt.Fprintf(&b, "\n## `%s`\n\n", ev.Name)
		if ev.Summary != "" {
			fmt.Fprintf(&b, "%s\n\n", ev.Summary)
		}
		if len(ev.Rooms) > 0 {
			fmt.Fprintf(&b, "Rooms: %s.\n\n", codeList(ev.Rooms))
		}
		fmt.Fprintf(&b, "Payload (`data`): %s (Go type `%s`)\n", jsonKind(ev.Type), ev.Type)
		var rows []fieldRow
		collectFields(&rows, ev.Type, "", 0)
		if len(rows) > 0 {
			b.WriteString("\n| field | JSON type | note |\n|---|---|---|\n")
			for _, r := range rows {
				fmt.Fprintf(&b, "| `%s` | %s | %s |\n", r.path, r.kind, r.note)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

type fieldRow struct{ path, kind, note string }

var (
	timeType      = reflect.TypeFor[time.Time]()
	rawType       = reflect.TypeFor[json.RawMessage]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	textType      = reflect.TypeFor[encoding.TextMarshaler]()
)

// collectFields lists the JSON fields of struct type t (following pointers,
// slices and maps of structs) with dotted paths.
func collectFields(rows *[]fieldRow, t reflect.Type, prefix string, depth int) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if depth > 6 || t.Kind() != reflect.Struct || opaque(t) {
		return
	}
	for f := range t.Fields() {
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" && opts == "" {
			continue
		}
		ft := f.Type
		if f.Anonymous && name == "" {
			collectFields(rows, ft, prefix, depth+1) // embedded: its fields are promoted
			continue
		}
		if name == "" {
			name = f.Name
		}
		var notes []string
		if strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero") {
			notes = append(notes, "omitted when empty")
		}
		if strings.Contains(opts, "string") {
			notes = append(notes, "encoded as a string")
		}
		if ft.Kind() == reflect.Pointer {
			notes = append(notes, "may be null")
		}
		path := prefix + name
		*rows = append(*rows, fieldRow{path: path, kind: jsonKind(ft), note: strings.Join(notes, "; ")})
		inner := ft
		for inner.Kind() == reflect.Pointer {
			inner = inner.Elem()
		}
		switch inner.Kind() {
		case reflect.Struct:
			collectFields(rows, inner, path+".", depth+1)
		case reflect.Slice, reflect.Array:
			collectFields(rows, inner.Elem(), path+"[].", depth+1)
		case reflect.Map:
			collectFields(rows, inner.Elem(), path+".*.", depth+1)
		}
	}
}

// opaque reports whether t encodes itself (time, raw JSON, custom marshalers).
func opaque(t reflect.Type) bool {
	return t == timeType || t == rawType || t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType) ||
		t.Implements(textType) || reflect.PointerTo(t).Implements(textType)
}

// jsonKind names the JSON type t encodes to.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return "string (RFC 3339 time)"
	case t == rawType:
		return "any JSON"
	case opaque(t):
		return "custom (" + t.String() + ")"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string (base64)"
		}
		return "array of " + jsonKind(t.Elem())
	case reflect.Map:
		return "object of " + jsonKind(t.Elem())
	case reflect.Struct:
		return "object"
	case reflect.Interface:
		return "any JSON"
	}
	return t.Kind().String()
}

func codeList(ss []string) string {
	if len(ss) == 0 {
		return "—"
	}
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "`" + s + "`"
	}
	return strings.Join(q, ", ")
}

// anchor is the GitHub heading anchor of "## `name`".
func anchor(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		}
	}
	return b.String()
}
