// Package hubhttp holds the HTTP endpoints the example servers put beside
// their hub: POST /publish (admin tokens only) and GET /stats (JSON). The load
// tool in examples/loadtest drives any server that serves them.
package hubhttp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/org/rthub"
)

// PublishRequest is the JSON body of POST /publish.
type PublishRequest struct {
	Room  string          `json:"room"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// maxPublishBody bounds a /publish body (the hub's default message limit).
const maxPublishBody = 64 << 10

// Publish returns the POST /publish handler: it requires "Authorization:
// Bearer <JWT>" signed HS256 with secret whose roles claim holds "admin"
// (401 for a missing or invalid token, 403 for another role), decodes a
// [PublishRequest] and calls hub.Publish. It answers 204 on success, 400 for
// a bad body or room, and 503 when the hub is closing.
func Publish(hub *rthub.Hub, secret []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		roles, err := verify(r.Header.Get("Authorization"), secret)
		if err != nil {
			httpError(w, http.StatusUnauthorized, "unauthorized", err.Error())
			return
		}
		if !slices.Contains(roles, "admin") {
			httpError(w, http.StatusForbidden, "forbidden", "role admin required")
			return
		}
		var req PublishRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPublishBody))
		if err := dec.Decode(&req); err != nil || req.Room == "" || req.Event == "" {
			httpError(w, http.StatusBadRequest, "bad_request", "want {\"room\",\"event\",\"data\"}")
			return
		}
		if len(req.Data) == 0 {
			req.Data = json.RawMessage("null")
		}
		switch err := hub.Publish(r.Context(), req.Room, req.Event, req.Data); {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.Is(err, rthub.ErrHubClosed):
			httpError(w, http.StatusServiceUnavailable, "shutting_down", err.Error())
		default:
			httpError(w, http.StatusBadRequest, "bad_request", err.Error())
		}
	}
}

// verify checks an "Authorization: Bearer" value and returns the token's roles.
func verify(h string, secret []byte) ([]string, error) {
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return nil, errors.New("bearer token missing")
	}
	var claims struct {
		jwt.RegisteredClaims
		Roles []string `json:"roles"`
	}
	_, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil {
		return nil, errors.New("invalid token")
	}
	return claims.Roles, nil
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// Stats is the JSON body of GET /stats.
type Stats struct {
	Hub        rthub.Stats `json:"hub"`
	Goroutines int         `json:"goroutines"`
	HeapInuse  uint64      `json:"heap_inuse"`
	StackInuse uint64      `json:"stack_inuse"`
	NumGC      uint32      `json:"num_gc"`
	RSS        uint64      `json:"rss"`    // bytes, from /proc/self/status VmRSS; 0 elsewhere
	Uptime     float64     `json:"uptime"` // seconds since start
}

// StatsHandler returns the GET /stats handler: hub counters, Go runtime
// figures and the process RSS as [Stats] JSON. start is the server's start
// time. ReadMemStats stops the world briefly; poll at most every second.
func StatsHandler(hub *rthub.Hub, start time.Time) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := Stats{
			Hub:        hub.Stats(),
			Goroutines: runtime.NumGoroutine(),
			HeapInuse:  ms.HeapInuse,
			StackInuse: ms.StackInuse,
			NumGC:      ms.NumGC,
			RSS:        RSS(),
			Uptime:     time.Since(start).Seconds(),
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	}
}

// RSS returns this process's resident set size in bytes (VmRSS from
// /proc/self/status), or 0 if it cannot be read (not Linux).
func RSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v) // "123456 kB"
		if len(f) == 0 {
			return 0
		}
		n, _ := strconv.ParseUint(f[0], 10, 64)
		return n << 10
	}
	return 0
}
