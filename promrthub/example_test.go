package promrthub_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/org/rthub"
	"github.com/org/rthub/promrthub"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The collector's hooks go into the hub's Options, so the hub is set after.
// The README's first block is this example's middle.
func Example() {
	secret := []byte("an HS256 secret of 32 bytes or more")
	policy := rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {Join: []string{"staff"}}}}
	mux := http.NewServeMux()
	// snippet:begin
	col := promrthub.New(promrthub.Options{Node: "node-1"}) // also Broker, Bridge: below
	hub, err := rthub.New(rthub.Options{
		Auth:         rthub.AuthOptions{Keys: map[string]any{"": secret}},
		Policy:       policy,
		OnRefused:    col.OnRefused(nil), // or col.OnRefused(audit): counts, then calls audit
		OnDisconnect: col.OnDisconnect(nil),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	col.SetHub(hub)

	reg := prometheus.NewRegistry()
	reg.MustRegister(col,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.Handle("GET /ws", hub)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// snippet:end

	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "rthub_connections" {
			fmt.Println(mf.GetName(), mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	// Output: rthub_connections 0
}
