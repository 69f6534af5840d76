package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/org/rthub"
)

// This file holds the decoding and checking of request bodies and query
// parameters: everything in them comes from the network.

// Bounds of request fields.
const (
	// MaxUserLen bounds a user (subject) and a token ID, in bytes.
	MaxUserLen = 256
	// MaxReasonLen bounds a reason: a WebSocket close reason has at most
	// 123 bytes.
	MaxReasonLen = 123
)

// errBadRequest is wrapped by every problem found in a request: 400.
var errBadRequest = errors.New("admin: bad request")

// errTooLarge is a body over Options.MaxBody: 413.
var errTooLarge = errors.New("admin: request body too large")

// publishRequest is the body of POST /publish.
type publishRequest struct {
	Room  string          `json:"room"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	// Key is the state key of a keyed event (rthub.WithKey); optional.
	Key string `json:"key"`
}

func (p *publishRequest) check() error {
	if err := rthub.ValidRoom(p.Room); err != nil {
		return fmt.Errorf("%w: room: %v", errBadRequest, err)
	}
	if err := rthub.ValidRoom(p.Event); err != nil { // event names follow the room rules
		return fmt.Errorf("%w: event: a name such as announcement or ops:notice", errBadRequest)
	}
	if len(p.Data) == 0 {
		p.Data = json.RawMessage("null")
	}
	if len(p.Key) > rthub.MaxRoomLen || !printable(p.Key) {
		return fmt.Errorf("%w: key: at most %d bytes of printable text", errBadRequest, rthub.MaxRoomLen)
	}
	return nil
}

// userRequest is the body of POST /disconnect and POST /recheck.
type userRequest struct {
	User   string `json:"user"`
	Reason string `json:"reason"`
}

func (u *userRequest) check() error {
	if err := checkUser(u.User, true); err != nil {
		return err
	}
	return checkReason(u.Reason)
}

// roomUserRequest is the body of POST /join and POST /leave.
type roomUserRequest struct {
	User   string `json:"user"`
	Room   string `json:"room"`
	Reason string `json:"reason"`
}

func (u *roomUserRequest) check() error {
	if err := checkUser(u.User, true); err != nil {
		return err
	}
	if err := rthub.ValidRoom(u.Room); err != nil {
		return fmt.Errorf("%w: room: %v", errBadRequest, err)
	}
	return checkReason(u.Reason)
}

// revokeRequest is the body of POST /revoke: a token ID, or a user's tokens
// issued before a time (default: now).
type revokeRequest struct {
	User         string     `json:"user"`
	TokenID      string     `json:"token_id"`
	IssuedBefore *time.Time `json:"issued_before"`
	Reason       string     `json:"reason"`
}

func (v *revokeRequest) check() error {
	if (v.User == "") == (v.TokenID == "") {
		return fmt.Errorf("%w: one of user and token_id required", errBadRequest)
	}
	if err := checkUser(v.User, false); err != nil {
		return err
	}
	if len(v.TokenID) > MaxUserLen || !printable(v.TokenID) {
		return fmt.Errorf("%w: token_id: at most %d bytes of printable text", errBadRequest, MaxUserLen)
	}
	if v.IssuedBefore != nil && v.User == "" {
		return fmt.Errorf("%w: issued_before needs user", errBadRequest)
	}
	if v.IssuedBefore != nil && (v.IssuedBefore.IsZero() || v.IssuedBefore.After(time.Now().Add(time.Minute))) {
		return fmt.Errorf("%w: issued_before: a time not in the future", errBadRequest)
	}
	return checkReason(v.Reason)
}

func checkUser(user string, required bool) error {
	if user == "" && !required {
		return nil
	}
	if user == "" || len(user) > MaxUserLen || !printable(user) {
		return fmt.Errorf("%w: user: 1 to %d bytes of printable text", errBadRequest, MaxUserLen)
	}
	return nil
}

func checkReason(reason string) error {
	if len(reason) > MaxReasonLen || !printable(reason) {
		return fmt.Errorf("%w: reason: at most %d bytes of printable text", errBadRequest, MaxReasonLen)
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// decodeBody reads r's body, at most max bytes, into v: one JSON object,
// unknown fields refused, nothing after it. The error wraps errTooLarge or
// errBadRequest.
func decodeBody(w http.ResponseWriter, r *http.Request, max int64, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: at most %d bytes", errTooLarge, max)
		}
		return fmt.Errorf("%w: reading the body: %v", errBadRequest, err)
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes exactly one JSON object from b into v, refusing unknown
// fields and trailing data.
func decodeJSON(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("%w: want a JSON object", errBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s", errBadRequest, jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON object", errBadRequest)
	}
	return nil
}

// jsonProblem describes a decoding error briefly, without echoing input
// beyond a field name.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "malformed JSON at offset " + strconv.FormatInt(se.Offset, 10)
	case errors.As(err, &te):
		return "field " + truncate(te.Field, 64) + ": wrong type"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + truncate(strings.TrimPrefix(err.Error(), "json: unknown field "), 70)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	return "invalid JSON"
}

// queryRoom reads the room parameter of r.
func queryRoom(r *http.Request) (string, error) {
	room := r.URL.Query().Get("room")
	if err := rthub.ValidRoom(room); err != nil {
		return "", fmt.Errorf("%w: room: %v", errBadRequest, err)
	}
	return room, nil
}

// queryInt reads an integer parameter of r in [1, max], def when absent.
func queryInt(r *http.Request, name string, def, max int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("%w: %s: 1 to %d", errBadRequest, name, max)
	}
	return n, nil
}

// parsePosition reads a stream position written "offset@epoch" (as
// [rthub.StreamPosition.String] writes it); "" is the zero position.
func parsePosition(s string) (rthub.StreamPosition, error) {
	if s == "" {
		return rthub.StreamPosition{}, nil
	}
	off, epoch, ok := strings.Cut(s, "@")
	n, err := strconv.ParseUint(off, 10, 64)
	if !ok || err != nil || epoch == "" || len(epoch) > 64 || !printable(epoch) {
		return rthub.StreamPosition{}, fmt.Errorf("%w: since: want offset@epoch", errBadRequest)
	}
	return rthub.StreamPosition{Offset: n, Epoch: epoch}, nil
}
