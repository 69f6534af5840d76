package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub/contract"
	"github.com/org/rthub/internal/jsonschema"
	"github.com/org/rthub/internal/testenv"
)

// contractPayload is one payload the node script checks against
// contract/schema.json: valid says what it must conclude.
type contractPayload struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	Valid bool            `json:"valid"`
}

// TestContract_Validators validates the committed contract with well-kept
// validators from npm (e2e/contract.mjs): schema.json as JSON Schema
// 2020-12 with Ajv (strict, ajv-formats) against payloads a running server
// sent, Go-marshalled values of every payload type and payloads the schema
// must refuse; asyncapi.json with @asyncapi/parser (zero errors); and
// contract.d.ts with tsc --noEmit --strict, which must accept a program
// using it and reject misspelt events, wrong payload fields and rooms. The
// golden documents of package contract (contract/testdata: recursive and
// anonymous types, RPCs) go through Ajv and the AsyncAPI parser too.
func TestContract_Validators(t *testing.T) {
	t.Parallel()
	node := need(t, "node", "Node.js runs e2e/contract.mjs")
	dir, _ := filepath.Abs("e2e")
	for _, pkg := range []string{"ajv", "ajv-formats", "@asyncapi/parser", "typescript"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg)); err != nil {
			// Tests never reach the network: .ci/run installs the packages.
			testenv.Missing(t, "%s has no node_modules/%s; to run this test: (cd %s && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci)", dir, pkg, dir)
			return
		}
	}

	var payloads []contractPayload
	add := func(event string, v any, valid bool) {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		payloads = append(payloads, contractPayload{Event: event, Data: data, Valid: valid})
	}

	// What a running server sends.
	s := startServer(t, map[string]string{"WS_HEALTH_INTERVAL": "300ms", "WS_ANALYTICS_INTERVAL": "300ms"})
	admin := s.dial(t, "admin")
	live := map[string]*events{}
	for _, ev := range []string{SensorData.Name(), SystemHealth.Name(), AnalyticsUpdate.Name(), AuditEvent.Name()} {
		live[ev] = collect(admin, ev)
	}
	// A forbidden join makes an audit entry.
	alice := s.dial(t, "alice")
	if err := alice.Join(t.Context(), roomAdmin); err == nil {
		t.Fatal("alice joined admin")
	}
	for name, e := range live {
		ev := e.next(t, 15*time.Second, name, nil)
		payloads = append(payloads, contractPayload{Event: name, Data: ev.Data, Valid: true})
	}

	// Go values of every payload type, zero and filled.
	now := time.Date(2026, 12, 2, 4, 0, 0, 123456000, time.UTC)
	one, v := 1, 27.5
	add(SensorData.Name(), ReadingEvent{Device: "dev-01", At: now, Values: map[string]float64{"temperature": 22.4}}, true)
	add(DeviceStatus.Name(), StatusEvent{Device: "dev-01", Status: statusOnline, At: now}, true)
	alert := Alert{ID: 7, Device: "dev-01", Metric: "temperature", Rule: "temperature>30<28", Threshold: 30, Value: 31.2, State: alertOpen, OpenedAt: now}
	add(AlertNew.Name(), alert, true)
	resolved := alert
	resolved.State, resolved.ResolvedAt, resolved.ResolvedValue = alertResolved, now.Add(time.Minute), &v
	add(AlertResolved.Name(), resolved, true)
	acked := resolved
	acked.AckedAt, acked.AckedBy, acked.AckNote = now, "alice", "on my way"
	add(AlertAcked.Name(), acked, true)
	add(SystemHealth.Name(), Health{At: now}, true) // nulls where the store did not answer
	add(SystemHealth.Name(), Health{At: now, OpenAlerts: &one, Devices: &DeviceCounts{Total: 2, Online: 1}, Rates: &Rates{Published: 1.5}}, true)
	add(AnalyticsUpdate.Name(), Analytics{ComputedAt: now, SentAt: now, Window: 3600, Devices: []Aggregate{{Device: "d", Metric: "m", Count: 3, LastAt: now}}}, true)
	add(AuditEvent.Name(), AuditEntry{ID: 1, At: now, Kind: auditAlertAck, Username: "alice"}, true)
	add(AlertAck.Name(), AlertAckRequest{ID: 3}, true)
	add(AlertAck.Name(), AlertAckRequest{ID: 3, Note: strings.Repeat("é", 200)}, true)

	// What the schemas refuse (and Options.ValidateEmits with them).
	add(AlertAck.Name(), map[string]any{"id": 3, "note": strings.Repeat("é", 201)}, false)
	add(AlertAck.Name(), map[string]any{"id": "3"}, false)
	add(AlertAck.Name(), map[string]any{"id": 0}, false)
	add(AlertAck.Name(), map[string]any{"id": 1.5}, false)
	add(AlertAck.Name(), map[string]any{"note": "x"}, false)
	add(AlertAck.Name(), map[string]any{"id": 3, "by": "mallory"}, false)
	add(SensorData.Name(), map[string]any{"device": "d", "at": "yesterday", "values": map[string]any{}}, false)
	add(SensorData.Name(), map[string]any{"device": "d", "at": now, "values": map[string]any{"t": "hot"}}, false)
	add(DeviceStatus.Name(), map[string]any{"device": "d", "status": "online"}, false)

	// The hub's validator (Options.ValidateEmits) concludes the same.
	types := map[string]*jsonschema.Validator{}
	for _, e := range contract.Declared() {
		v, err := jsonschema.NewValidator(e.Type, jsonschema.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		types[e.Name] = v
	}
	for _, p := range payloads {
		if err := types[p.Event].Validate(p.Data); (err == nil) != p.Valid {
			t.Errorf("Go validator: %s %s: %v, want valid=%v", p.Event, p.Data, err, p.Valid)
		}
	}

	var golden []map[string]string
	for _, name := range []string{"sample", "rpc"} {
		base := mustAbs(t, filepath.Join("..", "..", "contract", "testdata", name))
		golden = append(golden, map[string]string{"schema": base + ".schema.json", "asyncapi": base + ".asyncapi.json"})
	}

	work := t.TempDir()
	job, _ := json.Marshal(map[string]any{"contractDir": mustAbs(t, "contract"), "workDir": work, "payloads": payloads, "golden": golden})
	jobFile := filepath.Join(work, "job.json")
	if err := os.WriteFile(jobFile, job, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "contract.mjs", jobFile)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("e2e/contract.mjs:\n%s", out)
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "PASS") {
		t.Fatalf("e2e/contract.mjs failed: %v", err)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
