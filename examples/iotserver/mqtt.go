package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/org/rthub"
	"github.com/org/rthub/mqttbridge"
)

// newBridge maps the two device topics to hub events with mqttbridge:
//
//	{prefix}sensors/{device}/reading → sensor:data to device:{device} and staff
//	{prefix}devices/{device}/status  → device:status to staff and device:{device}, on change only
//
// The decoders are Ingest's: they validate, persist and evaluate alerts
// before the bridge publishes what they return. Readings use the bridge's
// default overflow policy (drop the oldest: a dashboard wants the newest);
// statuses block instead, so that no online/offline change is lost.
//
// Each message's correlation ID (its "correlation-id" user property, which
// the simulated devices set) reaches clients as the events' cid; with
// tracing on, each decode is a span "mqtt.ingest" and each publish a span
// "rthub.publish", children of the device's span when the message carries
// a "traceparent" user property (tracing.go).
//
// cmds is the downlink (commands.go); onCommand sees each device:command
// event once (not once per room).
func newBridge(pub rthub.Publisher, tr *tracing, in *Ingest, cfg Config, url string, cmds *mqttbridge.CommandConfig, onCommand func(mqttbridge.Result), log *slog.Logger) (*mqttbridge.Bridge, error) {
	readings := mqttbridge.EventRoute(SensorData, cfg.Prefix+"sensors/{device}/reading",
		[]string{"device:{device}", roomStaff},
		ingestSpan(tr, func(ctx context.Context, m *mqttbridge.Message) (ReadingEvent, error) {
			return in.DecodeReading(ctx, m.Vars["device"], m.Payload, m.Received)
		}))
	readings.Name = "readings"
	status := mqttbridge.EventRoute(DeviceStatus, cfg.Prefix+"devices/{device}/status",
		[]string{roomStaff, "device:{device}"},
		ingestSpan(tr, func(ctx context.Context, m *mqttbridge.Message) (StatusEvent, error) {
			ev, err := in.DecodeStatus(ctx, m.Vars["device"], m.Payload, m.Received)
			if errors.Is(err, errUnchanged) {
				return ev, mqttbridge.ErrSkip
			}
			return ev, err
		}))
	status.Name = "status"
	status.Overflow = mqttbridge.Block
	return mqttbridge.New(quietPublisher{pub, onCommand}, mqttbridge.Config{
		URL:      url,
		Username: cfg.MQTTUser,
		Password: cfg.MQTTPass,
		Routes:   []mqttbridge.Route{readings, status},
		Commands: cmds,
		Logger:   log.With("component", "mqttbridge"),
	})
}

// mqttState reads the bridge's Stats for system:health.
func mqttState(b *mqttbridge.Bridge, embedded bool, sim *Simulator) func() MQTTState {
	return func() MQTTState {
		st := b.Stats()
		s := MQTTState{Status: "connecting", Broker: "external", Received: st.Received, Published: st.Published,
			DecodeErrors: st.DecodeErrors, Dropped: st.Dropped, Queued: st.Queued}
		if st.Subscribed {
			s.Status = "connected"
		}
		if embedded {
			s.Broker = "embedded"
		}
		if sim != nil {
			s.SimDevices = sim.Connected()
		}
		if st.LastError != nil {
			s.LastError = st.LastError.Error()
		}
		return s
	}
}

// quietPublisher is the hub as the bridge's Publisher, except that a publish
// after the hub began draining is not an error: the simulated devices say
// goodbye while the server shuts down, and their last status is stored by
// the decoder anyway.
//
// It also adds the state key of sensor:data and device:status (declared with
// KeyBy in events.go), which the bridge, publishing by name, does not know.
type quietPublisher struct {
	pub       rthub.Publisher
	onCommand func(mqttbridge.Result) // nil: none
}

func (q quietPublisher) Publish(ctx context.Context, room, event string, data any, opts ...rthub.PublishOption) error {
	if r, ok := data.(mqttbridge.Result); ok && q.onCommand != nil && event == DeviceCommand.Name() && room == roomStaff {
		q.onCommand(r)
	}
	if raw, ok := data.(json.RawMessage); ok {
		opts = append(opts, stateKey(event, raw)...)
	}
	if err := q.pub.Publish(ctx, room, event, data, opts...); err != nil && !errors.Is(err, rthub.ErrHubClosed) {
		return err
	}
	return nil
}

// stateKey returns the WithKey option of a keyed event's encoded data (the
// key SensorData or DeviceStatus.KeyBy gives it), or none.
func stateKey(event string, data json.RawMessage) []rthub.PublishOption {
	var d struct {
		Device string `json:"device"`
	}
	switch event {
	case SensorData.Name():
		if json.Unmarshal(data, &d) == nil && d.Device != "" {
			return []rthub.PublishOption{rthub.WithKey(readingKey(d.Device))}
		}
	case DeviceStatus.Name():
		if json.Unmarshal(data, &d) == nil && d.Device != "" {
			return []rthub.PublishOption{rthub.WithKey(statusKey(d.Device))}
		}
	}
	return nil
}
