package docsnippets_test

import (
	"net/http"
	"time"
)

// Example_httpServer is docs/security.md's http.Server block.
func Example_httpServer() {
	mux := http.NewServeMux()
	// snippet:begin
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second, // slowloris: headers dribbled byte by byte
		MaxHeaderBytes:    16 << 10,         // a handshake needs well under 8 KiB
	}
	// snippet:end
	_ = srv
}
