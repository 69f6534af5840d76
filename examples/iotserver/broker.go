package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// EmbeddedBroker is the in-process MQTT broker (mochi-mqtt) of the
// zero-setup mode. It listens on loopback only and lets every client in:
// it is for the simulated devices and for trying things out with
// mosquitto_pub, not for a network.
type EmbeddedBroker struct {
	srv  *mqtt.Server
	addr string
}

// StartEmbeddedBroker listens on addr (default 127.0.0.1:1884, next to a
// real broker on 1883) and serves MQTT 3.1.1 and 5.
func StartEmbeddedBroker(addr string, log *slog.Logger) (*EmbeddedBroker, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded MQTT broker: %w (set MQTT_EMBEDDED_ADDR to another address, or RTHUB_MQTT_URL to use a running broker)", err)
	}
	srv := mqtt.New(&mqtt.Options{
		InlineClient: false,
		// mochi logs every connection at info level and a warning for each
		// client closed at shutdown: keep its errors only.
		Logger: slog.New(minLevel{log.Handler(), slog.LevelError}).With("component", "mqtt-broker"),
		// $SYS topics every 30 s are noise here; hourly is the least.
		SysTopicResendInterval: 3600,
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		ln.Close()
		return nil, err
	}
	if err := srv.AddListener(listeners.NewNet("tcp", ln)); err != nil {
		ln.Close()
		return nil, err
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, err
	}
	return &EmbeddedBroker{srv: srv, addr: ln.Addr().String()}, nil
}

// URL is the broker's address for MQTT clients, tcp://host:port.
func (b *EmbeddedBroker) URL() string { return "tcp://" + b.addr }

// Clients counts the connected clients.
func (b *EmbeddedBroker) Clients() int { return int(atomic.LoadInt64(&b.srv.Info.ClientsConnected)) }

// Close disconnects every client and stops the broker.
func (b *EmbeddedBroker) Close() error { return b.srv.Close() }

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(as), m.min}
}
func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{m.Handler.WithGroup(g), m.min} }
