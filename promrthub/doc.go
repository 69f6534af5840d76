// Package promrthub exports an rthub hub's metrics to Prometheus: a
// [prometheus.Collector] that reads [rthub.Hub.Stats] on each scrape (an idle
// collector costs nothing), plus hooks for the hub's Options that count
// refusals by reason and disconnects by close code.
//
//	col := promrthub.New(promrthub.Options{
//		Broker:        brokerShards(rb),  // optional: redisbroker health
//		BrokerControl: brokerControl(rb), // optional: its control plane
//		Bridge:        bridgeStats(br),   // optional: mqttbridge counters
//	})
//	hub, err := rthub.New(rthub.Options{
//		// ...
//		OnRefused:    col.OnRefused(audit), // audit may be nil
//		OnDisconnect: col.OnDisconnect(nil),
//	})
//	col.SetHub(hub)
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(col, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// It is its own module, so that the rthub module never depends on
// client_golang; it does not import the redisbroker and mqttbridge modules
// either: Options.Broker, Options.BrokerControl and Options.Bridge are
// functions returning this package's mirror types, which a few lines
// convert (see the README).
//
// Every family is named rthub_*; [Metrics] lists them with their HELP text,
// and docs/metrics.md, generated from that list by go generate, is the
// reference. The broadcast latency is a real Prometheus histogram
// (rthub_broadcast_latency_seconds) built from the hub's snapshot, so
// histogram_quantile gives p50/p95/p99 across nodes.
package promrthub

//go:generate go run ./internal/metricsdoc ../docs/metrics.md
