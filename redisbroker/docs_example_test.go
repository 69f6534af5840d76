package redisbroker_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/redisbroker"
)

// The sources of the Go blocks of this module's README and of
// docs/scaling.md. They need a Redis server, so they are compiled, not run;
// the tests run the same calls against RTHUB_REDIS_URL.

// Example_readme is README.md's block: a broker with history for device
// rooms, given to a hub.
func Example_readme() {
	auth := rthub.AuthOptions{Keys: map[string]any{"": []byte(os.Getenv("JWT_SECRET"))}}
	policy := rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"device:*"}}}}
	// snippet:begin
	b, err := redisbroker.New(redisbroker.Options{
		Shards: []redisbroker.Shard{{URL: "redis://127.0.0.1:6379/0"}},
		History: rthub.HistoryPolicy{Rules: []rthub.HistoryRule{
			{Pattern: "device:*", HistoryLimits: rthub.HistoryLimits{Size: 300, TTL: 10 * time.Minute}},
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	// The hub calls b.Start(ctx, handler), Publish, Subscribe, History and,
	// when it closes, Close.
	hub, err := rthub.New(rthub.Options{Auth: auth, Policy: policy, Broker: b})
	// snippet:end
	if err != nil {
		log.Fatal(err)
	}
	hub.Close()
}

// Example_scaling is docs/scaling.md's block: one node of a cluster.
func Example_scaling() {
	auth := rthub.AuthOptions{Keys: map[string]any{"": []byte(os.Getenv("JWT_SECRET"))}}
	policy := rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"device:*"}}}}
	hostname, _ := os.Hostname()
	// snippet:begin
	b, err := redisbroker.New(redisbroker.Options{
		Shards: []redisbroker.Shard{{URL: "redis://10.0.0.5:6379/0"}},
		NodeID: hostname, // names this node's Redis connections rthub-<NodeID>
	})
	if err != nil {
		log.Fatal(err)
	}
	hub, err := rthub.New(rthub.Options{Auth: auth, Policy: policy, Broker: b})
	// snippet:end
	if err != nil {
		log.Fatal(err)
	}
	_ = hub.Shutdown(context.Background())
}
