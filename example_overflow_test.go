package rthub_test

import (
	"context"
	"fmt"

	"github.com/org/rthub"
)

// A dashboard's telemetry rooms conflate by key for slow readers: a
// connection that falls behind gets the newest reading of each sensor and a
// "gap" message, instead of being closed; every other room stays ordered.
func ExamplePolicy_overflow() {
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte("example-secret-0123456789abcdefghij")}},
		Policy: rthub.Policy{
			Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"device:*", "telemetry:*"}}},
			Overflow: []rthub.OverflowRule{
				{Rooms: []string{"telemetry:*"}, Mode: rthub.OverflowConflate},
			},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hub.Close()
	// The key says which earlier reading a reading supersedes.
	err = hub.Publish(context.Background(), "telemetry:plant-1", "sensor:data",
		map[string]any{"device": "dev-03", "metric": "temp", "value": 21.5},
		rthub.WithKey("dev-03/temp"))
	fmt.Println(err, rthub.OverflowConflate)
	// Output: <nil> conflate
}
