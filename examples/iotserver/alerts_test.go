package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseRules(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want []AlertRule
	}{
		{"temperature>30<28", []AlertRule{{"temperature", true, 30, 28}}},
		{" battery<10>15 , co2>1200<1000", []AlertRule{{"battery", false, 10, 15}, {"co2", true, 1200, 1000}}},
		{"t>-5<-7.5", []AlertRule{{"t", true, -5, -7.5}}},
		{"x>3<3", []AlertRule{{"x", true, 3, 3}}}, // no hysteresis is allowed
		{"", nil},
	}
	for _, tc := range good {
		got, err := ParseRules(tc.in)
		if err != nil {
			t.Errorf("ParseRules(%q): %v", tc.in, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseRules(%q) = %v, want %v", tc.in, got, tc.want)
		}
		for i, r := range got {
			if back, _ := ParseRules(r.String()); len(back) != 1 || back[0] != got[i] {
				t.Errorf("%v does not round-trip through String (%q)", r, r.String())
			}
		}
	}
	bad := []string{
		"temperature>30",          // no resolve level
		"temperature>30>28",       // same direction twice
		"temperature>28<30",       // resolve above open: would flap
		"battery<10>5",            // resolve below open
		"Temp>1<0",                // metric syntax
		"t>1<0,t>2<1",             // two rules for one metric
		"t>x<0",                   // not a number
		"temperature > 30 < 28 x", // junk
	}
	for _, in := range bad {
		if _, err := ParseRules(in); err == nil {
			t.Errorf("ParseRules(%q): no error", in)
		}
	}
}

// recorder collects what an AlertEngine publishes.
type recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *recorder) publish(_ context.Context, ev string, a Alert) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, fmt.Sprintf("%s %s/%s %g", ev, a.Device, a.Metric, a.Value))
}

func (r *recorder) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.Join(r.evs, "; ")
	r.evs = nil
	return s
}

// TestAlertEngine_Hysteresis feeds a value sequence through a rule and
// checks that each crossing publishes exactly once, in both directions, and
// that a restarted engine neither repeats nor forgets an open alert.
func TestAlertEngine_Hysteresis(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := NewMemoryStore(0)
	for _, id := range []string{"d1", "d2"} {
		if err := store.UpsertDevice(ctx, Device{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	rules, _ := ParseRules("temperature>30<28,battery<10>15")
	rec := &recorder{}
	log := slog.New(slog.DiscardHandler)
	e := NewAlertEngine(rules, store, rec.publish, log)
	at := t0
	feed := func(e *AlertEngine, dev, metric string, v float64) string {
		at = at.Add(time.Second)
		e.Evaluate(ctx, ReadingEvent{Device: dev, At: at, Values: map[string]float64{metric: v, "unruled": 1e9}})
		return rec.take()
	}
	steps := []struct {
		dev, metric string
		v           float64
		want        string
	}{
		{"d1", "temperature", 25, ""},
		{"d1", "temperature", 30, ""}, // at the level is not over it
		{"d1", "temperature", 31, "alert:new d1/temperature 31"},
		{"d1", "temperature", 35, ""},   // still open
		{"d1", "temperature", 29, ""},   // under open, over resolve: hysteresis
		{"d1", "temperature", 30.5, ""}, // back over: still the same alert
		{"d2", "temperature", 40, "alert:new d2/temperature 40"},
		{"d1", "temperature", 27.9, "alert:resolved d1/temperature 31"},
		{"d1", "temperature", 29.9, ""}, // between the levels, closed: nothing
		{"d1", "temperature", 32, "alert:new d1/temperature 32"},
		{"d1", "battery", 9, "alert:new d1/battery 9"},
		{"d1", "battery", 12, ""},
		{"d1", "battery", 16, "alert:resolved d1/battery 9"},
	}
	for i, s := range steps {
		if got := feed(e, s.dev, s.metric, s.v); got != s.want {
			t.Fatalf("step %d (%s %s=%g): published %q, want %q", i, s.dev, s.metric, s.v, got, s.want)
		}
	}
	if n := e.OpenCount(); n != 2 {
		t.Fatalf("%d open alerts, want 2 (d1 and d2 temperature)", n)
	}
	// A restart: the new engine loads the open alerts from the store.
	e2 := NewAlertEngine(rules, store, rec.publish, log)
	if err := e2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := feed(e2, "d1", "temperature", 33); got != "" {
		t.Fatalf("after restart, a reading over the level published %q; the alert was already open", got)
	}
	if got := feed(e2, "d2", "temperature", 20); got != "alert:resolved d2/temperature 40" {
		t.Fatalf("after restart, recovery published %q", got)
	}
	all, _ := store.Alerts(ctx, false, 0)
	open, _ := store.Alerts(ctx, true, 0)
	if len(all) != 4 || len(open) != 1 {
		t.Fatalf("store has %d alerts (%d open), want 4 (1 open)", len(all), len(open))
	}
	for _, a := range all {
		if a.State == alertResolved && (a.ResolvedValue == nil || a.ResolvedAt.IsZero()) {
			t.Fatalf("resolved alert without resolution: %+v", a)
		}
	}
}

// TestAlertEngine_TwoNodes: two engines sharing a store (two nodes) see the
// same breach; only one alert:new is published and both resolve quietly
// or once.
func TestAlertEngine_TwoNodes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := NewMemoryStore(0)
	_ = store.UpsertDevice(ctx, Device{ID: "d"})
	rules, _ := ParseRules("temperature>30<28")
	rec := &recorder{}
	log := slog.New(slog.DiscardHandler)
	a := NewAlertEngine(rules, store, rec.publish, log)
	b := NewAlertEngine(rules, store, rec.publish, log)
	r := ReadingEvent{Device: "d", At: t0, Values: map[string]float64{"temperature": 35}}
	a.Evaluate(ctx, r)
	b.Evaluate(ctx, r)
	if got := rec.take(); got != "alert:new d/temperature 35" {
		t.Fatalf("two nodes published %q, want one alert:new", got)
	}
	r.Values["temperature"] = 20
	a.Evaluate(ctx, r)
	b.Evaluate(ctx, r)
	if got := rec.take(); got != "alert:resolved d/temperature 35" {
		t.Fatalf("two nodes published %q, want one alert:resolved", got)
	}
}

// TestAlertEngine_DeviceLevel: a device's acknowledged set_threshold moves
// its rule's open level (and the resolve level with it, same hysteresis)
// for that device only; a metric without a rule is refused.
func TestAlertEngine_DeviceLevel(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := NewMemoryStore(0)
	for _, id := range []string{"d1", "d2"} {
		if err := store.UpsertDevice(ctx, Device{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	rules, _ := ParseRules("temperature>30<28,battery<10>15")
	rec := &recorder{}
	e := NewAlertEngine(rules, store, rec.publish, slog.New(slog.DiscardHandler))
	if e.SetDeviceLevel("d1", "co2", 5) {
		t.Fatal("a level for a metric without a rule was accepted")
	}
	if !e.SetDeviceLevel("d1", "temperature", 12) || !e.SetDeviceLevel("d1", "battery", 20) {
		t.Fatal("SetDeviceLevel refused")
	}
	at := t0
	steps := []struct {
		dev, metric string
		v           float64
		want        string
	}{
		{"d2", "temperature", 20, ""},                                // the rule's level for d2
		{"d1", "temperature", 12.5, "alert:new d1/temperature 12.5"}, // d1's own: 12
		{"d1", "temperature", 10.5, ""},                              // resolve at 10 (12 − 2)
		{"d1", "temperature", 9.9, "alert:resolved d1/temperature 12.5"},
		{"d1", "battery", 19, "alert:new d1/battery 19"}, // a lower limit: opens under 20
		{"d1", "battery", 24, ""},                        // resolves over 25 (20 + 5)
		{"d1", "battery", 25.5, "alert:resolved d1/battery 19"},
	}
	for i, s := range steps {
		at = at.Add(time.Second)
		e.Evaluate(ctx, ReadingEvent{Device: s.dev, At: at, Values: map[string]float64{s.metric: s.v}})
		if got := rec.take(); got != s.want {
			t.Fatalf("step %d (%s %s=%g): published %q, want %q", i, s.dev, s.metric, s.v, got, s.want)
		}
	}
	if r, _ := e.ruleFor("d1", "temperature"); r.String() != "temperature>12<10" {
		t.Fatalf("d1's rule %s", r)
	}
}
