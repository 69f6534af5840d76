package admin

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/org/rthub"
)

// FuzzDecodeRequest feeds arbitrary bodies to the decoding and checks of
// every POST endpoint: no panic; a refusal is a bad request; an accepted
// body has fields within their bounds.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"room":"staff","event":"notice","data":{"a":1}}`,
		`{"room":"staff","event":"notice","data":null,"key":"k"}`,
		`{"user":"alice","reason":"bye"}`,
		`{"user":"alice","room":"device:1"}`,
		`{"user":"alice","token_id":"j1","issued_before":"2026-01-01T00:00:00Z"}`,
		`{"user":"a\u0000"}`, `{"user":1}`, `{}{}`, `[1]`, ` {"user":"x"} `, `{"room":"a::b","event":"e"}`,
		`{"user":"x","extra":1}`, `{"issued_before":"x"}`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var p publishRequest
		if err := decodeJSON(body, &p); err == nil {
			if err := p.check(); err == nil {
				if rthub.ValidRoom(p.Room) != nil || rthub.ValidRoom(p.Event) != nil || len(p.Key) > rthub.MaxRoomLen || len(p.Data) == 0 {
					t.Fatalf("accepted %+v", p)
				}
			} else if !errors.Is(err, errBadRequest) {
				t.Fatalf("check: %v", err)
			}
		} else if !errors.Is(err, errBadRequest) {
			t.Fatalf("decode: %v", err)
		}
		var u userRequest
		if err := decodeJSON(body, &u); err == nil && u.check() == nil {
			if u.User == "" || len(u.User) > MaxUserLen || len(u.Reason) > MaxReasonLen || !printable(u.User) || !printable(u.Reason) {
				t.Fatalf("accepted %+v", u)
			}
		}
		var ru roomUserRequest
		if err := decodeJSON(body, &ru); err == nil && ru.check() == nil {
			if ru.User == "" || rthub.ValidRoom(ru.Room) != nil || len(ru.Reason) > MaxReasonLen {
				t.Fatalf("accepted %+v", ru)
			}
		}
		var v revokeRequest
		if err := decodeJSON(body, &v); err == nil && v.check() == nil {
			if (v.User == "") == (v.TokenID == "") || len(v.TokenID) > MaxUserLen || len(v.Reason) > MaxReasonLen {
				t.Fatalf("accepted %+v", v)
			}
		}
		// Through the reader, with a body limit.
		req := httptest.NewRequest(http.MethodPost, "/disconnect", bytes.NewReader(body))
		if err := decodeBody(httptest.NewRecorder(), req, 64, &u); err != nil && !errors.Is(err, errBadRequest) && !errors.Is(err, errTooLarge) {
			t.Fatalf("decodeBody: %v", err)
		}
		if len(body) > 64 && decodeBody(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body)), 64, &u) == nil {
			t.Fatalf("a body of %d bytes passed a limit of 64", len(body))
		}
	})
}

func TestParsePosition(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want rthub.StreamPosition
		ok   bool
	}{
		{"", rthub.StreamPosition{}, true},
		{"12@abc", rthub.StreamPosition{Offset: 12, Epoch: "abc"}, true},
		{"0@e", rthub.StreamPosition{Epoch: "e"}, true},
		{"12", rthub.StreamPosition{}, false},
		{"12@", rthub.StreamPosition{}, false},
		{"-1@e", rthub.StreamPosition{}, false},
		{"x@e", rthub.StreamPosition{}, false},
		{"1@e\n", rthub.StreamPosition{}, false},
	} {
		got, err := parsePosition(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parsePosition(%q) = %v, %v", tt.in, got, err)
		}
	}
}
