// Package socketio lets socket.io-client v4 connect, unchanged, to an rthub
// hub: it serves the Engine.IO v4 protocol (WebSocket and HTTP
// long-polling, with the upgrade from polling to WebSocket, server pings)
// and the Socket.IO v5 packet protocol on namespace "/".
//
// A [Server] is mounted where Socket.IO clients look, "/socket.io/":
//
//	sio, err := socketio.New(hub, socketio.Options{})
//	mux.Handle("/socket.io/", sio)
//
// Each Socket.IO connection is one connection of the hub, made through the
// hub's own ServeHTTP over an in-memory pipe in rthub's protocol, so the
// hub's token checks, room policy, emit authorization, validation, rate
// limits, presence and resume apply to Socket.IO clients exactly as to
// rthub's own. The token is the CONNECT packet's auth.token; a refusal is
// the client's connect_error with data {code, status}. Client events are
// the hub's emits (the room first, then the data; see [DefaultRoute]),
// except the reserved rthub:join, rthub:leave, rthub:presence,
// rthub:viewing and rthub:refresh, and the RPCs (Options.IsRPC), which are
// calls; acknowledgements carry the hub's reply, {"ok":true,"data":…} or
// {"ok":false,"error":{…}}. Options.Recovery maps Socket.IO's
// connection-state recovery (socket.recovered) onto the hub's resume.
//
// # Not supported
//
// Binary attachments (refused), namespaces other than "/", acknowledgements
// asked by the server, Engine.IO v3 (socket.io-client v2), JSONP, CORS.
//
// # Several nodes
//
// A polling session lives on the node that created it: behind a load
// balancer, polling clients need sticky routing to /socket.io/; clients on
// transports ["websocket"] do not. See docs/socketio.md.
package socketio
