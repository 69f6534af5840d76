package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Ingest turns MQTT messages into what the server keeps and publishes: the
// bridge (mqtt.go) calls DecodeReading and DecodeStatus for each message of
// its two routes and publishes what they return; Ingest persists readings
// (batched, see readingWriter), records status changes, and feeds the
// alert rules.
type Ingest struct {
	store  Store
	alerts *AlertEngine
	writer *readingWriter
	log    *slog.Logger

	mu    sync.Mutex
	known map[string]bool // devices known to be in the store

	readings      atomic.Uint64
	statusChanges atomic.Uint64
}

// NewIngest returns an Ingest writing to store. known lists the devices
// already in the store (they are not upserted again).
func NewIngest(store Store, alerts *AlertEngine, writer *readingWriter, known []Device, log *slog.Logger) *Ingest {
	in := &Ingest{store: store, alerts: alerts, writer: writer, log: log, known: map[string]bool{}}
	for _, d := range known {
		in.known[d.ID] = true
	}
	return in
}

// maxClockSkew is how far in the future a reading's ts may be; beyond it
// the receive time is used instead.
const maxClockSkew = time.Minute

var metricRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// errUnchanged tells the bridge that a status message changed nothing.
var errUnchanged = errors.New("status unchanged")

// DecodeReading checks and records one reading of device: payload is a
// [ReadingPayload]. received stands in for a missing or future ts.
func (in *Ingest) DecodeReading(ctx context.Context, device string, payload []byte, received time.Time) (ReadingEvent, error) {
	var p ReadingPayload
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return ReadingEvent{}, fmt.Errorf("reading: %v", err)
	}
	if dec.More() {
		return ReadingEvent{}, errors.New("reading: data after the JSON object")
	}
	if len(p.Values) == 0 {
		return ReadingEvent{}, errors.New("reading: no values")
	}
	if len(p.Values) > 32 {
		return ReadingEvent{}, errors.New("reading: more than 32 values")
	}
	for m, v := range p.Values {
		if !metricRE.MatchString(m) {
			return ReadingEvent{}, fmt.Errorf("reading: metric name %q: want [a-z][a-z0-9_]*, at most 32 bytes", truncate(m, 40))
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return ReadingEvent{}, fmt.Errorf("reading: %s is not a finite number", m)
		}
	}
	at := p.TS
	if at.IsZero() || at.After(received.Add(maxClockSkew)) {
		at = received
	}
	ev := ReadingEvent{Device: device, At: at.UTC(), Values: p.Values}
	if err := in.ensureDevice(ctx, device); err != nil {
		return ReadingEvent{}, err
	}
	in.writer.add(ev)
	in.alerts.Evaluate(ctx, ev)
	in.readings.Add(1)
	in.log.DebugContext(ctx, "ingest: reading", "device", device, "values", len(p.Values)) // with cid (logging.go)
	return ev, nil
}

// DecodeStatus records a device status message ("online" or "offline", as
// plain text, a JSON string or {"status": ...}) and returns the event to
// publish, or errUnchanged when the store already had that status (the
// simulated devices repeat "online" on every reconnection; retained
// messages repeat on every subscription).
func (in *Ingest) DecodeStatus(ctx context.Context, device string, payload []byte, received time.Time) (StatusEvent, error) {
	st, err := parseStatus(payload)
	if err != nil {
		return StatusEvent{}, err
	}
	if err := in.ensureDevice(ctx, device); err != nil {
		return StatusEvent{}, err
	}
	changed, err := in.store.SetDeviceStatus(ctx, device, st, received)
	if err != nil {
		return StatusEvent{}, fmt.Errorf("status: store: %w", err)
	}
	if !changed {
		return StatusEvent{}, errUnchanged
	}
	in.statusChanges.Add(1)
	return StatusEvent{Device: device, Status: st, At: received.UTC()}, nil
}

func parseStatus(payload []byte) (string, error) {
	s := strings.TrimSpace(string(payload))
	if strings.HasPrefix(s, "{") {
		var v struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(payload, &v); err != nil {
			return "", fmt.Errorf("status: %v", err)
		}
		s = v.Status
	} else if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(payload, &s); err != nil {
			return "", fmt.Errorf("status: %v", err)
		}
	}
	switch strings.ToLower(s) {
	case statusOnline:
		return statusOnline, nil
	case statusOffline:
		return statusOffline, nil
	}
	return "", fmt.Errorf("status: %q is neither online nor offline", truncate(s, 40))
}

// ensureDevice creates a device on its first message.
func (in *Ingest) ensureDevice(ctx context.Context, id string) error {
	in.mu.Lock()
	ok := in.known[id]
	in.mu.Unlock()
	if ok {
		return nil
	}
	if err := in.store.UpsertDevice(ctx, Device{ID: id, Name: id, Kind: "external"}); err != nil {
		return fmt.Errorf("device %q: store: %w", id, err)
	}
	in.mu.Lock()
	in.known[id] = true
	in.mu.Unlock()
	return nil
}

// Known reports whether the device has been seen (or registered).
func (in *Ingest) Known(id string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.known[id]
}

// RegisterDevices records devices (the simulated ones, with their names)
// before any message arrives.
func (in *Ingest) RegisterDevices(ctx context.Context, ds []DeviceInfo) error {
	for _, d := range ds {
		if err := in.store.UpsertDevice(ctx, Device{ID: d.ID, Name: d.Name, Kind: d.Kind}); err != nil {
			return err
		}
		in.mu.Lock()
		in.known[d.ID] = true
		in.mu.Unlock()
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// readingWriter stores readings in batches, off the ingest path: a batch
// goes out when it holds maxBatch readings or flushEvery after its first
// reading. Its queue is bounded (queueSize readings): when the store falls
// behind, new readings are dropped and counted (Dropped), so a slow
// database costs history, never memory or live delivery.
type readingWriter struct {
	store      Store
	log        *slog.Logger
	flushEvery time.Duration
	maxBatch   int

	mu     sync.RWMutex // guards closed against add
	closed bool
	ch     chan ReadingEvent
	done   chan struct{}

	written, dropped, failed atomic.Uint64
	lastErr                  atomic.Pointer[string]
}

func newReadingWriter(store Store, flushEvery time.Duration, queueSize int, log *slog.Logger) *readingWriter {
	w := &readingWriter{store: store, log: log, flushEvery: flushEvery, maxBatch: 500,
		ch: make(chan ReadingEvent, queueSize), done: make(chan struct{})}
	go w.run() // stopped and waited for by stop
	return w
}

func (w *readingWriter) add(r ReadingEvent) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Add(1)
		return
	}
	select {
	case w.ch <- r:
	default:
		w.dropped.Add(1)
	}
}

func (w *readingWriter) run() {
	defer close(w.done)
	var batch []ReadingEvent
	t := time.NewTimer(time.Hour)
	t.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.store.AddReadings(ctx, batch)
		cancel()
		if err != nil {
			w.failed.Add(uint64(len(batch)))
			msg := err.Error()
			w.lastErr.Store(&msg)
			w.log.Warn("store: readings not written", "n", len(batch), "err", err)
		} else {
			w.written.Add(uint64(len(batch)))
		}
		batch = batch[:0]
	}
	for {
		select {
		case r, ok := <-w.ch:
			if !ok {
				flush()
				return
			}
			if len(batch) == 0 {
				t.Reset(w.flushEvery)
			}
			batch = append(batch, r)
			if len(batch) >= w.maxBatch {
				t.Stop()
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

// stop writes what is queued and stops, or gives up when ctx ends (the
// writer then finishes its current batch in the background, bounded by the
// store call's own 10 s timeout).
func (w *readingWriter) stop(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
