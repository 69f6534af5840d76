package rthub_test

import (
	"fmt"

	"github.com/org/rthub"
)

// The default read path (ReadAuto) needs nothing: on Linux idle connections
// wait in an epoll set without a goroutine. ReadGoroutine keeps one parked
// goroutine per connection, the path every other system uses.
func ExampleReadMode() {
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": []byte("an HMAC key of at least 32 bytes!")}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff": {Join: []string{"staff"}, AutoJoin: []string{"staff"}},
		}},
		ReadMode: rthub.ReadGoroutine,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hub.Close()
	fmt.Println(rthub.ReadAuto, rthub.ReadGoroutine)
	// Output: auto goroutine
}
