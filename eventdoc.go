package rthub

import (
	"encoding"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
)

// Describe records a one-line summary of the event and the rooms it goes to
// (patterns such as "device:{id}" are fine: they are only shown), for
// [WriteEventReference]. It returns e, so a declaration reads
//
//	var SensorData = rthub.NewEvent[Reading]("sensor:data").
//		Describe("one reading of one device", "device:{id}", "staff")
func (e Event[T]) Describe(summary string, rooms ...string) Event[T] {
	events.Lock()
	defer events.Unlock()
	if events.docs == nil {
		events.docs = make(map[string]eventDoc)
	}
	events.docs[e.name] = eventDoc{summary: summary, rooms: append([]string(nil), rooms...)}
	return e
}

type eventDoc struct {
	summary string
	rooms   []string
}

// WriteEventReference writes a Markdown reference of events (see [Events]):
// for each, its summary and rooms (from [Event.Describe]) and the JSON fields
// of its payload, derived from the Go type by the rules of encoding/json. Run
// it from a test or a go:generate program, so the reference cannot drift from
// the code.
func WriteEventReference(w io.Writer, evs []EventInfo) error {
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
