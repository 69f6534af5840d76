package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/org/rthub/mqttbridge"
)

// MemoryStore is the in-memory [Store]: nothing to set up, nothing kept
// across restarts. It keeps at most maxPerDevice readings per device (the
// oldest go first) besides the retention job, so memory stays bounded
// whatever the retention setting.
type MemoryStore struct {
	maxPerDevice int

	mu        sync.Mutex
	devices   map[string]*Device
	readings  map[string][]ReadingEvent // per device, oldest first
	alerts    []Alert                   // by ID - 1
	users     map[string]User
	audit     []AuditEntry
	analytics map[string]cachedBody
	commands  *mqttbridge.MemoryCommandStore
}

type cachedBody struct {
	body json.RawMessage
	at   time.Time
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty store that keeps at most maxPerDevice
// readings per device (default 20,000: over 5 hours at one reading a second).
func NewMemoryStore(maxPerDevice int) *MemoryStore {
	if maxPerDevice <= 0 {
		maxPerDevice = 20000
	}
	return &MemoryStore{
		maxPerDevice: maxPerDevice,
		devices:      make(map[string]*Device),
		readings:     make(map[string][]ReadingEvent),
		users:        make(map[string]User),
		analytics:    make(map[string]cachedBody),
		commands:     mqttbridge.NewMemoryCommandStore(0),
	}
}

// Commands implements Store: an mqttbridge.MemoryCommandStore (queued
// commands are lost with the process).
func (s *MemoryStore) Commands() mqttbridge.CommandStore { return s.commands }

// Kind implements Store.
func (s *MemoryStore) Kind() string { return "memory" }

// Ping implements Store.
func (s *MemoryStore) Ping(ctx context.Context) error { return ctx.Err() }

// Close implements Store.
func (s *MemoryStore) Close() {}

// UpsertDevice implements Store.
func (s *MemoryStore) UpsertDevice(ctx context.Context, d Device) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.devices[d.ID]; ok {
		old.Name, old.Kind = d.Name, d.Kind
		return nil
	}
	s.devices[d.ID] = &Device{ID: d.ID, Name: d.Name, Kind: d.Kind, Status: statusUnknown}
	return nil
}

// SetDeviceStatus implements Store.
func (s *MemoryStore) SetDeviceStatus(ctx context.Context, id, status string, at time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[id]
	if !ok {
		return false, fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	if d.Status == status {
		return false, nil
	}
	d.Status, d.StatusAt = status, at.UTC().Truncate(time.Microsecond)
	return true, nil
}

// Devices implements Store.
func (s *MemoryStore) Devices(ctx context.Context) ([]Device, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Device, 0, len(s.devices))
	for _, d := range s.devices {
		c := *d
		if rs := s.readings[d.ID]; len(rs) > 0 {
			last := cloneReading(rs[len(rs)-1])
			c.Last = &last
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func cloneReading(r ReadingEvent) ReadingEvent {
	r.Values = maps.Clone(r.Values)
	return r
}

// AddReadings implements Store.
func (s *MemoryStore) AddReadings(ctx context.Context, rs []ReadingEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		if _, ok := s.devices[r.Device]; !ok {
			return fmt.Errorf("device %q: %w", r.Device, ErrNotFound)
		}
	}
	for _, r := range rs {
		r = cloneReading(r)
		r.At = r.At.UTC().Truncate(time.Microsecond)
		list := s.readings[r.Device]
		// Keep the slice sorted: readings nearly always arrive in order.
		i := len(list)
		for i > 0 && list[i-1].At.After(r.At) {
			i--
		}
		list = slices.Insert(list, i, r)
		if over := len(list) - s.maxPerDevice; over > 0 {
			list = slices.Delete(list, 0, over)
		}
		s.readings[r.Device] = list
	}
	return nil
}

// Readings implements Store.
func (s *MemoryStore) Readings(ctx context.Context, device string, from, to time.Time, limit int) ([]ReadingEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.readings[device]
	lo := sort.Search(len(list), func(i int) bool { return !list[i].At.Before(from) })
	hi := sort.Search(len(list), func(i int) bool { return !list[i].At.Before(to) })
	if lo >= hi {
		return []ReadingEvent{}, nil
	}
	if limit > 0 && hi-lo > limit {
		lo = hi - limit
	}
	out := make([]ReadingEvent, 0, hi-lo)
	for _, r := range list[lo:hi] {
		out = append(out, cloneReading(r))
	}
	return out, nil
}

// DeleteReadingsBefore implements Store.
func (s *MemoryStore) DeleteReadingsBefore(ctx context.Context, t time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for id, list := range s.readings {
		i := sort.Search(len(list), func(i int) bool { return !list[i].At.Before(t) })
		for _, r := range list[:i] {
			n += int64(len(r.Values))
		}
		s.readings[id] = slices.Delete(list, 0, i)
	}
	return n, nil
}

// OpenAlert implements Store.
func (s *MemoryStore) OpenAlert(ctx context.Context, a Alert) (Alert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.devices[a.Device]; !ok {
		return Alert{}, fmt.Errorf("device %q: %w", a.Device, ErrNotFound)
	}
	for _, o := range s.alerts {
		if o.State == alertOpen && o.Device == a.Device && o.Metric == a.Metric {
			return Alert{}, ErrAlertOpen
		}
	}
	a.ID = int64(len(s.alerts) + 1)
	a.State = alertOpen
	a.OpenedAt = a.OpenedAt.UTC().Truncate(time.Microsecond)
	a.ResolvedAt, a.ResolvedValue = time.Time{}, nil
	a.AckedAt, a.AckedBy, a.AckNote = time.Time{}, "", ""
	s.alerts = append(s.alerts, a)
	return a, nil
}

// ResolveAlert implements Store.
func (s *MemoryStore) ResolveAlert(ctx context.Context, id int64, at time.Time, value float64) (Alert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > int64(len(s.alerts)) || s.alerts[id-1].State != alertOpen {
		return Alert{}, fmt.Errorf("open alert %d: %w", id, ErrNotFound)
	}
	a := &s.alerts[id-1]
	a.State = alertResolved
	a.ResolvedAt = at.UTC().Truncate(time.Microsecond)
	a.ResolvedValue = &value
	return *a, nil
}

// AckAlert implements Store.
func (s *MemoryStore) AckAlert(ctx context.Context, id int64, user, note string, at time.Time) (Alert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id < 1 || id > int64(len(s.alerts)) {
		return Alert{}, fmt.Errorf("alert %d: %w", id, ErrNotFound)
	}
	a := &s.alerts[id-1]
	if !a.AckedAt.IsZero() {
		return Alert{}, fmt.Errorf("alert %d: %w", id, ErrAlertAcked)
	}
	a.AckedAt, a.AckedBy, a.AckNote = at.UTC().Truncate(time.Microsecond), user, note
	return *a, nil
}

// Alerts implements Store.
func (s *MemoryStore) Alerts(ctx context.Context, openOnly bool, limit int) ([]Alert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Alert{}
	for i := len(s.alerts) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		if !openOnly || s.alerts[i].State == alertOpen {
			out = append(out, s.alerts[i])
		}
	}
	return out, nil
}

// Aggregates implements Store.
func (s *MemoryStore) Aggregates(ctx context.Context, since time.Time) ([]Aggregate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []Aggregate{}
	for id, list := range s.readings {
		lo := sort.Search(len(list), func(i int) bool { return !list[i].At.Before(since) })
		byMetric := map[string]*Aggregate{}
		for _, r := range list[lo:] {
			for m, v := range r.Values {
				a := byMetric[m]
				if a == nil {
					a = &Aggregate{Device: id, Metric: m, Min: v, Max: v}
					byMetric[m] = a
				}
				a.Count++
				a.Min, a.Max = min(a.Min, v), max(a.Max, v)
				a.Avg += v // the sum until the end
				if !r.At.Before(a.LastAt) {
					a.Last, a.LastAt = v, r.At
				}
			}
		}
		for _, a := range byMetric {
			a.Avg /= float64(a.Count)
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if c := strings.Compare(out[i].Device, out[j].Device); c != 0 {
			return c < 0
		}
		return out[i].Metric < out[j].Metric
	})
	return out, nil
}

// AlertCounts implements Store.
func (s *MemoryStore) AlertCounts(ctx context.Context, since time.Time) (AlertCounts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var c AlertCounts
	for _, a := range s.alerts {
		if a.State == alertOpen {
			c.Open++
		}
		if !a.OpenedAt.Before(since) {
			c.Opened++
		}
		if a.State == alertResolved && !a.ResolvedAt.Before(since) {
			c.Resolved++
		}
	}
	return c, nil
}

// CachedAnalytics implements Store.
func (s *MemoryStore) CachedAnalytics(ctx context.Context, key string, notBefore time.Time) (json.RawMessage, time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.analytics[key]
	if !ok || c.at.Before(notBefore) {
		return nil, time.Time{}, false, nil
	}
	return c.body, c.at, true, nil
}

// SaveAnalytics implements Store.
func (s *MemoryStore) SaveAnalytics(ctx context.Context, key string, body json.RawMessage, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.analytics[key] = cachedBody{body: slices.Clone(body), at: at.UTC().Truncate(time.Microsecond)}
	return nil
}

// UpsertUser implements Store.
func (s *MemoryStore) UpsertUser(ctx context.Context, u User) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u.Roles = slices.Clone(u.Roles)
	s.users[u.Username] = u
	return nil
}

// User implements Store.
func (s *MemoryStore) User(ctx context.Context, username string) (User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[username]
	if !ok {
		return User{}, fmt.Errorf("user %q: %w", username, ErrNotFound)
	}
	u.Roles = slices.Clone(u.Roles)
	return u, nil
}

// maxMemoryAudit bounds the in-memory audit log.
const maxMemoryAudit = 10000

// AddAudit implements Store.
func (s *MemoryStore) AddAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = e.At.UTC().Truncate(time.Microsecond)
	e.ID = 1
	if n := len(s.audit); n > 0 {
		e.ID = s.audit[n-1].ID + 1
	}
	s.audit = append(s.audit, e)
	if over := len(s.audit) - maxMemoryAudit; over > 0 {
		s.audit = slices.Delete(s.audit, 0, over)
	}
	return e, nil
}

// Audit implements Store.
func (s *MemoryStore) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []AuditEntry{}
	for i := len(s.audit) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		out = append(out, s.audit[i])
	}
	return out, nil
}
