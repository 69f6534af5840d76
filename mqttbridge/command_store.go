package mqttbridge

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// CommandStore keeps a bridge's commands from [Bridge.Command] until they
// are finished, so that a command to an offline device waits for it. The
// bridge calls it from its command goroutine (and from Command's caller for
// Add), never with a lock held. Implementations must be safe for
// concurrent use; several bridges (one per hub node) may share one store,
// which then decides which of them sends a command ([CommandStore.Claim])
// and which records its outcome ([CommandStore.Finish]).
//
// [MemoryCommandStore] is the default; examples/iotserver has a PostgreSQL
// one, so that queued commands survive a restart of the process.
type CommandStore interface {
	// Add stores c, whose State is [CommandQueued]. It returns an error
	// wrapping [ErrQueueFull] if c.Device already has perDevice unfinished
	// (queued or sent) commands or the store total unfinished commands, and
	// [ErrDuplicateCommand] if the store knows a command with c.ID (in any
	// state, as long as it keeps it).
	Add(ctx context.Context, c Result, perDevice, total int) error
	// Queued returns up to n of the device's queued commands whose Expires
	// is after now, oldest (Created) first.
	Queued(ctx context.Context, device string, now time.Time, n int) ([]Result, error)
	// Waiting returns up to n devices that have queued commands whose
	// Expires is after now, in any order: the bridge sends theirs after it
	// (re)connects, to those online.
	Waiting(ctx context.Context, now time.Time, n int) ([]string, error)
	// Claim moves a queued command whose Expires is after at to
	// [CommandSent], with SentAt at, and reports true; it reports false,
	// with no error, if the command is not queued (another bridge claimed
	// it, it expired or finished, or it is unknown). Of the Claims of one
	// ID, at most one reports true (unless Release undoes it): this is the
	// at-most-once guarantee.
	Claim(ctx context.Context, id string, at time.Time) (bool, error)
	// Release moves a sent command back to queued. The bridge calls it only
	// when its publish provably did not leave the process (no connection).
	Release(ctx context.Context, id string) error
	// Finish records the outcome of the device's unfinished command id:
	// state [CommandDone] or [CommandFailed], the device's reply data and
	// error message, at at. It returns the finished command and true, or
	// false if the device has no such unfinished command (unknown, another
	// device's, finished or expired before).
	Finish(ctx context.Context, id, device string, state CommandState, reply json.RawMessage, errMsg string, at time.Time) (Result, bool, error)
	// Expire moves up to n unfinished commands whose Expires is not after
	// now to [CommandExpired] (FinishedAt now) and returns them.
	Expire(ctx context.Context, now time.Time, n int) ([]Result, error)
	// Get returns the command with this ID, or an error wrapping
	// [ErrUnknownCommand].
	Get(ctx context.Context, id string) (Result, error)
}

// MemoryCommandStore is the in-memory [CommandStore]: queued commands are
// lost with the process. It keeps the unfinished commands (bounded by the
// perDevice and total limits the bridge passes to Add) and the last
// finished ones, up to the number given to [NewMemoryCommandStore]; past
// it, the oldest finished command is forgotten (and its ID may be used
// again). It is safe for concurrent use.
type MemoryCommandStore struct {
	mu       sync.Mutex
	cmds     map[string]*Result
	byDevice map[string][]string // unfinished IDs per device, in Add order
	open     int                 // unfinished commands
	finished []string            // finished IDs, oldest first
	keep     int
}

var _ CommandStore = (*MemoryCommandStore)(nil)

// NewMemoryCommandStore returns an empty store that remembers up to
// keepFinished finished commands (default 10,000 when keepFinished <= 0).
func NewMemoryCommandStore(keepFinished int) *MemoryCommandStore {
	if keepFinished <= 0 {
		keepFinished = 10_000
	}
	return &MemoryCommandStore{cmds: map[string]*Result{}, byDevice: map[string][]string{}, keep: keepFinished}
}

// Add implements [CommandStore].
func (s *MemoryCommandStore) Add(ctx context.Context, c Result, perDevice, total int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cmds[c.ID]; ok {
		return ErrDuplicateCommand
	}
	if len(s.byDevice[c.Device]) >= perDevice {
		return errQueueFullDevice(c.Device, perDevice)
	}
	if s.open >= total {
		return errQueueFullTotal(total)
	}
	c.State = CommandQueued
	s.cmds[c.ID] = &c
	s.byDevice[c.Device] = append(s.byDevice[c.Device], c.ID)
	s.open++
	return nil
}

// Queued implements [CommandStore].
func (s *MemoryCommandStore) Queued(ctx context.Context, device string, now time.Time, n int) ([]Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Result
	for _, id := range s.byDevice[device] {
		if c := s.cmds[id]; c.State == CommandQueued && c.Expires.After(now) {
			out = append(out, *c)
		}
	}
	slices.SortStableFunc(out, func(a, b Result) int { return a.Created.Compare(b.Created) })
	return out[:min(n, len(out))], nil
}

// Waiting implements [CommandStore].
func (s *MemoryCommandStore) Waiting(ctx context.Context, now time.Time, n int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for d, ids := range s.byDevice {
		if len(out) == n {
			break
		}
		for _, id := range ids {
			if c := s.cmds[id]; c.State == CommandQueued && c.Expires.After(now) {
				out = append(out, d)
				break
			}
		}
	}
	return out, nil
}

// Claim implements [CommandStore].
func (s *MemoryCommandStore) Claim(ctx context.Context, id string, at time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cmds[id]
	if !ok || c.State != CommandQueued || !c.Expires.After(at) {
		return false, nil
	}
	c.State, c.SentAt = CommandSent, at
	return true, nil
}

// Release implements [CommandStore].
func (s *MemoryCommandStore) Release(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cmds[id]; ok && c.State == CommandSent {
		c.State, c.SentAt = CommandQueued, time.Time{}
	}
	return nil
}

// Finish implements [CommandStore].
func (s *MemoryCommandStore) Finish(ctx context.Context, id, device string, state CommandState, reply json.RawMessage, errMsg string, at time.Time) (Result, bool, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cmds[id]
	if !ok || c.Device != device || c.State.Finished() {
		return Result{}, false, nil
	}
	c.State, c.FinishedAt, c.Reply, c.Error = state, at, slices.Clone(reply), errMsg
	s.finishLocked(c)
	return *c, true, nil
}

// Expire implements [CommandStore].
func (s *MemoryCommandStore) Expire(ctx context.Context, now time.Time, n int) ([]Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []*Result
	for _, ids := range s.byDevice {
		for _, id := range ids {
			if c := s.cmds[id]; !c.Expires.After(now) {
				due = append(due, c)
			}
		}
	}
	slices.SortFunc(due, func(a, b *Result) int { return a.Expires.Compare(b.Expires) })
	var out []Result
	for _, c := range due {
		if len(out) == n {
			break
		}
		c.State, c.FinishedAt = CommandExpired, now
		s.finishLocked(c)
		out = append(out, *c)
	}
	return out, nil
}

// Get implements [CommandStore].
func (s *MemoryCommandStore) Get(ctx context.Context, id string) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.cmds[id]; ok {
		return *c, nil
	}
	return Result{}, ErrUnknownCommand
}

// finishLocked moves c from the unfinished commands to the finished ones,
// forgetting the oldest finished one past the bound. Call with s.mu held.
func (s *MemoryCommandStore) finishLocked(c *Result) {
	ids := s.byDevice[c.Device]
	if i := slices.Index(ids, c.ID); i >= 0 {
		ids = slices.Delete(ids, i, i+1)
	}
	if len(ids) == 0 {
		delete(s.byDevice, c.Device)
	} else {
		s.byDevice[c.Device] = ids
	}
	s.open--
	s.finished = append(s.finished, c.ID)
	if len(s.finished) > s.keep {
		delete(s.cmds, s.finished[0])
		s.finished = slices.Delete(s.finished, 0, 1)
	}
}
