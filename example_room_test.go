package rthub_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/org/rthub"
)

func ExampleMatch() {
	for _, c := range []struct{ pattern, room string }{
		{"device:*", "device:42"},
		{"device:*", "device"},
		{"device:*", "device:42:temp"},
		{"device:**", "device:42"},
		{"device:**", "device:42:temp"},
		{"*", "staff"},
		{"*", "device:42"},
		{"user:{sub}", "user:alice"}, // {sub} needs a subject: only the hub's policy knows it
	} {
		fmt.Printf("%-10s %-15s %v\n", c.pattern, c.room, rthub.Match(c.pattern, c.room))
	}
	// Output:
	// device:*   device:42       true
	// device:*   device          false
	// device:*   device:42:temp  false
	// device:**  device:42       true
	// device:**  device:42:temp  true
	// *          staff           true
	// *          device:42       false
	// user:{sub} user:alice      false
}

func ExampleValidRoom() {
	for _, room := range []string{"device:42:temp", "device::42", "café"} {
		err := rthub.ValidRoom(room)
		fmt.Println(errors.Is(err, rthub.ErrBadRoom), err)
	}
	// Output:
	// false <nil>
	// true rthub: bad room name: "device::42": empty segment '::' at offset 7
	// true rthub: bad room name: "caf\u00e9": illegal byte 0xc3 at offset 3
}

func ExampleValidPattern() {
	for _, p := range []string{"device:**", "device:**:temp", "dev*"} {
		fmt.Println(rthub.ValidPattern(p))
	}
	// Output:
	// <nil>
	// rthub: bad room name: pattern "device:**:temp": '**' is allowed only as the last segment at offset 7
	// rthub: bad room name: pattern "dev*": '*' or '**' must be a whole segment at offset 3
}

// The product's policy: staff chat and see devices, admins also command them, and
// everyone may join the public room. The Authorize hook narrows device rooms to the
// devices listed in the token's "devices" claim.
func ExamplePolicy() {
	policy := rthub.Policy{
		Roles: map[string]rthub.RoleRules{
			"staff": {
				Join:     []string{"staff", "device:*"},
				AutoJoin: []string{"staff", "user:{sub}"},
				Emit:     []rthub.EmitRule{{Events: []string{"chat:*"}, Rooms: []string{"staff"}}},
			},
			"admin": {
				Join: []string{"admin", "device:**"},
				Emit: []rthub.EmitRule{{Events: []string{"device:command"}, Rooms: []string{"device:*"}}},
			},
			"*": {Join: []string{"public"}}, // every authenticated identity
		},
		Authorize: func(ctx context.Context, id *rthub.Identity, act rthub.Action, room, event string) error {
			rest, ok := strings.CutPrefix(room, "device:")
			if !ok {
				return nil
			}
			dev, _, _ := strings.Cut(rest, ":")
			if devices, _ := id.Claims["devices"].([]any); slices.Contains(devices, any(dev)) {
				return nil
			}
			return fmt.Errorf("%w: device %s is not in the token", rthub.ErrForbidden, dev)
		},
	}
	// The hub validates the policy and calls Authorize only for actions the roles
	// allow; here we call the hook directly to show what it decides.
	alice := &rthub.Identity{Subject: "alice", Roles: []string{"staff"},
		Claims: map[string]any{"devices": []any{"1", "2"}}}
	for _, room := range []string{"device:1", "device:3", "staff"} {
		err := policy.Authorize(context.Background(), alice, rthub.ActionJoin, room, "")
		fmt.Printf("%s %s: %v\n", rthub.ActionJoin, room, err)
	}
	// Output:
	// join device:1: <nil>
	// join device:3: rthub: forbidden: device 3 is not in the token
	// join staff: <nil>
}
