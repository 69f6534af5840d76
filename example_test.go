package rthub_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/org/rthub"
)

// Reading is a sensor reading, the payload of the sensor:data event.
type Reading struct {
	Device string  `json:"device"`
	Temp   float64 `json:"temp"`
}

// SensorData is declared once and used by publishers and clients alike.
var SensorData = rthub.NewEvent[Reading]("sensor:data")

func ExampleNew() {
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte(os.Getenv("JWT_SECRET"))}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"staff", "device:*"}, AutoJoin: []string{"staff"}},
			"admin": {Join: []string{"staff", "admin", "device:*"}, AutoJoin: []string{"staff", "admin"}},
		}},
	})
	if err != nil {
		fmt.Println(err) // every problem with the options, joined
		return
	}
	defer hub.Close()
}

func ExampleNew_invalid() {
	_, err := rthub.New(rthub.Options{
		Auth:           rthub.AuthOptions{Keys: map[string]any{"": []byte("short")}},
		MaxMessageSize: -1,
	})
	fmt.Println(errors.Is(err, rthub.ErrInvalidOptions))
	// Output: true
}

// A hub is an http.Handler; mount it on any path.
func ExampleHub_ServeHTTP() {
	hub, err := rthub.New(rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": []byte(os.Getenv("JWT_SECRET"))}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {AutoJoin: []string{"staff"}}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	srv := &http.Server{
		Addr:              ":8080",
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second, // bounds slow handshakes
	}
	go srv.ListenAndServe()
}

func ExampleEvent_Publish() {
	var hub *rthub.Hub // from rthub.New
	ctx := context.Background()
	// Type-checked: only a Reading can be published as sensor:data.
	err := SensorData.Publish(ctx, hub, "device:42", Reading{Device: "42", Temp: 21.5})
	if errors.Is(err, rthub.ErrHubClosed) {
		return
	}
}

// logged is a Publisher that wraps another one (the hub) and prints what is
// published.
type logged struct{ next rthub.Publisher }

func (l logged) Publish(ctx context.Context, room, event string, data any, opts ...rthub.PublishOption) error {
	fmt.Printf("publish %s %s %s\n", room, event, data)
	return l.next.Publish(ctx, room, event, data, opts...)
}

// A wrapper of the hub applies to typed events too: Event.Publish takes any
// Publisher and gives it the encoded event as a json.RawMessage.
func ExamplePublisher() {
	hub, err := rthub.New(rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": []byte("an example secret of 32 bytes...")}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"device:*"}}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	var pub rthub.Publisher = logged{hub}
	ctx := context.Background()
	if err := SensorData.Publish(ctx, pub, "device:42", Reading{Device: "42", Temp: 21.5}); err != nil {
		log.Fatal(err)
	}
	// Output: publish device:42 sensor:data {"device":"42","temp":21.5}
}

// A Broker refuses a message whose metadata is over its limits.
func ExampleMessage_Check() {
	msg := rthub.Message{
		Data:   []byte(`{"type":"event","event":"tick","room":"staff","data":1}`),
		Header: map[string]string{"traceparent": strings.Repeat("0", rthub.MaxHeaderBytes)},
	}
	err := msg.Check()
	fmt.Println(errors.Is(err, rthub.ErrHeaderTooLarge))
	// Output: true
}

// Chat is an event clients may emit (the policy says who, and to which rooms).
type Chat struct {
	Text string `json:"text"`
}

var ChatMessage = rthub.NewEvent[Chat]("chat:post")

func ExampleEvent_Handle() {
	handler := ChatMessage.Handle(func(ctx context.Context, in rthub.Incoming[Chat]) error {
		if in.Data.Text == "" {
			return &rthub.ReplyError{Code: "bad_payload", Message: "empty message"}
		}
		return ChatMessage.Publish(ctx, in.Hub(), in.Room, in.Data, rthub.WithExcept(in.Conn.ID))
	})
	_, _ = rthub.New(rthub.Options{
		Auth:     rthub.AuthOptions{Keys: map[string]any{"": []byte(os.Getenv("JWT_SECRET"))}},
		Handlers: []rthub.Handler{handler},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"staff"}, Emit: []rthub.EmitRule{{Events: []string{"chat:post"}, Rooms: []string{"staff"}}}},
		}},
	})
}

// Drain the hub first, then the HTTP server: net/http does not close or wait
// for WebSocket connections.
func ExampleHub_Shutdown() {
	var hub *rthub.Hub   // from rthub.New
	var srv *http.Server // serving hub
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	<-ctx.Done()

	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hub.Shutdown(shutdownCtx); err != nil {
		log.Printf("hub drain cut short: %v", err)
	}
	_ = srv.Shutdown(shutdownCtx)
}

func ExampleCloseCode_Reconnect() {
	for _, c := range []rthub.CloseCode{rthub.CloseGoingAway, rthub.CloseSlowConsumer, rthub.CloseTokenExpired, rthub.CloseDisconnected, rthub.ClosePolicyViolation} {
		fmt.Println(c, c.Reconnect())
	}
	// Output:
	// 1001 true
	// 4000 true
	// 4002 true
	// 4101 false
	// 1008 false
}

func ExampleErrorCode() {
	err := fmt.Errorf("join room %q: %w", "admin", rthub.ErrForbidden)
	fmt.Println(rthub.ErrorCode(err), errors.Is(err, rthub.ErrForbidden))
	// Output: forbidden true
}

// Revoke the tokens of a user whose laptop was stolen, on every node: their
// connections close with 4102 and reconnects with those tokens are refused.
// Tokens issued to them from the next second on work.
func ExampleHub_Revoke() {
	hub, err := rthub.New(rthub.Options{
		Auth:       rthub.AuthOptions{Keys: map[string]any{"": []byte("an-hmac-secret-of-at-least-32-bytes!")}},
		Policy:     rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {AutoJoin: []string{"staff"}}}},
		Revocation: rthub.RevocationOptions{TTL: 12 * time.Hour}, // the longest token lifetime
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := hub.Revoke(ctx, rthub.Revocation{Subject: "alice", Reason: "stolen laptop"})
	if errors.Is(err, rthub.ErrIncomplete) {
		log.Printf("revoked, but %d node(s) did not answer", res.Missing)
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Connections, res.Complete())
	// Output: 0 true
}

// After the application demotes a user, re-check their rooms on every node:
// Options.Roles gives the roles they have now.
func ExampleHub_ControlUser() {
	roles := map[string][]string{"bob": {"staff"}} // the application's user store
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte("an-hmac-secret-of-at-least-32-bytes!")}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {AutoJoin: []string{"staff"}},
			"admin": {AutoJoin: []string{"staff", "admin"}},
		}},
		Roles: func(ctx context.Context, id *rthub.Identity) ([]string, error) {
			return roles[id.Subject], nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = hub.ControlUser(ctx, "bob", rthub.UserAction{Kind: rthub.UserRecheck, Reason: "demoted"})
	fmt.Println(errors.Is(err, rthub.ErrNotFound)) // bob is not connected anywhere
	// Output: true
}
