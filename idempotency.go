package rthub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// MaxIdempotencyKeyLen is the longest idempotency key a client may give an
// emit or a call (docs/protocol.md §2.6).
const MaxIdempotencyKeyLen = 128

// IdempotencyOptions bounds what a hub remembers of the emits and calls that
// clients sent with an idempotency key (the "idem" member, docs/rpc.md): for
// each user (token subject) and key, the first run's outcome, so that a retry
// of the key is answered with it instead of running the handler again, and a
// retry arriving while the first run is still going waits for it.
//
// The memory is the hub's own (per node), unless the broker keeps it for
// all the hubs sharing it ([IdempotencyStore]: the Redis broker does; it
// applies TTL and the per-user bounds, and MaxBytes is left to Redis's
// maxmemory). With a per-node memory behind a load balancer, a retry that
// reaches another node than the first attempt runs the handler again; see
// docs/rpc.md.
//
// Zero fields take the defaults; a negative TTL turns the memory off (keys
// are then ignored and every retry runs the handler).
type IdempotencyOptions struct {
	// TTL is how long an outcome is remembered after the first run ended.
	// A retry after it runs the handler again. Default 10 minutes.
	TTL time.Duration
	// MaxKeysPerUser bounds the outcomes remembered per user. Past it the
	// user's oldest outcome is forgotten. Runs still going are never
	// forgotten; they are bounded by the user's connections (Limits.
	// MaxConnsPerUser) times one emit and Options.MaxCallsPerConn calls
	// each. Default 1000.
	MaxKeysPerUser int
	// MaxBytesPerUser bounds the bytes of a user's remembered outcomes
	// (each costs its result, key and names plus 160 bytes). Past it the
	// user's oldest outcomes are forgotten; an outcome larger than the bound
	// on its own is not remembered (a retry runs the handler again).
	// Default 1 MiB.
	MaxBytesPerUser int
	// MaxBytes bounds the bytes of all users' remembered outcomes on the
	// hub. Past it the hub's oldest outcomes are forgotten, whoever's they
	// are. Default 64 MiB.
	MaxBytes int
}

func (o *IdempotencyOptions) setDefaults() error {
	var errs []error
	if o.TTL == 0 {
		o.TTL = 10 * time.Minute
	}
	def := func(p *int, v int, name string) {
		if *p == 0 {
			*p = v
		} else if *p < 0 {
			errs = append(errs, fmt.Errorf("rthub: Idempotency.%s is negative", name))
		}
	}
	def(&o.MaxKeysPerUser, 1000, "MaxKeysPerUser")
	def(&o.MaxBytesPerUser, 1<<20, "MaxBytesPerUser")
	def(&o.MaxBytes, 64<<20, "MaxBytes")
	return errors.Join(errs...)
}

// idemEntryOverhead is what an entry costs besides its strings and result:
// the struct, its map slot and list links, rounded up.
const idemEntryOverhead = 160

// validIdemKey reports whether a client's idempotency key is acceptable:
// 1–MaxIdempotencyKeyLen bytes of printable ASCII.
func validIdemKey(k string) bool {
	return k != "" && len(k) <= MaxIdempotencyKeyLen && printableASCII(k)
}

// idemStore is a hub's memory of idempotency keys, per user. Remembered
// (completed) entries are in two lists, oldest completion first: the hub's
// and their user's; as every entry has the same TTL, the hub's list is in
// expiry order too, and pruning expired entries takes them from its front.
// Running entries are only in their user's map.
type idemStore struct {
	opts IdempotencyOptions
	now  func() time.Time

	mu    sync.Mutex
	users map[string]*idemUser
	all   idemList // completed entries of every user
	bytes int      // their sizes

	waiters atomic.Int64 // retries waiting for a first run now

	// shared is the broker's memory, used instead of this one when the
	// broker has it (onceShared).
	shared IdempotencyStore
}

type idemUser struct {
	name    string
	entries map[string]*idemEntry // by key: running and completed
	done    idemList              // completed entries, oldest first
	bytes   int
}

// idemEntry is one key of one user: a run going on (ready open), or its
// remembered outcome.
type idemEntry struct {
	user            *idemUser
	key             string
	op, name, room  string
	ready           chan struct{} // closed when the first run ended (remembered or forgotten)
	completed       bool
	forgotten       bool // the run ended without an outcome to keep, or the entry was evicted
	data            json.RawMessage
	err             *ReplyError
	size            int
	expires         time.Time
	allPrev, allNxt *idemEntry
	usrPrev, usrNxt *idemEntry
}

// idemList is an intrusive doubly-linked list of entries, through either
// the all or the usr links.
type idemList struct {
	head, tail *idemEntry
	n          int
	user       bool // links through usrPrev/usrNxt
}

func (l *idemList) links(e *idemEntry) (prev, next **idemEntry) {
	if l.user {
		return &e.usrPrev, &e.usrNxt
	}
	return &e.allPrev, &e.allNxt
}

func (l *idemList) pushBack(e *idemEntry) {
	prev, next := l.links(e)
	*prev, *next = l.tail, nil
	if l.tail != nil {
		_, tn := l.links(l.tail)
		*tn = e
	} else {
		l.head = e
	}
	l.tail = e
	l.n++
}

func (l *idemList) remove(e *idemEntry) {
	prev, next := l.links(e)
	if *prev != nil {
		_, pn := l.links(*prev)
		*pn = *next
	} else {
		l.head = *next
	}
	if *next != nil {
		np, _ := l.links(*next)
		*np = *prev
	} else {
		l.tail = *prev
	}
	*prev, *next = nil, nil
	l.n--
}

// newIdemStore returns the hub's memory of idempotency keys: nil when off,
// and backed by the broker when it is an IdempotencyStore.
func newIdemStore(opts IdempotencyOptions, b Broker) *idemStore {
	if opts.TTL < 0 {
		return nil
	}
	s := &idemStore{opts: opts, now: time.Now, users: make(map[string]*idemUser)}
	s.shared, _ = BrokerAs[IdempotencyStore](b)
	return s
}

// errIdemReused refuses a key that a user already gave another command.
var errIdemReused = fmt.Errorf("%w: idempotency key already used for another command", ErrBadRequest)

// begin looks key up for user. With no entry (or an expired one) it makes a
// running entry and returns it with first set: the caller runs the command
// and calls finish. Otherwise it returns the existing entry: completed (its
// outcome answers the retry) or running (wait on ready, then call begin
// again). A key used for another op, name or room is refused.
func (s *idemStore) begin(user, key, op, name, room string) (e *idemEntry, first bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.pruneLocked(now)
	u := s.users[user]
	if u == nil {
		u = &idemUser{name: user, entries: make(map[string]*idemEntry), done: idemList{user: true}}
		s.users[user] = u
	}
	if e := u.entries[key]; e != nil {
		if e.op != op || e.name != name || e.room != room {
			return nil, false, errIdemReused
		}
		return e, false, nil
	}
	e = &idemEntry{user: u, key: key, op: op, name: name, room: room, ready: make(chan struct{})}
	u.entries[key] = e
	return e, true, nil
}

// finish ends the first run of e: with remember, its outcome is kept for
// the TTL; otherwise the key is forgotten (a retry runs the command again).
// Waiters are woken either way.
func (s *idemStore) finish(e *idemEntry, data json.RawMessage, err error, remember bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := e.user
	size := idemEntryOverhead + len(e.key) + len(e.name) + len(e.room) + len(data)
	if err != nil {
		e.err = replyErrorFor(err)
		size += len(e.err.Code) + len(e.err.Message) + len(e.err.Field)
	}
	if !remember || size > s.opts.MaxBytesPerUser || size > s.opts.MaxBytes {
		e.forgotten = true
		e.err = nil
		s.dropLocked(e)
		close(e.ready)
		return
	}
	e.data, e.size, e.completed = data, size, true
	e.expires = s.now().Add(s.opts.TTL)
	u.done.pushBack(e)
	s.all.pushBack(e)
	u.bytes += size
	s.bytes += size
	close(e.ready)
	for u.done.n > s.opts.MaxKeysPerUser || u.bytes > s.opts.MaxBytesPerUser {
		s.evictLocked(u.done.head)
	}
	for s.bytes > s.opts.MaxBytes {
		s.evictLocked(s.all.head)
	}
}

// outcome returns e's remembered outcome; ok is false when the first run
// ended without one (call begin again).
func (s *idemStore) outcome(e *idemEntry) (data json.RawMessage, err error, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !e.completed {
		return nil, nil, false
	}
	if e.err != nil {
		return nil, e.err, true
	}
	return e.data, nil, true
}

// evictLocked forgets a completed entry.
func (s *idemStore) evictLocked(e *idemEntry) {
	u := e.user
	u.done.remove(e)
	s.all.remove(e)
	u.bytes -= e.size
	s.bytes -= e.size
	s.dropLocked(e)
}

// dropLocked removes e from its user's map, and the user when it has no
// entry left. A completed entry stays valid for whoever holds it.
func (s *idemStore) dropLocked(e *idemEntry) {
	u := e.user
	if u.entries[e.key] == e {
		delete(u.entries, e.key)
	}
	if len(u.entries) == 0 {
		delete(s.users, u.name)
	}
}

// pruneLocked forgets the outcomes whose TTL has passed.
func (s *idemStore) pruneLocked(now time.Time) {
	for e := s.all.head; e != nil && !now.Before(e.expires); e = s.all.head {
		s.evictLocked(e)
	}
}

// size returns the number of remembered outcomes and their bytes (tests).
func (s *idemStore) size() (n, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.all.n, s.bytes
}

// once runs a command that carries an idempotency key at most once per
// user and key while its outcome is remembered: the first arrival runs it
// (run reports whether its outcome may be kept); a retry after it is
// answered with the outcome; a retry during it waits for it, bounded by
// ctx. Without a key, or with the memory off, run just runs. With the
// broker's IdempotencyStore the memory is the broker's (onceShared), and
// lease bounds the first run's claim.
func (h *Hub) once(ctx context.Context, c *conn, cmd *command, lease time.Duration, run func() (json.RawMessage, error, bool)) (json.RawMessage, error) {
	if cmd.Idem == "" || h.idem == nil {
		data, err, _ := run()
		return data, err
	}
	name := cmd.Event
	if cmd.Op == cmdCall {
		name = cmd.RPC
	}
	user := c.ident.Load().Subject
	if h.idem.shared != nil {
		return h.onceShared(ctx, user, name, cmd, lease, run)
	}
	for {
		e, first, err := h.idem.begin(user, cmd.Idem, cmd.Op, name, cmd.Room)
		if err != nil {
			return nil, err
		}
		if first {
			data, err, remember := run()
			h.idem.finish(e, data, err, remember)
			return data, err
		}
		waited := false
		select {
		case <-e.ready:
		default:
			waited = true
			h.idem.waiters.Add(1)
			select {
			case <-e.ready:
			case <-ctx.Done():
			}
			h.idem.waiters.Add(-1)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		if data, err, ok := h.idem.outcome(e); ok {
			if waited {
				h.stats.idemJoined.Add(1)
			} else {
				h.stats.idemReplayed.Add(1)
			}
			return data, err
		}
		// The first run left no outcome (its context ended): run it here.
	}
}

// IdempotencyStore is implemented by a [Broker] that keeps the idempotency
// keys of emits and calls for all the hubs sharing it (the Redis broker
// does): a retry that reaches another node than its first attempt is then
// answered from the first run too, and one that arrives while the first
// run goes on elsewhere waits for it. The hub checks for it with a type
// assertion, as for [StateBroker]; without it the memory is the hub's own
// (per node). The hub calls it with contexts bounded by
// Options.BrokerTimeout; an error fails the emit or call with "internal"
// (the caller may send it again later with the same key).
type IdempotencyStore interface {
	// ClaimKey looks user's key up. When no run claimed it (or its claim
	// or outcome expired), it claims it for lease and returns Claimed:
	// the caller runs the command and then calls CompleteKey or
	// ReleaseKey. Otherwise it returns what the key holds: the
	// Fingerprint it was claimed with and, once that first run ended, its
	// Outcome (nil while it runs).
	ClaimKey(ctx context.Context, user, key, fingerprint string, lease time.Duration) (KeyClaim, error)
	// CompleteKey stores the outcome of the claimed run of user's key for
	// lim.TTL, then forgets the user's oldest outcomes while the user has
	// more than lim.MaxKeysPerUser of them or they weigh more than
	// lim.MaxBytesPerUser (each counts its key, fingerprint and outcome
	// plus 160 bytes). An
	// outcome over MaxBytesPerUser on its own is not stored: the key is
	// forgotten.
	CompleteKey(ctx context.Context, user, key, fingerprint string, outcome []byte, lim IdempotencyOptions) error
	// ReleaseKey forgets user's key if it is claimed and not completed: a
	// run cut short, which a retry runs again.
	ReleaseKey(ctx context.Context, user, key string) error
}

// KeyClaim is what [IdempotencyStore.ClaimKey] found.
type KeyClaim struct {
	// Claimed: the caller claimed the key and runs the command.
	Claimed bool
	// Fingerprint is what the key was claimed for (when not Claimed).
	Fingerprint string
	// Outcome is the first run's outcome, nil while it runs (when not
	// Claimed).
	Outcome []byte
}

// emitLease is how long a keyed emit's claim in an IdempotencyStore lasts:
// an emit handler running longer lets a retry on another node run too.
const emitLease = time.Minute

// idemOutcome is a remembered outcome as an IdempotencyStore keeps it.
type idemOutcome struct {
	Data json.RawMessage `json:"d,omitempty"`
	Err  *ReplyError     `json:"e,omitempty"`
}

// onceShared is once with the broker's IdempotencyStore: the first arrival
// of a key on any node runs it; the others are answered with its outcome,
// polling (25 ms, doubling to 400 ms) while it runs elsewhere.
func (h *Hub) onceShared(ctx context.Context, user, name string, cmd *command, lease time.Duration, run func() (json.RawMessage, error, bool)) (json.RawMessage, error) {
	fp := cmd.Op + "\x00" + name + "\x00" + cmd.Room
	fail := func(op string, err error) error {
		h.stats.brokerErrors.Add(1)
		h.log.Warn("rthub: idempotency store: "+op, slog.String("key", cmd.Idem), slog.Any("err", err))
		return ErrInternal
	}
	wait, waited := 25*time.Millisecond, false
	for {
		bctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
		cl, err := h.idem.shared.ClaimKey(bctx, user, cmd.Idem, fp, lease)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fail("claim", err)
		}
		if cl.Claimed {
			data, rerr, remember := run()
			// The store is written after the run on the hub's context: a
			// run whose own context ended still records its outcome.
			bctx, cancel := context.WithTimeout(h.ctx, h.opts.BrokerTimeout)
			defer cancel()
			if remember {
				o := idemOutcome{Data: data}
				if rerr != nil {
					o.Data, o.Err = nil, replyErrorFor(rerr)
				}
				b, _ := json.Marshal(o)
				if err := h.idem.shared.CompleteKey(bctx, user, cmd.Idem, fp, b, h.opts.Idempotency); err != nil {
					_ = fail("complete", err) // the reply goes out; a retry may run again
				}
			} else if err := h.idem.shared.ReleaseKey(bctx, user, cmd.Idem); err != nil {
				_ = fail("release", err)
			}
			return data, rerr
		}
		if cl.Fingerprint != fp {
			return nil, errIdemReused
		}
		if cl.Outcome != nil {
			var o idemOutcome
			if err := json.Unmarshal(cl.Outcome, &o); err != nil {
				return nil, fail("decode", err)
			}
			if waited {
				h.stats.idemJoined.Add(1)
			} else {
				h.stats.idemReplayed.Add(1)
			}
			if o.Err != nil {
				return nil, o.Err
			}
			return o.Data, nil
		}
		// The first run goes on (on this node or another): poll.
		waited = true
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		wait = min(2*wait, 400*time.Millisecond)
	}
}
