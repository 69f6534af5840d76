package rthub_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
)

// Two tabs of alice and one of bob join the staff room; the hub counts its
// members per room, without hooks.
func ExampleHub_RoomInfos() {
	secret := []byte("example-secret-0123456789abcdefgh")
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{
			Roles:    map[string]rthub.RoleRules{"staff": {AutoJoin: []string{"staff", "user:{sub}"}}},
			Presence: []string{"staff"},
		},
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sub := range []string{"alice", "alice", "bob"} {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": sub, "roles": "staff", "exp": time.Now().Add(time.Hour).Unix(),
		}).SignedString(secret)
		c, err := client.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), client.Options{Token: tok})
		if err != nil {
			panic(err)
		}
		defer c.Close()
	}
	for _, ri := range hub.RoomInfos() {
		fmt.Printf("%-10s members %d, people %d (presence %v)\n", ri.Name, ri.Members, ri.People, ri.Presence)
	}
	fmt.Println("staff:", hub.RoomMembers("staff"), "members")
	// Output:
	// staff      members 3, people 2 (presence true)
	// user:alice members 2, people 0 (presence false)
	// user:bob   members 1, people 0 (presence false)
	// staff: 3 members
}
