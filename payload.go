package rthub

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/org/rthub/internal/jsonschema"
)

// payloadError is the bad_payload refusal of a client's emit whose data does
// not fit the event's type: what is wrong and, when known, where (a JSON
// Pointer into data). It wraps ErrBadPayload and, for a schema violation,
// the validator's error.
type payloadError struct {
	event string
	field string // JSON Pointer; "" for the whole payload or unknown
	msg   string // safe to show the client
	err   error
}

// Error implements error.
func (e *payloadError) Error() string {
	return "rthub: bad payload: " + e.msg
}

// Unwrap returns ErrBadPayload and the cause, if any.
func (e *payloadError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrBadPayload}
	}
	return []error{ErrBadPayload, e.err}
}

// As makes errors.As with a **ReplyError yield what the client sees: code
// bad_payload, the message and the field.
func (e *payloadError) As(target any) bool {
	if re, ok := target.(**ReplyError); ok {
		*re = &ReplyError{Code: "bad_payload", Message: truncate(e.msg, 200), Field: e.field}
		return true
	}
	return false
}

// decodeError explains why data of event did not decode into its type,
// naming the field when encoding/json can tell (a JSON value of the wrong
// type); the pointer is built from UnmarshalTypeError.Field, whose names are
// joined by '.', so a member name containing '.' is reported split.
func decodeError(event string, err error) error {
	pe := &payloadError{event: event, msg: "data does not decode as " + event}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			pe.field = "/" + strings.ReplaceAll(jsonPointerEscape(te.Field), ".", "/")
		}
		where := pe.field
		if where == "" {
			where = "(root)"
		}
		pe.msg = fmt.Sprintf("data does not decode as %s: %s: expected %s, got %s", event, where, jsonKind(te.Type), te.Value)
	}
	return pe
}

// jsonPointerEscape escapes '~' and '/' in a reference token (RFC 6901).
func jsonPointerEscape(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
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
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "string (base64)"
		}
		return "array"
	case reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return t.String()
}

// schemaError is the bad_payload refusal of data that fails the event's
// schema (Options.ValidateEmits).
func schemaError(event string, err error) error {
	pe := &payloadError{event: event, msg: "data does not match " + event + ": " + err.Error(), err: err}
	var ve *jsonschema.Error
	if errors.As(err, &ve) {
		pe.field = ve.Pointer
	}
	return pe
}

// buildValidators builds the schema validator of every handler's payload
// type (Options.ValidateEmits). A type that cannot have a schema, or a bad
// jsonschema tag, is a problem of the options.
func buildValidators(handlers map[string]Handler, maxBytes int64) (map[string]*jsonschema.Validator, []error) {
	vals := make(map[string]*jsonschema.Validator, len(handlers))
	var errs []error
	for name, hd := range handlers {
		v, err := jsonschema.NewValidator(hd.payloadType(), jsonschema.Limits{MaxBytes: int(min(maxBytes, 1<<30))})
		if err != nil {
			errs = append(errs, fmt.Errorf("rthub: ValidateEmits: handler of %q: payload type %v: %w", name, hd.payloadType(), err))
			continue
		}
		vals[name] = v
	}
	return vals, errs
}
