package rthub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file holds keyed latest state: for the rooms a [StatePolicy] names, a
// broker keeps the latest publication of each state key (see [WithKey]) and
// hands it out, consistent with the room's stream offsets, through the
// optional [StateBroker] interface. Joining with state (docs/protocol.md §2.2
// and §5, docs/state.md) is built on it.

// StateBroker is implemented by a [Broker] that keeps keyed latest state
// (the memory broker and the Redis broker do). It is a separate interface so
// that Broker stays as it was; the hub checks for it with a type assertion.
type StateBroker interface {
	// State returns room's latest state: for each state key, the latest
	// publication published with it (oldest update first), and the room's
	// current position pos. The two are read atomically: every entry is the
	// latest publication of its key among those with offset ≤ pos.Offset in
	// pos.Epoch, so a reader that applies the entries and then exactly the
	// publications after pos has the room's state without a gap or a
	// duplicate. Keys evicted by the room's [StateLimits] (count, bytes,
	// TTL) are missing, as if never published.
	//
	// A room no state rule covers returns an error wrapping [ErrNoState]
	// (with pos still set). Like [Broker.History], the first call fixes an
	// empty room's epoch.
	State(ctx context.Context, room string) (entries []Publication, pos StreamPosition, err error)
}

// ErrNoState is wrapped by [StateBroker.State]'s error for a room that keeps
// no state: no rule of the broker's [StatePolicy] matches it.
var ErrNoState = errors.New("rthub: room keeps no state")

// Defaults and bounds of [StateLimits].
const (
	DefaultStateMaxKeys  = 1000
	DefaultStateMaxBytes = 256 << 10
	DefaultStateTTL      = time.Hour
	// MaxStateBytes is the largest MaxBytes a rule may have: a snapshot
	// then fits in a join reply under the Go client's default 1 MiB
	// message limit.
	MaxStateBytes = 960 << 10
	// StateEntryOverhead is what each entry counts against MaxBytes beyond
	// its data and key: about what its position adds in a join reply.
	StateEntryOverhead = 64
)

// StateLimits bounds the latest state a broker keeps for a room.
//
// Eviction: when an update would put the room over MaxKeys keys or MaxBytes
// bytes, the keys updated longest ago are dropped first until it fits (the
// update itself always stays, unless it alone is over MaxBytes: then its key
// is dropped). A key not updated for TTL is dropped. Evicted keys are simply
// missing from the next snapshot.
type StateLimits struct {
	// MaxKeys is the most keys kept per room. 0 means DefaultStateMaxKeys
	// (1000).
	MaxKeys int
	// MaxBytes bounds the size of a room's state: each entry counts its
	// data, its key and [StateEntryOverhead]. 0 means DefaultStateMaxBytes
	// (256 KiB); at most [MaxStateBytes].
	MaxBytes int
	// TTL is how long a key is kept after its last update. 0 means
	// DefaultStateTTL (1 hour). It is lowered to the room's position TTL
	// (HistoryLimits.MetaTTL) if longer: state never outlives its stream.
	// Brokers may round it up to a millisecond.
	TTL time.Duration
}

// StateRule keeps state for the rooms matching Pattern.
type StateRule struct {
	// Pattern is a room pattern as in [ValidPattern], without {sub}.
	Pattern string
	StateLimits
}

// StatePolicy says which rooms keep keyed latest state, and how much: the
// limits of the first rule whose pattern matches the room (see [Match]).
// Rooms no rule matches keep none; the zero value keeps none anywhere.
type StatePolicy struct {
	Rules []StateRule
}

// Validate reports every problem of p in one error wrapping
// [ErrInvalidOptions]: bad patterns, negative or too large limits.
func (p StatePolicy) Validate() error {
	var errs []error
	for i, r := range p.Rules {
		what := fmt.Sprintf("state rule %d (%q)", i, r.Pattern)
		if err := ValidPattern(r.Pattern); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		} else if strings.Contains(r.Pattern, "{sub}") {
			errs = append(errs, fmt.Errorf("%s: {sub} has no meaning in a state rule", what))
		}
		if r.MaxKeys < 0 {
			errs = append(errs, fmt.Errorf("%s: negative MaxKeys %d", what, r.MaxKeys))
		}
		if r.MaxBytes < 0 || r.MaxBytes > MaxStateBytes {
			errs = append(errs, fmt.Errorf("%s: MaxBytes %d not within 0..%d", what, r.MaxBytes, MaxStateBytes))
		}
		if r.TTL < 0 {
			errs = append(errs, fmt.Errorf("%s: negative TTL %v", what, r.TTL))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
}

// Limits returns the state limits for room with the defaults filled in, and
// whether room keeps state at all. The TTL is capped at history's MetaTTL
// for the room.
func (p StatePolicy) Limits(room string, history HistoryPolicy) (StateLimits, bool) {
	for _, r := range p.Rules {
		if !Match(r.Pattern, room) {
			continue
		}
		l := r.StateLimits
		if l.MaxKeys <= 0 {
			l.MaxKeys = DefaultStateMaxKeys
		}
		if l.MaxBytes <= 0 {
			l.MaxBytes = DefaultStateMaxBytes
		}
		l.MaxBytes = min(l.MaxBytes, MaxStateBytes)
		if l.TTL <= 0 {
			l.TTL = DefaultStateTTL
		}
		l.TTL = min(l.TTL, history.Limits(room).MetaTTL)
		return l, true
	}
	return StateLimits{}, false
}

// StateCost is what one entry counts against [StateLimits].MaxBytes.
func StateCost(p *Publication) int {
	return len(p.Data) + len(p.Key) + StateEntryOverhead
}

// stateBroker returns b as a StateBroker, or nil.
func stateBroker(b Broker) StateBroker {
	sb, _ := BrokerAs[StateBroker](b)
	return sb
}
