package brokertest

import (
	"testing"

	"github.com/org/rthub"
)

func TestRecorder(t *testing.T) {
	pub := func(off uint64, epoch string) rthub.Publication {
		return rthub.Publication{Room: "r", Offset: off, Epoch: epoch}
	}
	tests := []struct {
		name  string
		steps func(r *Recorder)
		bad   bool
	}{
		{"contiguous", func(r *Recorder) { r.HandlePublication(pub(4, "e")); r.HandlePublication(pub(5, "e")) }, false},
		{"gap", func(r *Recorder) { r.HandlePublication(pub(4, "e")); r.HandlePublication(pub(6, "e")) }, true},
		{"duplicate", func(r *Recorder) { r.HandlePublication(pub(4, "e")); r.HandlePublication(pub(4, "e")) }, true},
		{"gap after resync", func(r *Recorder) {
			r.HandlePublication(pub(4, "e"))
			r.HandleResync([]string{"r"})
			r.HandlePublication(pub(9, "e"))
		}, false},
		{"only one gap per resync", func(r *Recorder) {
			r.HandlePublication(pub(4, "e"))
			r.HandleResync([]string{"r"})
			r.HandlePublication(pub(9, "e"))
			r.HandlePublication(pub(11, "e"))
		}, true},
		{"duplicate after resync", func(r *Recorder) {
			r.HandlePublication(pub(4, "e"))
			r.HandleResync([]string{"r"})
			r.HandlePublication(pub(4, "e"))
		}, true},
		{"new epoch", func(r *Recorder) { r.HandlePublication(pub(4, "e")); r.HandlePublication(pub(1, "f")) }, false},
		{"forgiven", func(r *Recorder) { r.HandlePublication(pub(4, "e")); r.Forgive("r"); r.HandlePublication(pub(7, "e")) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			tt.steps(r)
			if got := r.Err() != nil; got != tt.bad {
				t.Fatalf("Err() = %v, want a violation: %v", r.Err(), tt.bad)
			}
		})
	}
}

func TestHistoryPolicyIsValid(t *testing.T) {
	if err := History().Validate(); err != nil {
		t.Fatal(err)
	}
	if l := History().Limits("none:x"); l.Size != 0 {
		t.Fatalf("none:x keeps %d", l.Size)
	}
}
