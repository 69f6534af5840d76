package docsnippets_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/token"
)

// The sources of docs/rpc.md's Go blocks.

// Threshold asks a device to alert above Limit.
type Threshold struct {
	Device string  `json:"device"`
	Limit  float64 `json:"limit" jsonschema:"minimum=0"`
}

// Ack is the answer to a SetThreshold call.
type Ack struct {
	Device string  `json:"device"`
	Old    float64 `json:"old"`
}

// SetThreshold is declared once, in a package both sides import.
var SetThreshold = rthub.NewRPC[Threshold, Ack]("device:set-threshold", rthub.RPCTimeout(10*time.Second))

// thresholds is the application's store of the example (a real one is a
// database, called with the handler's ctx).
var thresholds = struct {
	sync.Mutex
	m map[string]float64
}{m: map[string]float64{"d7": 30}}

// rpcHub is docs/rpc.md's server block: only admins may call device:*, a
// call costs 5 commands of the rate limit, and the handler answers an Ack
// or an error with a code of the application's own.
func rpcHub(secret []byte) (*rthub.Hub, error) {
	// snippet:begin
	return rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {AutoJoin: []string{"staff"}},
			"admin": {AutoJoin: []string{"staff"}, Call: []string{"device:*"}},
		}},
		RPCs: []rthub.RPCHandler{
			SetThreshold.Handle(func(ctx context.Context, req rthub.Request[Threshold]) (Ack, error) {
				thresholds.Lock()
				defer thresholds.Unlock()
				old, ok := thresholds.m[req.Data.Device]
				if !ok {
					return Ack{}, &rthub.ReplyError{Code: "unknown_device", Message: "no such device"}
				}
				thresholds.m[req.Data.Device] = req.Data.Limit
				return Ack{Device: req.Data.Device, Old: old}, nil
			}),
		},
		Limits: rthub.Limits{RPCCosts: map[string]int{SetThreshold.Name(): 5}},
	})
	// snippet:end
}

// Example_rpcCall is docs/rpc.md's Go client block, run against rpcHub.
func Example_rpcCall() {
	secret := []byte("an HS256 secret of 32 bytes or more")
	hub, err := rpcHub(secret)
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Close()
	tok, _ := token.Sign(secret, token.Claims{Subject: "root", Roles: []string{"admin"}, TTL: time.Hour})
	ctx := context.Background()
	c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), client.Options{Token: tok})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// snippet:begin
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second) // the server's handler gets this deadline
	defer cancel()
	ack, err := client.Call(cctx, c, SetThreshold, Threshold{Device: "d7", Limit: 42})
	var re *rthub.ReplyError
	switch {
	case errors.As(err, &re) && re.Code == "unknown_device":
		fmt.Println("no such device")
	case errors.Is(err, rthub.ErrTimeout): // the deadline passed (client or server side)
		fmt.Println("no answer in time")
	case err != nil:
		fmt.Println(err) // forbidden, rate_limited, bad_payload, expired, ...
	default:
		fmt.Printf("%s: threshold was %v\n", ack.Device, ack.Old)
	}
	// snippet:end

	fmt.Println(errors.Is(sendChat(ctx, c, "msg-1", "hi"), rthub.ErrUnknownEvent)) // this hub handles no chat
	// Output:
	// d7: threshold was 30
	// true
}

// sendChat is docs/rpc.md's EmitOnce block: id is the application's own
// identifier of the message, so that a retry after a restart of the
// client uses the same key.
func sendChat(ctx context.Context, c *client.Client, id, text string) error {
	// snippet:begin
	err := c.EmitOnce(ctx, "chat:message", "staff", map[string]string{"text": text}, client.WithKey("chat-"+id))
	if errors.Is(err, client.ErrExpired) {
		// unanswered for Options.Outbox.TTL: it may or may not have run;
		// sending it again with the same key later is safe
	}
	// snippet:end
	return err
}
