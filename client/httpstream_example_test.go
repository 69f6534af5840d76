package client_test

import (
	"context"
	"log"
	"os"

	"github.com/org/rthub/client"
)

// A client behind a proxy that may break WebSocket: TransportAuto uses
// WebSocket while it works and the HTTP stream when it does not (the hub
// enables it with rthub.Options.HTTPStream).
func ExampleTransport() {
	c, err := client.Dial(context.Background(), "wss://hub.example.com/ws", client.Options{
		Token:     os.Getenv("RTHUB_TOKEN"),
		Transport: client.TransportAuto,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}
