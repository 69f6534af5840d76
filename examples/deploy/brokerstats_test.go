package deploy

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/promrthub"
	"github.com/org/rthub/redisbroker"
	"github.com/prometheus/client_golang/prometheus"
)

// brokerShards converts the Redis broker's stats for the promrthub
// collector (Options.Broker): promrthub/README.md shows this function, which
// lives here because this module depends on both.
func brokerShards(b *redisbroker.Broker) func() []promrthub.BrokerShard {
	return func() []promrthub.BrokerShard {
		st := b.Stats()
		out := make([]promrthub.BrokerShard, len(st.Shards))
		for i, s := range st.Shards {
			out[i] = promrthub.BrokerShard{Name: s.Name, Connected: s.Connected, Deaf: s.Deaf,
				ProbeRTT: s.ProbeRTT, LastProbe: s.LastProbe, Rooms: s.Rooms, Resubscribes: s.Resubscribes,
				Published: s.Published, PublishErrs: s.PublishErrors, Delivered: s.Delivered}
		}
		return out
	}
}

// TestBrokerShards runs a hub on the real Redis broker (RTHUB_REDIS_URL)
// with the collector reading it through brokerShards: once the shard is
// connected and a probe came back, the rthub_broker_* families show it, and
// a publication is counted.
func TestBrokerShards(t *testing.T) {
	url := testenv.URL(t, testenv.Redis)
	prefix := make([]byte, 6)
	_, _ = rand.Read(prefix)
	b, err := redisbroker.New(redisbroker.Options{
		Shards:        []redisbroker.Shard{{URL: url, Name: "r1"}},
		Prefix:        "rthub-test-deploy-" + hex.EncodeToString(prefix) + ":",
		ProbeInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	col := promrthub.New(promrthub.Options{Broker: brokerShards(b)})
	hub, err := rthub.New(rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": []byte("deploy-test-secret-0123456789abcdef")}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"staff"}}}},
		Broker: b, // the hub starts and closes it
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	col.SetHub(hub)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)

	if err := hub.Publish(t.Context(), "staff", "deploy:check", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	value := func(name string) (float64, bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "shard" && l.GetValue() == "r1" {
						if g := m.GetGauge(); g != nil {
							return g.GetValue(), true
						}
						return m.GetCounter().GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		up, _ := value("rthub_broker_connected")
		probe, _ := value("rthub_broker_last_probe_timestamp_seconds")
		pubs, _ := value("rthub_broker_publishes_total")
		if up == 1 && probe > 0 && pubs >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: rthub_broker_connected %v, last probe %v, publishes %v (shard r1)", up, probe, pubs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if deaf, ok := value("rthub_broker_deaf"); !ok || deaf != 0 {
		t.Errorf("rthub_broker_deaf = %v (present %v), want 0", deaf, ok)
	}
}
