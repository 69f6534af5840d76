package rthub

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// ackPayload is the payload of the test's validated event.
type ackPayload struct {
	ID     int64              `json:"id" jsonschema:"minimum=1"`
	Note   string             `json:"note,omitempty" jsonschema:"maxLength=10"`
	Values map[string]float64 `json:"values,omitempty"`
	Sub    *ackPayload        `json:"sub,omitempty"`
}

var testAck = NewEvent[ackPayload]("test:ack")

// emitHub starts a hub whose staff may emit test:ack to staff; handled
// counts the handler's calls.
func emitHub(t *testing.T, validate bool) (url string, handled *atomic.Int64) {
	t.Helper()
	handled = new(atomic.Int64)
	_, url = testHub(t, func(o *Options) {
		o.ValidateEmits = validate
		o.Policy = Policy{Roles: map[string]RoleRules{"staff": {
			Join: []string{"staff"}, AutoJoin: []string{"staff"},
			Emit: []EmitRule{{Events: []string{"test:ack", "chat:message"}, Rooms: []string{"staff"}}},
		}}}
		o.Handlers = append(o.Handlers, testAck.Handle(func(ctx context.Context, in Incoming[ackPayload]) error {
			handled.Add(1)
			return nil
		}))
	})
	return url, handled
}

// TestValidateEmits sends emits over a real connection to a hub with and
// without Options.ValidateEmits, and checks the replies: the code, the
// message and the field, and that the handler ran only for good payloads.
func TestValidateEmits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		data     any
		validate bool
		field    string // "" with ok true: accepted
		msg      string
	}{
		{"ok", map[string]any{"id": 3, "note": "fine"}, true, "", ""},
		{"okWithout", map[string]any{"id": 3, "note": "fine"}, false, "", ""},
		{"wrongType", map[string]any{"id": "3"}, true, "/id", "/id: expected integer, got string"},
		{"wrongTypeWithout", map[string]any{"id": "3"}, false, "/id", "/id: expected integer, got string"},
		{"nestedWithout", map[string]any{"id": 1, "values": map[string]any{"temp": "hot"}}, false, "/values", "/values: expected number, got string"}, // encoding/json names the map, not the key
		{"nested", map[string]any{"id": 1, "values": map[string]any{"temp": "hot"}}, true, "/values/temp", "/values/temp: expected number, got string"},
		{"deep", map[string]any{"id": 1, "sub": map[string]any{"id": 0}}, true, "/sub/id", "/sub/id: expected at least 1, got 0"},
		{"missing", map[string]any{"note": "x"}, true, "/id", "/id: expected a value (required), got none"},
		{"tooLong", map[string]any{"id": 1, "note": strings.Repeat("é", 11)}, true, "/note", "at most 10 characters, got 11"},
		{"unknown", map[string]any{"id": 1, "colour": "red"}, true, "/colour", "unknown field"},
		{"null", nil, true, "", "(root): expected object, got null"},
		// Without validation encoding/json takes these: 0 is below the
		// minimum, unknown fields are dropped, a missing id is zero.
		{"tooSmallWithout", map[string]any{"id": 0, "colour": "red"}, false, "", ""},
	}
	hubs := map[bool]struct {
		url     string
		handled *atomic.Int64
	}{}
	for _, v := range []bool{false, true} {
		url, handled := emitHub(t, v)
		hubs[v] = struct {
			url     string
			handled *atomic.Int64
		}{url, handled}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hb := hubs[tt.validate]
			c := dial(t, hb.url, testToken(t, "u-"+tt.name, time.Minute, "staff"))
			before := hb.handled.Load()
			r := c.cmd("emit", map[string]any{"event": "test:ack", "room": "staff", "data": tt.data})
			if tt.msg == "" {
				if !r.OK {
					t.Fatalf("refused: %+v", r.Error)
				}
				if hb.handled.Load() == before {
					t.Error("handler not called")
				}
				return
			}
			if r.OK || r.Error == nil {
				t.Fatalf("accepted, want bad_payload")
			}
			if r.Error.Code != "bad_payload" || r.Error.Field != tt.field || !strings.Contains(r.Error.Message, tt.msg) {
				t.Errorf("error = %+v, want bad_payload, field %q, message containing %q", r.Error, tt.field, tt.msg)
			}
			if !errors.Is(r.Error, ErrBadPayload) {
				t.Error("not ErrBadPayload")
			}
		})
	}
}

// New refuses a handler whose payload type has no schema when
// ValidateEmits is on, and a bad jsonschema tag; without the option the
// same handlers are fine.
func TestValidateEmitsOptions(t *testing.T) {
	t.Parallel()
	type badTag struct {
		N int `json:"n" jsonschema:"maxLength=3"`
	}
	type noJSON struct {
		C chan int
	}
	evTag := NewEvent[badTag]("test:badtag")
	evChan := NewEvent[noJSON]("test:chan")
	for _, validate := range []bool{false, true} {
		h, err := New(Options{
			Auth:          AuthOptions{Keys: map[string]any{"": testSecret}},
			Policy:        testPolicy,
			Handlers:      []Handler{testChat.Relay(), evTag.Relay(), evChan.Relay()},
			ValidateEmits: validate,
		})
		if !validate {
			if err != nil {
				t.Fatalf("without ValidateEmits: %v", err)
			}
			h.Close()
			continue
		}
		var oe *OptionsError
		if !errors.As(err, &oe) || len(oe.Problems) != 2 {
			t.Fatalf("err = %v, want an OptionsError with two problems", err)
		}
		for _, want := range []string{`handler of "test:badtag"`, "maxLength does not apply", `handler of "test:chan"`, "no JSON encoding"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
	}
}
