package rthub_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/org/rthub"
)

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

// SetThreshold is declared once and used by the server and clients alike.
var SetThreshold = rthub.NewRPC[Threshold, Ack]("device:set-threshold", rthub.RPCTimeout(10*time.Second))

// An RPC handler returns a typed result, or an error whose code the caller
// sees; only admins may call it.
func ExampleNewRPC() {
	limits := map[string]float64{"d7": 30}
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte(os.Getenv("JWT_SECRET"))}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {AutoJoin: []string{"staff"}},
			"admin": {AutoJoin: []string{"staff"}, Call: []string{"device:*"}},
		}},
		RPCs: []rthub.RPCHandler{
			SetThreshold.Handle(func(ctx context.Context, req rthub.Request[Threshold]) (Ack, error) {
				old, ok := limits[req.Data.Device] // a real handler keeps this in a store, bounded by ctx
				if !ok {
					return Ack{}, &rthub.ReplyError{Code: "unknown_device", Message: "no such device"}
				}
				limits[req.Data.Device] = req.Data.Limit
				return Ack{Device: req.Data.Device, Old: old}, nil
			}),
		},
		Limits: rthub.Limits{RPCCosts: map[string]int{SetThreshold.Name(): 5}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hub.Close()
}
