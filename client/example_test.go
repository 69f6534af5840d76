package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
)

// Reading is the payload of the sensor:data event, shared by server and clients.
type Reading struct {
	Celsius float64 `json:"celsius"`
}

var SensorData = rthub.NewEvent[Reading]("sensor:data")

var secret = []byte("example-secret-0123456789abcdef!")

// sign returns a token for alice with role staff, valid for ttl.
func sign(ttl time.Duration) (string, error) {
	claims := jwt.MapClaims{"sub": "alice", "roles": []string{"staff"}, "exp": time.Now().Add(ttl).Unix()}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}

// exampleHub starts a hub in which staff may join device rooms, and returns
// its ws:// URL and a function that stops it.
func exampleHub() (*rthub.Hub, string, func()) {
	hub, err := rthub.New(rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"device:*"}}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	return hub, "ws" + strings.TrimPrefix(srv.URL, "http"), func() {
		hub.Close()
		srv.Close()
	}
}

func ExampleDial() {
	hub, url, stop := exampleHub()
	defer stop()

	ctx := context.Background()
	c, err := client.Dial(ctx, url, client.Options{
		// Called for every connection and whenever the token must be refreshed.
		TokenFunc: func(ctx context.Context) (string, error) { return sign(time.Hour) },
		Rooms:     []string{"device:7"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	got := make(chan Reading, 1)
	client.Handle(c, SensorData, func(room string, r Reading) {
		got <- r // handlers must not block: hand the work over
	})

	// The server side publishes a reading to the room.
	if err := SensorData.Publish(ctx, hub, "device:7", Reading{Celsius: 21.5}); err != nil {
		log.Fatal(err)
	}
	fmt.Println("reading:", (<-got).Celsius)
	fmt.Println("rooms:", c.Rooms())

	err = c.Join(ctx, "admin")
	fmt.Println("join admin forbidden:", errors.Is(err, rthub.ErrForbidden))
	// Output:
	// reading: 21.5
	// rooms: [device:7]
	// join admin forbidden: true
}

func ExampleHandshakeError() {
	_, url, stop := exampleHub()
	defer stop()

	expired, err := sign(-time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	_, err = client.Dial(context.Background(), url, client.Options{Token: expired})
	var he *client.HandshakeError
	if errors.As(err, &he) {
		fmt.Println(he.Status, he.Code)
	}
	fmt.Println("expired:", errors.Is(err, rthub.ErrTokenExpired))
	// Output:
	// 401 token_expired
	// expired: true
}

// JoinState gets a room's latest reading per device, then the events after
// it (OnSnapshot receives every snapshot, this one and any asked for again).
func ExampleClient_JoinState() {
	broker, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{
		State: rthub.StatePolicy{Rules: []rthub.StateRule{{Pattern: "device:*"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	hub, err := rthub.New(rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"device:*"}}}},
		Broker: broker,
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Close()

	ctx := context.Background()
	for _, r := range []struct {
		sensor string
		c      float64
	}{{"a", 20}, {"b", 18}, {"a", 21}} {
		if err := SensorData.Publish(ctx, hub, "device:7", Reading{Celsius: r.c}, rthub.WithKey(r.sensor)); err != nil {
			log.Fatal(err)
		}
	}
	tok, err := sign(time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), client.Options{
		Token: tok,
		OnSnapshot: func(s client.Snapshot) {
			fmt.Printf("snapshot of %s at offset %d: %d readings\n", s.Room, s.Position.Offset, len(s.Events))
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	snap, err := c.JoinState(ctx, "device:7")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range snap.Events {
		r, _ := SensorData.Decode(e.Data)
		fmt.Println(r.Celsius, "at offset", e.Position.Offset)
	}
	// Output:
	// snapshot of device:7 at offset 3: 2 readings
	// 18 at offset 2
	// 21 at offset 3
}

// Threshold asks a device to alert above Limit.
type Threshold struct {
	Device string  `json:"device"`
	Limit  float64 `json:"limit"`
}

// Ack is the answer to a SetThreshold call.
type Ack struct {
	Device string  `json:"device"`
	Old    float64 `json:"old"`
}

// SetThreshold is the RPC the server declares (shared package in a real app).
var SetThreshold = rthub.NewRPC[Threshold, Ack]("device:set-threshold", rthub.RPCTimeout(10*time.Second))

// Call is type-checked against the RPC's declaration: only a Threshold can
// be sent, and the result is an Ack.
func ExampleCall() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "ws://localhost:8080/ws", client.Options{Token: os.Getenv("TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second) // cancelling tells the server
	defer cancel()
	ack, err := client.Call(cctx, c, SetThreshold, Threshold{Device: "d7", Limit: 42})
	var re *rthub.ReplyError
	switch {
	case errors.As(err, &re) && re.Code == "unknown_device":
		fmt.Println("no such device")
	case errors.Is(err, rthub.ErrTimeout):
		fmt.Println("the device did not answer in time")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("%s: threshold was %v\n", ack.Device, ack.Old)
	}
}
