package docsnippets_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/token"
)

// The sources of README.md's Go blocks.

type Reading struct {
	Device  string  `json:"device"`
	Celsius float64 `json:"celsius"`
}

var SensorData = rthub.NewEvent[Reading]("sensor:data")

// Example_quickstart is the README's first block (after Reading and
// SensorData): a hub with a staff/admin policy, served, a typed publish, a
// drain.
func Example_quickstart() {
	secret := []byte("an HS256 secret of 32 bytes or more")
	ctx := context.Background()
	// snippet:begin
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": secret}}, // HS*/RS*/PS*/ES*/EdDSA, keys by kid
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"staff", "device:*"}, AutoJoin: []string{"staff", "user:{sub}"}},
			"admin": {Join: []string{"staff", "admin", "device:**"}, AutoJoin: []string{"staff", "admin"}},
		}},
	})
	if err != nil {
		log.Fatal(err) // every problem with the options, joined
	}
	http.Handle("GET /ws", hub) // authenticates, then upgrades

	// Type-checked, encoded once; hub or any other rthub.Publisher.
	err = SensorData.Publish(ctx, hub, "device:42", Reading{Device: "42", Celsius: 21.5})
	if err != nil {
		log.Print(err) // rthub.ErrHubClosed, a broker's error, …
	}

	hub.Shutdown(ctx) // drain: 1001 "reconnect", spread out
	// snippet:end
	fmt.Println("published:", err)
	// Output: published: <nil>
}

// fetchToken gets a token from the application's login endpoint or
// identity provider.
func fetchToken(ctx context.Context) (string, error) {
	return token.Sign([]byte("an HS256 secret of 32 bytes or more"),
		token.Claims{Subject: "alice", Roles: []string{"staff"}, TTL: time.Hour})
}

// show draws a reading.
func show(room string, r Reading) { fmt.Println(room, r.Device, r.Celsius) }

// Example_client is the README's Go client block. It needs a server at
// example.com, so it is compiled, not run; client's ExampleDial runs the
// same calls against a real hub.
func Example_client() {
	ctx := context.Background()
	// snippet:begin
	c, err := client.Dial(ctx, "wss://example.com/ws", client.Options{TokenFunc: fetchToken, Rooms: []string{"device:42"}})
	if err != nil {
		log.Fatal(err) // *client.HandshakeError for a refused token: errors.Is(err, rthub.ErrTokenExpired)…
	}
	client.Handle(c, SensorData, show) // typed: show(room string, r Reading)

	err = c.Join(ctx, "admin")
	if errors.Is(err, rthub.ErrForbidden) {
		// staff may not join admin; the connection stays
	}
	// snippet:end
	c.Close()
}

// Example_token is the README's token block.
func Example_token() {
	secret := []byte("an HS256 secret of 32 bytes or more")
	// snippet:begin
	tok, err := token.Sign(secret, token.Claims{Subject: "alice", Roles: []string{"staff"}, TTL: time.Hour})
	// snippet:end
	fmt.Println(err == nil && tok != "")
	// Output: true
}
