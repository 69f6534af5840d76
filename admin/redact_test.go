package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDefaultRedact(t *testing.T) {
	for key, want := range map[string]bool{
		"password": true, "Password": true, "passwd": true, "secret": true, "client_secret": true,
		"token": true, "access_token": true, "refreshToken": true, "Authorization": true,
		"cookie": true, "Set-Cookie": true, "sessionId": true, "credentials": true, "private_key": true,
		"apiKey": true, "api_key": true, "x-api-key": true, "jwt": true, "bearer": true, "signature": true,
		"auth": true, "x-auth": true, "otp": true, "otp_code": true, "pin": true, "sim-pin": true,
		"temperature": false, "device": false, "author": false, "footprint": false, "spinner": false,
		"text": false, "humidity": false, "pinned": false, "": false,
	} {
		if got := DefaultRedact(key); got != want {
			t.Errorf("DefaultRedact(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestRedact(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40)
	for _, tt := range []struct{ in, want string }{
		{``, `null`},
		{`null`, `null`},
		{`42`, `42`},
		{`"token"`, `"token"`},
		{`{"token":"x","t":1}`, `{"t":1,"token":"[redacted]"}`},
		{`{"token":{"a":1}}`, `{"token":"[redacted]"}`},
		{`[{"password":"p"},{"ok":true}]`, `[{"password":"[redacted]"},{"ok":true}]`},
		{`{"big":12345678901234567890}`, `{"big":12345678901234567890}`},
		{`{"a":`, `"[undecodable]"`},
	} {
		if got := string(Redact(json.RawMessage(tt.in), DefaultRedact)); got != tt.want {
			t.Errorf("Redact(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	got := string(Redact(json.RawMessage(deep), DefaultRedact))
	if !strings.Contains(got, "[redacted: too deep]") || strings.Contains(got, "1}") {
		t.Errorf("deep value: %s", got)
	}
}
