package brokertest

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
)

// This file holds the conformance cases of keyed latest state
// ([rthub.StateBroker]); they are skipped for a broker without it.

// Limits of the state rules in [State]; the suite relies on them.
const (
	stateKeysMax  = 3                                        // "statekeys:**" MaxKeys
	stateBytesMax = 3 * (100 + 2 + rthub.StateEntryOverhead) // "statebytes:**": three 100-byte entries with 2-byte keys
	stateTTL      = 300 * time.Millisecond                   // "statettl:**" TTL
)

// State returns the state policy the brokers under test must apply (with
// [History]):
//
//	state:**       defaults (1000 keys, 256 KiB, 1 hour)
//	statekeys:**   at most 3 keys
//	statebytes:**  at most 3 × (100 + 2 + rthub.StateEntryOverhead) bytes
//	statettl:**    keys expire 300 ms after their last update
//	meta:**        defaults, capped by the 400 ms position TTL of History
//	(others)       no state
func State() rthub.StatePolicy {
	return rthub.StatePolicy{Rules: []rthub.StateRule{
		{Pattern: "state:**"},
		{Pattern: "statekeys:**", StateLimits: rthub.StateLimits{MaxKeys: stateKeysMax}},
		{Pattern: "statebytes:**", StateLimits: rthub.StateLimits{MaxBytes: stateBytesMax}},
		{Pattern: "statettl:**", StateLimits: rthub.StateLimits{TTL: stateTTL}},
		{Pattern: "meta:**"},
	}}
}

// stateCases are the state conformance cases, run by Run.
func (s *suite) stateCases() []struct {
	name string
	fn   func(t *testing.T)
} {
	return []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"StateLatestPerKey", s.stateLatestPerKey},
		{"StateConsistentWithOffsets", s.stateConsistent},
		{"StateMaxKeys", s.stateMaxKeys},
		{"StateMaxBytes", s.stateMaxBytes},
		{"StateTTL", s.stateTTL},
		{"StateNoRule", s.stateNoRule},
		{"StateGoesWithTheStream", s.stateEpoch},
		{"KeyRoundTrips", s.keyRoundTrips},
	}
}

// stateNode returns a started node as a StateBroker, or skips t.
func (s *suite) stateNode(t *testing.T) (rthub.StateBroker, rthub.Broker, *Recorder) {
	t.Helper()
	b, rec := s.node(t)
	sb, ok := rthub.BrokerAs[rthub.StateBroker](b)
	if !ok {
		t.Skipf("%T does not implement rthub.StateBroker", b)
	}
	return sb, b, rec
}

func publishKey(t *testing.T, b rthub.Broker, room, key, data string) rthub.StreamPosition {
	t.Helper()
	pos, err := b.Publish(ctx(t), room, rthub.Message{Data: []byte(data), Key: key})
	if err != nil {
		t.Fatalf("Publish(%q, key %q): %v", room, key, err)
	}
	return pos
}

func state(t *testing.T, b rthub.StateBroker, room string) ([]rthub.Publication, rthub.StreamPosition) {
	t.Helper()
	st, pos, err := b.State(ctx(t), room)
	if err != nil {
		t.Fatalf("State(%q): %v", room, err)
	}
	return st, pos
}

// describe renders entries as "key=data@offset ...".
func describe(st []rthub.Publication) string {
	var sb strings.Builder
	for i, p := range st {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(p.Key + "=" + string(p.Data) + "@" + strconv.FormatUint(p.Offset, 10))
	}
	return sb.String()
}

func checkState(t *testing.T, what string, st []rthub.Publication, room, epoch, want string) {
	t.Helper()
	if got := describe(st); got != want {
		t.Fatalf("%s: state %q, want %q", what, got, want)
	}
	for _, p := range st {
		if p.Room != room || p.Epoch != epoch {
			t.Fatalf("%s: entry %q is of room %q epoch %q, want %q %q", what, p.Key, p.Room, p.Epoch, room, epoch)
		}
	}
}

// stateLatestPerKey: the latest publication per key, oldest update first,
// unkeyed publications left out, the same on every node.
func (s *suite) stateLatestPerKey(t *testing.T) {
	a, ab, _ := s.stateNode(t)
	b, bb, _ := s.stateNode(t)
	room := s.room("state")
	st, pos := state(t, a, room)
	if len(st) != 0 || pos.Offset != 0 || pos.Epoch == "" {
		t.Fatalf("empty room: state %q at %v, want none at offset 0 of an epoch", describe(st), pos)
	}
	publishKey(t, ab, room, "a", "a1")
	publishKey(t, bb, room, "b", "b1")
	publishKey(t, ab, room, "a", "a2")
	publish(t, bb, room, "unkeyed")
	last := publishKey(t, ab, room, "c", "c1")
	if last.Epoch != pos.Epoch {
		t.Fatalf("epoch changed from %s to %s: State must fix an empty room's epoch", pos.Epoch, last.Epoch)
	}
	for name, n := range map[string]rthub.StateBroker{"publisher's node": a, "another node": b} {
		st, p := state(t, n, room)
		if p != last {
			t.Fatalf("%s: position %v, want %v", name, p, last)
		}
		checkState(t, name, st, room, last.Epoch, "b=b1@2 a=a2@3 c=c1@5")
	}
}

// stateConsistent: under concurrent publishers, every State read equals the
// latest publication per key among those up to its position (checked
// against History), and positions never go back.
func (s *suite) stateConsistent(t *testing.T) {
	a, ab, _ := s.stateNode(t)
	_, bb, _ := s.stateNode(t)
	room := s.room("state")
	const publishers, each, keys = 4, 100, 7
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for w := range publishers {
		n := ab
		if w%2 == 1 {
			n = bb
		}
		wg.Go(func() {
			for i := range each {
				k := "k" + strconv.Itoa((w*each+i)%keys)
				d := strconv.Itoa(w) + "-" + strconv.Itoa(i)
				if _, err := n.Publish(context.Background(), room, rthub.Message{Data: []byte(d), Key: k}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var reads [][]rthub.Publication
	var poss []rthub.StreamPosition
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		st, pos := state(t, a, room)
		reads, poss = append(reads, st), append(poss, pos)
	}
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	all, _ := history(t, ab, room, rthub.StreamPosition{Epoch: poss[0].Epoch}, -1)
	if len(all) != publishers*each {
		t.Fatalf("history has %d publications, want %d", len(all), publishers*each)
	}
	var prev uint64
	for i, st := range reads {
		pos := poss[i]
		if pos.Offset < prev {
			t.Fatalf("read %d: position %v went back from %d", i, pos, prev)
		}
		prev = pos.Offset
		latest := map[string]rthub.Publication{}
		for _, p := range all[:pos.Offset] {
			latest[p.Key] = p
		}
		if len(st) != len(latest) {
			t.Fatalf("read %d at %v: %d keys %q, want %d", i, pos, len(st), describe(st), len(latest))
		}
		var last uint64
		for _, p := range st {
			w := latest[p.Key]
			if p.Offset != w.Offset || !bytes.Equal(p.Data, w.Data) || p.Offset <= last {
				t.Fatalf("read %d at %v: entry %s=%s@%d, want %s@%d (entries in offset order)", i, pos, p.Key, p.Data, p.Offset, w.Data, w.Offset)
			}
			last = p.Offset
		}
	}
	t.Logf("%d consistent state reads under %d concurrent publishers", len(reads), publishers)
}

// stateMaxKeys: past MaxKeys, the key updated longest ago goes.
func (s *suite) stateMaxKeys(t *testing.T) {
	a, ab, _ := s.stateNode(t)
	room := s.room("statekeys")
	for i := 1; i <= 5; i++ {
		publishKey(t, ab, room, "k"+strconv.Itoa(i), "v"+strconv.Itoa(i))
	}
	st, pos := state(t, a, room)
	checkState(t, "after 5 keys", st, room, pos.Epoch, "k3=v3@3 k4=v4@4 k5=v5@5")
	publishKey(t, ab, room, "k3", "v6")
	publishKey(t, ab, room, "k7", "v7")
	st, _ = state(t, a, room)
	checkState(t, "after updating k3 and adding k7", st, room, pos.Epoch, "k5=v5@5 k3=v6@6 k7=v7@7")
}

// stateMaxBytes: past MaxBytes, the keys updated longest ago go; an entry
// alone over MaxBytes is not kept.
func (s *suite) stateMaxBytes(t *testing.T) {
	a, ab, _ := s.stateNode(t)
	room := s.room("statebytes")
	d := func(c string) string { return strings.Repeat(c, 100) }
	for i, c := range []string{"a", "b", "c", "d"} {
		publishKey(t, ab, room, "k"+strconv.Itoa(i), d(c))
	}
	st, pos := state(t, a, room)
	want := "k1=" + d("b") + "@2 k2=" + d("c") + "@3 k3=" + d("d") + "@4"
	checkState(t, "after 4 entries of which 3 fit", st, room, pos.Epoch, want)
	publishKey(t, ab, room, "k1", d("e")+"x") // one byte more: k2 must go
	st, _ = state(t, a, room)
	checkState(t, "after a larger update", st, room, pos.Epoch, "k3="+d("d")+"@4 k1="+d("e")+"x@5")
	publishKey(t, ab, room, "kk", strings.Repeat("z", stateBytesMax))
	st, _ = state(t, a, room)
	checkState(t, "after an entry over MaxBytes alone", st, room, pos.Epoch, "")
}

// stateTTL: a key not updated for its TTL is gone. The check needs the state
// read to come within the TTL of the last update; on a machine so loaded that
// it does not, the attempt is inconclusive and runs again on a new room.
func (s *suite) stateTTL(t *testing.T) {
	a, ab, _ := s.stateNode(t)
	for attempt := 1; ; attempt++ {
		room := s.room("statettl")
		publishKey(t, ab, room, "old", "1")
		publishKey(t, ab, room, "kept", "2")
		time.Sleep(stateTTL * 2 / 3)
		updated := time.Now()
		publishKey(t, ab, room, "kept", "3")
		time.Sleep(stateTTL*2/3 + 50*time.Millisecond)
		st, pos := state(t, a, room)
		if late := time.Since(updated); late >= stateTTL-20*time.Millisecond {
			if attempt < 5 {
				t.Logf("attempt %d inconclusive: the state read came %v after the last update (TTL %v)", attempt, late, stateTTL)
				continue
			}
			t.Fatalf("%d attempts: the state read never came within the TTL (%v) of the last update", attempt, stateTTL)
		}
		checkState(t, "after the TTL of the first two updates", st, room, pos.Epoch, "kept=3@3")
		time.Sleep(stateTTL)
		st, pos = state(t, a, room)
		checkState(t, "after every TTL", st, room, pos.Epoch, "")
		if pos.Offset != 3 {
			t.Fatalf("position %v: expiring state must not move the stream", pos)
		}
		return
	}
}

// stateNoRule: a room no rule covers answers ErrNoState, with its position,
// and keyed publications to it are still delivered and kept in history.
func (s *suite) stateNoRule(t *testing.T) {
	a, ab, ra := s.stateNode(t)
	room := s.room("plain")
	subscribe(t, ab, room)
	last := publishKey(t, ab, room, "k", "1")
	st, pos, err := a.State(ctx(t), room)
	if !errors.Is(err, rthub.ErrNoState) || len(st) != 0 || pos != last {
		t.Fatalf("State of a room without a rule = %q, %v, %v; want none, %v, ErrNoState", describe(st), pos, err, last)
	}
	if p := ra.Wait(t, room, 1)[0]; p.Key != "k" {
		t.Fatalf("live publication has Key %q, want k", p.Key)
	}
}

// stateEpoch: when a room's stream is lost (its position expired), its state
// goes with it.
func (s *suite) stateEpoch(t *testing.T) {
	a, ab, _ := s.stateNode(t)
	room := s.room("meta")
	old := publishKey(t, ab, room, "k", "old")
	time.Sleep(metaTTL + 400*time.Millisecond)
	st, pos := state(t, a, room)
	if pos.Epoch == old.Epoch || pos.Offset != 0 || len(st) != 0 {
		t.Fatalf("after the stream was lost: state %q at %v; want none at offset 0 of a new epoch", describe(st), pos)
	}
	next := publishKey(t, ab, room, "k", "new")
	st, pos = state(t, a, room)
	checkState(t, "new stream", st, room, next.Epoch, "k=new@1")
	if pos != next {
		t.Fatalf("position %v, want %v", pos, next)
	}
}

// keyRoundTrips: Key reaches live delivery and History unchanged, with the
// other metadata, at its limits.
func (s *suite) keyRoundTrips(t *testing.T) {
	a, ra := s.node(t)
	b, _ := s.node(t)
	room := s.room("msgkey")
	subscribe(t, a, room)
	long := strings.Repeat("~", rthub.MaxKeyLen)
	msgs := []rthub.Message{
		{Data: []byte("keyed"), Key: "device:7/temp"},
		{Data: []byte("all"), Key: "k:1 2", Except: "c1", Header: map[string]string{"traceparent": "x"}},
		{Data: []byte("longest"), Key: long, Except: strings.Repeat("e", rthub.MaxHeaderBytes-len(long))},
		{Data: []byte("none")},
	}
	for i, m := range msgs {
		if _, err := b.Publish(ctx(t), room, m); err != nil {
			t.Fatalf("Publish message %d: %v", i, err)
		}
	}
	over := rthub.Message{Data: []byte("over"), Key: long, Except: strings.Repeat("e", rthub.MaxHeaderBytes-len(long)+1)}
	if _, err := b.Publish(ctx(t), room, over); !errors.Is(err, rthub.ErrHeaderTooLarge) {
		t.Fatalf("Publish with Key and Except one byte over MaxHeaderBytes: %v, want ErrHeaderTooLarge", err)
	}
	check := func(what string, pubs []rthub.Publication) {
		t.Helper()
		checkMessages(t, what, pubs, msgs)
		for i, p := range pubs {
			if p.Key != msgs[i].Key {
				t.Errorf("%s: publication %d: Key %.40q, want %.40q", what, i, p.Key, msgs[i].Key)
			}
		}
	}
	live := ra.Wait(t, room, len(msgs))
	check("live", live)
	pubs, _ := history(t, a, room, rthub.StreamPosition{Epoch: live[0].Epoch}, -1)
	check("history", pubs)
}
