// Package statejoin is the join-with-state load check of issue #14, shared
// by the root tests (memory broker, one or two nodes) and redisbroker's
// (two nodes on Redis): clients join a room with state while keyed events
// are published to it at a steady rate; each client applies its snapshot and
// then the events after it, and must end with the publisher's final state,
// with no gap and no duplicate in what it applied after its snapshot.
//
// Every event of the room is "statejoin:reading" {"k":key,"v":n} published
// with state key k; n counts the publications of key k. Several publishers
// run at once, each owning a share of the keys, so the final value of a key
// is its owner's last. A client checks its stream by the events' offsets
// (the room is fresh: offsets run from 1 to the number published).
package statejoin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/client"
)

// Reading is the payload of the room's events.
type Reading struct {
	K string `json:"k"`
	V int    `json:"v"`
}

// Sensor is the event published.
var Sensor = rthub.NewEvent[Reading]("statejoin:reading")

// Config is one run.
type Config struct {
	Clients  int           // clients that join with state
	Rate     int           // events per second, across all keys
	Keys     int           // distinct state keys
	Duration time.Duration // how long events are published; clients join during the first half
	// Publishers is how many goroutines publish at once (default 8), each
	// at Rate/Publishers.
	Publishers int
	Room       string   // a fresh room (offsets start at 1)
	URLs       []string // hub WebSocket URLs; clients are spread over them
	Token      string   // a token that may join Room
	// Publish publishes r to Room with state key r.K.
	Publish func(ctx context.Context, r Reading) error
}

// FromEnv returns def with the sizes RTHUB_STATE_LOAD overrides, e.g.
// "clients=1000,rate=10000,keys=100,duration=10s".
func FromEnv(def Config) (Config, error) {
	v := os.Getenv("RTHUB_STATE_LOAD")
	if v == "" {
		return def, nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(kv), "=")
		var err error
		switch k {
		case "clients":
			def.Clients, err = strconv.Atoi(val)
		case "rate":
			def.Rate, err = strconv.Atoi(val)
		case "keys":
			def.Keys, err = strconv.Atoi(val)
		case "duration":
			def.Duration, err = time.ParseDuration(val)
		default:
			err = fmt.Errorf("unknown setting %q", k)
		}
		if err != nil {
			return def, fmt.Errorf("RTHUB_STATE_LOAD: %w", err)
		}
	}
	return def, nil
}

// Result is what a run measured.
type Result struct {
	Published  int           // events published
	Achieved   float64       // events per second actually published: Published over PubTime
	PubTime    time.Duration // how long publishing took (Duration, unless a publish blocked past it)
	Joined     int           // clients whose join with state succeeded
	Snapshots  int           // snapshots received: one per client, more after a reconnection (e.g. closed as a slow consumer) beyond history
	Applied    uint64        // events applied after snapshots, over all clients
	Gaps       int           // events applied whose number was above the last one + 1
	Duplicates int           // events applied whose number was not above the last one
	Wrong      int           // clients whose final view differs from the publisher's
	Late       int           // clients that had not caught up when the run ended
	JoinP50    time.Duration // join (dial + join with state) latency
	JoinMax    time.Duration
	Elapsed    time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("published %d in %v (%.0f/s), %d clients joined, %d snapshots, %d events applied after snapshots, "+
		"gaps %d, duplicates %d, wrong final views %d, late %d, join p50 %v max %v, %v",
		r.Published, r.PubTime.Round(time.Millisecond), r.Achieved, r.Joined, r.Snapshots, r.Applied, r.Gaps, r.Duplicates, r.Wrong, r.Late,
		r.JoinP50.Round(time.Millisecond), r.JoinMax.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond))
}

// OK reports whether every client ended with the publisher's state without
// a gap or a duplicate.
func (r Result) OK() bool {
	return r.Joined > 0 && r.Gaps == 0 && r.Duplicates == 0 && r.Wrong == 0 && r.Late == 0
}

// view is one client's state of the room.
type view struct {
	mu    sync.Mutex
	vals  map[string]int
	last  int // the number of the last event applied (or the snapshot's offset)
	ready bool
	snaps int
	app   uint64
	gaps  int
	dups  int
	bad   error
}

func (v *view) snapshot(s client.Snapshot) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.snaps++
	v.vals = make(map[string]int, len(s.Events))
	for _, e := range s.Events {
		var r Reading
		if err := json.Unmarshal(e.Data, &r); err != nil {
			v.bad = err
			return
		}
		v.vals[r.K] = r.V
	}
	v.last, v.ready = int(s.Position.Offset), true
}

func (v *view) event(e client.Event) {
	var r Reading
	err := json.Unmarshal(e.Data, &r)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err != nil || !v.ready {
		v.bad = fmt.Errorf("event before the snapshot, or undecodable: %v", err)
		return
	}
	off := int(e.Position.Offset)
	switch {
	case off <= v.last:
		v.dups++
		return
	case off > v.last+1:
		v.gaps++
	}
	v.app++
	v.vals[r.K], v.last = r.V, off
}

// Run runs cfg: it publishes for cfg.Duration while the clients join, waits
// (up to 30 s) for every client to have the last event, and compares.
func Run(ctx context.Context, cfg Config) (Result, error) {
	var res Result
	if cfg.Clients <= 0 || cfg.Rate <= 0 || cfg.Keys <= 0 || len(cfg.URLs) == 0 {
		return res, errors.New("statejoin: bad config")
	}
	start := time.Now()
	final := make(map[string]int, cfg.Keys)
	var published atomic.Int64
	pubCtx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	pubErr := make(chan error, 1)
	// pubTime is written before pubErr is sent.
	var pubTime time.Duration
	go func() { // owner: Run; waited for through pubErr
		err := publishAll(pubCtx, cfg, final, &published)
		pubTime = time.Since(start)
		pubErr <- err
	}()

	views := make([]*view, cfg.Clients)
	clients := make([]*client.Client, cfg.Clients)
	lat := make([]time.Duration, cfg.Clients)
	errs := make([]error, cfg.Clients)
	var wg sync.WaitGroup
	spread := cfg.Duration / 2
	for i := range cfg.Clients {
		v := &view{}
		views[i] = v
		delay := time.Duration(int64(spread) * int64(i) / int64(cfg.Clients))
		wg.Go(func() {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			t0 := time.Now()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, err := client.Dial(dctx, cfg.URLs[i%len(cfg.URLs)], client.Options{
				Token: cfg.Token, OnSnapshot: v.snapshot, Backoff: client.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
			})
			if err != nil {
				errs[i] = err
				return
			}
			clients[i] = c
			c.On(Sensor.Name(), v.event)
			// A client the hub closes as a slow consumer (4000) before the
			// reply reconnects by itself; its join is then asked again.
			snap, err := c.JoinState(dctx, cfg.Room)
			for try := 0; errors.Is(err, client.ErrDisconnected) && try < 20; try++ {
				snap, err = c.JoinState(dctx, cfg.Room)
			}
			if err == nil && !snap.Kept {
				err = errors.New("the server keeps no state for the room")
			}
			errs[i], lat[i] = err, time.Since(t0)
		})
	}
	wg.Wait()
	err := <-pubErr
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	res.Published, res.PubTime = int(published.Load()), pubTime
	res.Achieved = float64(res.Published) / pubTime.Seconds()
	if err != nil {
		return res, fmt.Errorf("statejoin: publishing: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("statejoin: joining: %w", err)
	}
	res.Joined = cfg.Clients
	deadline := time.Now().Add(30 * time.Second)
	for _, v := range views {
		for {
			v.mu.Lock()
			done := v.last >= res.Published
			v.mu.Unlock()
			if done || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	res.Elapsed = time.Since(start)
	for _, v := range views {
		v.mu.Lock()
		if v.bad != nil {
			err = v.bad
		}
		res.Snapshots += v.snaps
		res.Applied += v.app
		res.Gaps += v.gaps
		res.Duplicates += v.dups
		if v.last < res.Published {
			res.Late++
		} else if !equal(v.vals, final) {
			res.Wrong++
		}
		v.mu.Unlock()
	}
	slices.Sort(lat)
	res.JoinP50, res.JoinMax = lat[len(lat)/2], lat[len(lat)-1]
	return res, err
}

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// publishAll runs cfg.Publishers publishers for cfg.Duration, publisher p
// owning the keys i with i%Publishers == p, and records each key's final
// value in final.
func publishAll(ctx context.Context, cfg Config, final map[string]int, n *atomic.Int64) error {
	p := max(cfg.Publishers, 1)
	if cfg.Publishers == 0 {
		p = min(8, cfg.Keys)
	}
	finals := make([]map[string]int, p)
	errs := make([]error, p)
	var wg sync.WaitGroup
	for w := range p {
		finals[w] = map[string]int{}
		wg.Go(func() { errs[w] = publish(ctx, cfg, w, p, finals[w], n) })
	}
	wg.Wait()
	for _, f := range finals {
		for k, v := range f {
			final[k] = v
		}
	}
	return errors.Join(errs...)
}

// publish is publisher w of p: it publishes at cfg.Rate/p for cfg.Duration,
// cycling over its keys, pacing in 1 ms steps. A publisher behind its pace
// catches up, but not past cfg.Duration: a slow publish shows in the rate
// reached, not in a longer run.
func publish(ctx context.Context, cfg Config, w, p int, final map[string]int, n *atomic.Int64) error {
	var keys []string
	for i := w; i < cfg.Keys; i += p {
		keys = append(keys, "k"+strconv.Itoa(i))
	}
	rate := float64(cfg.Rate) / float64(p)
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	next := 1
	for {
		el := time.Since(start)
		if el >= cfg.Duration {
			return nil
		}
		due := int(el.Seconds()*rate) + 1
		for ; next <= due && time.Since(start) < cfg.Duration; next++ {
			k := keys[next%len(keys)]
			if err := cfg.Publish(ctx, Reading{K: k, V: next}); err != nil {
				return err
			}
			final[k] = next
			n.Add(1)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
