package main

import (
	"os"
	"strings"
	"testing"

	"github.com/org/rthub/eventdoc"
)

//go:generate env RTHUB_UPDATE_DOCS=1 go test -run TestEventReference .

// TestEventReference keeps EVENTS.md equal to what the declared events
// generate (names, rooms, payload fields), so the reference cannot drift.
// Regenerate with `go generate` in this folder.
func TestEventReference(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Events of the example IoT server\n\n" +
		"Generated from the events the server declares (`events.go`) by `eventdoc.Write`; " +
		"do not edit: run `go generate` in `examples/iotserver`. Every event arrives as " +
		"`{\"type\":\"event\",\"event\":…,\"room\":…,\"data\":…,\"offset\":…,\"epoch\":…}` " +
		"([protocol](../../docs/protocol.md)); the tables describe `data`. Presence events " +
		"(`user:online`, `user:offline`, `user:viewing`) are described in the protocol. " +
		"Events with a state key (`sensor:data`, `device:status`: see each) are also kept as " +
		"their room's latest state, one per key: a `join` with `\"state\":true` gets them in its " +
		"reply's `state`, in the same form, with the position they correspond to " +
		"([protocol §2.2, §5.1](../../docs/protocol.md#51-joining-with-state)). A room with an " +
		"overflow policy tells a connection it left events out with a `gap` message " +
		"([protocol §2.1](../../docs/protocol.md)); this server gives its rooms none, so a " +
		"client that falls behind is closed (4000).\n\n")
	if err := eventdoc.Write(&b, eventdoc.Declared()); err != nil {
		t.Fatal(err)
	}
	const path = "EVENTS.md"
	if os.Getenv("RTHUB_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != b.String() {
		t.Fatalf("%s is stale (or missing): run `go generate` in examples/iotserver (%v)", path, err)
	}
}
