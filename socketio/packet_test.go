package socketio

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
)

func TestParseSIO(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
		typ     int
		nsp     string
		id      int64
		data    string
		attach  int
	}{
		{in: `0`, typ: sioConnect, nsp: "/", id: -1},
		{in: `0{"token":"x"}`, typ: sioConnect, nsp: "/", id: -1, data: `{"token":"x"}`},
		{in: `0/admin,{"token":"x"}`, typ: sioConnect, nsp: "/admin", id: -1, data: `{"token":"x"}`},
		{in: `0/admin`, typ: sioConnect, nsp: "/admin", id: -1},
		{in: `1`, typ: sioDisconnect, nsp: "/", id: -1},
		{in: `2["ev",1]`, typ: sioEvent, nsp: "/", id: -1, data: `["ev",1]`},
		{in: `212["ev"]`, typ: sioEvent, nsp: "/", id: 12, data: `["ev"]`},
		{in: `2/chat,7["ev"]`, typ: sioEvent, nsp: "/chat", id: 7, data: `["ev"]`},
		{in: `33[]`, typ: sioAck, nsp: "/", id: 3, data: `[]`},
		{in: `51-["ev",{"_placeholder":true,"num":0}]`, typ: sioBinaryEvent, nsp: "/", id: -1, attach: 1, data: `["ev",{"_placeholder":true,"num":0}]`},
		{in: ``, wantErr: true},
		{in: `7`, wantErr: true},
		{in: `x`, wantErr: true},
		{in: `2`, wantErr: true},                        // an event without data
		{in: `2{"a":1}`, wantErr: true},                 // an event that is not an array
		{in: `2["ev"`, wantErr: true},                   // not JSON
		{in: `3[]`, wantErr: true},                      // an ack without id
		{in: `0[1]`, wantErr: true},                     // connect data must be an object
		{in: `1{}`, wantErr: true},                      // disconnect carries nothing
		{in: `4{"message":"x"}`, wantErr: true},         // connect_error is the server's
		{in: `5-["ev"]`, wantErr: true},                 // no attachment count
		{in: `299999999999999999["ev"]`, wantErr: true}, // id too large
	}
	for _, tt := range tests {
		p, err := parseSIO([]byte(tt.in))
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseSIO(%q) = %+v, want an error", tt.in, p)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseSIO(%q): %v", tt.in, err)
			continue
		}
		if p.typ != tt.typ || p.nsp != tt.nsp || p.id != tt.id || string(p.data) != tt.data || p.attachments != tt.attach {
			t.Errorf("parseSIO(%q) = %+v", tt.in, p)
		}
	}
}

func TestSplitPayload(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"4hello", []string{"4hello"}},
		{"2\x1e3\x1e42[\"a\"]", []string{"2", "3", `42["a"]`}},
		{"", nil},
		{"2\x1e", nil},
		{"\x1e2", nil},
		{"2\x1e\x1e3", nil},
	}
	for _, tt := range tests {
		got, err := splitPayload([]byte(tt.in))
		if tt.want == nil {
			if err == nil {
				t.Errorf("splitPayload(%q) = %q, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("splitPayload(%q) = %q, %v", tt.in, got, err)
			continue
		}
		for i := range got {
			if string(got[i]) != tt.want[i] {
				t.Errorf("splitPayload(%q)[%d] = %q, want %q", tt.in, i, got[i], tt.want[i])
			}
		}
	}
}

func TestEncode(t *testing.T) {
	if got := string(appendEvent(nil, "sensor:data", []byte(`{"n":1}`), []byte(`"ab.3"`))); got != `42["sensor:data",{"n":1},"ab.3"]` {
		t.Errorf("appendEvent = %s", got)
	}
	if got := string(appendAck(nil, 12, []byte(`{"ok":true}`))); got != `4312[{"ok":true}]` {
		t.Errorf("appendAck = %s", got)
	}
	if got := string(connectErrorPacket("/", "token is expired", map[string]any{"code": "token_expired"})); got != `44{"message":"token is expired","data":{"code":"token_expired"}}` {
		t.Errorf("connectErrorPacket = %s", got)
	}
	if got := string(connectErrorPacket("/x", "Invalid namespace", nil)); got != `44/x,{"message":"Invalid namespace"}` {
		t.Errorf("connectErrorPacket = %s", got)
	}
}

// FuzzParseSIO: any input parses or is refused, without panicking; what
// parses has the shape its type requires, and an event's arguments split.
func FuzzParseSIO(f *testing.F) {
	for _, s := range []string{`0`, `0{"token":"x"}`, `0/admin,{}`, `1`, `2["ev",1]`, `212["ev"]`, `2/chat,7["ev"]`, `33[]`,
		`51-["ev",{"_placeholder":true,"num":0}]`, `61-3[{"_placeholder":true,"num":0}]`, `2[1]`, `2[]`, `2/`, `9`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseSIO(b)
		if err != nil {
			return
		}
		if p.data != nil && !json.Valid(p.data) {
			t.Fatalf("parseSIO(%q): data %q is not JSON", b, p.data)
		}
		if p.typ == sioEvent {
			if name, _, err := eventArgs(p.data); err == nil {
				out := appendEvent(nil, "x", []byte(`1`))
				if !json.Valid(out[2:]) {
					t.Fatalf("appendEvent for %q: %q", name, out)
				}
			}
		}
	})
}

// FuzzSplitPayload: a payload splits into non-empty packets whose join is
// the payload, or is refused.
func FuzzSplitPayload(f *testing.F) {
	for _, s := range []string{"4hello", "2\x1e3", "", "\x1e", "b4AQID\x1e42[\"a\"]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := splitPayload(b)
		if err != nil {
			return
		}
		for _, p := range ps {
			if len(p) == 0 {
				t.Fatalf("splitPayload(%q): an empty packet", b)
			}
		}
		if j := bytes.Join(ps, []byte{recordSep}); !bytes.Equal(j, b) {
			t.Fatalf("splitPayload(%q) joins to %q", b, j)
		}
	})
}

// FuzzReadMessage: any bytes from a client's WebSocket read as messages
// within the bound, or fail, without panicking.
func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0x81, 0x85, 1, 2, 3, 4, '4' ^ 1, '2' ^ 2, '[' ^ 3, '1' ^ 4, ']' ^ 1})
	f.Add([]byte{0x89, 0x80, 0, 0, 0, 0, 0x81, 0x81, 0, 0, 0, 0, '3'})
	f.Add([]byte{0x01, 0x81, 0, 0, 0, 0, '4', 0x80, 0x81, 0, 0, 0, 0, '2'})
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := bytes.NewReader(b)
		for range 8 {
			msg, _, err := readMessage(rd, 64, func([]byte) {})
			if err != nil {
				return
			}
			if len(msg) == 0 || len(msg) > 64 {
				t.Fatalf("message of %d bytes", len(msg))
			}
		}
	})
}

func TestParseHubEvent(t *testing.T) {
	tests := []struct {
		in                string
		ok                bool
		event, room, data string
		offset            uint64
		epoch             string
	}{
		{in: `{"type":"event","event":"sensor:data","room":"device:7","data":{"n":1},"offset":12,"epoch":"9c1f"}`, ok: true,
			event: "sensor:data", room: "device:7", data: `{"n":1}`, offset: 12, epoch: "9c1f"},
		{in: `{"type":"event","event":"user:online","room":"staff","data":{"user":"a"}}`, ok: true, event: "user:online", room: "staff", data: `{"user":"a"}`},
		{in: `{"type":"event","event":"e","room":"r","cid":"x\"y","data":[1,2],"offset":1,"epoch":"e"}`, ok: true, event: "e", room: "r", data: `[1,2]`, offset: 1, epoch: "e"},
		// Data that contains what a position looks like, without one.
		{in: `{"type":"event","event":"e","room":"r","data":{"a":1,"offset":2,"epoch":"x"}}`, ok: true, event: "e", room: "r", data: `{"a":1,"offset":2,"epoch":"x"}`},
		{in: `{"type":"event","event":"e","room":"r","data":"s,\"offset\":2,\"epoch\":\"x\""}`, ok: true, event: "e", room: "r", data: `"s,\"offset\":2,\"epoch\":\"x\""`},
		{in: `{"type":"reply","id":1,"ok":true}`},
		{in: `{"type":"event","event":"e"}`},
		{in: `{"type":"event","event":"e","room":"r","data":}`},
	}
	for _, tt := range tests {
		e, ok := parseHubEvent([]byte(tt.in))
		if ok != tt.ok {
			t.Errorf("parseHubEvent(%s): ok %v", tt.in, ok)
			continue
		}
		if !ok {
			continue
		}
		if string(e.event) != tt.event || string(e.room) != tt.room || string(e.data) != tt.data || e.offset != tt.offset || string(e.epoch) != tt.epoch || e.positioned != (tt.epoch != "") {
			t.Errorf("parseHubEvent(%s) = %q %q %q %d %q", tt.in, e.event, e.room, e.data, e.offset, e.epoch)
		}
	}
}

// FuzzParseHubEvent: the fast path agrees with encoding/json on every
// frame the hub can write (valid JSON data), and never panics on others.
func FuzzParseHubEvent(f *testing.F) {
	f.Add("sensor:data", "device:7", `{"n":1}`, uint64(3), "9c1f", true)
	f.Add("e", "r", `{"a":1,"offset":2,"epoch":"x"}`, uint64(0), "", false)
	f.Add("e", "r", `"x\"}"`, uint64(1), "ab", true)
	f.Fuzz(func(t *testing.T, event, room, data string, offset uint64, epoch string, positioned bool) {
		if !json.Valid([]byte(data)) || !validName(event) || !validName(room) || !validName(epoch) {
			_, _ = parseHubEvent([]byte(data))
			return
		}
		var cb bytes.Buffer
		_ = json.Compact(&cb, []byte(data))
		data = cb.String()
		frame := `{"type":"event","event":"` + event + `","room":"` + room + `","data":` + data
		if positioned {
			frame += `,"offset":` + strconv.FormatUint(offset, 10) + `,"epoch":"` + epoch + `"`
		}
		frame += "}"
		e, ok := parseHubEvent([]byte(frame))
		if !ok || string(e.event) != event || string(e.room) != room || string(e.data) != data || e.positioned != positioned ||
			(positioned && (e.offset != offset || string(e.epoch) != epoch)) {
			t.Fatalf("parseHubEvent(%s) = %v %q %q %q %d %q %v", frame, ok, e.event, e.room, e.data, e.offset, e.epoch, e.positioned)
		}
	})
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}
