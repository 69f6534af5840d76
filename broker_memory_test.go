package rthub_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/brokertest"
)

func newMemory(t *testing.T, opts rthub.MemoryBrokerOptions) *rthub.MemoryBroker {
	t.Helper()
	b, err := rthub.NewMemoryBroker(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMemoryBrokerConformance(t *testing.T) {
	t.Parallel()
	first := newMemory(t, rthub.MemoryBrokerOptions{History: brokertest.History(), State: brokertest.State()})
	brokertest.Run(t, func(t *testing.T) rthub.Broker { return first.Peer() })
}

// handlerFunc adapts a function to rthub.BrokerHandler.
type handlerFunc func(rthub.Publication)

func (f handlerFunc) HandlePublication(p rthub.Publication) { f(p) }
func (f handlerFunc) HandleResync([]string)                 {}

func start(t *testing.T, b rthub.Broker, h rthub.BrokerHandler) {
	t.Helper()
	if err := b.Start(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
}

// A publish waits for its turn behind a slow delivery only as long as its ctx
// allows, and a Close waits for the handler call in flight.
func TestMemoryBrokerSlowHandler(t *testing.T) {
	t.Parallel()
	b := newMemory(t, rthub.MemoryBrokerOptions{})
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	start(t, b, handlerFunc(func(rthub.Publication) {
		once.Do(func() { close(entered); <-release })
	}))
	ctx := context.Background()
	if err := b.Subscribe(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	published := make(chan error, 1)
	go func() { _, err := b.Publish(ctx, "slow", rthub.Message{Data: []byte("1")}); published <- err }()
	<-entered

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := b.Publish(short, "slow", rthub.Message{Data: []byte("2")}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish behind a blocked handler: %v, want DeadlineExceeded", err)
	}
	// Rooms of other shards (63 in 64 of them) are not held up.
	free := 0
	for i := range 5 {
		c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		if _, err := b.Publish(c, "other:"+strconv.Itoa(i), rthub.Message{Data: []byte("x")}); err == nil {
			free++
		}
		cancel()
	}
	if free == 0 {
		t.Fatalf("no room could be published to while one handler call was blocked")
	}
	closeShort, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := b.Close(closeShort); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close while a handler call is in flight: %v, want DeadlineExceeded", err)
	}
	close(release)
	if err := <-published; err != nil {
		t.Fatalf("first Publish: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close after the handler returned: %v", err)
	}
}

// Expired history and positions are freed by the sweeper, not only hidden.
func TestMemoryBrokerSweep(t *testing.T) {
	t.Parallel()
	b := newMemory(t, rthub.MemoryBrokerOptions{
		History:       rthub.HistoryPolicy{Default: rthub.HistoryLimits{TTL: 20 * time.Millisecond, MetaTTL: 60 * time.Millisecond}},
		SweepInterval: 10 * time.Millisecond,
	})
	start(t, b, handlerFunc(func(rthub.Publication) {}))
	ctx := context.Background()
	for i := range 100 {
		if _, err := b.Publish(ctx, "r"+strconv.Itoa(i), rthub.Message{Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if got := rthub.MemoryBrokerRooms(b); got != 100 {
		t.Fatalf("%d rooms, want 100", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rthub.MemoryBrokerRooms(b) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d rooms left 5 s after their positions expired", rthub.MemoryBrokerRooms(b))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The ring keeps exactly the last Size publications, whatever the sizes and
// the number published, checked against a plain slice.
func TestMemoryBrokerRing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, 2, 3, 7, 64} {
		b := newMemory(t, rthub.MemoryBrokerOptions{History: rthub.HistoryPolicy{Default: rthub.HistoryLimits{Size: size}}})
		var all []string
		var epoch string
		for n := 1; n <= 3*size+5; n++ {
			d := strconv.Itoa(rng.IntN(1 << 20))
			pos, err := b.Publish(ctx, "ring", rthub.Message{Data: []byte(d)})
			if err != nil {
				t.Fatal(err)
			}
			all, epoch = append(all, d), pos.Epoch
			for since := max(0, n-size); since <= n; since++ {
				for _, limit := range []int{-1, 0, 1, size} {
					pubs, _, err := b.History(ctx, "ring", rthub.StreamPosition{Offset: uint64(since), Epoch: epoch}, limit)
					if err != nil {
						t.Fatalf("size %d, %d published, since %d: %v", size, n, since, err)
					}
					want := all[since:]
					if limit >= 0 && limit < len(want) {
						want = want[:limit]
					}
					if len(pubs) != len(want) {
						t.Fatalf("size %d, %d published, since %d, limit %d: %d publications, want %d", size, n, since, limit, len(pubs), len(want))
					}
					for i, p := range pubs {
						if string(p.Data) != want[i] || p.Offset != uint64(since+1+i) {
							t.Fatalf("size %d, since %d: publication %d = %d %q, want %d %q", size, since, i, p.Offset, p.Data, since+1+i, want[i])
						}
					}
				}
			}
			if n > size {
				if _, _, err := b.History(ctx, "ring", rthub.StreamPosition{Offset: uint64(n - size - 1), Epoch: epoch}, -1); !errors.Is(err, rthub.ErrUnrecoverable) {
					t.Fatalf("size %d, %d published, since %d: %v, want ErrUnrecoverable", size, n, n-size-1, err)
				}
			}
		}
		b.Close(ctx)
	}
}

func TestMemoryBrokerPeersAreIndependent(t *testing.T) {
	t.Parallel()
	a := newMemory(t, rthub.MemoryBrokerOptions{})
	b := a.Peer()
	var got []string
	var mu sync.Mutex
	start(t, b, handlerFunc(func(p rthub.Publication) { mu.Lock(); got = append(got, string(p.Data)); mu.Unlock() }))
	ctx := context.Background()
	if err := b.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, "room", rthub.Message{Data: []byte("still")}); err != nil {
		t.Fatalf("peer after the first node closed: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "still" {
		t.Fatalf("got %q", got)
	}
}

func TestMemoryBrokerOptionsInvalid(t *testing.T) {
	t.Parallel()
	_, err := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{History: rthub.HistoryPolicy{
		Rules: []rthub.HistoryRule{{Pattern: "a::b"}},
	}})
	if !errors.Is(err, rthub.ErrInvalidOptions) {
		t.Fatalf("NewMemoryBroker with a bad pattern: %v, want ErrInvalidOptions", err)
	}
}

func TestBrokerHistoryPolicyValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy rthub.HistoryPolicy
		errs   []string // substrings of the error; none means valid
	}{
		{"zero", rthub.HistoryPolicy{}, nil},
		{"rules", rthub.HistoryPolicy{Rules: []rthub.HistoryRule{{Pattern: "device:*"}, {Pattern: "a:**", HistoryLimits: rthub.HistoryLimits{Size: -1}}}}, nil},
		{"bad pattern", rthub.HistoryPolicy{Rules: []rthub.HistoryRule{{Pattern: "dev*"}}}, []string{`rule 0 ("dev*")`}},
		{"sub", rthub.HistoryPolicy{Rules: []rthub.HistoryRule{{Pattern: "user:{sub}"}}}, []string{"{sub}"}},
		{"negative", rthub.HistoryPolicy{Default: rthub.HistoryLimits{TTL: -1, MetaTTL: -2}}, []string{"negative TTL", "negative MetaTTL"}},
		{"all listed", rthub.HistoryPolicy{Rules: []rthub.HistoryRule{{Pattern: ""}, {Pattern: "x", HistoryLimits: rthub.HistoryLimits{TTL: -time.Second}}}},
			[]string{"rule 0", "rule 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Validate()
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, rthub.ErrInvalidOptions) {
				t.Fatalf("Validate: %v, want ErrInvalidOptions", err)
			}
			for _, s := range tt.errs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestBrokerHistoryPolicyLimits(t *testing.T) {
	t.Parallel()
	p := rthub.HistoryPolicy{
		Rules: []rthub.HistoryRule{
			{Pattern: "device:*", HistoryLimits: rthub.HistoryLimits{Size: 10, TTL: time.Second}},
			{Pattern: "device:**", HistoryLimits: rthub.HistoryLimits{Size: 20}},
			{Pattern: "chat:*", HistoryLimits: rthub.HistoryLimits{Size: -1, MetaTTL: time.Minute}},
			{Pattern: "long:*", HistoryLimits: rthub.HistoryLimits{TTL: 48 * time.Hour}},
		},
		Default: rthub.HistoryLimits{Size: 5},
	}
	d := rthub.DefaultHistoryTTL
	m := rthub.DefaultHistoryMetaTTL
	tests := []struct {
		room string
		want rthub.HistoryLimits
	}{
		{"device:42", rthub.HistoryLimits{Size: 10, TTL: time.Second, MetaTTL: m}},               // first match wins
		{"device:42:temp", rthub.HistoryLimits{Size: 20, TTL: d, MetaTTL: m}},                    // second rule
		{"chat:1", rthub.HistoryLimits{Size: 0, TTL: d, MetaTTL: d}},                             // no history; MetaTTL raised to TTL
		{"long:1", rthub.HistoryLimits{Size: 100, TTL: 48 * time.Hour, MetaTTL: 48 * time.Hour}}, // MetaTTL ≥ TTL
		{"other", rthub.HistoryLimits{Size: 5, TTL: d, MetaTTL: m}},                              // Default
	}
	for _, tt := range tests {
		if got := p.Limits(tt.room); got != tt.want {
			t.Errorf("Limits(%q) = %+v, want %+v", tt.room, got, tt.want)
		}
	}
	if got, want := (rthub.HistoryPolicy{}).Limits("x"), (rthub.HistoryLimits{Size: 100, TTL: d, MetaTTL: m}); got != want {
		t.Errorf("zero policy: %+v, want %+v", got, want)
	}
}

func TestBrokerCheckHistory(t *testing.T) {
	t.Parallel()
	cur := rthub.StreamPosition{Offset: 10, Epoch: "e"}
	tests := []struct {
		name  string
		since rthub.StreamPosition
		size  int
		first uint64
		lost  bool
		epoch bool
	}{
		{"up to date", rthub.StreamPosition{Offset: 10, Epoch: "e"}, 5, 0, false, false},
		{"up to date, no history", rthub.StreamPosition{Offset: 10, Epoch: "e"}, 0, 0, false, false},
		{"in window", rthub.StreamPosition{Offset: 7, Epoch: "e"}, 5, 8, false, false},
		{"window edge", rthub.StreamPosition{Offset: 5, Epoch: "e"}, 5, 6, false, false},
		{"one past the size", rthub.StreamPosition{Offset: 4, Epoch: "e"}, 5, 5, true, false},
		{"trimmed below size", rthub.StreamPosition{Offset: 7, Epoch: "e"}, 5, 9, true, false},
		{"history expired", rthub.StreamPosition{Offset: 7, Epoch: "e"}, 5, 0, true, false},
		{"ahead", rthub.StreamPosition{Offset: 11, Epoch: "e"}, 5, 0, true, false},
		{"other epoch", rthub.StreamPosition{Offset: 10, Epoch: "f"}, 5, 0, true, true},
	}
	for _, tt := range tests {
		err := rthub.CheckHistory("r", tt.since, cur, tt.size, tt.first)
		var ue *rthub.UnrecoverableError
		if got := errors.As(err, &ue); got != tt.lost || errors.Is(err, rthub.ErrUnrecoverable) != tt.lost {
			t.Errorf("%s: %v, want lost=%v", tt.name, err, tt.lost)
			continue
		}
		if tt.lost && (ue.EpochChanged() != tt.epoch || ue.Since != tt.since || ue.Current != cur) {
			t.Errorf("%s: %+v (EpochChanged %v)", tt.name, ue, ue.EpochChanged())
		}
	}
}

func TestBrokerUnrecoverableErrorText(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		e    rthub.UnrecoverableError
		want string
	}{
		{rthub.UnrecoverableError{Room: "r", Since: rthub.StreamPosition{Offset: 1, Epoch: "a"}, Current: rthub.StreamPosition{Offset: 0, Epoch: "b"}},
			`rthub: room "r": position 1@a not recoverable (now 0@b): epoch changed`},
		{rthub.UnrecoverableError{Room: "r", Since: rthub.StreamPosition{Offset: 1, Epoch: "a"}, Current: rthub.StreamPosition{Offset: 9, Epoch: "a"}},
			`rthub: room "r": position 1@a not recoverable (now 9@a): publications after it no longer in history`},
		{rthub.UnrecoverableError{Room: "r", Since: rthub.StreamPosition{Offset: 10, Epoch: "a"}, Current: rthub.StreamPosition{Offset: 9, Epoch: "a"}},
			`rthub: room "r": position 10@a not recoverable (now 9@a): position ahead of the stream`},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

// BenchmarkMemoryBrokerPublish measures a publish delivered to 3 nodes'
// handlers, from parallel publishers on 100 rooms.
func BenchmarkMemoryBrokerPublish(b *testing.B) {
	first, _ := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{})
	ctx := context.Background()
	rooms := make([]string, 100)
	for i := range rooms {
		rooms[i] = "device:" + strconv.Itoa(i)
	}
	for _, n := range []rthub.Broker{first, first.Peer(), first.Peer()} {
		n.Start(ctx, handlerFunc(func(rthub.Publication) {}))
		n.Subscribe(ctx, rooms...)
		defer n.Close(ctx)
	}
	data := []byte(`{"event":"sensor:data","data":{"t":21.5,"h":40}}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			first.Publish(ctx, rooms[i%len(rooms)], rthub.Message{Data: data})
			i++
		}
	})
}

func ExampleMemoryBroker() {
	ctx := context.Background()
	node1, _ := rthub.NewMemoryBroker(rthub.MemoryBrokerOptions{
		History: rthub.HistoryPolicy{Rules: []rthub.HistoryRule{
			{Pattern: "device:*", HistoryLimits: rthub.HistoryLimits{Size: 50, TTL: time.Minute}},
		}},
	})
	node2 := node1.Peer() // another hub in the same process
	defer node1.Close(ctx)
	defer node2.Close(ctx)

	node2.Start(ctx, handlerFunc(func(p rthub.Publication) {
		fmt.Printf("node2 got %s #%d: %s\n", p.Room, p.Offset, p.Data)
	}))
	node2.Subscribe(ctx, "device:42")

	_, joined, _ := node1.History(ctx, "device:42", rthub.StreamPosition{}, 0) // a client joins
	node1.Publish(ctx, "device:42", rthub.Message{Data: []byte(`{"event":"temp","data":21.5}`)})
	node1.Publish(ctx, "device:42", rthub.Message{Data: []byte(`{"event":"temp","data":21.7}`)})

	// The client reconnects and resumes from the position it had at join.
	missed, now, err := node1.History(ctx, "device:42", joined, 100)
	fmt.Println(len(missed), "missed; now at offset", now.Offset, err)

	// A position from a lost stream cannot be resumed.
	_, _, err = node1.History(ctx, "device:42", rthub.StreamPosition{Offset: 1, Epoch: "gone"}, 100)
	fmt.Println(errors.Is(err, rthub.ErrUnrecoverable))
	// Output:
	// node2 got device:42 #1: {"event":"temp","data":21.5}
	// node2 got device:42 #2: {"event":"temp","data":21.7}
	// 2 missed; now at offset 2 <nil>
	// true
}
