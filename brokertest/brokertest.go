// Package brokertest checks that an [rthub.Broker] keeps the contract the hub
// relies on for delivery across nodes and for resume: fan-out to every node
// that subscribed a room, one order per room under concurrent publishers, exact
// history replay (no gap, no duplicate) with a seam between history and live
// delivery, epoch changes when a stream is lost, history limits and TTL,
// a message's metadata (Except, Header and Key) carried unchanged to live delivery
// and history and its limits enforced, unsubscribe, close and context
// cancellation; and, for a broker that implements [rthub.StateBroker], keyed
// latest state: latest per key, consistent with offsets, eviction by count,
// bytes and TTL, and lost with its stream; and, for a broker that implements
// [rthub.ControlBroker], the control plane: messages reach every live node
// and their answers come back, a silent node is reported missing, a closed
// node is not waited for, revocation records live for their TTL.
//
// A broker implementation runs it from a test:
//
//	func TestConformance(t *testing.T) {
//		brokertest.Run(t, func(t *testing.T) rthub.Broker {
//			return newNode(t, brokertest.History()) // a node of one shared cluster
//		})
//	}
//
// It imports only the standard library and rthub.
package brokertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
)

// NewBroker returns a new, unstarted node of the broker under test. Every node
// it returns, in any test, belongs to the same cluster: each sees the
// others' publications and history (the suite keeps its tests apart with
// unique room names). The node must be configured with [History] and, if it
// implements [rthub.StateBroker], with [State]. The suite
// starts each node and closes it before the test ends.
type NewBroker func(t *testing.T) rthub.Broker

// Timing of the history rules in [History]; the suite sleeps past them.
const (
	ttlHistory  = 300 * time.Millisecond // "ttl:**" history TTL
	metaTTL     = 400 * time.Millisecond // "meta:**" position TTL
	metaHistTTL = 200 * time.Millisecond // "meta:**" history TTL
)

// History returns the history policy the brokers under test must apply. Its
// rules give the suite rooms with small, short-lived or no history:
//
//	small:**  the last 3 publications, for a minute
//	ttl:**    10 publications, kept 300 ms after the last one; positions 10 s
//	meta:**   10 publications for 200 ms; positions expire 400 ms after use
//	none:**   no history
//	(others)  1000 publications for a minute; positions 10 minutes
func History() rthub.HistoryPolicy {
	return rthub.HistoryPolicy{
		Rules: []rthub.HistoryRule{
			{Pattern: "small:**", HistoryLimits: rthub.HistoryLimits{Size: 3, TTL: time.Minute}},
			{Pattern: "ttl:**", HistoryLimits: rthub.HistoryLimits{Size: 10, TTL: ttlHistory, MetaTTL: 10 * time.Second}},
			{Pattern: "meta:**", HistoryLimits: rthub.HistoryLimits{Size: 10, TTL: metaHistTTL, MetaTTL: metaTTL}},
			{Pattern: "none:**", HistoryLimits: rthub.HistoryLimits{Size: -1}},
		},
		Default: rthub.HistoryLimits{Size: 1000, TTL: time.Minute, MetaTTL: 10 * time.Minute},
	}
}

// Run runs the conformance tests as subtests of t.
func Run(t *testing.T, newBroker NewBroker) {
	s := &suite{newBroker: newBroker, run: randomID()}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"PublishAssignsPositions", s.publishAssignsPositions},
		{"PositionOfEmptyRoomIsStable", s.positionOfEmptyRoomIsStable},
		{"FanOutToSubscribedNodes", s.fanOut},
		{"OrderUnderConcurrentPublishers", s.order},
		{"DataIsOpaque", s.dataIsOpaque},
		{"MessageMetadata", s.metadata},
		{"MessageMetadataLimits", s.metadataLimits},
		{"ManyRoomsInOneCall", s.manyRooms},
		{"HistoryResume", s.historyResume},
		{"HistoryAgreesWithLive", s.historyAgreesWithLive},
		{"SubscribeThenPositionSeam", s.seam},
		{"HistorySizeLimit", s.sizeLimit},
		{"HistoryTTL", s.historyTTL},
		{"NoHistory", s.noHistory},
		{"EpochChangeWhenPositionExpires", s.epochChange},
		{"UnsubscribeStopsDelivery", s.unsubscribe},
		{"SubscribeIsIdempotent", s.subscribeIdempotent},
		{"Close", s.close},
		{"ContextCancelled", s.contextCancelled},
		{"BadRoom", s.badRoom},
		{"StartOnce", s.startOnce},
	} {
		t.Run(tc.name, tc.fn)
	}
	for _, tc := range s.stateCases() {
		t.Run(tc.name, tc.fn)
	}
	for _, tc := range s.controlCases() {
		t.Run(tc.name, tc.fn)
	}
	for _, tc := range s.idemCases() {
		t.Run(tc.name, tc.fn)
	}
	for _, tc := range s.relayCases() {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	newBroker NewBroker
	run       string       // unique per Run, so reruns against one backend never collide
	rooms     atomic.Int64 // room counter
}

// room returns a room name no other test uses, under kind ("small", "ttl", ...).
func (s *suite) room(kind string) string {
	return kind + ":bt" + s.run + ":" + strconv.FormatInt(s.rooms.Add(1), 10)
}

// node returns a started node with a recording handler, closed at the end of t.
func (s *suite) node(t *testing.T) (rthub.Broker, *Recorder) {
	t.Helper()
	b := s.newBroker(t)
	rec := NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Start(ctx, rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := rec.Err(); err != nil {
			t.Error(err)
		}
	})
	return b, rec
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func publish(t *testing.T, b rthub.Broker, room string, data string) rthub.StreamPosition {
	t.Helper()
	pos, err := b.Publish(ctx(t), room, rthub.Message{Data: []byte(data)})
	if err != nil {
		t.Fatalf("Publish(%q): %v", room, err)
	}
	return pos
}

func subscribe(t *testing.T, b rthub.Broker, rooms ...string) {
	t.Helper()
	if err := b.Subscribe(ctx(t), rooms...); err != nil {
		t.Fatalf("Subscribe(%q): %v", rooms, err)
	}
}

func position(t *testing.T, b rthub.Broker, room string) rthub.StreamPosition {
	t.Helper()
	pubs, pos, err := b.History(ctx(t), room, rthub.StreamPosition{}, 10)
	if err != nil || len(pubs) != 0 {
		t.Fatalf("History(%q, zero position) = %d publications, %v, %v; want none and no error", room, len(pubs), pos, err)
	}
	return pos
}

// history calls History and fails t on an error.
func history(t *testing.T, b rthub.Broker, room string, since rthub.StreamPosition, limit int) ([]rthub.Publication, rthub.StreamPosition) {
	t.Helper()
	pubs, pos, err := b.History(ctx(t), room, since, limit)
	if err != nil {
		t.Fatalf("History(%q, %v, %d): %v", room, since, limit, err)
	}
	return pubs, pos
}

// lost calls History, expecting an *UnrecoverableError, and returns it.
func lost(t *testing.T, b rthub.Broker, room string, since rthub.StreamPosition) *rthub.UnrecoverableError {
	t.Helper()
	pubs, pos, err := b.History(ctx(t), room, since, -1)
	var ue *rthub.UnrecoverableError
	if !errors.Is(err, rthub.ErrUnrecoverable) || !errors.As(err, &ue) {
		t.Fatalf("History(%q, %v) = %d publications, %v, %v; want an *UnrecoverableError", room, since, len(pubs), pos, err)
	}
	if len(pubs) != 0 {
		t.Errorf("History(%q, %v) returned %d publications with its error; want none", room, since, len(pubs))
	}
	if pos != ue.Current || ue.Since != since || ue.Room != room {
		t.Errorf("UnrecoverableError %+v does not match the call (room %q, since %v, position returned %v)", ue, room, since, pos)
	}
	return ue
}

// checkRun checks that pubs are offsets first, first+1, ... of epoch with the
// given data.
func checkRun(t *testing.T, what string, pubs []rthub.Publication, room, epoch string, first uint64, data []string) {
	t.Helper()
	if len(pubs) != len(data) {
		t.Fatalf("%s: got %d publications %v, want %d", what, len(pubs), offsets(pubs), len(data))
	}
	for i, p := range pubs {
		want := rthub.Publication{Room: room, Offset: first + uint64(i), Epoch: epoch, Message: rthub.Message{Data: []byte(data[i])}}
		if p.Room != want.Room || p.Offset != want.Offset || p.Epoch != want.Epoch || !bytes.Equal(p.Data, want.Data) {
			t.Fatalf("%s: publication %d = {%q %d %q %q}, want {%q %d %q %q}", what, i,
				p.Room, p.Offset, p.Epoch, p.Data, want.Room, want.Offset, want.Epoch, want.Data)
		}
		if p.Except != "" || p.Header != nil {
			t.Fatalf("%s: publication %d has Except %q and Header %v; published with none, want \"\" and nil", what, i, p.Except, p.Header)
		}
	}
}

func offsets(pubs []rthub.Publication) []uint64 {
	o := make([]uint64, len(pubs))
	for i, p := range pubs {
		o[i] = p.Offset
	}
	return o
}

func datas(prefix string, n int) []string {
	d := make([]string, n)
	for i := range d {
		d[i] = prefix + strconv.Itoa(i+1)
	}
	return d
}

func (s *suite) publishAssignsPositions(t *testing.T) {
	b, _ := s.node(t)
	room := s.room("pos")
	p1 := publish(t, b, room, "a")
	p2 := publish(t, b, room, "b")
	p3 := publish(t, b, room, "c")
	if p1.Offset != 1 || p2.Offset != 2 || p3.Offset != 3 {
		t.Fatalf("offsets %d %d %d, want 1 2 3", p1.Offset, p2.Offset, p3.Offset)
	}
	if p1.Epoch == "" || p1.Epoch != p2.Epoch || p2.Epoch != p3.Epoch {
		t.Fatalf("epochs %q %q %q, want one non-empty epoch", p1.Epoch, p2.Epoch, p3.Epoch)
	}
	if pos := position(t, b, room); pos != p3 {
		t.Fatalf("position %v, want %v", pos, p3)
	}
	other := publish(t, b, s.room("pos"), "x")
	if other.Offset != 1 {
		t.Fatalf("another room's first offset = %d, want 1 (offsets are per room)", other.Offset)
	}
}

func (s *suite) positionOfEmptyRoomIsStable(t *testing.T) {
	a, _ := s.node(t)
	b, _ := s.node(t)
	room := s.room("empty")
	p0 := position(t, a, room)
	if p0.Offset != 0 || p0.Epoch == "" {
		t.Fatalf("position of an empty room = %v, want offset 0 and an epoch", p0)
	}
	if p := position(t, b, room); p != p0 {
		t.Fatalf("position on another node = %v, want %v", p, p0)
	}
	p1 := publish(t, b, room, "first")
	if p1.Offset != 1 || p1.Epoch != p0.Epoch {
		t.Fatalf("first publication at %v, want offset 1 in the epoch given at join (%q)", p1, p0.Epoch)
	}
	pubs, _ := history(t, a, room, p0, -1)
	checkRun(t, "resume from the join position", pubs, room, p0.Epoch, 1, []string{"first"})
}

func (s *suite) fanOut(t *testing.T) {
	a, ra := s.node(t)
	b, rb := s.node(t)
	c, rc := s.node(t)
	d, rd := s.node(t)
	room, other := s.room("fan"), s.room("fan")
	subscribe(t, a, room)
	subscribe(t, b, room)
	subscribe(t, c, room, other)
	subscribe(t, d, other)
	var want []string
	for i, pub := range []rthub.Broker{a, b, c, d, a, d} {
		data := fmt.Sprintf("from-%d", i)
		publish(t, pub, room, data)
		want = append(want, data)
	}
	publish(t, b, other, "o")
	for name, r := range map[string]*Recorder{"a": ra, "b": rb, "c": rc} {
		pubs := r.Wait(t, room, len(want))
		checkRun(t, "node "+name, pubs, room, pubs[0].Epoch, 1, want)
	}
	rc.Wait(t, other, 1)
	rd.Wait(t, other, 1)
	time.Sleep(100 * time.Millisecond)
	if n := len(rd.Publications(room)); n != 0 {
		t.Errorf("node d, not subscribed to %s, got %d of its publications", room, n)
	}
	for name, r := range map[string]*Recorder{"a": ra, "b": rb, "c": rc, "d": rd} {
		if got := r.Count(); got != map[string]int{"a": 6, "b": 6, "c": 7, "d": 1}[name] {
			t.Errorf("node %s got %d publications in all", name, got)
		}
	}
}

func (s *suite) order(t *testing.T) {
	a, ra := s.node(t)
	b, rb := s.node(t)
	room := s.room("order")
	subscribe(t, a, room)
	subscribe(t, b, room)
	const publishers, each = 4, 50
	var wg sync.WaitGroup
	for p := range publishers {
		node := []rthub.Broker{a, b}[p%2]
		wg.Go(func() {
			for i := range each {
				if _, err := node.Publish(context.Background(), room, rthub.Message{Data: []byte(fmt.Sprintf("p%d-%d", p, i))}); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	const n = publishers * each
	pa := ra.Wait(t, room, n)
	pb := rb.Wait(t, room, n)
	hist, _ := history(t, a, room, rthub.StreamPosition{Offset: 0, Epoch: pa[0].Epoch}, -1)
	for i := range n {
		if pa[i].Offset != uint64(i+1) || pb[i].Offset != uint64(i+1) {
			t.Fatalf("delivery %d: offsets %d (a) and %d (b), want %d", i, pa[i].Offset, pb[i].Offset, i+1)
		}
		if !bytes.Equal(pa[i].Data, pb[i].Data) || !bytes.Equal(pa[i].Data, hist[i].Data) {
			t.Fatalf("offset %d: node a got %q, node b %q, history has %q; want one order everywhere", i+1, pa[i].Data, pb[i].Data, hist[i].Data)
		}
	}
	// Each publisher's own publications keep their order.
	last := map[byte]int{}
	for _, p := range pa {
		var pub, i int
		fmt.Sscanf(string(p.Data), "p%d-%d", &pub, &i)
		if prev, ok := last[byte(pub)]; ok && i != prev+1 {
			t.Fatalf("publisher %d: %d after %d", pub, i, prev)
		}
		last[byte(pub)] = i
	}
}

func (s *suite) dataIsOpaque(t *testing.T) {
	a, ra := s.node(t)
	b, _ := s.node(t)
	room := s.room("data")
	subscribe(t, a, room)
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789:abcdef\x00"), 64<<10/18)
	payloads := [][]byte{
		[]byte(`{"event":"sensor:data","data":{"t":21.5}}`),
		all,
		[]byte("1:2:3:colons:and\nnewlines\r\n"),
		{},
		big,
	}
	for _, p := range payloads {
		if _, err := b.Publish(ctx(t), room, rthub.Message{Data: p}); err != nil {
			t.Fatalf("Publish %d bytes: %v", len(p), err)
		}
	}
	live := ra.Wait(t, room, len(payloads))
	hist, _ := history(t, b, room, rthub.StreamPosition{Epoch: live[0].Epoch}, -1)
	if len(hist) != len(payloads) {
		t.Fatalf("history has %d publications, want %d", len(hist), len(payloads))
	}
	for i, p := range payloads {
		if !bytes.Equal(live[i].Data, p) {
			t.Errorf("payload %d (%d bytes) delivered as %d bytes, not the same", i, len(p), len(live[i].Data))
		}
		if !bytes.Equal(hist[i].Data, p) {
			t.Errorf("payload %d (%d bytes) in history as %d bytes, not the same", i, len(p), len(hist[i].Data))
		}
	}
}

// metadataMessages are messages with every kind of metadata: none, Except,
// Header, both, odd bytes everywhere, and metadata exactly at its limits.
func metadataMessages() []rthub.Message {
	full := make(map[string]string, rthub.MaxHeaderEntries)
	except := "c0ffee-42"
	left := rthub.MaxHeaderBytes - len(except)
	for i := range rthub.MaxHeaderEntries {
		k := fmt.Sprintf("key-%02d", i)
		v := strings.Repeat(string(rune('a'+i)), left/(rthub.MaxHeaderEntries-i)-len(k))
		left -= len(k) + len(v)
		full[k] = v
	}
	return []rthub.Message{
		{Data: []byte(`{"type":"event","event":"plain"}`)},
		{Data: []byte(`{"type":"event","event":"relayed"}`), Except: "0a1b2c3d-17"},
		{Data: []byte("traced"), Header: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
		{Data: []byte("both"), Except: "x", Header: map[string]string{"a": "1", "b": ""}},
		{Data: []byte("2:9:e:4:x1:y"), Except: "1:2:e:\x00\n", Header: map[string]string{
			"k:colon": "v:colon", "": "empty key", "bin": "\x00\xff\r\n\x1e", "ünï": "çødé", "k11:x": "v3:abc"}},
		{Data: nil, Except: "only-except"},
		{Data: []byte("empty header"), Header: map[string]string{}}, // delivered with a nil Header
		{Data: []byte("at the limits"), Except: except, Header: full},
	}
}

// checkMessages checks that pubs carry msgs (an empty Header as nil).
func checkMessages(t *testing.T, what string, pubs []rthub.Publication, msgs []rthub.Message) {
	t.Helper()
	if len(pubs) != len(msgs) {
		t.Fatalf("%s: %d publications, want %d", what, len(pubs), len(msgs))
	}
	for i, m := range msgs {
		p := pubs[i]
		if !bytes.Equal(p.Data, m.Data) || p.Except != m.Except {
			t.Errorf("%s: publication %d: Data %.40q Except %.40q, want %.40q %.40q", what, i, p.Data, p.Except, m.Data, m.Except)
		}
		switch {
		case len(m.Header) == 0 && p.Header != nil:
			t.Errorf("%s: publication %d: Header %q, want nil", what, i, p.Header)
		case !maps.Equal(p.Header, m.Header):
			t.Errorf("%s: publication %d: Header %.40q, want %.40q", what, i, p.Header, m.Header)
		}
	}
}

// metadata checks that Except and Header reach every subscribed node and
// History unchanged, whatever bytes they hold.
func (s *suite) metadata(t *testing.T) {
	a, ra := s.node(t)
	b, rb := s.node(t)
	room := s.room("msgmeta")
	subscribe(t, a, room)
	subscribe(t, b, room)
	msgs := metadataMessages()
	for i, m := range msgs {
		if err := m.Check(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if _, err := b.Publish(ctx(t), room, m); err != nil {
			t.Fatalf("Publish message %d: %v", i, err)
		}
	}
	live := ra.Wait(t, room, len(msgs))
	checkMessages(t, "live, another node", live, msgs)
	checkMessages(t, "live, the publisher's node", rb.Wait(t, room, len(msgs)), msgs)
	e := live[0].Epoch
	for name, n := range map[string]rthub.Broker{"publisher's node": b, "another node": a} {
		pubs, _ := history(t, n, room, rthub.StreamPosition{Epoch: e}, -1)
		checkMessages(t, "history, "+name, pubs, msgs)
	}
	pubs, _ := history(t, a, room, rthub.StreamPosition{Offset: 3, Epoch: e}, 2)
	checkMessages(t, "history since 3, limit 2", pubs, msgs[3:5])
}

// metadataLimits checks that a message over MaxHeaderEntries or
// MaxHeaderBytes is refused with ErrHeaderTooLarge and not published.
func (s *suite) metadataLimits(t *testing.T) {
	a, ra := s.node(t)
	room := s.room("limits")
	subscribe(t, a, room)
	many := make(map[string]string, rthub.MaxHeaderEntries+1)
	for i := range rthub.MaxHeaderEntries + 1 {
		many[strconv.Itoa(i)] = ""
	}
	half := strings.Repeat("h", rthub.MaxHeaderBytes/2)
	for _, tc := range []struct {
		name string
		msg  rthub.Message
	}{
		{"tooManyEntries", rthub.Message{Data: []byte("x"), Header: many}},
		{"valueTooLong", rthub.Message{Data: []byte("x"), Header: map[string]string{"k": strings.Repeat("v", rthub.MaxHeaderBytes)}}},
		{"keyTooLong", rthub.Message{Data: []byte("x"), Header: map[string]string{strings.Repeat("k", rthub.MaxHeaderBytes+1): ""}}},
		{"exceptTooLong", rthub.Message{Data: []byte("x"), Except: strings.Repeat("c", rthub.MaxHeaderBytes+1)}},
		{"exceptAndHeaderTooLong", rthub.Message{Data: []byte("x"), Except: half, Header: map[string]string{"k": half}}},
	} {
		if err := tc.msg.Check(); !errors.Is(err, rthub.ErrHeaderTooLarge) {
			t.Errorf("%s: Check() = %v, want ErrHeaderTooLarge", tc.name, err)
		}
		if pos, err := a.Publish(ctx(t), room, tc.msg); !errors.Is(err, rthub.ErrHeaderTooLarge) {
			t.Errorf("%s: Publish = %v, %v; want ErrHeaderTooLarge", tc.name, pos, err)
		}
	}
	if pos := position(t, a, room); pos.Offset != 0 {
		t.Fatalf("position %v after refused publishes, want offset 0 (nothing published)", pos)
	}
	publish(t, a, room, "ok")
	if pubs := ra.Wait(t, room, 1); string(pubs[0].Data) != "ok" || pubs[0].Offset != 1 {
		t.Fatalf("delivered %d@%s %q first, want the publication after the refused ones", pubs[0].Offset, pubs[0].Epoch, pubs[0].Data)
	}
}

func (s *suite) manyRooms(t *testing.T) {
	a, ra := s.node(t)
	b, _ := s.node(t)
	rooms := make([]string, 300)
	for i := range rooms {
		rooms[i] = s.room("many")
	}
	subscribe(t, a, rooms...)
	for _, r := range rooms {
		publish(t, b, r, r)
	}
	for _, r := range rooms {
		checkRun(t, r, ra.Wait(t, r, 1), r, ra.Publications(r)[0].Epoch, 1, []string{r})
	}
	if err := a.Unsubscribe(ctx(t), rooms...); err != nil {
		t.Fatalf("Unsubscribe 300 rooms: %v", err)
	}
	for _, r := range rooms[:10] {
		publish(t, b, r, "after")
	}
	time.Sleep(100 * time.Millisecond)
	if n := ra.Count(); n != len(rooms) {
		t.Fatalf("got %d publications, want %d (none after Unsubscribe)", n, len(rooms))
	}
}

func (s *suite) historyResume(t *testing.T) {
	a, _ := s.node(t)
	b, _ := s.node(t)
	room := s.room("resume")
	data := datas("m", 20)
	var last rthub.StreamPosition
	for _, d := range data {
		last = publish(t, a, room, d)
	}
	e := last.Epoch
	since := rthub.StreamPosition{Offset: 5, Epoch: e}
	for name, node := range map[string]rthub.Broker{"publisher's node": a, "another node": b} {
		pubs, pos := history(t, node, room, since, -1)
		if pos != last {
			t.Fatalf("%s: position %v, want %v", name, pos, last)
		}
		checkRun(t, name+": history since 5", pubs, room, e, 6, data[5:])
	}
	// Paging with a limit gives the same, with no gap and no duplicate.
	var got []rthub.Publication
	for pos := since; ; {
		pubs, cur := history(t, b, room, pos, 4)
		if len(pubs) > 4 {
			t.Fatalf("limit 4 returned %d publications", len(pubs))
		}
		if len(pubs) == 0 {
			if pos.Offset != cur.Offset {
				t.Fatalf("no publications after %v but the position is %v", pos, cur)
			}
			break
		}
		got = append(got, pubs...)
		pos = pubs[len(pubs)-1].Position()
	}
	checkRun(t, "paged history", got, room, e, 6, data[5:])
	if pubs, _ := history(t, a, room, last, -1); len(pubs) != 0 {
		t.Fatalf("history since the last position returned %d publications", len(pubs))
	}
	if pubs, _ := history(t, a, room, since, 0); len(pubs) != 0 {
		t.Fatalf("limit 0 returned %d publications", len(pubs))
	}
	all, _ := history(t, a, room, rthub.StreamPosition{Epoch: e}, -1)
	checkRun(t, "history since offset 0", all, room, e, 1, data)
}

func (s *suite) historyAgreesWithLive(t *testing.T) {
	a, ra := s.node(t)
	b, _ := s.node(t)
	room := s.room("agree")
	subscribe(t, a, room)
	for _, d := range datas("x", 30) {
		publish(t, b, room, d)
	}
	live := ra.Wait(t, room, 30)
	hist, _ := history(t, a, room, rthub.StreamPosition{Epoch: live[0].Epoch}, -1)
	checkRun(t, "history vs live", hist, room, live[0].Epoch, 1, datasOf(live))
}

func datasOf(pubs []rthub.Publication) []string {
	d := make([]string, len(pubs))
	for i, p := range pubs {
		d[i] = string(p.Data)
	}
	return d
}

// seam checks the hub's join sequence under load: Subscribe, then read the
// position; every publication after that position must arrive live.
func (s *suite) seam(t *testing.T) {
	pubNode, _ := s.node(t)
	room := s.room("seam")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var published atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := pubNode.Publish(context.Background(), room, rthub.Message{Data: []byte("s" + strconv.Itoa(i))}); err != nil {
				t.Errorf("Publish: %v", err)
				return
			}
			published.Add(1)
		}
	})
	for published.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	type joined struct {
		rec *Recorder
		pos rthub.StreamPosition
	}
	var joins []joined
	for range 3 {
		b, rec := s.node(t)
		subscribe(t, b, room)
		joins = append(joins, joined{rec, position(t, b, room)})
		time.Sleep(5 * time.Millisecond)
	}
	// Every join must see live publications after its position: on a loaded
	// machine the publisher may have passed 200 before the last join, and a
	// stop right after it would leave that join nothing to receive.
	for after := published.Load() + 20; published.Load() < max(200, after); {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	last := position(t, pubNode, room)
	for i, j := range joins {
		j.rec.WaitOffset(t, room, last.Offset)
		pubs := j.rec.Publications(room)
		k := slices.IndexFunc(pubs, func(p rthub.Publication) bool { return p.Offset == j.pos.Offset+1 })
		if k < 0 {
			t.Fatalf("join %d at %v: offset %d never delivered live (got %v...)", i, j.pos, j.pos.Offset+1, offsets(pubs[:min(len(pubs), 5)]))
		}
		for n, p := range pubs[k:] {
			if p.Offset != j.pos.Offset+1+uint64(n) {
				t.Fatalf("join %d: live offsets after the seam not contiguous: %v", i, offsets(pubs[k:]))
			}
		}
	}
}

func (s *suite) sizeLimit(t *testing.T) {
	b, _ := s.node(t)
	room := s.room("small")
	data := datas("s", 10)
	var last rthub.StreamPosition
	for _, d := range data {
		last = publish(t, b, room, d)
	}
	e := last.Epoch
	pubs, _ := history(t, b, room, rthub.StreamPosition{Offset: 7, Epoch: e}, -1)
	checkRun(t, "the last 3", pubs, room, e, 8, data[7:])
	ue := lost(t, b, room, rthub.StreamPosition{Offset: 6, Epoch: e})
	if ue.EpochChanged() || ue.Current != last {
		t.Errorf("one too far back: %v (EpochChanged %v), want the same epoch and position %v", ue, ue.EpochChanged(), last)
	}
	lost(t, b, room, rthub.StreamPosition{Offset: 0, Epoch: e})
	lost(t, b, room, rthub.StreamPosition{Offset: 11, Epoch: e}) // ahead of the stream
	if ue := lost(t, b, room, rthub.StreamPosition{Offset: 9, Epoch: "not-" + e}); !ue.EpochChanged() {
		t.Errorf("another epoch: EpochChanged() = false")
	}
	if pubs, _ := history(t, b, room, last, -1); len(pubs) != 0 {
		t.Errorf("since the last position: %d publications", len(pubs))
	}
}

func (s *suite) historyTTL(t *testing.T) {
	b, _ := s.node(t)
	room := s.room("ttl")
	publish(t, b, room, "1")
	publish(t, b, room, "2")
	last := publish(t, b, room, "3")
	since := rthub.StreamPosition{Offset: 1, Epoch: last.Epoch}
	pubs, _ := history(t, b, room, since, -1)
	checkRun(t, "before the TTL", pubs, room, last.Epoch, 2, []string{"2", "3"})
	time.Sleep(ttlHistory + 300*time.Millisecond)
	if ue := lost(t, b, room, since); ue.EpochChanged() || ue.Current != last {
		t.Errorf("after the TTL: %v; want the same position %v, history gone", ue, last)
	}
	if pubs, pos := history(t, b, room, last, -1); len(pubs) != 0 || pos != last {
		t.Errorf("after the TTL, since the last position: %d publications, position %v; want none at %v", len(pubs), pos, last)
	}
	next := publish(t, b, room, "4")
	if next.Offset != 4 || next.Epoch != last.Epoch {
		t.Errorf("next publication at %v, want offset 4 in the same epoch", next)
	}
	pubs, _ = history(t, b, room, last, -1)
	checkRun(t, "history restarts", pubs, room, last.Epoch, 4, []string{"4"})
}

func (s *suite) noHistory(t *testing.T) {
	a, ra := s.node(t)
	b, _ := s.node(t)
	room := s.room("none")
	subscribe(t, a, room)
	publish(t, b, room, "1")
	last := publish(t, b, room, "2")
	if last.Offset != 2 {
		t.Fatalf("offset %d, want 2: rooms without history still count", last.Offset)
	}
	checkRun(t, "live", ra.Wait(t, room, 2), room, last.Epoch, 1, []string{"1", "2"})
	lost(t, b, room, rthub.StreamPosition{Offset: 1, Epoch: last.Epoch})
	if pubs, _ := history(t, b, room, last, -1); len(pubs) != 0 {
		t.Fatalf("since the last position: %d publications", len(pubs))
	}
}

func (s *suite) epochChange(t *testing.T) {
	a, ra := s.node(t)
	b, _ := s.node(t)
	room := s.room("meta")
	subscribe(t, a, room)
	publish(t, b, room, "1")
	old := publish(t, b, room, "2")
	ra.Wait(t, room, 2)
	time.Sleep(metaTTL + 400*time.Millisecond) // the position expires: the stream is lost
	ue := lost(t, b, room, old)
	if !ue.EpochChanged() || ue.Current.Epoch == old.Epoch || ue.Current.Offset != 0 {
		t.Fatalf("after the stream was lost: %v (EpochChanged %v); want a new epoch at offset 0", ue, ue.EpochChanged())
	}
	next := publish(t, b, room, "new")
	if next.Offset != 1 || next.Epoch != ue.Current.Epoch {
		t.Fatalf("first publication of the new stream at %v, want 1@%s", next, ue.Current.Epoch)
	}
	pubs := ra.Wait(t, room, 3)
	if p := pubs[2]; p.Offset != 1 || p.Epoch != next.Epoch || string(p.Data) != "new" {
		t.Fatalf("live delivery of the new stream: %d@%s %q", p.Offset, p.Epoch, p.Data)
	}
	pubs, _ = history(t, a, room, ue.Current, -1)
	checkRun(t, "history of the new stream", pubs, room, next.Epoch, 1, []string{"new"})
}

func (s *suite) unsubscribe(t *testing.T) {
	a, ra := s.node(t)
	b, _ := s.node(t)
	room := s.room("unsub")
	subscribe(t, a, room)
	publish(t, b, room, "1")
	ra.Wait(t, room, 1)
	if err := a.Unsubscribe(ctx(t), room); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	publish(t, b, room, "2")
	time.Sleep(150 * time.Millisecond)
	if n := len(ra.Publications(room)); n != 1 {
		t.Fatalf("%d publications after Unsubscribe, want only the one before", n)
	}
	if err := a.Unsubscribe(ctx(t), room, s.room("unsub")); err != nil {
		t.Fatalf("Unsubscribe of rooms not subscribed: %v", err)
	}
	ra.Forgive(room) // the gap 1 → 3 is the unsubscribed time
	subscribe(t, a, room)
	publish(t, b, room, "3")
	pubs := ra.Wait(t, room, 2)
	if pubs[1].Offset != 3 || string(pubs[1].Data) != "3" {
		t.Fatalf("after subscribing again got %d@%s %q, want offset 3", pubs[1].Offset, pubs[1].Epoch, pubs[1].Data)
	}
}

func (s *suite) subscribeIdempotent(t *testing.T) {
	a, ra := s.node(t)
	room := s.room("idem")
	subscribe(t, a, room)
	subscribe(t, a, room, room)
	publish(t, a, room, "once")
	ra.Wait(t, room, 1)
	time.Sleep(100 * time.Millisecond)
	if n := len(ra.Publications(room)); n != 1 {
		t.Fatalf("subscribed three times, delivered %d times; want once", n)
	}
}

func (s *suite) close(t *testing.T) {
	a, ra := s.node(t)
	b, rb := s.node(t)
	room := s.room("close")
	subscribe(t, a, room)
	subscribe(t, b, room)
	publish(t, b, room, "1")
	ra.Wait(t, room, 1)
	c := ctx(t)
	if err := a.Close(c); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(c); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	publish(t, b, room, "2")
	rb.Wait(t, room, 2)
	time.Sleep(100 * time.Millisecond)
	if n := len(ra.Publications(room)); n != 1 {
		t.Fatalf("closed node's handler got %d publications, want 1 (none after Close)", n)
	}
	for name, err := range map[string]error{
		"Publish":     func() error { _, err := a.Publish(c, room, rthub.Message{Data: []byte("x")}); return err }(),
		"Subscribe":   a.Subscribe(c, room),
		"Unsubscribe": a.Unsubscribe(c, room),
		"History":     func() error { _, _, err := a.History(c, room, rthub.StreamPosition{}, 1); return err }(),
	} {
		if !errors.Is(err, rthub.ErrBrokerClosed) {
			t.Errorf("%s after Close: %v, want ErrBrokerClosed", name, err)
		}
	}
	if pos := position(t, b, room); pos.Offset != 2 {
		t.Errorf("other node's position %v after a node closed, want offset 2", pos)
	}
}

func (s *suite) contextCancelled(t *testing.T) {
	a, ra := s.node(t)
	room := s.room("ctx")
	subscribe(t, a, room)
	before := position(t, a, room)
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Publish(c, room, rthub.Message{Data: []byte("x")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled ctx: %v, want context.Canceled", err)
	}
	if err := a.Subscribe(c, s.room("ctx")); !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe with a cancelled ctx: %v, want context.Canceled", err)
	}
	if err := a.Unsubscribe(c, room); !errors.Is(err, context.Canceled) {
		t.Errorf("Unsubscribe with a cancelled ctx: %v, want context.Canceled", err)
	}
	if _, _, err := a.History(c, room, before, -1); !errors.Is(err, context.Canceled) {
		t.Errorf("History with a cancelled ctx: %v, want context.Canceled", err)
	}
	c, cancel = context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if _, err := a.Publish(c, room, rthub.Message{Data: []byte("x")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if pos := position(t, a, room); pos != before {
		t.Errorf("position %v after cancelled publishes, want %v (nothing published)", pos, before)
	}
	// The broker still works, and the room is still subscribed.
	publish(t, a, room, "ok")
	ra.Wait(t, room, 1)
}

func (s *suite) badRoom(t *testing.T) {
	a, _ := s.node(t)
	c := ctx(t)
	for _, room := range []string{"", "a::b", "{x}", ":lead"} {
		if _, err := a.Publish(c, room, rthub.Message{Data: []byte("x")}); !errors.Is(err, rthub.ErrBadRoom) {
			t.Errorf("Publish(%q): %v, want ErrBadRoom", room, err)
		}
		if err := a.Subscribe(c, room); !errors.Is(err, rthub.ErrBadRoom) {
			t.Errorf("Subscribe(%q): %v, want ErrBadRoom", room, err)
		}
		if _, _, err := a.History(c, room, rthub.StreamPosition{}, 0); !errors.Is(err, rthub.ErrBadRoom) {
			t.Errorf("History(%q): %v, want ErrBadRoom", room, err)
		}
	}
}

func (s *suite) startOnce(t *testing.T) {
	b := s.newBroker(t)
	c := ctx(t)
	t.Cleanup(func() { b.Close(context.Background()) })
	if err := b.Subscribe(c, s.room("start")); err == nil {
		t.Errorf("Subscribe before Start succeeded")
	}
	// Publish and History work without Start (a publisher-only process).
	room := s.room("start")
	if _, err := b.Publish(c, room, rthub.Message{Data: []byte("x")}); err != nil {
		t.Errorf("Publish before Start: %v", err)
	}
	if _, pos, err := b.History(c, room, rthub.StreamPosition{}, 0); err != nil || pos.Offset != 1 {
		t.Errorf("History before Start: %v, %v", pos, err)
	}
	rec := NewRecorder()
	if err := b.Start(c, rec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := b.Start(c, rec); err == nil {
		t.Errorf("second Start succeeded")
	}
}

func randomID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
