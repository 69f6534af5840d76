package mqttbridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/org/rthub"
	"github.com/org/rthub/mqttbridge"
)

// The IoT dashboard's mapping: readings to the device's room and to staff;
// device status (including the broker's Last Will) on change only. The
// README's block is this example's middle.
func ExampleNew() {
	var hub *rthub.Hub // from rthub.New; a nil *Hub is enough to configure
	// snippet:begin
	bridge, err := mqttbridge.New(hub, mqttbridge.Config{
		URL: "tcp://127.0.0.1:1883",
		Routes: []mqttbridge.Route{{
			Topic:  "sensors/{device}/reading", // subscribes to sensors/+/reading
			Event:  "sensor:data",
			Rooms:  []string{"device:{device}", "staff"},
			Decode: mqttbridge.JSONWithVars,    // {"celsius":21.5} → {"celsius":21.5,"device":"7"}
			Key:    "{device}", Conflate: true, // a burst keeps the newest reading per device
		}, {
			Topic:  "devices/{device}/status", // "online", or the Last Will's "offline"
			Event:  "device:status",
			Rooms:  []string{"device:{device}", "staff"},
			Decode: mqttbridge.Text,
			Key:    "{device}", OnChange: true, // published once per change
		}},
	})
	if err != nil {
		log.Fatal(err) // wraps mqttbridge.ErrInvalidConfig and lists every problem
	}
	// snippet:end
	fmt.Println(bridge.Subscriptions())
	// Then: go bridge.Run(ctx), or bridge.Start() and later bridge.Shutdown(ctx).

	// Output:
	// [sensors/+/reading devices/+/status]
}

func ExampleNew_invalidConfig() {
	var hub *rthub.Hub
	_, err := mqttbridge.New(hub, mqttbridge.Config{
		URL: "tcp://127.0.0.1:1883",
		Routes: []mqttbridge.Route{{
			Topic: "sensors/{device}/reading",
			Event: "sensor:data",
			Rooms: []string{"device:{id}"},
		}},
	})
	fmt.Println(errors.Is(err, mqttbridge.ErrInvalidConfig))
	fmt.Println(err)

	// Output:
	// true
	// mqttbridge: invalid config: Routes[0] ("sensors/{device}/reading"): template "device:{id}": unknown variable {id} (topic pattern "sensors/{device}/reading" has {device})
}

// Reading is the payload of the sensor:data event, shared by the server and
// its clients.
type Reading struct {
	Device  string  `json:"device"`
	Celsius float64 `json:"celsius"`
}

var SensorData = rthub.NewEvent[Reading]("sensor:data")

// EventRoute ties a route to a typed event: the decoder must return the
// event's payload type.
func ExampleEventRoute() {
	route := mqttbridge.EventRoute(SensorData, "sensors/{device}/reading", []string{"device:{device}", "staff"},
		func(_ context.Context, m *mqttbridge.Message) (Reading, error) {
			r := Reading{Device: m.Vars["device"]}
			err := json.Unmarshal(m.Payload, &r)
			return r, err
		})
	route.Conflate = true
	fmt.Println(route.Event, route.Topic)

	// Output:
	// sensor:data sensors/{device}/reading
}

// A device (or a simulator) announces itself with a retained "online" and
// leaves a Last Will, so that the broker publishes "offline" when its
// connection drops without a DISCONNECT. A bridge route on
// "devices/{device}/status" with OnChange then publishes device:status once
// per change.
func Example_deviceWithLastWill() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, _ := url.Parse("tcp://127.0.0.1:1883")
	status := "devices/42/status"
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u},
		KeepAlive:  30,
		WillMessage: &paho.WillMessage{
			Topic: status, Payload: []byte("offline"), QoS: 1, Retain: true,
		},
		ClientConfig: paho.ClientConfig{ClientID: "device-42"},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		log.Fatal(err)
	}
	// Announce "online" (again after each reconnection, e.g. from
	// OnConnectionUp: the broker sent the Will when the connection dropped).
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: status, Payload: []byte("online"), QoS: 1, Retain: true}); err != nil {
		log.Fatal(err)
	}
	// ... publish readings on "sensors/42/reading" ...
	_ = cm.Disconnect(ctx) // a clean DISCONNECT: no Will; publish "offline" yourself first
}

// A command to a device: set its reporting interval. The device gets
// {"id":…,"name":"set_interval","args":{"seconds":5},"expires":…} on
// devices/7/cmd (QoS 1) and replies {"id":…,"result":…} on
// devices/7/cmd/reply. While it is offline (its status topic says so, e.g.
// its Last Will), the command waits, up to its TTL.
func ExampleBridge_Command() {
	var hub *rthub.Hub // from rthub.New
	bridge, err := mqttbridge.New(hub, mqttbridge.Config{
		URL: "tcp://127.0.0.1:1883",
		Commands: &mqttbridge.CommandConfig{ // the defaults, spelled out
			Topic:        "devices/{device}/cmd",
			ReplyTopic:   "devices/{device}/cmd/reply",
			StatusTopic:  "devices/{device}/status",
			TTL:          5 * time.Minute,
			MaxPerDevice: 16,
			Rooms:        []string{"device:{device}"}, // device:command events: queued, sent, done…
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	go bridge.Run(ctx)

	res, err := bridge.Command(ctx, "7", mqttbridge.Command{
		Name: "set_interval",
		Args: json.RawMessage(`{"seconds":5}`),
		TTL:  time.Minute,
	})
	switch {
	case errors.Is(err, mqttbridge.ErrExpired) && res.SentAt.IsZero():
		fmt.Println("the device stayed offline; nothing was sent")
	case errors.Is(err, mqttbridge.ErrExpired):
		fmt.Println("sent, but no reply: the device may have applied it")
	case errors.Is(err, mqttbridge.ErrCommandFailed):
		fmt.Println("the device refused:", res.Error)
	case err != nil:
		fmt.Println(err) // ErrQueueFull, ErrInvalidCommand, ctx's error…
	default:
		fmt.Printf("done: %s\n", res.Reply)
	}
}
