package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func newTestIngest(t *testing.T) (*Ingest, *MemoryStore, *readingWriter) {
	t.Helper()
	store := NewMemoryStore(0)
	log := slog.New(slog.DiscardHandler)
	rules, _ := ParseRules("temperature>30<28")
	alerts := NewAlertEngine(rules, store, func(context.Context, string, Alert) {}, log)
	w := newReadingWriter(store, 10*time.Millisecond, 100, log)
	t.Cleanup(func() { _ = w.stop(context.Background()) })
	return NewIngest(store, alerts, w, nil, log), store, w
}

func TestIngest_DecodeReading(t *testing.T) {
	t.Parallel()
	in, store, w := newTestIngest(t)
	ctx := t.Context()
	recv := time.Now().UTC().Truncate(time.Millisecond)
	tests := []struct {
		name, payload string
		wantErr       string
		wantAt        time.Time
	}{
		{"ok", `{"ts":"2026-11-20T10:00:00Z","values":{"temperature":21.5,"humidity":40}}`, "", t0},
		{"noTS", `{"values":{"temperature":21.5}}`, "", recv},
		{"futureTS", `{"ts":"2099-01-01T00:00:00Z","values":{"temperature":21.5}}`, "", recv},
		{"notJSON", `21.5`, "reading", time.Time{}},
		{"unknownField", `{"values":{"t":1},"extra":1}`, "unknown field", time.Time{}},
		{"noValues", `{"values":{}}`, "no values", time.Time{}},
		{"badMetric", `{"values":{"Temp C":1}}`, "metric name", time.Time{}},
		{"stringValue", `{"values":{"t":"1"}}`, "reading", time.Time{}},
		{"trailing", `{"values":{"t":1}} {}`, "after", time.Time{}},
		{"empty", ``, "reading", time.Time{}},
	}
	for _, tc := range tests {
		ev, err := in.DecodeReading(ctx, "dev-x", []byte(tc.payload), recv)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err=%v, want one containing %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if ev.Device != "dev-x" || !ev.At.Equal(tc.wantAt) || ev.Values["temperature"] != 21.5 {
			t.Errorf("%s: event %+v, want device dev-x at %v", tc.name, ev, tc.wantAt)
		}
	}
	// The three good readings reach the store through the writer.
	deadline := time.Now().Add(5 * time.Second)
	for w.written.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	rs, err := store.Readings(ctx, "dev-x", time.Time{}, time.Now().Add(time.Hour), 0)
	if err != nil || len(rs) != 3 {
		t.Fatalf("store has %d readings (err %v), want 3", len(rs), err)
	}
	ds, _ := store.Devices(ctx)
	if len(ds) != 1 || ds[0].Kind != "external" {
		t.Fatalf("devices %+v: want dev-x created as external", ds)
	}
}

func TestIngest_DecodeStatus(t *testing.T) {
	t.Parallel()
	in, _, _ := newTestIngest(t)
	ctx := t.Context()
	steps := []struct {
		payload string
		want    string // status published, "" for unchanged, "error"
	}{
		{"online", "online"},
		{"online", ""},
		{`"online"`, ""},
		{" OFFLINE\n", "offline"},
		{`{"status":"offline"}`, ""},
		{`{"status":"online"}`, "online"},
		{"rebooting", "error"},
		{`{"status":1}`, "error"},
		{"offline", "offline"},
	}
	for i, s := range steps {
		ev, err := in.DecodeStatus(ctx, "dev-1", []byte(s.payload), t0.Add(time.Duration(i)*time.Second))
		switch {
		case s.want == "error":
			if err == nil || errors.Is(err, errUnchanged) {
				t.Fatalf("step %d (%q): err=%v, want a decode error", i, s.payload, err)
			}
		case s.want == "":
			if !errors.Is(err, errUnchanged) {
				t.Fatalf("step %d (%q): %+v, %v; want unchanged", i, s.payload, ev, err)
			}
		default:
			if err != nil || ev.Status != s.want || ev.Device != "dev-1" {
				t.Fatalf("step %d (%q): %+v, %v; want %s", i, s.payload, ev, err, s.want)
			}
		}
	}
	if n := in.statusChanges.Load(); n != 4 {
		t.Fatalf("%d status changes, want 4", n)
	}
}

// TestReadingWriter_Bounded: with the store stuck, the queue fills and new
// readings are dropped and counted, never blocking the caller.
func TestReadingWriter_Bounded(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	st := &stuckStore{MemoryStore: NewMemoryStore(0), block: block}
	w := newReadingWriter(st, time.Millisecond, 10, slog.New(slog.DiscardHandler))
	start := time.Now()
	for range 1000 {
		w.add(ReadingEvent{Device: "d", At: t0, Values: map[string]float64{"t": 1}})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("1000 adds took %v with a stuck store; add must not block", d)
	}
	if n := w.dropped.Load(); n < 1000-10-1-500 {
		t.Fatalf("dropped %d of 1000 with a queue of 10", n)
	}
	close(block)
	if err := w.stop(t.Context()); err != nil {
		t.Fatal(err)
	}
}

type stuckStore struct {
	*MemoryStore
	block chan struct{}
}

func (s *stuckStore) AddReadings(ctx context.Context, rs []ReadingEvent) error {
	<-s.block
	return nil
}
