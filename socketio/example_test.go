package socketio_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/socketio"
)

// Socket.IO clients (socket.io-client v4, unchanged) and rthub's own
// clients on one hub: the same tokens, rooms, events and limits.
func ExampleNew() {
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte("a secret of at least 32 bytes....")}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"device:*"}, AutoJoin: []string{"staff"}}, // socket.emit("rthub:join", "device:7")
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	sio, err := socketio.New(hub, socketio.Options{
		Recovery: socketio.RecoveryOptions{Window: 2 * time.Minute}, // socket.recovered, as Socket.IO's connectionStateRecovery
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)     // rthub clients
	mux.Handle("/socket.io/", sio) // io(url, { auth: { token } })
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ListenAndServe() }()

	// On shutdown: the hub drains (Socket.IO clients see a transport close
	// and reconnect elsewhere), then the gateway, then the HTTP server.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hub.Shutdown(ctx)
	_ = sio.Close()
	_ = srv.Shutdown(ctx)
}
