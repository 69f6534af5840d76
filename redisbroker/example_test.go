package redisbroker_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/redisbroker"
)

// A broker on two Redis servers, with short history for telemetry rooms and
// none for presence pings, and a /health endpoint fed by the liveness probe.
// (The hub takes the broker through its options; see docs/scaling.md.)
func ExampleNew() {
	b, err := redisbroker.New(redisbroker.Options{
		Shards: []redisbroker.Shard{
			{URL: "redis://10.0.0.1:6379/0", Name: "r1"},
			{URL: "redis://10.0.0.2:6379/0", Name: "r2"},
		},
		History: rthub.HistoryPolicy{
			Rules: []rthub.HistoryRule{
				{Pattern: "device:*", HistoryLimits: rthub.HistoryLimits{Size: 300, TTL: 10 * time.Minute}},
				{Pattern: "ping:**", HistoryLimits: rthub.HistoryLimits{Size: -1}},
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close(context.Background())

	http.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if st := b.Stats(); !st.Healthy() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
}
