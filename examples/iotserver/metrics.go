package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/org/rthub"
	"github.com/org/rthub/mqttbridge"
	"github.com/org/rthub/promrthub"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics is what GET /metrics serves: the hub's families (promrthub, with
// the MQTT bridge's), and client_golang's Go runtime and process families
// (process_resident_memory_bytes feeds the memory alert).
type metrics struct {
	col *promrthub.Collector
	reg *prometheus.Registry
}

// newMetrics builds the registry. bridge is read on each scrape; it may
// return nil until the bridge exists.
func newMetrics(bridge func() *mqttbridge.Bridge) *metrics {
	col := promrthub.New(promrthub.Options{Bridge: func() promrthub.BridgeStats {
		if b := bridge(); b != nil {
			return bridgeStats(b.Stats())
		}
		return promrthub.BridgeStats{}
	}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(col, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &metrics{col: col, reg: reg}
}

func (m *metrics) handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		EnableOpenMetrics: true,
	})
}

// bridgeStats converts the bridge's Stats for the collector.
func bridgeStats(s mqttbridge.Stats) promrthub.BridgeStats {
	out := promrthub.BridgeStats{Connected: s.Connected, Subscribed: s.Subscribed, Connects: s.Connects,
		ConnectErrors: s.ConnectErrors, Received: s.Received, InvalidTopic: s.InvalidTopic,
		Routes: make([]promrthub.BridgeRoute, len(s.Routes))}
	for i, r := range s.Routes {
		out.Routes[i] = promrthub.BridgeRoute{Name: r.Name, Received: r.Received, Sent: r.Sent,
			Published: r.Published, PublishErrors: r.PublishErrors, DecodeErrors: r.DecodeErrors,
			Skipped: r.Skipped, Unchanged: r.Unchanged, InvalidTopic: r.InvalidTopic, Dropped: r.Dropped,
			Merged: r.Merged, Queued: r.Queued, QueuedBytes: r.QueuedBytes, QueueHighWater: r.QueueHighWater}
	}
	return out
}

// connLogger logs connections and disconnections with their conn and user
// fields: at debug level, and abnormal ends (not 1000 or 1001) at info.
func connLogger(log *slog.Logger) (func(context.Context, rthub.ConnInfo), func(context.Context, rthub.ConnInfo, error)) {
	onConnect := func(ctx context.Context, c rthub.ConnInfo) {
		log.LogAttrs(ctx, slog.LevelDebug, "ws: connected", slog.String("conn", c.ID),
			slog.String("user", subject(c)), slog.String("ip", c.ClientIP.String()))
	}
	onDisconnect := func(_ context.Context, c rthub.ConnInfo, err error) {
		code := rthub.CloseStatus(err)
		level := slog.LevelDebug
		if code != rthub.CloseNormal && code != rthub.CloseGoingAway {
			level = slog.LevelInfo
		}
		log.LogAttrs(context.Background(), level, "ws: disconnected", slog.String("conn", c.ID),
			slog.String("user", subject(c)), slog.Int("code", int(code)))
	}
	return onConnect, onDisconnect
}

func subject(c rthub.ConnInfo) string {
	if c.Identity == nil {
		return ""
	}
	return c.Identity.Subject
}
