package admin_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
	"github.com/org/rthub/admin"
)

var secret = []byte("example-secret-0123456789abcdefgh")

func sign(sub, role string) string {
	s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "roles": role, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	return s
}

// The admin API beside the hub, protected by the hub's own JWT check: a
// token with the admin role may use it, a staff token gets 403.
func ExampleNewHandler() {
	refusals := admin.NewRefusalLog(0)
	hub, err := rthub.New(rthub.Options{
		Auth:      rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy:    rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {AutoJoin: []string{"staff"}}}},
		OnRefused: refusals.Record, // the refusal audit of GET /admin/refusals
	})
	if err != nil {
		panic(err)
	}
	defer hub.Close()
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/admin/", http.StripPrefix("/admin", admin.NewHandler(hub, admin.Options{Role: "admin", Refusals: refusals})))

	for _, tok := range []string{sign("sam", "staff"), sign("ann", "admin")} {
		req := httptest.NewRequest(http.MethodGet, "/admin/rooms", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body)
	}
	// Output:
	// 403 {"error":{"code":"forbidden"}}
	// 200 {"rooms":[],"total":0,"truncated":false}
}

// Behind the application's own authentication: Authorize says who makes
// the request (here from a header a trusted proxy sets; a session works
// the same way).
func ExampleOptions_authorize() {
	hub, err := rthub.New(rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {AutoJoin: []string{"staff"}}}},
	})
	if err != nil {
		panic(err)
	}
	defer hub.Close()
	h := admin.NewHandler(hub, admin.Options{
		Authorize: func(r *http.Request) (string, error) {
			switch user := r.Header.Get("X-Proxy-User"); user {
			case "":
				return "", admin.ErrUnauthenticated
			case "ann":
				return user, nil
			default:
				return user, fmt.Errorf("%w: %s is not an operator", admin.ErrForbidden, user)
			}
		},
	})
	for _, user := range []string{"", "sam", "ann"} {
		req := httptest.NewRequest(http.MethodGet, "/actions", nil)
		req.Header.Set("X-Proxy-User", user)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body)
	}
	// Output:
	// 401 {"error":{"code":"unauthorized"}}
	// 403 {"error":{"code":"forbidden"}}
	// 200 {"actions":[],"total":0}
}
