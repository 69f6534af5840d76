package main

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/org/rthub/mqttbridge"
)

// Store keeps what the server knows: devices, readings, alerts, the demo
// users and the audit log. Two implementations pass the same test suite
// (store_test.go): [MemoryStore], the zero-setup default, and [PGStore]
// (PostgreSQL through pgx), used whenever RTHUB_POSTGRES_URL is set.
//
// Every method is safe for concurrent use. Times are stored with
// microsecond precision (PostgreSQL's); callers should not rely on more.
type Store interface {
	// Kind names the implementation for logs and health: "memory" or "postgres".
	Kind() string
	// Ping checks that the store answers.
	Ping(ctx context.Context) error

	// UpsertDevice creates the device or updates its name and kind; its
	// status is left alone.
	UpsertDevice(ctx context.Context, d Device) error
	// SetDeviceStatus records a status and reports whether it differs from
	// the one stored (a new device counts as changed). The device must exist.
	SetDeviceStatus(ctx context.Context, id, status string, at time.Time) (changed bool, err error)
	// Devices lists the devices sorted by ID, each with its latest reading.
	Devices(ctx context.Context) ([]Device, error)

	// AddReadings stores readings; their devices must exist. Each value of
	// a reading is stored as one sample (device, metric, time, value).
	AddReadings(ctx context.Context, rs []ReadingEvent) error
	// Readings returns the device's readings with from <= At < to, oldest
	// first, at most limit (the newest ones when there are more).
	Readings(ctx context.Context, device string, from, to time.Time, limit int) ([]ReadingEvent, error)
	// DeleteReadingsBefore removes samples older than t (retention) and
	// returns how many it removed.
	DeleteReadingsBefore(ctx context.Context, t time.Time) (int64, error)

	// OpenAlert stores a new open alert and returns it with its ID. At most
	// one alert per device and metric is open: a second returns
	// [ErrAlertOpen].
	OpenAlert(ctx context.Context, a Alert) (Alert, error)
	// ResolveAlert marks an open alert resolved; [ErrNotFound] if no open
	// alert has this ID.
	ResolveAlert(ctx context.Context, id int64, at time.Time, value float64) (Alert, error)
	// Alerts lists alerts, newest first: only open ones when openOnly.
	Alerts(ctx context.Context, openOnly bool, limit int) ([]Alert, error)
	// AckAlert records that user acknowledged the alert (open or resolved)
	// at at, with an optional note; [ErrNotFound] if there is no such
	// alert, [ErrAlertAcked] if it was acknowledged before (the first
	// acknowledgement stays).
	AckAlert(ctx context.Context, id int64, user, note string, at time.Time) (Alert, error)

	// Aggregates summarises each device's samples with At >= since, per
	// metric, sorted by device then metric.
	Aggregates(ctx context.Context, since time.Time) ([]Aggregate, error)
	// AlertCounts counts open alerts, and alerts opened and resolved since.
	AlertCounts(ctx context.Context, since time.Time) (AlertCounts, error)
	// CachedAnalytics returns the analytics body saved under key if it was
	// computed at or after notBefore (ok false otherwise). Nodes sharing a
	// PostgreSQL store share the cache, so N nodes cost one computation per
	// cache period, not N.
	CachedAnalytics(ctx context.Context, key string, notBefore time.Time) (body json.RawMessage, at time.Time, ok bool, err error)
	// SaveAnalytics stores an analytics body computed at at.
	SaveAnalytics(ctx context.Context, key string, body json.RawMessage, at time.Time) error

	// UpsertUser creates or replaces a user.
	UpsertUser(ctx context.Context, u User) error
	// User returns the user with this name, or [ErrNotFound].
	User(ctx context.Context, username string) (User, error)

	// AddAudit appends an entry to the audit log and returns it with its ID
	// and time (At is set to now when zero).
	AddAudit(ctx context.Context, e AuditEntry) (AuditEntry, error)
	// Audit returns the latest entries, newest first.
	Audit(ctx context.Context, limit int) ([]AuditEntry, error)

	// Commands is the queue of commands to devices (commands.go): queued
	// while a device is offline, sent at most once, finished by its reply
	// or expired. PGStore's survives a restart of the server.
	Commands() mqttbridge.CommandStore

	// Close releases the store's resources.
	Close()
}

// Errors of the Store.
var (
	ErrNotFound  = errors.New("iotserver: not found")
	ErrAlertOpen = errors.New("iotserver: an alert is already open for this device and metric")
	// ErrAlertAcked means the alert was already acknowledged.
	ErrAlertAcked = errors.New("iotserver: alert already acknowledged")
)

// Device is one sensor device.
type Device struct {
	ID       string        `json:"id"`
	Name     string        `json:"name"`
	Kind     string        `json:"kind"`
	Status   string        `json:"status"` // online, offline or unknown
	StatusAt time.Time     `json:"status_at,omitzero"`
	Last     *ReadingEvent `json:"last,omitempty"` // latest reading, if any
}

// Alert states.
const (
	alertOpen     = "open"
	alertResolved = "resolved"
)

// Alert is one threshold breach of one device's metric: opened when the rule
// fires, resolved when the value is back past the rule's resolve level.
// It is also the payload of alert:new and alert:resolved.
type Alert struct {
	ID            int64     `json:"id"`
	Device        string    `json:"device"`
	Metric        string    `json:"metric"`
	Rule          string    `json:"rule"`      // e.g. "temperature>30<28"
	Threshold     float64   `json:"threshold"` // the level that opened it
	Value         float64   `json:"value"`     // the value that opened it
	State         string    `json:"state"`     // open or resolved
	OpenedAt      time.Time `json:"opened_at"`
	ResolvedAt    time.Time `json:"resolved_at,omitzero"`
	ResolvedValue *float64  `json:"resolved_value,omitempty"`
	// AckedAt, AckedBy and AckNote record the acknowledgement (alert:ack),
	// if any.
	AckedAt time.Time `json:"acked_at,omitzero"`
	AckedBy string    `json:"acked_by,omitempty"`
	AckNote string    `json:"ack_note,omitempty"`
}

// Aggregate summarises one metric of one device over a window.
type Aggregate struct {
	Device string    `json:"device"`
	Metric string    `json:"metric"`
	Count  int64     `json:"count"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Avg    float64   `json:"avg"`
	Last   float64   `json:"last"`
	LastAt time.Time `json:"last_at"`
}

// AlertCounts counts alerts for analytics.
type AlertCounts struct {
	Open     int64 `json:"open"`
	Opened   int64 `json:"opened"`   // in the window
	Resolved int64 `json:"resolved"` // in the window
}

// User is a login of the dashboard.
type User struct {
	Username     string   `json:"username"`
	Name         string   `json:"name"`
	Roles        []string `json:"roles"`
	PasswordHash string   `json:"-"`
}

// Audit entry kinds.
const (
	auditLogin        = "login"         // a successful login
	auditLoginFailed  = "login_failed"  // wrong user name or password
	auditForbidden    = "forbidden"     // a join, emit or request refused by the role policy
	auditUnauthorized = "unauthorized"  // a WebSocket handshake or REST call with a bad token
	auditAdminDenied  = "admin_denied"  // a non-admin asked for an admin resource over REST
	auditOriginDenied = "origin_denied" // a browser handshake from a foreign origin
	auditDisconnect   = "disconnect"    // an admin closed a user's connections
	auditAlertAck     = "alert_ack"     // a user acknowledged an alert (alert:ack)
	auditCommand      = "command"       // an admin sent a command to a device (device:command)
)

// AuditEntry is one line of the audit log shown in the admin panel; also the
// payload of audit:entry.
type AuditEntry struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	Kind       string    `json:"kind"`
	Username   string    `json:"username"`
	Detail     string    `json:"detail"`
	RemoteAddr string    `json:"remote_addr"`
}
