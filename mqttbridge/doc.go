// Package mqttbridge subscribes to an MQTT broker and publishes what arrives
// to an rthub hub as events in rooms: sensors publish over MQTT, dashboards
// listen over WebSocket.
//
//	bridge, err := mqttbridge.New(hub, mqttbridge.Config{
//		URL: "tcp://127.0.0.1:1883",
//		Routes: []mqttbridge.Route{{
//			Topic:  "sensors/{device}/reading",
//			Event:  "sensor:data",
//			Rooms:  []string{"device:{device}", "staff"},
//			Decode: mqttbridge.JSONWithVars,
//		}, {
//			Topic:    "devices/{device}/status",
//			Event:    "device:status",
//			Rooms:    []string{"device:{device}", "staff"},
//			Decode:   mqttbridge.Text,
//			Key:      "{device}",
//			OnChange: true,
//		}},
//	})
//	if err != nil {
//		return err // wraps ErrInvalidConfig, listing every problem
//	}
//	go bridge.Run(ctx) // until ctx ends; then drains within Config.DrainTimeout
//
// It is its own module, so that the rthub module never depends on an MQTT
// client. See README.md for the full guide.
//
// # MQTT client
//
// The bridge speaks MQTT 5 through github.com/eclipse/paho.golang
// (autopaho), chosen over paho.mqtt.golang (MQTT 3.1.1) because MQTT 5
// carries what the bridge passes on: user properties (correlation IDs, trace
// context such as "traceparent") and Correlation Data, the Maximum Packet Size
// that makes the broker drop oversized messages instead of sending them,
// Receive Maximum, session expiry, shared subscriptions and reason codes that
// say why a connection or subscription was refused. Mosquitto 2 and
// mochi-mqtt speak MQTT 5.
//
// # Mapping
//
// A [Route] maps a topic pattern to one event published to one or more
// rooms. Pattern levels are literal text, "{name}" (one level, captured),
// "+" (one level) or, last, "#" (the rest); the bridge subscribes to the
// pattern with each variable turned into '+'. Room templates and keys use
// the variables: "device:{device}". [New] rejects a pattern, template or
// event name that cannot work, and patterns that overlap (each message
// belongs to exactly one route). At run time, a variable that cannot be part
// of a room name (empty, containing ':' or a character rooms do not allow)
// keeps its message from being published (Stats.InvalidTopic): a topic level
// never adds segments to a room.
//
// # Decoding
//
// A route's [DecodeFunc] turns the payload into the event's data: [JSON]
// (the default: any valid JSON, passed on), [JSONWithVars] (a JSON object
// plus the topic variables), [Text] (a string), [JSONAs] (a typed, strict
// decode), or your own; [EventRoute] ties a route to an [rthub.Event]. A
// message that does not decode is counted (Stats.DecodeErrors), logged at
// most once a second per route, and never reaches a client; a panicking
// decoder is recovered.
//
// # Backpressure
//
// The MQTT client's goroutine only matches the topic and puts the message in
// its route's queue, bounded by Route.QueueSize messages and
// Route.QueueBytes bytes. Each route publishes from its own goroutine, in
// order. When a queue is full, Route.Overflow decides: [DropOldest] (the
// default), [DropNewest] or [Block] (stop reading from the broker, which
// then holds the messages). Route.Conflate keeps one queued message per key
// (the newest, in the place of the first), so a burst from one device costs
// one slot. Route.BatchInterval combines the messages of an interval into one
// event per room whose data is a JSON array. Every message is accounted for
// in [Stats].
//
// # Delivery
//
// Subscriptions use QoS 1 by default. The bridge acknowledges a message
// once it is queued; the hub keeps no history, so a message is delivered to
// the clients connected when it is published. Lost connections are retried
// at once and then with exponential backoff (Config.ReconnectMin, Max);
// the session survives Config.SessionExpiry (default 60 s) so that QoS 1
// messages published meanwhile arrive after the reconnection; the bridge
// subscribes again after every connection, which also covers a broker that
// lost its sessions. [Bridge.Shutdown] stops reading, ends the session and
// publishes what is queued, within its context.
//
// # Correlation
//
// The MQTT 5 user property "correlation-id" (Config.CorrelationProperty), or
// else the Correlation Data, becomes [Message].CorrelationID. The bridge
// publishes the message's event with [rthub.WithCorrelationID], so clients
// receive it as the event's "cid" and the hub logs it. The contexts the
// bridge passes to the DecodeFunc and to the [rthub.Publisher]'s Publish carry
// the message: [CorrelationID] and [FromContext] read it, so a Publisher that
// wraps the hub can log or trace each publish with it (and with the other
// user properties, e.g. "traceparent").
//
// # Commands
//
// With Config.Commands ([CommandConfig]) the bridge also sends commands to
// devices: [Bridge.Command] publishes a [Command] (QoS 1, with an ID and a
// TTL) on the device's command topic and waits for the reply on its reply
// topic ([CommandReply]); [Bridge.Send] queues it and returns. A command to
// a device that is offline (its status topic, e.g. its Last Will, says so)
// waits in a bounded [CommandStore] and is sent when the device comes back,
// at most once per ID; past its TTL it is [CommandExpired] and Command
// returns [ErrExpired]. Every change of state is published as an event
// (CommandConfig.Event) to the device's room with the [Result]. README.md
// has the topics, payloads, bounds and what a lost acknowledgement means.
//
// # Concurrency
//
// A [Bridge] is safe for concurrent use. It owns its goroutines (the MQTT
// client's, one per route, one per connection while subscribing, and with
// Commands the command goroutine, which alone sends commands and expires
// them, and the reply goroutine, which records replies), and
// [Bridge.Shutdown] and [Bridge.Close] wait for all of them.
package mqttbridge
