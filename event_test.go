package rthub

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// eventTestDup is declared here once; TestNewEvent declares its name again.
var eventTestDup = NewEvent[int]("test:dup")

func TestNewEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		declare func()
		want    string // in the panic's text
	}{
		{"empty name", func() { NewEvent[int]("") }, ErrBadEvent.Error()},
		{"illegal character", func() { NewEvent[int]("bad event") }, ErrBadEvent.Error()},
		{"empty segment", func() { NewEvent[int]("a::b") }, ErrBadEvent.Error()},
		{"duplicate", func() { NewEvent[string](eventTestDup.Name()) }, "already declared with type int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				r := recover()
				if s, _ := r.(string); !strings.Contains(s, tt.want) {
					t.Errorf("panic %v, want one containing %q", r, tt.want)
				}
			}()
			tt.declare()
		})
	}
}

// TestEvents: every declared event is listed once, sorted by name, with its
// payload type, and an iteration can stop early.
func TestEvents(t *testing.T) {
	t.Parallel()
	var names []string
	types := make(map[string]reflect.Type)
	for name, typ := range Events() {
		names = append(names, name)
		types[name] = typ
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("not sorted or listed twice: %q before %q", names[i-1], names[i])
		}
	}
	for _, tt := range []struct {
		name string
		want reflect.Type
	}{
		{eventTestDup.Name(), reflect.TypeFor[int]()},
		{testChat.Name(), reflect.TypeFor[chatMessage]()},
	} {
		if got := types[tt.name]; got != tt.want {
			t.Errorf("Events: %s has type %v, want %v", tt.name, got, tt.want)
		}
	}

	n := 0
	for range Events() {
		n++
		break
	}
	if n != 1 || len(names) < 2 {
		t.Errorf("stopping after the first of %d events took %d", len(names), n)
	}
}

// TestEventName_errors: an illegal name is refused with ErrBadEvent.
func TestEventName_errors(t *testing.T) {
	t.Parallel()
	if err := validEventName("no spaces"); !errors.Is(err, ErrBadEvent) {
		t.Errorf("validEventName = %v, want ErrBadEvent", err)
	}
	if err := validEventName("sensor:data"); err != nil {
		t.Errorf("validEventName(sensor:data) = %v", err)
	}
}
