package mqttbridge_test

import (
	"testing"
	"time"

	"github.com/org/rthub/mqttbridge"
	"github.com/org/rthub/mqttbridge/commandstoretest"
)

func TestMemoryCommandStore(t *testing.T) {
	commandstoretest.Run(t, func(*testing.T) mqttbridge.CommandStore { return mqttbridge.NewMemoryCommandStore(0) })
}

// TestMemoryCommandStore_KeepFinished: past its bound, the oldest finished
// command is forgotten.
func TestMemoryCommandStore_KeepFinished(t *testing.T) {
	s := mqttbridge.NewMemoryCommandStore(2)
	ctx := t.Context()
	base := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	for _, id := range []string{"a", "b", "c"} {
		if err := s.Add(ctx, mqttbridge.Result{ID: id, Device: "d", Expires: base.Add(1)}, 10, 10); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.Expire(ctx, base.Add(2), 10); len(got) != 3 {
		t.Fatalf("expired %d", len(got))
	}
	if _, err := s.Get(ctx, "a"); err == nil {
		t.Fatal("the oldest finished command is still kept")
	}
	if _, err := s.Get(ctx, "c"); err != nil {
		t.Fatal(err)
	}
}
