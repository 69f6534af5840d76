package mqttbridge

import (
	"encoding/json"
	"testing"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		payload, corr string
		want          CommandReply
		err           bool
	}{
		{`{"id":"c1","result":{"a":1}}`, "", CommandReply{ID: "c1", Result: json.RawMessage(`{"a":1}`)}, false},
		{`{"id":"c1","error":"no"}`, "", CommandReply{ID: "c1", Error: "no"}, false},
		{`{}`, "c2", CommandReply{ID: "c2"}, false},
		{`{"id":"c1"}`, "c2", CommandReply{ID: "c1"}, false},
		{`{}`, "", CommandReply{}, true},
		{`{"id":"a b"}`, "", CommandReply{}, true},
		{`[1]`, "c1", CommandReply{}, true},
		{`online`, "c1", CommandReply{}, true},
	}
	for _, tt := range tests {
		got, err := ParseReply([]byte(tt.payload), []byte(tt.corr))
		if (err != nil) != tt.err || got.ID != tt.want.ID || got.Error != tt.want.Error || string(got.Result) != string(tt.want.Result) {
			t.Errorf("ParseReply(%q, %q) = %+v, %v; want %+v, error %v", tt.payload, tt.corr, got, err, tt.want, tt.err)
		}
	}
}

func TestParseOnline(t *testing.T) {
	tests := []struct {
		payload    string
		online, ok bool
	}{
		{"online", true, true}, {" Online\n", true, true}, {`"offline"`, false, true},
		{`{"status":"online"}`, true, true}, {`{"status":"offline","at":1}`, false, true},
		{"", false, false}, {"on", false, false}, {`{"status":1}`, false, false}, {`"online`, false, false},
	}
	for _, tt := range tests {
		if on, ok := ParseOnline([]byte(tt.payload)); on != tt.online || ok != tt.ok {
			t.Errorf("ParseOnline(%q) = %v, %v; want %v, %v", tt.payload, on, ok, tt.online, tt.ok)
		}
	}
}

// FuzzParseReply: a reply from the network never panics, and what it
// accepts has a valid ID and a bounded error.
func FuzzParseReply(f *testing.F) {
	f.Add([]byte(`{"id":"c1","result":{"a":1}}`), []byte(""))
	f.Add([]byte(`{"error":"x"}`), []byte("c2"))
	f.Add([]byte(`{"id":1}`), []byte{0xff})
	f.Fuzz(func(t *testing.T, payload, corr []byte) {
		r, err := ParseReply(payload, corr)
		if err != nil {
			return
		}
		if !validCommandID(r.ID) || len(r.Error) > 1024 {
			t.Fatalf("accepted %+v", r)
		}
		if len(r.Result) > 0 && !json.Valid(r.Result) {
			t.Fatalf("result %q is not JSON", r.Result)
		}
	})
}

// FuzzParseOnline: a status payload never panics; ok only for the two
// states.
func FuzzParseOnline(f *testing.F) {
	for _, s := range []string{"online", "offline", `{"status":"online"}`, `"offline"`, "{", `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		on, ok := ParseOnline(payload)
		if on && !ok {
			t.Fatal("online without ok")
		}
	})
}
