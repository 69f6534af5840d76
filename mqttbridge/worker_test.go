package mqttbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/org/rthub"
)

// published is one call to a recPublisher.
type published struct {
	Room, Event, Data, Corr string
}

func (p published) String() string { return p.Event + "@" + p.Room + " " + p.Data }

// recPublisher records publishes. While gate is non-nil, Publish waits for
// it (or ctx) first.
type recPublisher struct {
	mu     sync.Mutex
	events []published
	gate   chan struct{}
	err    error
}

func (p *recPublisher) Publish(ctx context.Context, room, event string, data any, _ ...rthub.PublishOption) error {
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	raw, ok := data.(json.RawMessage)
	if !ok {
		return fmt.Errorf("data is %T, want json.RawMessage", data)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.events = append(p.events, published{Room: room, Event: event, Data: string(raw), Corr: CorrelationID(ctx)})
	return nil
}

func (p *recPublisher) got() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

// offlineBridge returns a bridge whose routes run but which never connects:
// tests feed it messages with inject.
func offlineBridge(t *testing.T, pub rthub.Publisher, cfg Config) *Bridge {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = "tcp://127.0.0.1:1"
	}
	b, err := New(pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.state = stateRunning
	b.startRoutesLocked()
	b.mu.Unlock()
	t.Cleanup(func() { b.Close() })
	return b
}

func inject(b *Bridge, topic, payload string, props *paho.PublishProperties) {
	b.onPublish(paho.PublishReceived{Packet: &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1, Properties: props}})
}

// settle shuts b down gracefully, so that every queued message is processed.
func settle(t *testing.T, b *Bridge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

var readingRoute = Route{
	Topic: "sensors/{device}/reading",
	Event: "sensor:data",
	Rooms: []string{"device:{device}", "staff"},
}

func TestBridge_Deliver(t *testing.T) {
	t.Parallel()
	type msg struct {
		topic, payload string
		props          *paho.PublishProperties
	}
	withRoute := func(mod func(*Route)) Route {
		r := readingRoute
		mod(&r)
		return r
	}
	tests := []struct {
		name  string
		route Route
		msgs  []msg
		want  []string // published: "event@room data"
		stats RouteStats
	}{
		{
			name:  "jsonToEveryRoom",
			route: readingRoute,
			msgs:  []msg{{"sensors/7/reading", `{ "celsius": 21.5 }`, nil}},
			want:  []string{`sensor:data@device:7 {"celsius":21.5}`, `sensor:data@staff {"celsius":21.5}`},
			stats: RouteStats{Received: 1, Sent: 1, Published: 2},
		},
		{
			name:  "malformedNotPublished",
			route: readingRoute,
			msgs: []msg{
				{"sensors/7/reading", `{"celsius":`, nil},
				{"sensors/7/reading", ``, nil},
				{"sensors/7/reading", `1`, nil},
			},
			want:  []string{`sensor:data@device:7 1`, `sensor:data@staff 1`},
			stats: RouteStats{Received: 3, Sent: 1, Published: 2, DecodeErrors: 2},
		},
		{
			name:  "badDeviceNotPublished",
			route: readingRoute,
			msgs: []msg{
				{"sensors/7:admin/reading", `1`, nil},
				{"sensors//reading", `1`, nil},
				{"sensors/a b/reading", `1`, nil},
				{"sensors/ok/reading", `2`, nil},
			},
			want:  []string{`sensor:data@device:ok 2`, `sensor:data@staff 2`},
			stats: RouteStats{Received: 4, Sent: 1, Published: 2, InvalidTopic: 3},
		},
		{
			name:  "jsonWithVars",
			route: withRoute(func(r *Route) { r.Decode = JSONWithVars }),
			msgs: []msg{
				{"sensors/7/reading", `{"celsius":21.5}`, nil},
				{"sensors/8/reading", `{"celsius":1,"device":"mine"}`, nil},
				{"sensors/9/reading", `[1]`, nil},
			},
			want: []string{
				`sensor:data@device:7 {"celsius":21.5,"device":"7"}`, `sensor:data@staff {"celsius":21.5,"device":"7"}`,
				`sensor:data@device:8 {"celsius":1,"device":"mine"}`, `sensor:data@staff {"celsius":1,"device":"mine"}`,
			},
			stats: RouteStats{Received: 3, Sent: 2, Published: 4, DecodeErrors: 1},
		},
		{
			name:  "text",
			route: withRoute(func(r *Route) { r.Decode = Text; r.Rooms = []string{"staff"} }),
			msgs:  []msg{{"sensors/7/reading", `offline`, nil}, {"sensors/7/reading", "\xff", nil}},
			want:  []string{`sensor:data@staff "offline"`},
			stats: RouteStats{Received: 2, Sent: 1, Published: 1, DecodeErrors: 1},
		},
		{
			name: "typed",
			route: withRoute(func(r *Route) {
				r.Decode = JSONAs[struct {
					C float64 `json:"celsius"`
				}]()
				r.Rooms = []string{"staff"}
			}),
			msgs: []msg{
				{"sensors/7/reading", `{"celsius":3}`, nil},
				{"sensors/7/reading", `{"celsius":3,"extra":1}`, nil},
				{"sensors/7/reading", `{"celsius":"hot"}`, nil},
				{"sensors/7/reading", `{"celsius":3} {}`, nil},
			},
			want:  []string{`sensor:data@staff {"celsius":3}`},
			stats: RouteStats{Received: 4, Sent: 1, Published: 1, DecodeErrors: 3},
		},
		{
			name: "skipAndPanic",
			route: withRoute(func(r *Route) {
				r.Rooms = []string{"staff"}
				r.Decode = func(_ context.Context, m *Message) (any, error) {
					switch string(m.Payload) {
					case "skip":
						return nil, ErrSkip
					case "panic":
						panic("decoder bug")
					case "chan":
						return make(chan int), nil
					case "badraw":
						return json.RawMessage("{"), nil
					}
					return m.Vars, nil
				}
			}),
			msgs: []msg{
				{"sensors/7/reading", `skip`, nil},
				{"sensors/7/reading", `panic`, nil},
				{"sensors/7/reading", `chan`, nil},
				{"sensors/7/reading", `badraw`, nil},
				{"sensors/7/reading", `ok`, nil},
			},
			want:  []string{`sensor:data@staff {"device":"7"}`},
			stats: RouteStats{Received: 5, Sent: 1, Published: 1, DecodeErrors: 3, Skipped: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pub := &recPublisher{}
			b := offlineBridge(t, pub, Config{Routes: []Route{tt.route}})
			for _, m := range tt.msgs {
				inject(b, m.topic, m.payload, m.props)
			}
			settle(t, b)
			var got []string
			for _, p := range pub.got() {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("published\n%q\nwant\n%q", got, tt.want)
			}
			st := b.Stats().Routes[0]
			tt.stats.Name = st.Name
			st.QueueHighWater = 0
			if st != tt.stats {
				t.Errorf("stats\n%+v\nwant\n%+v", st, tt.stats)
			}
		})
	}
}

func TestBridge_LastError(t *testing.T) {
	t.Parallel()
	pub := &recPublisher{}
	b := offlineBridge(t, pub, Config{Routes: []Route{readingRoute}})
	if b.Stats().LastError != nil {
		t.Fatal("LastError before any error")
	}
	inject(b, "sensors/7:x/reading", "1", nil)
	if err := b.Stats().LastError; !errors.Is(err, ErrInvalidTopic) {
		t.Fatalf("LastError = %v, want ErrInvalidTopic", err)
	}
	inject(b, "sensors/7/reading", "{", nil)
	waitFor(t, "decode error", func() bool { return errors.Is(b.Stats().LastError, ErrDecode) })

	pub.mu.Lock()
	pub.err = rthub.ErrHubClosed
	pub.mu.Unlock()
	inject(b, "sensors/7/reading", "1", nil)
	// The reading goes to two rooms: LastError is set by the first failure,
	// so wait for both before counting.
	waitFor(t, "publish errors", func() bool {
		st := b.Stats()
		return errors.Is(st.LastError, rthub.ErrHubClosed) && st.PublishErrors >= 2
	})
	if st := b.Stats(); st.PublishErrors != 2 || st.Published != 0 {
		t.Fatalf("PublishErrors = %d, Published = %d; want 2, 0", st.PublishErrors, st.Published)
	}
}

func TestBridge_CorrelationID(t *testing.T) {
	t.Parallel()
	var decoded []string
	route := readingRoute
	route.Rooms = []string{"staff"}
	route.Decode = func(ctx context.Context, m *Message) (any, error) {
		decoded = append(decoded, CorrelationID(ctx)+"|"+m.Property("traceparent"))
		return JSON(ctx, m)
	}
	pub := &recPublisher{}
	b := offlineBridge(t, pub, Config{Routes: []Route{route}})
	inject(b, "sensors/1/reading", "1", &paho.PublishProperties{
		User: paho.UserProperties{{Key: "traceparent", Value: "00-abc-def-01"}, {Key: "correlation-id", Value: "req-42"}},
	})
	inject(b, "sensors/1/reading", "2", &paho.PublishProperties{CorrelationData: []byte("corr-7")})
	inject(b, "sensors/1/reading", "3", &paho.PublishProperties{CorrelationData: []byte{0, 1, 0xfe}})
	inject(b, "sensors/1/reading", "4", &paho.PublishProperties{ // the property wins over the data
		CorrelationData: []byte("data"), User: paho.UserProperties{{Key: "correlation-id", Value: "prop"}},
	})
	inject(b, "sensors/1/reading", "5", nil)
	settle(t, b)
	wantDecoded := []string{"req-42|00-abc-def-01", "corr-7|", "0001fe|", "prop|", "|"}
	if !slices.Equal(decoded, wantDecoded) {
		t.Errorf("decoder saw %q, want %q", decoded, wantDecoded)
	}
	var corr []string
	for _, p := range pub.got() {
		corr = append(corr, p.Corr)
	}
	if want := []string{"req-42", "corr-7", "0001fe", "prop", ""}; !slices.Equal(corr, want) {
		t.Errorf("publisher saw correlation IDs %q, want %q", corr, want)
	}
}

func TestBridge_OnChange(t *testing.T) {
	t.Parallel()
	pub := &recPublisher{}
	b := offlineBridge(t, pub, Config{MaxKeys: 2, Routes: []Route{{
		Topic:    "devices/{device}/status",
		Event:    "device:status",
		Rooms:    []string{"staff"},
		Decode:   JSONWithVars,
		Key:      "{device}",
		OnChange: true,
	}}})
	for _, s := range []string{
		"1 online", "1 online", "2 online", "1 offline", "1 offline", "2 online", "1 online",
		// A third key makes the bridge forget one of the two: at most one
		// repeat may then be published again.
		"3 online", "3 online",
	} {
		dev, st, _ := strings.Cut(s, " ")
		inject(b, "devices/"+dev+"/status", `{"status":"`+st+`"}`, nil)
	}
	settle(t, b)
	var got []string
	for _, p := range pub.got() {
		got = append(got, p.Data)
	}
	want := []string{
		`{"device":"1","status":"online"}`, `{"device":"2","status":"online"}`,
		`{"device":"1","status":"offline"}`, `{"device":"1","status":"online"}`,
		`{"device":"3","status":"online"}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("published\n%q\nwant\n%q", got, want)
	}
	if st := b.Stats(); st.Unchanged != 4 {
		t.Errorf("Unchanged = %d, want 4", st.Unchanged)
	}
	if n := len(b.routes[0].last); n > 2 {
		t.Errorf("remembers %d keys, MaxKeys is 2", n)
	}
}

// TestBridge_Batch checks batching in a synctest bubble, on a fake clock.
func TestBridge_Batch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pub := &recPublisher{}
		route := readingRoute
		route.BatchInterval = time.Second
		route.BatchMax = 3
		b, err := New(pub, Config{URL: "tcp://127.0.0.1:1", Routes: []Route{route}})
		if err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		b.state = stateRunning
		b.startRoutesLocked()
		b.mu.Unlock()

		start := time.Now()
		inject(b, "sensors/1/reading", "1", nil)
		time.Sleep(100 * time.Millisecond)
		inject(b, "sensors/2/reading", "2", nil)
		inject(b, "sensors/1/reading", "{bad", nil)
		inject(b, "sensors/1/reading", "3", nil)
		inject(b, "sensors/1/reading", "4", nil)
		synctest.Wait()
		if got := pub.got(); len(got) != 0 {
			t.Fatalf("published before the interval: %v", got)
		}
		time.Sleep(time.Second - 100*time.Millisecond)
		synctest.Wait()
		if d := time.Since(start); d != time.Second {
			t.Fatalf("batch after %v", d)
		}
		var got []string
		for _, p := range pub.got() {
			got = append(got, p.String())
		}
		want := []string{
			"sensor:data@device:1 [1,3,4]",
			"sensor:data@staff [1,2,3]", "sensor:data@staff [4]", // split at BatchMax
			"sensor:data@device:2 [2]",
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("published\n%q\nwant\n%q", got, want)
		}

		// The next message starts a new batch; Shutdown flushes it at once.
		inject(b, "sensors/3/reading", "5", nil)
		synctest.Wait()
		before := time.Now()
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if time.Since(before) != 0 {
			t.Fatalf("Shutdown waited %v for the batch interval", time.Since(before))
		}
		if got := pub.got(); len(got) != 6 || got[5].Data != "[5]" {
			t.Fatalf("after Shutdown: %v", got)
		}
		if st := b.Stats(); st.Sent != 5 || st.DecodeErrors != 1 || st.Published != 6 {
			t.Fatalf("stats: %+v", st)
		}
	})
}

func TestBridge_ShutdownDrains(t *testing.T) {
	t.Parallel()
	pub := &recPublisher{gate: make(chan struct{})}
	b := offlineBridge(t, pub, Config{Routes: []Route{readingRoute}})
	for i := range 50 {
		inject(b, "sensors/1/reading", fmt.Sprint(i), nil)
	}
	// Open the gate a little after Shutdown began: it must wait for the
	// queue, then return nil with all 50 published to both rooms.
	time.AfterFunc(50*time.Millisecond, func() { close(pub.gate) })
	settle(t, b)
	if got := len(pub.got()); got != 100 {
		t.Fatalf("published %d events, want 100", got)
	}
	inject(b, "sensors/1/reading", "late", nil) // after Shutdown: ignored
	if st := b.Stats(); st.Received != 50 || st.Dropped != 0 || st.Queued != 0 {
		t.Fatalf("stats: %+v", st)
	}
	if err := b.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Shutdown = %v, want ErrClosed", err)
	}
	if err := b.WaitReady(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitReady after Shutdown = %v, want ErrClosed", err)
	}
}

func TestBridge_ShutdownDeadline(t *testing.T) {
	t.Parallel()
	pub := &recPublisher{gate: make(chan struct{})} // never opens
	b := offlineBridge(t, pub, Config{Routes: []Route{readingRoute}})
	for i := range 10 {
		inject(b, "sensors/1/reading", fmt.Sprint(i), nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	st := b.Stats()
	// The message in the publisher's hands failed with the context (in its
	// two rooms); the other nine were still queued.
	if st.Dropped != 9 || st.PublishErrors != 2 || st.Queued != 0 {
		t.Fatalf("stats: Dropped %d PublishErrors %d Queued %d", st.Dropped, st.PublishErrors, st.Queued)
	}
	// Idempotent, with the same result.
	if err := b.Shutdown(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Shutdown = %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
