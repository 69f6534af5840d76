package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/mqttbridge"
	"github.com/org/rthub/mqttbridge/commandstoretest"
)

// stores returns the Store implementations under test: memory always,
// PostgreSQL when RTHUB_POSTGRES_URL is set (see internal/testenv).
var storeKinds = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"memory", func(t *testing.T) Store { return NewMemoryStore(0) }},
	{"postgres", func(t *testing.T) Store { return openTestPG(t) }},
}

// testSchema returns a schema name no other test run uses.
func testSchema() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "iot_test_" + hex.EncodeToString(b[:])
}

// openTestPG opens a PGStore in a fresh schema that is dropped when the
// test ends.
func openTestPG(t *testing.T) *PGStore {
	t.Helper()
	url := testenv.URL(t, testenv.Postgres)
	schema := testSchema()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := OpenPostgres(ctx, url, schema)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		dropSchema(t, url, schema)
	})
	return s
}

func dropSchema(t *testing.T, url, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}

// TestStore runs the same suite against every Store implementation.
func TestStore(t *testing.T) {
	t.Parallel()
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			tests := []struct {
				name string
				fn   func(t *testing.T, s Store)
			}{
				{"devicesAndStatus", testStoreDevices},
				{"readings", testStoreReadings},
				{"retention", testStoreRetention},
				{"alerts", testStoreAlerts},
				{"aggregates", testStoreAggregates},
				{"analyticsCache", testStoreAnalyticsCache},
				{"usersAndAudit", testStoreUsersAudit},
				{"concurrentOpenAlert", testStoreConcurrentOpen},
				{"alertAck", testStoreAlertAck},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, k.open(t))
				})
			}
		})
	}
}

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func testStoreDevices(t *testing.T, s Store) {
	ctx := t.Context()
	if _, err := s.SetDeviceStatus(ctx, "nope", statusOnline, t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of unknown device: err=%v, want ErrNotFound", err)
	}
	for _, d := range []Device{{ID: "b", Name: "Boiler", Kind: "env"}, {ID: "a", Name: "Attic", Kind: "env"}} {
		if err := s.UpsertDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.UpsertDevice(ctx, Device{ID: "a", Name: "Attic 2", Kind: "air"}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		status      string
		wantChanged bool
	}{{statusOnline, true}, {statusOnline, false}, {statusOffline, true}, {statusOnline, true}}
	for i, st := range steps {
		changed, err := s.SetDeviceStatus(ctx, "a", st.status, t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if changed != st.wantChanged {
			t.Fatalf("step %d: SetDeviceStatus(%s) changed=%v, want %v", i, st.status, changed, st.wantChanged)
		}
	}
	if err := s.AddReadings(ctx, []ReadingEvent{
		{Device: "a", At: t0, Values: map[string]float64{"temperature": 20}},
		{Device: "a", At: t0.Add(time.Second), Values: map[string]float64{"temperature": 21, "humidity": 40}},
	}); err != nil {
		t.Fatal(err)
	}
	ds, err := s.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].ID != "a" || ds[1].ID != "b" {
		t.Fatalf("Devices = %+v, want a, b", ds)
	}
	a, b := ds[0], ds[1]
	if a.Name != "Attic 2" || a.Kind != "air" || a.Status != statusOnline || !a.StatusAt.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("device a = %+v", a)
	}
	if a.Last == nil || !a.Last.At.Equal(t0.Add(time.Second)) || a.Last.Values["humidity"] != 40 || a.Last.Values["temperature"] != 21 {
		t.Fatalf("device a last reading = %+v", a.Last)
	}
	if b.Status != statusUnknown || b.Last != nil {
		t.Fatalf("device b = %+v, want unknown status and no reading", b)
	}
}

func testStoreReadings(t *testing.T, s Store) {
	ctx := t.Context()
	if err := s.AddReadings(ctx, []ReadingEvent{{Device: "ghost", At: t0, Values: map[string]float64{"x": 1}}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reading of unknown device: err=%v, want ErrNotFound", err)
	}
	for _, id := range []string{"d1", "d2"} {
		if err := s.UpsertDevice(ctx, Device{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	var batch []ReadingEvent
	for i := range 10 {
		batch = append(batch, ReadingEvent{Device: "d1", At: t0.Add(time.Duration(i) * time.Second), Values: map[string]float64{"temperature": float64(i), "humidity": float64(100 - i)}})
		batch = append(batch, ReadingEvent{Device: "d2", At: t0.Add(time.Duration(i) * time.Second), Values: map[string]float64{"temperature": -float64(i)}})
	}
	// Out of order on purpose: the store sorts by time.
	batch[0], batch[len(batch)-2] = batch[len(batch)-2], batch[0]
	if err := s.AddReadings(ctx, batch); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		from, to time.Time
		limit    int
		want     []int // seconds after t0
	}{
		{"all", t0, t0.Add(time.Hour), 0, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"halfOpen", t0.Add(2 * time.Second), t0.Add(5 * time.Second), 0, []int{2, 3, 4}},
		{"limitKeepsNewest", t0, t0.Add(time.Hour), 3, []int{7, 8, 9}},
		{"empty", t0.Add(time.Hour), t0.Add(2 * time.Hour), 0, nil},
	}
	for _, tc := range tests {
		got, err := s.Readings(ctx, "d1", tc.from, tc.to, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			t.Fatalf("%s: nil slice, want empty (JSON [] for the API)", tc.name)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %d readings, want %d: %+v", tc.name, len(got), len(tc.want), got)
		}
		for i, sec := range tc.want {
			r := got[i]
			if !r.At.Equal(t0.Add(time.Duration(sec)*time.Second)) || r.Device != "d1" ||
				r.Values["temperature"] != float64(sec) || r.Values["humidity"] != float64(100-sec) || len(r.Values) != 2 {
				t.Fatalf("%s: reading %d = %+v, want second %d", tc.name, i, r, sec)
			}
		}
	}
}

func testStoreRetention(t *testing.T, s Store) {
	ctx := t.Context()
	if err := s.UpsertDevice(ctx, Device{ID: "d"}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := s.AddReadings(ctx, []ReadingEvent{{Device: "d", At: t0.Add(time.Duration(i) * time.Minute), Values: map[string]float64{"a": 1, "b": 2}}}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteReadingsBefore(ctx, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("deleted %d samples, want 4 (2 readings × 2 metrics)", n)
	}
	got, err := s.Readings(ctx, "d", time.Time{}, t0.Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !got[0].At.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("after retention: %+v, want the 3 readings from minute 2", got)
	}
}

func testStoreAlerts(t *testing.T, s Store) {
	ctx := t.Context()
	if _, err := s.OpenAlert(ctx, Alert{Device: "ghost", Metric: "temperature", OpenedAt: t0}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alert of unknown device: err=%v, want ErrNotFound", err)
	}
	if err := s.UpsertDevice(ctx, Device{ID: "d"}); err != nil {
		t.Fatal(err)
	}
	a1, err := s.OpenAlert(ctx, Alert{Device: "d", Metric: "temperature", Rule: "temperature>30<28", Threshold: 30, Value: 31.5, OpenedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if a1.ID == 0 || a1.State != alertOpen || !a1.OpenedAt.Equal(t0) || a1.Value != 31.5 || a1.Rule != "temperature>30<28" {
		t.Fatalf("opened alert = %+v", a1)
	}
	if _, err := s.OpenAlert(ctx, Alert{Device: "d", Metric: "temperature", OpenedAt: t0}); !errors.Is(err, ErrAlertOpen) {
		t.Fatalf("second open alert for the same metric: err=%v, want ErrAlertOpen", err)
	}
	a2, err := s.OpenAlert(ctx, Alert{Device: "d", Metric: "humidity", Rule: "humidity>70<65", Threshold: 70, Value: 75, OpenedAt: t0.Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	open, err := s.Alerts(ctx, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 2 || open[0].ID != a2.ID || open[1].ID != a1.ID {
		t.Fatalf("open alerts = %+v, want a2, a1 (newest first)", open)
	}
	r1, err := s.ResolveAlert(ctx, a1.ID, t0.Add(time.Minute), 27.5)
	if err != nil {
		t.Fatal(err)
	}
	if r1.State != alertResolved || !r1.ResolvedAt.Equal(t0.Add(time.Minute)) || r1.ResolvedValue == nil || *r1.ResolvedValue != 27.5 || r1.Value != 31.5 {
		t.Fatalf("resolved alert = %+v", r1)
	}
	if _, err := s.ResolveAlert(ctx, a1.ID, t0.Add(time.Minute), 20); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resolving twice: err=%v, want ErrNotFound", err)
	}
	// Resolved, the metric may open again.
	if _, err := s.OpenAlert(ctx, Alert{Device: "d", Metric: "temperature", OpenedAt: t0.Add(2 * time.Minute)}); err != nil {
		t.Fatalf("reopening after resolve: %v", err)
	}
	open, _ = s.Alerts(ctx, true, 0)
	all, _ := s.Alerts(ctx, false, 0)
	limited, _ := s.Alerts(ctx, false, 1)
	if len(open) != 2 || len(all) != 3 || len(limited) != 1 || limited[0].ID != all[0].ID {
		t.Fatalf("open=%d all=%d limited=%d, want 2, 3, 1", len(open), len(all), len(limited))
	}
	c, err := s.AlertCounts(ctx, t0.Add(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if c != (AlertCounts{Open: 2, Opened: 1, Resolved: 1}) {
		t.Fatalf("AlertCounts = %+v, want open 2, opened 1, resolved 1", c)
	}
}

func testStoreAlertAck(t *testing.T, s Store) {
	ctx := t.Context()
	if _, err := s.AckAlert(ctx, 1, "alice", "", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ack of no alert: err=%v, want ErrNotFound", err)
	}
	if err := s.UpsertDevice(ctx, Device{ID: "d"}); err != nil {
		t.Fatal(err)
	}
	a, err := s.OpenAlert(ctx, Alert{Device: "d", Metric: "temperature", Rule: "temperature>30<28", Threshold: 30, Value: 31, OpenedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	if !a.AckedAt.IsZero() || a.AckedBy != "" {
		t.Fatalf("new alert already acknowledged: %+v", a)
	}
	got, err := s.AckAlert(ctx, a.ID, "alice", "on my way", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != a.ID || got.AckedBy != "alice" || got.AckNote != "on my way" || !got.AckedAt.Equal(t0.Add(time.Minute)) || got.State != alertOpen {
		t.Fatalf("acknowledged alert = %+v", got)
	}
	if _, err := s.AckAlert(ctx, a.ID, "bob", "", t0.Add(2*time.Minute)); !errors.Is(err, ErrAlertAcked) {
		t.Fatalf("second ack: err=%v, want ErrAlertAcked", err)
	}
	// Resolving keeps the acknowledgement; the list shows it.
	if _, err := s.ResolveAlert(ctx, a.ID, t0.Add(3*time.Minute), 20); err != nil {
		t.Fatal(err)
	}
	all, err := s.Alerts(ctx, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].AckedBy != "alice" || all[0].AckNote != "on my way" || all[0].State != alertResolved {
		t.Fatalf("alerts = %+v", all)
	}
}

func testStoreAggregates(t *testing.T, s Store) {
	ctx := t.Context()
	for _, id := range []string{"x", "y"} {
		if err := s.UpsertDevice(ctx, Device{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	rs := []ReadingEvent{
		{Device: "x", At: t0.Add(-2 * time.Hour), Values: map[string]float64{"temperature": 100}}, // outside the window
		{Device: "x", At: t0, Values: map[string]float64{"temperature": 10, "humidity": 50}},
		{Device: "x", At: t0.Add(time.Minute), Values: map[string]float64{"temperature": 30}},
		{Device: "x", At: t0.Add(2 * time.Minute), Values: map[string]float64{"temperature": 20}},
		{Device: "y", At: t0, Values: map[string]float64{"temperature": 5}},
	}
	if err := s.AddReadings(ctx, rs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Aggregates(ctx, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []Aggregate{
		{Device: "x", Metric: "humidity", Count: 1, Min: 50, Max: 50, Avg: 50, Last: 50, LastAt: t0},
		{Device: "x", Metric: "temperature", Count: 3, Min: 10, Max: 30, Avg: 20, Last: 20, LastAt: t0.Add(2 * time.Minute)},
		{Device: "y", Metric: "temperature", Count: 1, Min: 5, Max: 5, Avg: 5, Last: 5, LastAt: t0},
	}
	if len(got) != len(want) {
		t.Fatalf("Aggregates = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Device != w.Device || g.Metric != w.Metric || g.Count != w.Count || g.Min != w.Min || g.Max != w.Max ||
			fmt.Sprintf("%.6f", g.Avg) != fmt.Sprintf("%.6f", w.Avg) || g.Last != w.Last || !g.LastAt.Equal(w.LastAt) {
			t.Fatalf("aggregate %d = %+v, want %+v", i, g, w)
		}
	}
}

func testStoreAnalyticsCache(t *testing.T, s Store) {
	ctx := t.Context()
	if _, _, ok, err := s.CachedAnalytics(ctx, "k", time.Time{}); err != nil || ok {
		t.Fatalf("empty cache: ok=%v err=%v", ok, err)
	}
	if err := s.SaveAnalytics(ctx, "k", json.RawMessage(`{"n":1}`), t0); err != nil {
		t.Fatal(err)
	}
	body, at, ok, err := s.CachedAnalytics(ctx, "k", t0.Add(-time.Second))
	if err != nil || !ok || !at.Equal(t0) {
		t.Fatalf("fresh cache: ok=%v at=%v err=%v", ok, at, err)
	}
	var v map[string]int
	if err := json.Unmarshal(body, &v); err != nil || v["n"] != 1 {
		t.Fatalf("cached body %s: %v", body, err)
	}
	if _, _, ok, _ := s.CachedAnalytics(ctx, "k", t0.Add(time.Second)); ok {
		t.Fatal("stale cache entry returned")
	}
	// An older computation does not replace a newer one in the shared store;
	// the memory store keeps whatever was saved last (one node).
	if err := s.SaveAnalytics(ctx, "k", json.RawMessage(`{"n":2}`), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	body, _, ok, _ = s.CachedAnalytics(ctx, "k", t0)
	if !ok || json.Unmarshal(body, &v) != nil || v["n"] != 2 {
		t.Fatalf("after a newer save: %s", body)
	}
}

func testStoreUsersAudit(t *testing.T, s Store) {
	ctx := t.Context()
	if _, err := s.User(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: err=%v, want ErrNotFound", err)
	}
	u := User{Username: "alice", Name: "Alice", Roles: []string{"staff"}, PasswordHash: "h1"}
	if err := s.UpsertUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	u.Roles, u.PasswordHash = []string{"staff", "admin"}, "h2"
	if err := s.UpsertUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	got, err := s.User(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Alice" || got.PasswordHash != "h2" || len(got.Roles) != 2 || got.Roles[1] != "admin" {
		t.Fatalf("user = %+v", got)
	}
	e1, err := s.AddAudit(ctx, AuditEntry{Kind: auditLogin, Username: "alice", RemoteAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if e1.ID == 0 || e1.At.IsZero() || time.Since(e1.At) > time.Minute {
		t.Fatalf("audit entry = %+v, want an ID and now", e1)
	}
	e2, err := s.AddAudit(ctx, AuditEntry{Kind: auditForbidden, Username: "alice", Detail: `join "admin"`, At: t0})
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.Audit(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != e2.ID || list[1].ID != e1.ID || list[0].Detail != `join "admin"` || !list[0].At.Equal(t0) {
		t.Fatalf("Audit = %+v, want e2, e1", list)
	}
	if one, _ := s.Audit(ctx, 1); len(one) != 1 || one[0].ID != e2.ID {
		t.Fatalf("Audit(1) = %+v", one)
	}
}

// testStoreConcurrentOpen opens the same alert from many goroutines (as
// several nodes would): exactly one succeeds.
func testStoreConcurrentOpen(t *testing.T, s Store) {
	ctx := t.Context()
	if err := s.UpsertDevice(ctx, Device{ID: "d"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, dup int
	for range 8 {
		wg.Go(func() {
			_, err := s.OpenAlert(ctx, Alert{Device: "d", Metric: "temperature", OpenedAt: t0})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrAlertOpen):
				dup++
			default:
				t.Errorf("OpenAlert: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || dup != 7 {
		t.Fatalf("%d opened, %d refused as duplicates; want 1 and 7", ok, dup)
	}
}

// TestPGStore_Migrations checks that migrating twice (a restart, or a second
// node) is a no-op, and that the versions are recorded.
func TestPGStore_Migrations(t *testing.T) {
	t.Parallel()
	url := testenv.URL(t, testenv.Postgres)
	schema := testSchema()
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 { // three nodes starting at once
		wg.Go(func() {
			s, err := OpenPostgres(ctx, url, schema)
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	t.Cleanup(func() { dropSchema(t, url, schema) })
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent OpenPostgres: %v", err)
		}
	}
	s, err := OpenPostgres(ctx, url, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var maxV int32
	if err := s.pool.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || int(maxV) != ms[len(ms)-1].version {
		t.Fatalf("schema_migrations has %d rows up to %d; want %d up to %d", n, maxV, len(ms), ms[len(ms)-1].version)
	}
}

// TestCommandStore runs mqttbridge's CommandStore conformance suite against
// both stores' command queues (PostgreSQL: a fresh schema per subtest).
func TestCommandStore(t *testing.T) {
	t.Parallel()
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			commandstoretest.Run(t, func(t *testing.T) mqttbridge.CommandStore { return k.open(t).Commands() })
		})
	}
}
