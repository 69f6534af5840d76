package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/mqttbridge"
)

// Commands to devices. An admin calls the RPC device:command from the
// dashboard; its handler queues the command with the bridge's downlink
// (mqttbridge.Bridge.Send) and answers at once with the queued command.
// The bridge publishes it on {prefix}devices/{id}/cmd (QoS 1) when the
// device is online (its retained status topic says so), at most once; the
// device replies on {prefix}devices/{id}/cmd/reply. Each change of state
// (queued, sent, done, failed, expired) is the event device:command, to
// staff and device:{id}, so every dashboard shows pending / done /
// expired. The queue is the store's (PostgreSQL: it survives a restart).

// The two commands the simulated devices understand.
const (
	cmdSetThreshold = "set_threshold" // args {"metric": "temperature", "value": 28}: the alert's open level for this device
	cmdSetInterval  = "set_interval"  // args {"seconds": 5}: the reading interval
)

// The command defaults: TTL of a command, and the queue bounds.
const (
	commandTTL       = 2 * time.Minute
	commandMaxTTL    = time.Hour
	commandPerDevice = 8
	commandMaxQueued = 1000
)

// CommandRequest is the request of the RPC device:command.
type CommandRequest struct {
	Device  string  `json:"device" jsonschema:"pattern=^[A-Za-z0-9_.-]{1,64}$"`    // the device's ID
	Command string  `json:"command" jsonschema:"enum=set_threshold|set_interval"`  // what to change
	Metric  string  `json:"metric,omitempty" jsonschema:"maxLength=32"`            // set_threshold: the metric
	Value   float64 `json:"value,omitempty"`                                       // set_threshold: the new open level
	Seconds int     `json:"seconds,omitempty" jsonschema:"minimum=0,maximum=3600"` // set_interval: 1 … 3600
	// TTLSeconds is how long the command may wait for the device (default
	// 120, at most 3600).
	TTLSeconds int `json:"ttl_s,omitempty" jsonschema:"minimum=0,maximum=3600"`
}

// ThresholdArgs are the arguments of set_threshold.
type ThresholdArgs struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
}

// IntervalArgs are the arguments of set_interval.
type IntervalArgs struct {
	Seconds int `json:"seconds"`
}

// DeviceConfig is what a simulated device replies to a command: its
// settings after applying it.
type DeviceConfig struct {
	IntervalSeconds float64            `json:"interval_s"`
	Thresholds      map[string]float64 `json:"thresholds,omitempty"`
}

// SendCommand is the RPC device:command: admins only (policy), answered
// with the queued command; its later states arrive as device:command
// events.
var SendCommand = rthub.NewRPC[CommandRequest, mqttbridge.Result]("device:command", rthub.RPCTimeout(10*time.Second))

// commandArgs checks a request and returns the command's name and arguments.
func commandArgs(req CommandRequest, rules map[string]AlertRule) (string, json.RawMessage, error) {
	bad := func(format string, args ...any) error {
		return &rthub.ReplyError{Code: "bad_request", Message: fmt.Sprintf(format, args...)}
	}
	var args any
	switch req.Command {
	case cmdSetThreshold:
		if _, ok := rules[req.Metric]; !ok {
			return "", nil, bad("no alert rule for metric %q", truncate(req.Metric, 40))
		}
		args = ThresholdArgs{Metric: req.Metric, Value: req.Value}
	case cmdSetInterval:
		if req.Seconds < 1 || req.Seconds > 3600 {
			return "", nil, bad("seconds must be 1 … 3600")
		}
		args = IntervalArgs{Seconds: req.Seconds}
	default:
		return "", nil, bad("unknown command %q", truncate(req.Command, 40))
	}
	b, err := json.Marshal(args)
	return req.Command, b, err
}

// commandHandler serves device:command. A call with an idempotency key
// (the clients' outbox, resent after a reconnection) maps to a command ID
// derived from the user and the key, so a retried call returns the
// command queued the first time instead of sending a second one.
func commandHandler(bridge func() *mqttbridge.Bridge, known func(string) bool, rules map[string]AlertRule, audit func(AuditEntry), log *slog.Logger) rthub.RPCHandler {
	return SendCommand.Handle(func(ctx context.Context, req rthub.Request[CommandRequest]) (mqttbridge.Result, error) {
		name, args, err := commandArgs(req.Data, rules)
		if err != nil {
			return mqttbridge.Result{}, err
		}
		if !known(req.Data.Device) {
			return mqttbridge.Result{}, &rthub.ReplyError{Code: "not_found", Message: fmt.Sprintf("no device %q", req.Data.Device)}
		}
		cmd := mqttbridge.Command{Name: name, Args: args, TTL: time.Duration(req.Data.TTLSeconds) * time.Second}
		if req.Key != "" {
			h := sha256.Sum256([]byte(req.Conn.Identity.Subject + "\x00" + req.Key))
			cmd.ID = "k" + hex.EncodeToString(h[:12])
		}
		b := bridge()
		r, err := b.Send(ctx, req.Data.Device, cmd)
		switch {
		case errors.Is(err, mqttbridge.ErrDuplicateCommand) && cmd.ID != "":
			return b.CommandResult(ctx, cmd.ID) // the retried call's first answer
		case errors.Is(err, mqttbridge.ErrQueueFull):
			return r, &rthub.ReplyError{Code: "queue_full", Message: err.Error()}
		case errors.Is(err, mqttbridge.ErrInvalidCommand):
			return r, &rthub.ReplyError{Code: "bad_request", Message: err.Error()}
		case err != nil:
			return r, err
		}
		audit(AuditEntry{Kind: auditCommand, Username: req.Conn.Identity.Subject,
			Detail: fmt.Sprintf("%s %s %s (%s)", r.Device, r.Name, r.Args, r.ID), RemoteAddr: req.Conn.RemoteAddr})
		log.InfoContext(ctx, "commands: queued", "id", r.ID, "device", r.Device, "name", r.Name, "by", req.Conn.Identity.Subject)
		return r, nil
	})
}

// commandConfig is the bridge's downlink configuration.
func commandConfig(prefix string, store mqttbridge.CommandStore) *mqttbridge.CommandConfig {
	return &mqttbridge.CommandConfig{
		Topic:        prefix + fmt.Sprintf(commandTopic, "{device}"),
		ReplyTopic:   prefix + fmt.Sprintf(replyTopic, "{device}"),
		StatusTopic:  prefix + fmt.Sprintf(statusTopic, "{device}"),
		TTL:          commandTTL,
		MaxTTL:       commandMaxTTL,
		MaxPerDevice: commandPerDevice,
		MaxQueued:    commandMaxQueued,
		Store:        store,
		Event:        DeviceCommand.Name(),
		Rooms:        []string{"device:{device}", roomStaff},
	}
}

// thresholds are the per-device alert levels set by set_threshold: a
// device's acknowledgement (done) changes the open level of its rule, and
// the resolve level with it (same hysteresis). They live in memory (at
// most maxThresholds), so a restart returns to ALERT_RULES.
type thresholds struct {
	mu sync.Mutex
	m  map[alertKey]float64
}

const maxThresholds = 10_000

// set records the level of device's metric; past the bound it is ignored
// (and reported false).
func (t *thresholds) set(device, metric string, v float64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[alertKey]float64{}
	}
	k := alertKey{device, metric}
	if _, ok := t.m[k]; !ok && len(t.m) >= maxThresholds {
		return false
	}
	t.m[k] = v
	return true
}

func (t *thresholds) get(device, metric string) (float64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[alertKey{device, metric}]
	return v, ok
}

// onCommandDone applies a finished set_threshold to the alert engine.
func onCommandDone(alerts *AlertEngine, log *slog.Logger) func(r mqttbridge.Result) {
	return func(r mqttbridge.Result) {
		if r.State != mqttbridge.CommandDone || r.Name != cmdSetThreshold {
			return
		}
		var a ThresholdArgs
		if json.Unmarshal(r.Args, &a) != nil || strings.TrimSpace(a.Metric) == "" {
			return
		}
		if !alerts.SetDeviceLevel(r.Device, a.Metric, a.Value) {
			log.Warn("commands: threshold not applied (too many, or no rule for the metric)", "device", r.Device, "metric", a.Metric)
		}
	}
}
