package admin

import (
	"context"
	"time"

	"github.com/org/rthub"
)

// Bounds of a [RefusalLog].
const (
	// DefaultRefusals is the size of a RefusalLog made with size 0.
	DefaultRefusals = 256
	// MaxRefusals bounds a RefusalLog's size.
	MaxRefusals = 100_000
)

// RefusalRecord is one refusal the hub reported, with when.
type RefusalRecord struct {
	Time time.Time `json:"time"`
	rthub.Refusal
}

// RefusalLog keeps the hub's newest refusals in memory, for GET /refusals:
// a ring of a fixed size; when full, each new refusal replaces the oldest.
// A refusal never holds a token ([rthub.Refusal]). Safe for concurrent use.
type RefusalLog struct {
	ring *ring[RefusalRecord]
}

// NewRefusalLog returns a log of the newest size refusals (0: 256; at most
// 100 000). Pass its [RefusalLog.Record] as the hub's Options.OnRefused (or
// call it from yours) and the log as [Options.Refusals].
func NewRefusalLog(size int) *RefusalLog {
	if size <= 0 {
		size = DefaultRefusals
	}
	size = min(size, MaxRefusals)
	return &RefusalLog{ring: newRing[RefusalRecord](size)}
}

// Record keeps r; it has the signature of the hub's Options.OnRefused. It
// takes a mutex for a few copies and never blocks otherwise.
func (l *RefusalLog) Record(_ context.Context, r rthub.Refusal) {
	l.ring.add(RefusalRecord{Time: time.Now().UTC(), Refusal: r})
}

// Recent returns the newest n refusals, newest first, and how many were
// recorded in all (older ones are gone).
func (l *RefusalLog) Recent(n int) ([]RefusalRecord, uint64) { return l.ring.recent(n) }
