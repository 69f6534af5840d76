package rthub_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
)

// The HTTP stream transport, the fallback for networks that break
// WebSocket, is served on the hub's URL once enabled: a GET that accepts
// text/event-stream opens a stream of Server-Sent Events, and POSTs with the
// stream's session carry commands (docs/protocol.md §6).
func ExampleHTTPStreamOptions() {
	secret := []byte("example-secret-0123456789abcdef!")
	hub, err := rthub.New(rthub.Options{
		Auth:       rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy:     rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {AutoJoin: []string{"staff"}}}},
		HTTPStream: rthub.HTTPStreamOptions{Enabled: true},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Close()

	token, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ann", "roles": []string{"staff"}}).SignedString(secret)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/ws", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Header.Get("Content-Type"))
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if line, ok := strings.CutPrefix(lines.Text(), "event: "); ok {
			fmt.Println("first event:", line) // the session, for the POSTs' Rthub-Session header
		}
		if strings.HasPrefix(lines.Text(), `data: {"type":"welcome"`) {
			fmt.Println("welcome")
			break
		}
	}
	if err := lines.Err(); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Println(err)
	}
	// Output:
	// text/event-stream; charset=utf-8
	// first event: session
	// welcome
}
