package brokertest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
)

// WaitTimeout bounds every wait of a [Recorder]. It is generous because CI
// runs every package at once under -race.
var WaitTimeout = 15 * time.Second

// Recorder is an [rthub.BrokerHandler] that keeps what it is given and checks
// the handler side of the contract: for each room, offsets of one epoch grow
// by exactly one from call to call, except across a HandleResync naming the
// room (or after [Recorder.Forgive]). Broker tests use it as the handler of
// the nodes they start. It is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every call
	pubs    map[string][]rthub.Publication
	last    map[string]rthub.Publication
	gapOK   map[string]bool // a resync (or Forgive) allows one gap
	resyncs [][]string
	count   int
	errs    []error
}

var _ rthub.BrokerHandler = (*Recorder)(nil)

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{
		changed: make(chan struct{}),
		pubs:    map[string][]rthub.Publication{},
		last:    map[string]rthub.Publication{},
		gapOK:   map[string]bool{},
	}
}

// HandlePublication implements [rthub.BrokerHandler].
func (r *Recorder) HandlePublication(p rthub.Publication) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.last[p.Room]; ok && last.Epoch == p.Epoch && p.Offset != last.Offset+1 {
		if !r.gapOK[p.Room] || p.Offset <= last.Offset {
			r.errs = append(r.errs, fmt.Errorf("room %s: offset %d delivered after %d with no resync in between", p.Room, p.Offset, last.Offset))
		}
	}
	r.gapOK[p.Room] = false
	r.last[p.Room] = p
	r.pubs[p.Room] = append(r.pubs[p.Room], p)
	r.count++
	r.signal()
}

// HandleResync implements [rthub.BrokerHandler].
func (r *Recorder) HandleResync(rooms []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, room := range rooms {
		r.gapOK[room] = true
	}
	r.resyncs = append(r.resyncs, slices.Clone(rooms))
	r.signal()
}

func (r *Recorder) signal() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Forgive allows one gap in room's offsets, as after an Unsubscribe and a
// new Subscribe.
func (r *Recorder) Forgive(room string) {
	r.mu.Lock()
	r.gapOK[room] = true
	r.mu.Unlock()
}

// Publications returns a copy of the publications of room received so far.
func (r *Recorder) Publications(room string) []rthub.Publication {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.pubs[room])
}

// Count returns the number of publications received, all rooms together.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Resyncs returns the room lists of the HandleResync calls so far.
func (r *Recorder) Resyncs() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.resyncs)
}

// Err returns the contract violations seen so far, or nil.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("brokertest: handler saw %d contract violations, first: %w", len(r.errs), r.errs[0])
}

// WaitFor waits until cond, called with the recorder locked, is true, and fails
// t after [WaitTimeout].
func (r *Recorder) WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	r.waitFor(t, func() string { return what }, cond)
}

// waitFor is WaitFor with the failure's description built when it fails.
func (r *Recorder) waitFor(t testing.TB, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(WaitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("brokertest: waited %v for %s", WaitTimeout, what())
		}
	}
}

// Wait waits until room has at least n publications and returns them all.
func (r *Recorder) Wait(t testing.TB, room string, n int) []rthub.Publication {
	t.Helper()
	r.WaitFor(t, fmt.Sprintf("%d publications of %s (have %d)", n, room, len(r.Publications(room))), func() bool {
		return len(r.pubs[room]) >= n
	})
	return r.Publications(room)
}

// WaitOffset waits until a publication of room with an offset of at least
// off arrived.
func (r *Recorder) WaitOffset(t testing.TB, room string, off uint64) {
	t.Helper()
	var last rthub.Publication
	var n int
	var errs []error
	r.waitFor(t, func() string {
		return fmt.Sprintf("offset %d of %s (last received: offset %d epoch %q, %d publications of the room, violations %v)",
			off, room, last.Offset, last.Epoch, n, errs)
	}, func() bool {
		p, ok := r.last[room]
		last, n, errs = p, len(r.pubs[room]), slices.Clone(r.errs)
		return ok && p.Offset >= off
	})
}

// WaitResync waits until a HandleResync named room and returns how many
// resyncs there were in all.
func (r *Recorder) WaitResync(t testing.TB, room string) int {
	t.Helper()
	var n int
	r.WaitFor(t, "a resync of "+room, func() bool {
		n = len(r.resyncs)
		for _, rs := range r.resyncs {
			if slices.Contains(rs, room) {
				return true
			}
		}
		return false
	})
	return n
}
