package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub/client"
	"github.com/org/rthub/token"
)

// SeqEvent is the event the drill publisher sends: Seq numbers the events of
// one room from 1, T is the publish time (Unix ns).
const SeqEvent = "drill:seq"

// SeqData is the payload of SeqEvent.
type SeqData struct {
	Seq int64  `json:"seq"`
	T   int64  `json:"t"`
	Pad string `json:"pad,omitempty"` // padding to a payload size (benchmark)
}

// Token signs an HS256 token for sub with roles, valid for a day.
func Token(secret []byte, sub string, roles ...string) (string, error) {
	return token.Sign(secret, token.Claims{Subject: sub, Roles: roles, TTL: 24 * time.Hour})
}

// roomLog is what one client received in one room, in arrival order.
type roomLog struct {
	seqs   []int64 // sequence numbers received
	resets []int   // for each reset (OnReset), len(seqs) when it came
}

// watcher is one client of the fleet, recording every event and reset and
// how long each of its outages lasted.
type watcher struct {
	id    int
	fleet *Fleet
	c     *client.Client

	mu      sync.Mutex
	rooms   map[string]*roomLog
	up      bool
	downAt  time.Time
	outages []outage
	lastErr error // why the last connection or attempt failed
	tries   int   // failed attempts in the current outage
}

// outage is one disconnection of a client: from the state Reconnecting to
// Connected again.
type outage struct {
	down time.Time
	dur  time.Duration
}

func (w *watcher) log(room string) *roomLog {
	l := w.rooms[room]
	if l == nil {
		l = &roomLog{}
		w.rooms[room] = l
	}
	return l
}

func (w *watcher) onEvent(ev client.Event) {
	var d SeqData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		w.fleet.bad.Add(1)
		return
	}
	w.mu.Lock()
	l := w.log(ev.Room)
	l.seqs = append(l.seqs, d.Seq)
	w.mu.Unlock()
}

func (w *watcher) onReset(room string) {
	w.mu.Lock()
	l := w.log(room)
	l.resets = append(l.resets, len(l.seqs))
	w.mu.Unlock()
}

func (w *watcher) onState(s client.State, err error) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.lastErr = err
	}
	switch s {
	case client.Connected:
		if !w.up {
			w.up = true
			w.fleet.connected.Add(1)
		}
		if !w.downAt.IsZero() {
			w.outages = append(w.outages, outage{down: w.downAt, dur: now.Sub(w.downAt)})
			w.downAt = time.Time{}
		}
		w.tries = 0
	case client.Reconnecting, client.Closed:
		if w.up {
			w.up = false
			w.fleet.connected.Add(-1)
			w.downAt = now
			w.fleet.drops.Add(1)
		} else {
			w.tries++
		}
	}
}

// last returns the highest sequence number received in room.
func (w *watcher) last(room string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var m int64
	if l := w.rooms[room]; l != nil {
		for _, s := range l.seqs {
			m = max(m, s)
		}
	}
	return m
}

// FleetOptions configures [Dial].
type FleetOptions struct {
	URL     string // WebSocket URL (the load balancer)
	Secret  []byte // token signing secret
	Clients int
	// Rooms is how many "room:<i>" rooms the clients join, client i joining
	// room:<i mod Rooms>; every client is also in "bcast" (automatically).
	Rooms int
	// Parallel is how many clients connect at once; default 50.
	Parallel int
}

// Fleet is the drill's clients.
type Fleet struct {
	opts      FleetOptions
	ws        []*watcher
	connected atomic.Int64 // clients in state Connected
	drops     atomic.Int64 // connections lost
	bad       atomic.Int64 // undecodable events
}

// RoomOf is the explicit room of client i.
func (o FleetOptions) RoomOf(i int) string { return fmt.Sprintf("room:%d", i%o.Rooms) }

// DialFleet connects the clients (through the load balancer) and waits
// until every one is connected with its rooms joined.
func DialFleet(ctx context.Context, opts FleetOptions) (*Fleet, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = 50
	}
	f := &Fleet{opts: opts, ws: make([]*watcher, opts.Clients)}
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	errs := make([]error, opts.Clients)
	for i := range f.ws {
		w := &watcher{id: i, fleet: f, rooms: make(map[string]*roomLog)}
		f.ws[i] = w
		sem <- struct{}{}
		wg.Go(func() { // owner: DialFleet; waited for below
			defer func() { <-sem }()
			sub := fmt.Sprintf("c%d", i)
			c, err := client.Dial(ctx, opts.URL, client.Options{
				TokenFunc: func(context.Context) (string, error) { return Token(opts.Secret, sub, "drill") },
				Rooms:     []string{opts.RoomOf(i)},
				OnState:   w.onState,
				OnReset:   w.onReset,
			})
			if err != nil {
				errs[i] = fmt.Errorf("client %d: %w", i, err)
				return
			}
			c.On(SeqEvent, w.onEvent)
			w.mu.Lock()
			w.c = c
			w.mu.Unlock()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Connected is the number of clients connected now.
func (f *Fleet) Connected() int { return int(f.connected.Load()) }

// Drops is the number of connections lost so far.
func (f *Fleet) Drops() int { return int(f.drops.Load()) }

// Close closes every client.
func (f *Fleet) Close() {
	var wg sync.WaitGroup
	for _, w := range f.ws {
		w.mu.Lock()
		c := w.c
		w.mu.Unlock()
		if c != nil {
			wg.Go(func() { c.Close() }) // owner: Close; waited for below
		}
	}
	wg.Wait()
}

// WaitAllConnected waits up to d until every client is connected. Its error
// describes a few of the clients still away.
func (f *Fleet) WaitAllConnected(ctx context.Context, d time.Duration) error {
	err := waitFor(ctx, d, "every client connected", func() bool { return f.Connected() == len(f.ws) })
	if err == nil {
		return nil
	}
	var away []string
	n := 0
	for _, w := range f.ws {
		w.mu.Lock()
		if !w.up {
			n++
			if len(away) < 5 {
				away = append(away, fmt.Sprintf("client %d away %v after %d failed attempts, last error: %v",
					w.id, time.Since(w.downAt).Round(time.Millisecond), w.tries, w.lastErr))
			}
		}
		w.mu.Unlock()
	}
	return fmt.Errorf("%w: %d clients away:\n%s", err, n, strings.Join(away, "\n"))
}

// WaitCaughtUp waits up to d until every client has received the last
// accepted publication of each of its rooms.
func (f *Fleet) WaitCaughtUp(ctx context.Context, d time.Duration, pub *Publisher) error {
	lastOf := pub.LastAccepted()
	return waitFor(ctx, d, "every client has the last event of its rooms", func() bool {
		for _, w := range f.ws {
			for _, room := range []string{BroadcastRoom, f.opts.RoomOf(w.id)} {
				if w.last(room) < lastOf[room] {
					return false
				}
			}
		}
		return true
	})
}
