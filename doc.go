// Package rthub is an embeddable hub for role-scoped real-time events over
// WebSocket: authenticated connections join rooms their roles allow, and
// server code publishes typed events to rooms.
//
// A hub is an [http.Handler]:
//
//	hub, err := rthub.New(rthub.Options{
//		Auth:   rthub.AuthOptions{Keys: map[string]any{"": secret}},
//		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
//			"staff": {Join: []string{"device:*"}, AutoJoin: []string{"staff"}},
//		}},
//	})
//	http.Handle("/ws", hub)
//	...
//	SensorData.Publish(ctx, hub, "device:42", reading)
//
// The examples directory has complete programs; the client package is the Go
// client; docs/protocol.md is the wire protocol for clients in other languages.
//
// # Rooms and roles
//
// Rooms are named like "device:42" (see [ValidRoom]). A [Policy] maps roles
// from the token to the room patterns they may join ("device:*"), the rooms
// they join on connect ("user:{sub}"), and the events they may emit to which
// rooms. A client asking for a room its roles do not allow gets a "forbidden"
// reply and stays connected. The server-side API ([Hub.JoinUser],
// [Hub.LeaveConn], [Hub.DisconnectUser]) is not subject to the policy.
//
// # Authentication
//
// Every connection presents a JWT before the upgrade, in the Authorization
// header or, from browsers, as a "rthub.bearer.<token>" subprotocol entry.
// Missing, malformed, expired, not-yet-valid, tampered tokens, alg "none",
// algorithm confusion and unknown key IDs are refused with 401 and a JSON error
// code before any WebSocket is opened. Browser handshakes from another site are
// refused with 403 (see [OriginOptions]; same-origin by default). A client is told shortly before its
// token expires, may send a new one ("refresh"), which re-evaluates its rooms
// at once, and is closed with 4002 if it does not.
//
// The hub verifies tokens; your login endpoint (or identity provider) issues
// them. Claims read: sub (required), roles (an array, or a string; "role"
// when "roles" is absent), name (optional, for presence), exp (a token
// without exp never expires unless [AuthOptions].RequireExpiry is set: always
// set it in production), nbf and iat (checked with [AuthOptions].Leeway,
// default 5 s of clock skew; a connection is closed at exp + Leeway), iss and
// aud when [AuthOptions].Issuer or Audience is set, and the header's kid to
// pick a key from [AuthOptions].Keys. Other claims reach hooks in
// [Identity].Claims. Package token mints such tokens for tests, examples and
// simple login endpoints.
//
// # Typed events
//
// [NewEvent] declares an event with a Go payload type; [Event.Publish] only
// accepts that type, and [Event.Handle] decodes client emits into it.
// [Event.Publish] publishes through a [Publisher]: the hub, or a wrapper of it
// (tracing, logging), which then applies to typed events too.
//
// # Delivery
//
// A publish encodes the event once and, for connections that negotiated
// permessage-deflate, compresses it once; the same bytes are queued to every
// member. Each connection has a bounded queue (Options.SendQueueMessages and
// SendQueueBytes); a client that does not read is closed with 4000 instead of
// slowing the publisher or anyone else. Frames queued together are written
// with one vectored syscall. Events of one room reach each member in publish
// order.
//
// # Graceful shutdown
//
// [Hub.Shutdown] refuses new connections, closes existing ones with 1001
// (reconnect) spread over Options.DrainWindow, and waits for every goroutine.
// net/http does not track hijacked connections, so call it before (or
// register it with) http.Server.Shutdown.
//
// # Limits and defaults
//
// Inbound messages are limited to 64 KiB (also after decompression), a
// connection to 100 rooms, its queue to 1024 messages or 4 MiB; pings go out
// every 25 s and a client silent for 50 s is closed. Each is an [Options]
// field. One process holds at most as many connections as its file-descriptor
// limit allows (ulimit -n); run several processes behind a load balancer for
// more.
//
// # Concurrency
//
// Every method of [Hub] is safe for concurrent use. Hooks and handlers run on
// the connection's goroutine: one client's commands are handled in order, and
// a hook that blocks delays only that client.
package rthub
