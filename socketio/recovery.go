package socketio

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/org/rthub"
)

// This file holds connection-state recovery: which position of each room
// a client has seen, told by the offset socket.io-client sends back, and
// the states kept between a transport's loss and the client's return.

// roomTrack is one room of a Socket.IO connection, as the client has seen
// it up to the oldest event of the tracker's log.
type roomTrack struct {
	name   string
	server bool                 // joined by the hub (auto-join): resumed through the handshake's since
	base   rthub.StreamPosition // position before the log's entries of this room
	known  bool                 // base is known (from a welcome, a join reply or an event)
}

// logEntry is one positioned event sent to the client; its sequence
// number is implicit (entries are consecutive after baseSeq), so an entry
// is 32 bytes (the epoch string is shared with the room's).
type logEntry struct {
	room *roomTrack
	pos  rthub.StreamPosition
}

// tracker follows what a connection sent its client: each event's
// sequence number (its offset, as the client sees it: tag.seq) and
// position, in a log bounded by RecoveryOptions.Log.
type tracker struct {
	tag     string // tells this tracker's offsets from another's
	user    string // the subject of the connection: a session is resumed only by the same subject
	seq     uint64 // the last event's
	baseSeq uint64 // the last entry dropped from the log (every room's base is as of it)
	rooms   map[string]*roomTrack
	log     []logEntry // ring, oldest at head
	head    int
	n       int
	max     int
}

func newTracker(max int) *tracker {
	return &tracker{tag: randomID(3), rooms: make(map[string]*roomTrack), max: max}
}

// join records a room the connection is in, at position p (if known).
func (t *tracker) join(name string, server bool, p *rthub.StreamPosition) {
	rt := t.rooms[name]
	if rt == nil {
		rt = &roomTrack{name: name}
		t.rooms[name] = rt
	}
	rt.server = rt.server || server
	if p != nil && !rt.known {
		rt.base, rt.known = *p, true
	}
}

func (t *tracker) leave(name string) { delete(t.rooms, name) }

// reset sets a room's position when its stream went on without the
// client (not resumed): what the client saw of it before no longer counts.
func (t *tracker) reset(name string, p rthub.StreamPosition) {
	if rt := t.rooms[name]; rt != nil {
		rt.base, rt.known = p, true
	}
}

// sent records an event of room name at position p going to the client and
// returns its offset for the client.
func (t *tracker) sent(name string, p rthub.StreamPosition) string {
	rt := t.rooms[name]
	if rt == nil { // an event of a room not tracked: the connection is in it all the same
		rt = &roomTrack{name: name}
		t.rooms[name] = rt
	}
	if rt.known && rt.base.Epoch == p.Epoch {
		p.Epoch = rt.base.Epoch // share the string
	}
	t.seq++
	if t.n == t.max {
		old := t.log[t.head]
		old.room.base, old.room.known = old.pos, true
		t.baseSeq++ // the dropped entry's
		t.log[t.head] = logEntry{}
		t.head = (t.head + 1) % t.max
		t.n--
	}
	if len(t.log) < t.max && t.n == len(t.log) {
		t.log = append(t.log, logEntry{}) // grows lazily; head is 0 until it is full
	}
	t.log[(t.head+t.n)%len(t.log)] = logEntry{room: rt, pos: p}
	t.n++
	return t.tag + "." + strconv.FormatUint(t.seq, 10)
}

// rewind sets the tracker to what the client saw by offset: each room's
// position after the last event it received. It returns false if it cannot
// tell (another tracker's offset, or events dropped from the log that the
// client had not received).
func (t *tracker) rewind(offset string) bool {
	var s uint64
	if offset != "" {
		tag, num, ok := strings.Cut(offset, ".")
		if !ok || tag != t.tag {
			return false
		}
		v, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return false
		}
		s = v
	}
	if s < t.baseSeq || s > t.seq {
		return false
	}
	for i := 0; i < t.n && t.baseSeq+1+uint64(i) <= s; i++ { // entry i is event baseSeq+1+i
		e := t.log[(t.head+i)%len(t.log)]
		e.room.base, e.room.known = e.pos, true
	}
	// The events after s never reached the client: their numbers are
	// given again, so that entries stay consecutive after baseSeq.
	clear(t.log)
	t.log, t.head, t.n, t.baseSeq, t.seq = t.log[:0], 0, 0, s, s
	return true
}

// since returns the positions of the server's rooms, for the hub
// handshake's since parameter (base64url JSON), and the client's rooms
// with positions, to join again. Rooms without a known position are left
// out (and so not recovered).
func (t *tracker) since() (param string, clientRooms map[string]rthub.StreamPosition, complete bool) {
	server := make(map[string]rthub.StreamPosition)
	clientRooms = make(map[string]rthub.StreamPosition)
	complete = true
	for name, rt := range t.rooms {
		switch {
		case !rt.known:
			complete = false
		case rt.server:
			server[name] = rt.base
		default:
			clientRooms[name] = rt.base
		}
	}
	if len(server) > 0 {
		b, _ := json.Marshal(server)
		param = base64.RawURLEncoding.EncodeToString(b)
	}
	return param, clientRooms, complete
}

// recoveryStore keeps the trackers of closed sessions by pid, for
// RecoveryOptions.Window, at most max of them (past it, the oldest is
// forgotten).
type recoveryStore struct {
	mu    sync.Mutex
	max   int
	byPID map[string]*kept
	order []*kept // oldest first; entries taken or expired are nil'd lazily
}

type kept struct {
	pid     string
	t       *tracker
	expires time.Time
	gone    bool
}

func newRecoveryStore(max int) *recoveryStore {
	return &recoveryStore{max: max, byPID: make(map[string]*kept)}
}

func (r *recoveryStore) put(pid string, t *tracker, expires time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.byPID[pid]; old != nil {
		old.gone = true
	}
	for len(r.byPID) >= r.max && len(r.order) > 0 {
		k := r.order[0]
		r.order = r.order[1:]
		if !k.gone {
			k.gone = true
			delete(r.byPID, k.pid)
		}
	}
	k := &kept{pid: pid, t: t, expires: expires}
	r.byPID[pid] = k
	r.order = append(r.order, k)
}

// take removes and returns pid's tracker; nil if none (never kept, taken,
// expired or forgotten).
func (r *recoveryStore) take(pid string, now time.Time) *tracker {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.byPID[pid]
	if k == nil {
		return nil
	}
	delete(r.byPID, pid)
	k.gone = true
	if now.After(k.expires) {
		return nil
	}
	return k.t
}

// expire forgets the states whose window has passed.
func (r *recoveryStore) expire(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := 0
	for ; i < len(r.order); i++ {
		k := r.order[i]
		if !k.gone && !now.After(k.expires) {
			break
		}
		if !k.gone {
			k.gone = true
			delete(r.byPID, k.pid)
		}
		r.order[i] = nil
	}
	r.order = r.order[i:]
	if cap(r.order) > 64 && len(r.order) < cap(r.order)/4 {
		r.order = append([]*kept(nil), r.order...)
	}
}

func (r *recoveryStore) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byPID)
}
