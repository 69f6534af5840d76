package rthub

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// commandSeeds are client messages for the fuzzers and tables: valid commands
// and the bad inputs of TestConn_BadInput.
var commandSeeds = []string{
	`{"id":1,"op":"join","room":"device:7"}`,
	`{"id":2,"op":"leave","room":"device:7"}`,
	`{"id":3,"op":"emit","event":"chat:message","room":"staff","data":{"text":"hi"}}`,
	`{"id":4,"op":"refresh","token":"a.b.c"}`,
	`{"id":5,"op":"ping"}`,
	`{"id":6,"op":"presence","room":"staff"}`,
	`{"id":7,"op":"viewing","target":"device:42"}`,
	`{"id":8,"op":"viewing"}`,
	`{"id":9,"op":"presence"}`,
	`{"id":10,"op":"viewing","target":7}`,
	`{"op":"ping"}`,
	` {"id":18446744073709551615,"op":"ping"}`,
	`{"id":1,"op":"join","room":`,
	`{"id":1,"op":"ping"`,
	`{"id":1,"op":"ping"}}`,
	`{"id":1,"op":"ping"} {"id":2,"op":"ping"}`,
	`{"op":"ping",`,
	`[{"id":1,"op":"ping"}]`,
	`42`,
	`"ping"`,
	`null`,
	``,
	" \n\t ",
	`{"id":1,"op":"subscribe","room":"staff"}`,
	`{"id":1}`,
	`{"id":1,"op":""}`,
	`{"id":1,"op":"join"}`,
	`{"id":1,"op":"join","room":""}`,
	`{"id":1,"op":"emit","room":"staff","data":{}}`,
	`{"id":1,"op":"refresh"}`,
	`{"id":1,"op":"join","room":7}`,
	`{"id":1,"op":5}`,
	`{"id":"x","op":"ping"}`,
	`{"id":-1,"op":"ping"}`,
	`{"id":1.5,"op":"ping"}`,
	`{"id":1e3,"op":"ping"}`,
	`{"ID":7,"op":"ping",}`,
	`{"x":{"id":9,"y":[1,{"id":8}]},"id":3,"op":`,
	`{"id":1,"op":"join","room":"device 7"}`,
	"{\"id\":1,\"op\":\"ping\",\"x\":\"\xff\"}",
}

func TestDecodeCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		id      uint64
		op      string
		wantErr error
	}{
		{`{"id":1,"op":"join","room":"device:7"}`, 1, "join", nil},
		{` {"id":5,"op":"ping"}`, 5, "ping", nil},
		{"\r\n\t{\"op\":\"ping\"}", 0, "ping", nil},
		{`{"id":18446744073709551615,"op":"ping"}`, 1<<64 - 1, "ping", nil},
		{`{"id":3,"op":"emit","event":"chat:message","room":"staff"}`, 3, "emit", nil},
		{`{"id":4,"op":"refresh","token":"a.b.c"}`, 4, "refresh", nil},
		// Invalid JSON: the id is read up to the syntax error.
		{`{"id":1,"op":"join","room":`, 1, "", ErrBadRequest},
		{`{"id":1,"op":"ping"}}`, 1, "", ErrBadRequest},
		{`{"id":1,"op":"ping"} {"id":2}`, 1, "", ErrBadRequest},
		{`{"ID":7,"op":"ping",}`, 7, "", ErrBadRequest},
		{`{"id":2,"id":3,`, 3, "", ErrBadRequest},
		{`{"x":{"id":9,"y":[1,{"id":8}]},"id":3,"op":`, 3, "", ErrBadRequest},
		{`{"x":{"id":9,`, 0, "", ErrBadRequest},
		{`{"op":"ping",`, 0, "", ErrBadRequest},
		{`{"id":"7",`, 0, "", ErrBadRequest},
		{`{"id":-7,`, 0, "", ErrBadRequest},
		{`{"id":1e3,`, 0, "", ErrBadRequest},
		// Not an object.
		{`[{"id":1,"op":"ping"}]`, 0, "", ErrBadRequest},
		{`42`, 0, "", ErrBadRequest},
		{`"ping"`, 0, "", ErrBadRequest},
		{`null`, 0, "", ErrBadRequest},
		{``, 0, "", ErrBadRequest},
		{"  ", 0, "", ErrBadRequest},
		// Wrong types: the fields before the error are kept.
		{`{"id":1,"op":"join","room":7}`, 1, "", ErrBadRequest},
		{`{"id":1,"op":5}`, 1, "", ErrBadRequest},
		{`{"id":"x","op":"ping"}`, 0, "", ErrBadRequest},
		{`{"id":1.5,"op":"ping"}`, 0, "", ErrBadRequest},
		// Missing fields.
		{`{"id":1}`, 1, "", ErrBadRequest},
		{`{"id":1,"op":"join"}`, 1, "join", ErrBadRequest},
		{`{"id":1,"op":"leave","room":""}`, 1, "leave", ErrBadRequest},
		{`{"id":1,"op":"emit","room":"staff"}`, 1, "emit", ErrBadRequest},
		{`{"id":1,"op":"emit","event":"chat:message"}`, 1, "emit", ErrBadRequest},
		{`{"id":1,"op":"refresh"}`, 1, "refresh", ErrBadRequest},
		// Unknown op.
		{`{"id":1,"op":"subscribe"}`, 1, "subscribe", ErrUnknownOp},
		{`{"id":1,"op":"PING"}`, 1, "PING", ErrUnknownOp},
	}
	for _, tc := range tests {
		cmd, err := decodeCommand([]byte(tc.in))
		if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
			t.Errorf("decodeCommand(%q) err = %v, want %v", tc.in, err, tc.wantErr)
			continue
		}
		if cmd.ID != tc.id {
			t.Errorf("decodeCommand(%q).ID = %d, want %d", tc.in, cmd.ID, tc.id)
		}
		if tc.wantErr == nil && cmd.Op != tc.op {
			t.Errorf("decodeCommand(%q).Op = %q, want %q", tc.in, cmd.Op, tc.op)
		}
	}
}

// FuzzDecodeMessage: decodeCommand never panics; a success is a JSON object
// with a known op and that op's required fields; a failure wraps
// ErrBadRequest or ErrUnknownOp.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range commandSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := decodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrUnknownOp) {
				t.Fatalf("err = %v, want ErrBadRequest or ErrUnknownOp", err)
			}
			if errors.Is(err, ErrUnknownOp) && (cmd.Op == "" || knownOp(cmd.Op)) {
				t.Fatalf("unknown_op for op %q", cmd.Op)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if !knownOp(cmd.Op) {
			t.Fatalf("accepted op %q", cmd.Op)
		}
		switch cmd.Op {
		case cmdJoin, cmdLeave, cmdPresence:
			if cmd.Room == "" {
				t.Fatalf("%s without a room", cmd.Op)
			}
		case cmdEmit:
			if cmd.Room == "" || cmd.Event == "" {
				t.Fatalf("emit without a room or event")
			}
		case cmdRefresh:
			if cmd.Token == "" {
				t.Fatalf("refresh without a token")
			}
		}
		if len(cmd.Data) > 0 && !json.Valid(cmd.Data) {
			t.Fatalf("data %q is not valid JSON", cmd.Data)
		}
	})
}

func knownOp(op string) bool {
	switch op {
	case cmdJoin, cmdLeave, cmdEmit, cmdRefresh, cmdPing, cmdPresence, cmdViewing, cmdCall, cmdCancel:
		return true
	}
	return false
}

// jsonStringSeeds are strings appendJSONString must escape.
var jsonStringSeeds = []string{
	"",
	"plain",
	`"quote" and \backslash\`,
	"<script>alert(1)</script> & co",
	"\u2028line\u2029para",
	"\x00\x01\x1f\x7f",
	"\t\n\r\b\f",
	"\xff\xfe",
	"a\xc0\xafb",
	"\xed\xa0\x80", // UTF-16 surrogate
	"€ 日本 🎉",
	"\xe2\x82", // truncated rune
	"ok\xe2\x82\xac\xe2",
}

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range jsonStringSeeds {
		checkJSONString(t, s)
	}
	// The prefix is kept.
	if got := string(appendJSONString([]byte("x:"), "a")); got != `x:"a"` {
		t.Errorf(`appendJSONString("x:", "a") = %s, want x:"a"`, got)
	}
}

// FuzzAppendJSONString: the output decodes, as encoding/json's own encoding
// does, and is as safe to embed in HTML.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range jsonStringSeeds {
		f.Add(s)
	}
	f.Fuzz(checkJSONString)
}

func checkJSONString(t *testing.T, s string) {
	t.Helper()
	out := appendJSONString(nil, s)
	if !json.Valid(out) || !utf8.Valid(out) {
		t.Fatalf("appendJSONString(%q) = %q: not valid JSON/UTF-8", s, out)
	}
	var got, want string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("appendJSONString(%q) = %q: %v", s, out, err)
	}
	ref, _ := json.Marshal(s)
	if err := json.Unmarshal(ref, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("appendJSONString(%q) decodes to %q, want %q", s, got, want)
	}
	if bytes.ContainsAny(out, "<>&\u2028\u2029") {
		t.Fatalf("appendJSONString(%q) = %q: unescaped HTML or line separator", s, out)
	}
}

func TestAppendEvent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		event, room string
		data        string
		wantData    string
	}{
		{"sensor:data", "device:7", `{"v":1}`, `{"v":1}`},
		{"a", "b", ``, `null`},
		{"x\"<y>", "r\u2028", `[1,"two",null]`, `[1,"two",null]`},
		{"e", "r", `"str"`, `"str"`},
	}
	for _, tc := range tests {
		b := appendEvent(nil, tc.event, tc.room, []byte(tc.data))
		var m struct {
			Type  string          `json:"type"`
			Event string          `json:"event"`
			Room  string          `json:"room"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("appendEvent(%q, %q, %q) = %s: %v", tc.event, tc.room, tc.data, b, err)
			continue
		}
		if m.Type != "event" || m.Event != tc.event || m.Room != tc.room || string(m.Data) != tc.wantData {
			t.Errorf("appendEvent(%q, %q, %q) = %s", tc.event, tc.room, tc.data, b)
		}
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc…"},
		{"a€b", 2, "a…"}, // never cuts inside €
		{"€€", 4, "€…"},
		{strings.Repeat("é", 40), 33, strings.Repeat("é", 16) + "…"},
	}
	for _, tc := range tests {
		got := truncate(tc.s, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}
