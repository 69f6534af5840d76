package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/org/rthub/contract"
)

//go:generate env RTHUB_UPDATE_DOCS=1 go test -run TestContract .

// contractFiles writes the contract of the declared events and the policy:
// file name under contract/ → content.
func contractFiles(t *testing.T) map[string][]byte {
	t.Helper()
	c, err := contract.New(contract.Spec{
		Title:       "rthub IoT example",
		Version:     "1.0.0",
		Description: "Live readings, device status, alerts, health, analytics and the audit log of the example IoT server.",
		Events:      contract.Declared(AlertAck.Name()), // alert:ack is only emitted by clients
		RPCs: contract.DeclaredRPCs(map[string]string{
			SendCommand.Name(): "Admins: send a device a command (set_threshold, set_interval); answered with the queued command, whose later states arrive as device:command events.",
		}),
		Policy: policy,
		Host:   "localhost:8080",
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for name, write := range map[string]func(*bytes.Buffer) error{
		"contract.d.ts": func(b *bytes.Buffer) error { return c.WriteTypeScript(b) },
		"schema.json":   func(b *bytes.Buffer) error { return c.WriteJSONSchema(b) },
		"asyncapi.json": func(b *bytes.Buffer) error { return c.WriteAsyncAPI(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		out[name] = b.Bytes()
	}
	return out
}

// TestContract keeps contract/ (TypeScript declarations, JSON Schema,
// AsyncAPI) equal to what the declared events and the policy generate, so
// the contract the browser code compiles against cannot drift from the
// server. Regenerate with `go generate` in this folder.
func TestContract(t *testing.T) {
	for name, want := range contractFiles(t) {
		path := filepath.Join("contract", name)
		if os.Getenv("RTHUB_UPDATE_DOCS") == "1" {
			if err := os.MkdirAll("contract", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is stale (or missing): run `go generate` in examples/iotserver (%v)", path, err)
		}
	}
}
