package drill

import (
	"slices"
	"time"
)

// Counts is what the clients received, checked against what was published.
type Counts struct {
	Clients    int   // clients checked
	Events     int   // publications accepted (all rooms)
	Deliveries int64 // publications the clients should have had: one per client and accepted publication of its rooms
	Received   int64 // events the clients' handlers got
	Lost       int64 // publications a client neither received nor was told it missed (silent loss)
	Reported   int64 // publications a client missed and was told so (covered by a reset)
	Dup        int64 // events received more than once
	OutOfOrder int64 // events received after one with a higher number
	Resets     int64 // resets reported to clients (OnReset: recovered:false or a reset message)
	Stuck      int   // client rooms whose last accepted publication never arrived (a hang: delivery did not resume)

	Drops      int             // connections lost
	Reconnects []time.Duration // each outage, from losing the connection to connected again with the rooms joined
}

// P returns the q-quantile of the reconnect times (0 if none).
func (c Counts) P(q float64) time.Duration {
	if len(c.Reconnects) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(c.Reconnects))
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Max returns the longest reconnect time.
func (c Counts) Max() time.Duration {
	if len(c.Reconnects) == 0 {
		return 0
	}
	return slices.Max(c.Reconnects)
}

// Check compares what every client received with what was accepted.
func (f *Fleet) Check(accepted map[string][]int64) Counts {
	var c Counts
	c.Clients = len(f.ws)
	for _, s := range accepted {
		c.Events += len(s)
	}
	c.Drops = f.Drops()
	for _, w := range f.ws {
		w.mu.Lock()
		for _, room := range []string{BroadcastRoom, f.opts.RoomOf(w.id)} {
			l := w.rooms[room]
			if l == nil {
				l = &roomLog{}
			}
			checkRoom(&c, accepted[room], l)
		}
		for _, o := range w.outages {
			c.Reconnects = append(c.Reconnects, o.dur)
		}
		w.mu.Unlock()
	}
	return c
}

// checkRoom adds one client's room to c. want is ascending.
func checkRoom(c *Counts, want []int64, l *roomLog) {
	c.Deliveries += int64(len(want))
	c.Received += int64(len(l.seqs))
	c.Resets += int64(len(l.resets))

	seen := make(map[int64]bool, len(l.seqs))
	var hi int64
	for _, s := range l.seqs {
		switch {
		case seen[s]:
			c.Dup++
		case s < hi:
			c.OutOfOrder++
		}
		seen[s] = true
		hi = max(hi, s)
	}

	// A reset tells the client it may have missed what came between the last
	// event before it and the first event after it.
	type span struct{ lo, hi int64 } // exclusive bounds
	var covered []span
	for _, at := range l.resets {
		var lo int64
		for _, s := range l.seqs[:at] {
			lo = max(lo, s)
		}
		hiSeq := int64(1<<62 - 1)
		if at < len(l.seqs) {
			hiSeq = l.seqs[at]
		}
		covered = append(covered, span{lo, hiSeq})
	}
	for _, s := range want {
		if seen[s] {
			continue
		}
		if slices.ContainsFunc(covered, func(sp span) bool { return s > sp.lo && s < sp.hi }) {
			c.Reported++
		} else {
			c.Lost++
		}
	}

	// The last publication must arrive, reset or not: otherwise delivery did
	// not resume.
	if len(want) > 0 && !seen[want[len(want)-1]] {
		c.Stuck++
	}
}
