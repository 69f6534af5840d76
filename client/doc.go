// Package client is the Go client of an rthub hub: it connects over
// WebSocket (protocol rthub.v1, docs/protocol.md), joins rooms, receives
// events and emits them, and keeps the connection up across network failures,
// server restarts and token expiry.
//
//	c, err := client.Dial(ctx, "wss://example.com/ws", client.Options{
//		TokenFunc: func(ctx context.Context) (string, error) { return auth.Token(ctx) },
//		Rooms:     []string{"device:7"},
//	})
//	if err != nil {
//		return err // a *client.HandshakeError if the server refused the token
//	}
//	defer c.Close()
//	client.Handle(c, SensorData, func(room string, r Reading) {
//		log.Printf("%s: %v", room, r)
//	})
//	err = client.EmitEvent(ctx, c, ChatMessage, "staff", Chat{Text: "hi"})
//
// Events are declared once with [rthub.NewEvent] and shared by the server and
// its clients, so both sides agree on the payload type.
//
// # Reconnection
//
// When the connection ends, the client decides from the close code alone,
// as the protocol says ([rthub.CloseCode.Reconnect]):
//
//   - 1001 (draining), 1006 (connection dropped, or no message or ping from
//     the server for twice its ping interval plus 5 s), 1011 and the
//     4000–4099 range, including 4002 (token expired), reconnect;
//   - 1000, 1002, 1003, 1007, 1008, 1009 and the 4100–4199 range (4101:
//     the server disconnected this user; 4102: the token was revoked, and
//     a new Dial with it fails with a *[HandshakeError] with Code
//     "token_revoked") stop the client: [Client.Done] is
//     closed and [Client.Err] holds a [rthub.CloseError] with the code.
//
// Before each attempt the client waits as [Backoff] says: 1 s, 2 s, 4 s, 8 s,
// 16 s, then 30 s, each ± 20 %, starting again at 1 s after each successful
// connection. Each attempt calls Options.TokenFunc for a fresh token. An
// attempt refused with 401 (or another 4xx except 408 and 429) stops the
// client with a *[HandshakeError]; 5xx, 408, 429 and network failures are
// retried. After reconnecting, the client rejoins, all at once, the rooms it
// joined itself (Options.Rooms and [Client.Join]); the server restores its
// automatic rooms. Only then is the client Connected again.
//
// Commands ([Client.Join], [Client.Emit], [Client.Ping], ...) made while the
// client reconnects wait for the connection, bounded by their context. A
// command in flight when the connection drops fails with [ErrDisconnected]:
// it may or may not have been executed. Events published while the client is
// away are replayed, in order, when it is back (docs/protocol.md §5); when the
// server can no longer replay them, Options.OnReset is called instead.
//
// # Token expiry
//
// The server warns a connection shortly before its token expires
// (AuthOptions.ExpiryWarning, default 30 s). With Options.TokenFunc the
// client then fetches a new token and sends a refresh, on the same
// connection. With a static Options.Token it cannot: the server closes the
// connection with 4002 at expiry, the reconnection is refused with 401, and
// the client stops.
package client
