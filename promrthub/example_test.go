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
func Example() {
	col := promrthub.New(promrthub.Options{Node: "node-1"})
	hub, err := rthub.New(rthub.Options{
		Auth:         rthub.AuthOptions{Keys: map[string]any{"": []byte("an HS256 secret of 32 bytes or more")}},
		Policy:       rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {AutoJoin: []string{"staff"}}}},
		OnRefused:    col.OnRefused(nil),
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
	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

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
