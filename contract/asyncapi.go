package contract

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// obj is a JSON object of the AsyncAPI document; encoding/json writes its
// keys sorted, so the output is deterministic.
type obj = map[string]any

// ref is a JSON Reference.
func ref(to string) obj { return obj{"$ref": to} }

var keyRE = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// WriteAsyncAPI writes an AsyncAPI 3.0 document describing the hub from
// the server's side: one server and one channel (the WebSocket path,
// subprotocol rthub.v1), a message per event the server sends (operation
// action "send") and per event clients may emit (action "receive", with
// the reply frame as the operation's reply), the join and leave commands,
// and the two ways of carrying the JWT (security schemes: the
// Sec-WebSocket-Protocol entry "rthub.bearer.<jwt>" for browsers, the
// Authorization header for everyone else). Message payloads are the
// protocol's frames (docs/protocol.md §2) whose data is the event's schema;
// the Go types are components.schemas. Component keys are event names with
// characters outside [A-Za-z0-9._-] replaced by '_' (sensor:data →
// sensor_data). The only error is w's.
func (c *Contract) WriteAsyncAPI(w io.Writer) error {
	toComponents := func(r string) string {
		return "#/components/schemas/" + strings.TrimPrefix(r, "#/$defs/")
	}
	schemas := obj{}
	for name, s := range c.b.Defs() {
		schemas[name] = s.MapRefs(toComponents)
	}
	keys := map[string]string{} // message key by event name
	used := map[string]bool{"reply": true, "join": true, "leave": true}
	for _, e := range c.events {
		k := keyRE.ReplaceAllString(e.Name, "_")
		for i := 2; used[k]; i++ {
			k = fmt.Sprintf("%s_%d", keyRE.ReplaceAllString(e.Name, "_"), i)
		}
		used[k] = true
		keys[e.Name] = k
	}

	messages := obj{}
	chanMsgs := obj{}
	ops := obj{}
	addMsg := func(key string, m obj) {
		messages[key] = m
		chanMsgs[key] = ref("#/components/messages/" + key)
	}
	chanRef := ref("#/channels/hub")
	replyOp := obj{"channel": chanRef, "messages": []any{ref("#/channels/hub/messages/reply")}}
	corr := obj{"location": "$message.payload#/id"}
	str := obj{"type": "string"}

	for _, e := range c.sent() {
		k := keys[e.Name]
		var roles []string
		for _, r := range c.roles {
			for _, ev := range r.receive {
				if ev == e.Name {
					roles = append(roles, r.name)
				}
			}
		}
		addMsg(k, obj{
			"name": e.Name, "title": e.Name, "summary": orDefault(e.Summary, "Event "+e.Name+"."),
			"contentType": "application/json",
			"payload": obj{
				"type": "object",
				"properties": obj{
					"type":   obj{"const": "event"},
					"event":  obj{"const": e.Name},
					"room":   obj{"type": "string", "description": "The room it was published to: " + roomList(e.Rooms) + "."},
					"data":   c.schema[e.Name].MapRefs(toComponents),
					"offset": obj{"type": "integer", "minimum": 0, "description": "Position in the room's stream (docs/protocol.md §5)."},
					"epoch":  str,
					"cid":    obj{"type": "string", "description": "The publisher's correlation ID, if any."},
				},
				"required": []string{"type", "event", "room", "data"},
			},
			"x-rthub-rooms": nonNil(e.Rooms),
			"x-rthub-roles": nonNil(roles),
		})
		ops["send_"+k] = obj{
			"action": "send", "channel": chanRef,
			"summary":  "The hub sends " + e.Name + " to the members of its rooms.",
			"messages": []any{ref("#/channels/hub/messages/" + k)},
		}
	}
	for _, e := range c.emits() {
		k := "emit_" + keys[e.Name]
		var who []string
		for _, r := range c.roles {
			for _, m := range r.emits {
				if m.event == e.Name {
					who = append(who, r.name+" to "+strings.Join(m.rooms, ", "))
				}
			}
		}
		addMsg(k, obj{
			"name": "emit " + e.Name, "title": "emit " + e.Name,
			"summary":       orDefault(e.Summary, "Client emit of "+e.Name+".") + " Emitted by " + strings.Join(who, "; ") + ".",
			"contentType":   "application/json",
			"correlationId": corr,
			"payload": obj{
				"type": "object",
				"properties": obj{
					"id":    obj{"type": "integer", "minimum": 1, "description": "Command id, echoed by the reply."},
					"op":    obj{"const": "emit"},
					"event": obj{"const": e.Name},
					"room":  obj{"type": "string", "description": "A room the client is in that the policy lets it emit to."},
					"data":  c.schema[e.Name].MapRefs(toComponents),
				},
				"required": []string{"op", "event", "room", "data"},
			},
		})
		ops["receive_"+k] = obj{
			"action": "receive", "channel": chanRef,
			"summary":  "A client emits " + e.Name + "; the hub replies.",
			"messages": []any{ref("#/channels/hub/messages/" + k)},
			"reply":    replyOp,
		}
	}
	for _, r := range c.rpcs {
		k := keyRE.ReplaceAllString(r.Name, "_")
		var who []string
		for _, rl := range c.roles {
			if slices.Contains(rl.calls, r.Name) {
				who = append(who, rl.name)
			}
		}
		addMsg("call_"+k, obj{
			"name": "call " + r.Name, "title": "call " + r.Name,
			"summary":       orDefault(r.Summary, "RPC "+r.Name+".") + " Called by " + orDefault(strings.Join(who, ", "), "no role") + ".",
			"contentType":   "application/json",
			"correlationId": corr,
			"payload": obj{
				"type": "object",
				"properties": obj{
					"id":      obj{"type": "integer", "minimum": 1, "description": "Command id, echoed by the result; a cancel names it."},
					"op":      obj{"const": "call"},
					"rpc":     obj{"const": r.Name},
					"data":    c.req[r.Name].MapRefs(toComponents),
					"timeout": obj{"type": "integer", "minimum": 0, "description": "Milliseconds the caller waits; the server cancels the handler then (docs/protocol.md §2.5)."},
					"idem":    obj{"type": "string", "minLength": 1, "maxLength": 128, "description": "Idempotency key: a retry is answered with the first run's outcome (docs/protocol.md §2.6)."},
				},
				"required": []string{"op", "rpc", "data"},
			},
		})
		addMsg("result_"+k, obj{
			"name": "result " + r.Name, "title": "result " + r.Name,
			"summary":     "The result of a call of " + r.Name + ": a reply whose data is the RPC's result, or an error.",
			"contentType": "application/json", "correlationId": corr,
			"payload": obj{
				"type": "object",
				"properties": obj{
					"type":  obj{"const": "reply"},
					"id":    obj{"type": "integer", "minimum": 1},
					"ok":    obj{"type": "boolean"},
					"data":  c.res[r.Name].MapRefs(toComponents),
					"error": ref("#/components/messages/reply/payload/properties/error"),
				},
				"required": []string{"type", "id"},
			},
		})
		ops["receive_call_"+k] = obj{
			"action": "receive", "channel": chanRef,
			"summary":  "A client calls " + r.Name + "; the hub answers with its result.",
			"messages": []any{ref("#/channels/hub/messages/call_" + k)},
			"reply":    obj{"channel": chanRef, "messages": []any{ref("#/channels/hub/messages/result_" + k)}},
		}
	}
	if len(c.rpcs) > 0 {
		addMsg("cancel", obj{
			"name": "cancel", "title": "cancel", "summary": "Client command cancel: cancels the running call whose id it names (docs/protocol.md §2.5).",
			"contentType": "application/json",
			"payload": obj{
				"type": "object",
				"properties": obj{
					"id":   obj{"type": "integer", "minimum": 1},
					"op":   obj{"const": "cancel"},
					"call": obj{"type": "integer", "minimum": 1},
				},
				"required": []string{"op", "call"},
			},
		})
		ops["receive_cancel"] = obj{"action": "receive", "channel": chanRef, "summary": "A client cancels a call.",
			"messages": []any{ref("#/channels/hub/messages/cancel")}}
	}
	for _, op := range []string{"join", "leave"} {
		addMsg(op, obj{
			"name": op, "title": op, "summary": "Client command " + op + " (docs/protocol.md §2.2).",
			"contentType": "application/json", "correlationId": corr,
			"payload": obj{
				"type": "object",
				"properties": obj{
					"id":   obj{"type": "integer", "minimum": 1},
					"op":   obj{"const": op},
					"room": str,
				},
				"required": []string{"op", "room"},
			},
		})
		ops["receive_"+op] = obj{"action": "receive", "channel": chanRef, "summary": "A client " + op + "s a room.",
			"messages": []any{ref("#/channels/hub/messages/" + op)}, "reply": replyOp}
	}
	addMsg("reply", obj{
		"name": "reply", "title": "reply", "summary": "The answer to a client command with the same id.",
		"contentType": "application/json", "correlationId": corr,
		"payload": obj{
			"type": "object",
			"properties": obj{
				"type": obj{"const": "reply"},
				"id":   obj{"type": "integer", "minimum": 1},
				"ok":   obj{"type": "boolean"},
				"data": obj{},
				"error": obj{
					"type": "object",
					"properties": obj{
						"code":    obj{"type": "string", "description": "Error code (docs/protocol.md §2.4), e.g. forbidden, bad_payload."},
						"message": str,
						"field":   obj{"type": "string", "description": "For bad_payload: JSON Pointer into the emit's data."},
					},
					"required": []string{"code"},
				},
			},
			"required": []string{"type", "id"},
		},
	})
	ops["send_reply"] = obj{"action": "send", "channel": chanRef, "summary": "The hub answers a command.",
		"messages": []any{ref("#/channels/hub/messages/reply")}}

	security := []any{ref("#/components/securitySchemes/subprotocolToken"), ref("#/components/securitySchemes/bearerHeader")}
	doc := obj{
		"asyncapi": "3.0.0",
		"info": obj{
			"title":   c.spec.Title,
			"version": c.spec.Version,
			"description": orDefault(c.spec.Description, "The WebSocket API of "+c.spec.Title+".") +
				" Generated by github.com/org/rthub/contract; do not edit. Protocol: docs/protocol.md of rthub (subprotocol rthub.v1).",
		},
		"defaultContentType": "application/json",
		"servers": obj{"hub": obj{
			"host": c.spec.Host, "protocol": c.spec.Protocol,
			"description": "rthub hub. Offer the WebSocket subprotocol rthub.v1.",
			"security":    security,
		}},
		"channels": obj{"hub": obj{
			"address":     c.spec.Path,
			"title":       "rthub WebSocket",
			"description": "One WebSocket per client, subprotocol rthub.v1; every message is a JSON text frame.",
			"servers":     []any{ref("#/servers/hub")},
			"messages":    chanMsgs,
			"bindings": obj{"ws": obj{
				"method": "GET",
				"headers": obj{"type": "object", "properties": obj{
					"Sec-WebSocket-Protocol": obj{"type": "string", "description": "rthub.v1, and rthub.bearer.<JWT> where headers cannot be set (browsers)."},
					"Authorization":          obj{"type": "string", "description": "Bearer <JWT>."},
				}},
				"query": obj{"type": "object", "properties": obj{
					"since": obj{"type": "string", "description": "Resume positions of auto-joined rooms (docs/protocol.md §5)."},
				}},
				"bindingVersion": "0.1.0",
			}},
		}},
		"operations": ops,
		"components": obj{
			"schemas":  schemas,
			"messages": messages,
			"securitySchemes": obj{
				"subprotocolToken": obj{
					"type": "httpApiKey", "name": "Sec-WebSocket-Protocol", "in": "header",
					"description": "The JWT as the subprotocol entry rthub.bearer.<JWT>, next to rthub.v1: " +
						`new WebSocket(url, ["rthub.v1", "rthub.bearer." + jwt]). The server never echoes it.`,
				},
				"bearerHeader": obj{
					"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
					"description": "Authorization: Bearer <JWT>, for clients that can set headers.",
				},
			},
		},
	}
	return writeJSON(w, doc)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}
