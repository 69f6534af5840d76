package main

import (
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/eventdoc"
	"github.com/org/rthub/mqttbridge"
)

// The events the server publishes. Each is declared once with its payload
// type; README.md and the generated EVENTS.md (from the descriptions here)
// list what each carries and which rooms it goes to.
var (
	// SensorData carries every reading, to rooms device:{id} and staff. It
	// is keyed by device ("reading:{id}"): rooms keep the latest reading of
	// each device as state, for joins with state (hubState).
	SensorData = eventdoc.Describe(rthub.NewEvent[ReadingEvent]("sensor:data").
			KeyBy(func(r ReadingEvent) string { return readingKey(r.Device) }),
		"Every reading of a device, as it arrives over MQTT. State key: reading:{device}.", "device:{id}", "staff")
	// DeviceStatus is published when a device goes online or offline (on
	// change only), to staff and device:{id}; keyed by device ("status:{id}").
	DeviceStatus = eventdoc.Describe(rthub.NewEvent[StatusEvent]("device:status").
			KeyBy(func(s StatusEvent) string { return statusKey(s.Device) }),
		"A device went online or offline (its MQTT Last Will); on change only. State key: status:{device}.", "staff", "device:{id}")
	// AlertNew is published once when an alert rule opens, to staff and
	// device:{id}.
	AlertNew = eventdoc.Describe(rthub.NewEvent[Alert]("alert:new"),
		"An alert rule opened (once per breach, with hysteresis).", "staff", "device:{id}")
	// AlertResolved is published once when an open alert resolves, to staff
	// and device:{id}.
	AlertResolved = eventdoc.Describe(rthub.NewEvent[Alert]("alert:resolved"),
		"An open alert resolved (once).", "staff", "device:{id}")
	// SystemHealth is published to staff every WS_HEALTH_INTERVAL.
	SystemHealth = eventdoc.Describe(rthub.NewEvent[Health]("system:health"),
		"Node health every WS_HEALTH_INTERVAL (10 s).", "staff")
	// AnalyticsUpdate is published to staff every WS_ANALYTICS_INTERVAL.
	AnalyticsUpdate = eventdoc.Describe(rthub.NewEvent[Analytics]("analytics:update"),
		"Per-device aggregates over the last hour, every WS_ANALYTICS_INTERVAL (45 s).", "staff")
	// AlertAcked is published to staff when someone acknowledges an alert
	// (alert:ack).
	AlertAcked = eventdoc.Describe(rthub.NewEvent[Alert]("alert:acked"),
		"Someone acknowledged an alert (alert:ack): the alert with acked_at, acked_by and ack_note.", "staff")
	// AlertAck is the one event clients emit: staff and admin acknowledge
	// an alert, to the staff room. The hub checks the payload against its
	// schema (Options.ValidateEmits) before the handler (ack.go) runs.
	AlertAck = eventdoc.Describe(rthub.NewEvent[AlertAckRequest]("alert:ack"),
		"Client emit, to staff: acknowledge an alert; the reply says whether it worked.", "staff")
	// DeviceCommand is published on each change of state of a command to a
	// device (commands.go): queued, sent, done, failed, expired. The
	// bridge's downlink publishes it, to device:{id} and staff.
	DeviceCommand = eventdoc.Describe(rthub.NewEvent[mqttbridge.Result]("device:command"),
		"A command to a device (RPC device:command) changed state: queued, sent, done, failed or expired.", "device:{id}", "staff")
	// AuditEvent is published to admin for every audit log entry.
	AuditEvent = eventdoc.Describe(rthub.NewEvent[AuditEntry]("audit:entry"),
		"An audit log entry: logins, refused handshakes, forbidden joins and emits.", "admin")
)

// Rooms.
const (
	roomStaff = "staff"
	roomAdmin = "admin"
)

func deviceRoom(id string) string { return "device:" + id }

// The state keys of a device's latest reading and status.
func readingKey(device string) string { return "reading:" + device }
func statusKey(device string) string  { return "status:" + device }

// ReadingEvent is the payload of sensor:data: one reading of one device,
// several metrics sampled at the same time.
type ReadingEvent struct {
	Device string             `json:"device"`
	At     time.Time          `json:"at"`
	Values map[string]float64 `json:"values"`
}

// AlertAckRequest is the payload of alert:ack, which clients emit.
type AlertAckRequest struct {
	ID   int64  `json:"id" jsonschema:"minimum=1"`                 // the alert's ID
	Note string `json:"note,omitempty" jsonschema:"maxLength=200"` // optional, shown to staff
}

// StatusEvent is the payload of device:status.
type StatusEvent struct {
	Device string    `json:"device"`
	Status string    `json:"status"` // "online" or "offline"
	At     time.Time `json:"at"`
}

// Device statuses.
const (
	statusOnline  = "online"
	statusOffline = "offline"
	statusUnknown = "unknown"
)

// policy: staff may watch the staff room and any device; admin also the
// admin room (its panel: the audit log). Both auto-join their rooms on
// connect; device rooms are joined by the page when a device is opened.
// Both may acknowledge alerts (alert:ack) in the staff room; only admins
// may send commands to devices (the RPC device:command).
var policy = rthub.Policy{Roles: map[string]rthub.RoleRules{
	"staff": {
		Join:     []string{roomStaff, "device:*"},
		AutoJoin: []string{roomStaff},
		Emit:     []rthub.EmitRule{{Events: []string{AlertAck.Name()}, Rooms: []string{roomStaff}}},
	},
	"admin": {
		Join:     []string{roomStaff, roomAdmin, "device:*"},
		AutoJoin: []string{roomStaff, roomAdmin},
		Emit:     []rthub.EmitRule{{Events: []string{AlertAck.Name()}, Rooms: []string{roomStaff}}},
		Call:     []string{SendCommand.Name()},
	},
}}
