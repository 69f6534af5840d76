package main

import (
	"time"

	"github.com/org/rthub"
)

// The events the server publishes. Each is declared once with its payload
// type; README.md lists what each carries and which rooms it goes to.
var (
	// SensorData carries every reading, to rooms device:{id} and staff.
	SensorData = rthub.NewEvent[ReadingEvent]("sensor:data").
			Describe("Every reading of a device, as it arrives over MQTT.", "device:{id}", "staff")
	// DeviceStatus is published when a device goes online or offline (on
	// change only), to staff and device:{id}.
	DeviceStatus = rthub.NewEvent[StatusEvent]("device:status").
			Describe("A device went online or offline (its MQTT Last Will); on change only.", "staff", "device:{id}")
	// AlertNew is published once when an alert rule opens, to staff and
	// device:{id}.
	AlertNew = rthub.NewEvent[Alert]("alert:new").
			Describe("An alert rule opened (once per breach, with hysteresis).", "staff", "device:{id}")
	// AlertResolved is published once when an open alert resolves, to staff
	// and device:{id}.
	AlertResolved = rthub.NewEvent[Alert]("alert:resolved").
			Describe("An open alert resolved (once).", "staff", "device:{id}")
	// SystemHealth is published to staff every WS_HEALTH_INTERVAL.
	SystemHealth = rthub.NewEvent[Health]("system:health").
			Describe("Node health every WS_HEALTH_INTERVAL (10 s).", "staff")
	// AnalyticsUpdate is published to staff every WS_ANALYTICS_INTERVAL.
	AnalyticsUpdate = rthub.NewEvent[Analytics]("analytics:update").
			Describe("Per-device aggregates over the last hour, every WS_ANALYTICS_INTERVAL (45 s).", "staff")
	// AuditEvent is published to admin for every audit log entry.
	AuditEvent = rthub.NewEvent[AuditEntry]("audit:entry").
			Describe("An audit log entry: logins, refused handshakes, forbidden joins and emits.", "admin")
)

// Rooms.
const (
	roomStaff = "staff"
	roomAdmin = "admin"
)

func deviceRoom(id string) string { return "device:" + id }

// ReadingEvent is the payload of sensor:data: one reading of one device,
// several metrics sampled at the same time.
type ReadingEvent struct {
	Device string             `json:"device"`
	At     time.Time          `json:"at"`
	Values map[string]float64 `json:"values"`
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
var policy = rthub.Policy{Roles: map[string]rthub.RoleRules{
	"staff": {
		Join:     []string{roomStaff, "device:*"},
		AutoJoin: []string{roomStaff},
	},
	"admin": {
		Join:     []string{roomStaff, roomAdmin, "device:*"},
		AutoJoin: []string{roomStaff, roomAdmin},
	},
}}
