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

// brokerShards and brokerControl convert the Redis broker's stats for the
// promrthub collector (Options.Broker, Options.BrokerControl):
// promrthub/README.md shows these functions, which live here because this
// module depends on both.
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

func brokerControl(b *redisbroker.Broker) func() promrthub.BrokerControl {
	return func() promrthub.BrokerControl {
		c := b.Stats().Control
		return promrthub.BrokerControl{Live: c.Live, Dropped: c.Dropped, Resyncs: c.Resyncs}
	}
}

// TestBrokerShards runs a hub on the real Redis broker (RTHUB_REDIS_URL)
// with the collector reading it through brokerShards and brokerControl: once
// the shard is connected and a probe came back, the rthub_broker_* families
// show it, a publication is counted, and the control plane the hub started
// is live with one subscription in place.
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
	col := promrthub.New(promrthub.Options{Broker: brokerShards(b), BrokerControl: brokerControl(b)})
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
	// value is the series of shard r1 of family name, or its only series
	// when the family has no shard label (the control plane's).
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
				shard := ""
				for _, l := range m.GetLabel() {
					if l.GetName() == "shard" {
						shard = l.GetValue()
					}
				}
				if shard != "r1" && (shard != "" || len(mf.GetMetric()) != 1) {
					continue
				}
				if g := m.GetGauge(); g != nil {
					return g.GetValue(), true
				}
				return m.GetCounter().GetValue(), true
			}
		}
		return 0, false
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		up, _ := value("rthub_broker_connected")
		probe, _ := value("rthub_broker_last_probe_timestamp_seconds")
		pubs, _ := value("rthub_broker_publishes_total")
		live, _ := value("rthub_broker_control_live")
		if up == 1 && probe > 0 && pubs >= 1 && live == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: rthub_broker_connected %v, last probe %v, publishes %v (shard r1), control live %v", up, probe, pubs, live)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if deaf, ok := value("rthub_broker_deaf"); !ok || deaf != 0 {
		t.Errorf("rthub_broker_deaf = %v (present %v), want 0", deaf, ok)
	}
	// The control subscription was put in place once, and never lost.
	if n, ok := value("rthub_broker_control_resyncs_total"); !ok || n != 1 {
		t.Errorf("rthub_broker_control_resyncs_total = %v (present %v), want 1", n, ok)
	}
	if n, ok := value("rthub_broker_control_dropped_total"); !ok || n != 0 {
		t.Errorf("rthub_broker_control_dropped_total = %v (present %v), want 0", n, ok)
	}
}
