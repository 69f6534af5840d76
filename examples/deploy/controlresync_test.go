package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/promrthub"
	"github.com/org/rthub/redisbroker"
	"github.com/prometheus/client_golang/prometheus"
)

// resyncBlock is the shell block of docs/operations.md that forces a
// node's control resync (runbook "Broker control plane down or dropping
// messages"): the block after the run marker naming TestBrokerControlResync.
var resyncBlock = regexp.MustCompile("(?s)<!-- run: TestBrokerControlResync@examples/deploy[^\n]*-->\n\\s*```sh\n(.*?)\n\\s*```")

// TestBrokerControlResync runs the runbook's block as written against a hub
// on the real Redis broker (RTHUB_REDIS_URL), with REDIS_URL and NODE_ID
// set: it closes the node's pub/sub connections, and the node puts its
// control subscription in place again (rthub_broker_control_resyncs_total 1
// → 2) and is live again.
func TestBrokerControlResync(t *testing.T) {
	url := testenv.URL(t, testenv.Redis)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		if testenv.Required() {
			t.Fatalf("%s=1 but redis-cli is not installed (apt-get install redis-tools)", testenv.Require)
		}
		t.Skip("redis-cli not installed (apt-get install redis-tools)")
	}
	m := resyncBlock.FindStringSubmatch(read(t, "../../docs/operations.md"))
	if m == nil {
		t.Fatal("docs/operations.md: no sh block after the run marker of TestBrokerControlResync")
	}
	rnd := make([]byte, 6)
	_, _ = rand.Read(rnd)
	node := "deploy-resync-" + hex.EncodeToString(rnd)
	b, err := redisbroker.New(redisbroker.Options{
		Shards: []redisbroker.Shard{{URL: url, Name: "r1"}},
		Prefix: "rthub-test-" + node + ":",
		NodeID: node,
	})
	if err != nil {
		t.Fatal(err)
	}
	col := promrthub.New(promrthub.Options{BrokerControl: brokerControl(b)})
	hub, err := rthub.New(rthub.Options{
		Auth:   rthub.AuthOptions{Keys: map[string]any{"": []byte("deploy-test-secret-0123456789abcdef")}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"staff"}}}},
		Broker: b, // the hub starts and closes it
	})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	value := func(name string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) == 1 {
				mt := mf.GetMetric()[0]
				if g := mt.GetGauge(); g != nil {
					return g.GetValue()
				}
				return mt.GetCounter().GetValue()
			}
		}
		t.Fatalf("no series %s", name)
		return 0
	}
	wait := func(resyncs float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for value("rthub_broker_control_live") != 1 || value("rthub_broker_control_resyncs_total") != resyncs {
			if time.Now().After(deadline) {
				t.Fatalf("after 10 s: rthub_broker_control_live %v, rthub_broker_control_resyncs_total %v, want 1 and %v",
					value("rthub_broker_control_live"), value("rthub_broker_control_resyncs_total"), resyncs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait(1)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", m[1])
	cmd.Env = append(cmd.Environ(), "REDIS_URL="+url, "NODE_ID="+node)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the runbook's block: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^1$`).Match(out) {
		t.Fatalf("the runbook's block closed no connection (CLIENT KILL ID answers the number closed, 1):\n%s", out)
	}
	wait(2)
	if n := value("rthub_broker_control_dropped_total"); n != 0 {
		t.Errorf("rthub_broker_control_dropped_total = %v, want 0", n)
	}
}
