package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/org/rthub"
	"github.com/org/rthub/eventdoc"
	"github.com/org/rthub/mqttbridge"
)

// The sources of docs/onboarding.md's Go blocks, compiled in this package:
// the walkthrough adds to this server. The event examples are compiled, not
// run: running them would declare device:battery in the test process, and
// TestEventReference documents every declared event.

// Example_onboardingDeclare is step 3.1, declaring an event.
func Example_onboardingDeclare() {
	// snippet:begin
	type BatteryEvent struct {
		Device  string  `json:"device"`
		Percent float64 `json:"percent"`
	}

	var Battery = eventdoc.Describe(rthub.NewEvent[BatteryEvent]("device:battery"),
		"Battery level of a device, on change.", "device:{id}", "staff")
	// snippet:end
	_ = Battery
}

// Example_onboardingPublish is step 3.2, publishing it.
func Example_onboardingPublish() {
	type BatteryEvent struct {
		Device  string  `json:"device"`
		Percent float64 `json:"percent"`
	}
	Battery := rthub.NewEvent[BatteryEvent]("device:battery")
	var hub *rthub.Hub // the server's
	ctx := context.Background()
	id, p, cid := "dev-01", 87.5, "dev-01.9f2c.1"
	// snippet:begin
	err := Battery.Publish(ctx, hub, deviceRoom(id), BatteryEvent{Device: id, Percent: p},
		rthub.WithCorrelationID(cid))
	// snippet:end
	_ = err
}

// Example_onboardingRole is step 4, a role added to the server's policy;
// rthub.New accepts the result.
func Example_onboardingRole() {
	pol := policy
	pol.Roles = map[string]rthub.RoleRules{
		// snippet:begin
		"technician": {
			Join:     []string{"staff", "device:*", "site:{sub}:**"},
			AutoJoin: []string{"staff", "user:{sub}"},
		},
		// snippet:end
	}
	for role, rules := range policy.Roles {
		pol.Roles[role] = rules
	}
	hub, err := rthub.New(rthub.Options{
		Auth:     rthub.AuthOptions{Keys: map[string]any{"": []byte("an HS256 secret of 32 bytes or more")}},
		Policy:   pol,
		Handlers: []rthub.Handler{AlertAck.Relay()}, // the policy lets staff and admin emit alert:ack
		// and admins call device:command (commands.go serves it for real)
		RPCs: []rthub.RPCHandler{SendCommand.Handle(func(context.Context, rthub.Request[CommandRequest]) (mqttbridge.Result, error) {
			return mqttbridge.Result{}, errors.New("not in this example")
		})},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hub.Close()
	fmt.Println(len(pol.Roles), "roles")
	// Output: 3 roles
}
