package main

import (
	"testing"
	"time"

	"github.com/org/rthub/client"
)

// The hub keeps the latest reading and status of every device as state of
// the staff room: a join with state gets them (the device cards), then only
// events after the snapshot's position.
func TestServer_JoinStateDeviceCards(t *testing.T) {
	s := startServer(t, baseEnv())
	c := s.dial(t, "alice")
	readings := collect(c, "sensor:data")
	for range 4 { // both simulated devices have published
		readings.next(t, 10*time.Second, "a reading", nil)
	}
	snap, err := c.JoinState(t.Context(), roomStaff)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Kept {
		t.Fatal("the staff room keeps no state")
	}
	devices, statuses := map[string]bool{}, map[string]string{}
	for _, e := range snap.Events {
		switch e.Name {
		case SensorData.Name():
			r := decode[ReadingEvent](t, e)
			if devices[r.Device] {
				t.Fatalf("two readings of %s in the snapshot", r.Device)
			}
			devices[r.Device] = true
		case DeviceStatus.Name():
			st := decode[StatusEvent](t, e)
			statuses[st.Device] = st.Status
		default:
			t.Fatalf("unkeyed event %s in the snapshot", e.Name)
		}
		if e.Position.Offset > snap.Position.Offset {
			t.Fatalf("entry at %v after the snapshot's position %v", e.Position, snap.Position)
		}
	}
	if len(devices) != 2 || len(statuses) != 2 {
		t.Fatalf("snapshot: readings of %v, statuses %v; want both simulated devices", devices, statuses)
	}
	readings.next(t, 10*time.Second, "a staff reading after the snapshot", func(e client.Event) bool {
		return e.Room == roomStaff && e.Position.Epoch == snap.Position.Epoch && e.Position.Offset > snap.Position.Offset
	})
}
