package admin

import (
	"bytes"
	"encoding/json"
	"regexp"
)

// secretKey is the rule of [DefaultRedact].
var secretKey = regexp.MustCompile(`(?i)(pass|secret|token|cookie|session|credential|private|api[_-]?key|jwt|bearer|signature|authoriz|(^|[_-])(auth|otp|pin)($|[_-]))`)

// DefaultRedact is the default of [Options.Redact]: it hides a payload
// member whose name contains (in any case) pass, secret, token, cookie,
// session, credential, private, apikey, api_key, api-key, jwt, bearer,
// signature or authoriz, or has auth, otp or pin as a whole part between
// '_' or '-' (or the ends): "password", "access_token", "Authorization",
// "sessionId", "x-api-key", "auth", "otp_code" are hidden; "author",
// "temperature", "footprint" and "device" are not.
func DefaultRedact(key string) bool { return secretKey.MatchString(key) }

// maxRedactDepth bounds the nesting Redact walks; a deeper value is replaced
// whole.
const maxRedactDepth = 32

// redacted is what replaces a hidden value.
const redacted = `"[redacted]"`

// Redact returns the JSON value data with the value of every object member
// whose name hide reports true replaced by "[redacted]", at any depth (a
// value nested deeper than 32 levels is replaced whole). Data that is not
// valid JSON comes back as "[undecodable]". Numbers are kept as written.
func Redact(data json.RawMessage, hide func(key string) bool) json.RawMessage {
	if len(data) == 0 {
		return json.RawMessage("null")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return json.RawMessage(`"[undecodable]"`)
	}
	v = redactValue(v, hide, 0)
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`"[undecodable]"`)
	}
	return b
}

func redactValue(v any, hide func(string) bool, depth int) any {
	if depth > maxRedactDepth {
		return json.RawMessage(`"[redacted: too deep]"`)
	}
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if hide(k) {
				t[k] = json.RawMessage(redacted)
			} else {
				t[k] = redactValue(e, hide, depth+1)
			}
		}
	case []any:
		for i, e := range t {
			t[i] = redactValue(e, hide, depth+1)
		}
	}
	return v
}
