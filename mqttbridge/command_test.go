package mqttbridge

// Downlink tests against the real Mosquitto of RTHUB_MQTT_URL, with each
// device simulated by a real MQTT 5 client (paho) in the test: it connects
// with a Last Will "offline" on its status topic, subscribes to its command
// topic, says "online" (retained), and replies to each command it receives.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/org/rthub"
	"github.com/org/rthub/internal/testenv"
)

// mosquittoAddr returns host:port of RTHUB_MQTT_URL (skip or fail without).
func mosquittoAddr(t *testing.T) string {
	t.Helper()
	raw := testenv.URL(t, testenv.MQTT)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s=%q: %v", testenv.MQTT, raw, err)
	}
	port := u.Port()
	if port == "" {
		port = "1883"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// cmdDevice is a simulated device: a real MQTT client.
type cmdDevice struct {
	t      *testing.T
	addr   string
	prefix string
	id     string
	// reply decides the reply to a command: ok false sends none.
	reply func(p CommandPayload) (rep CommandReply, ok bool)

	mu   sync.Mutex
	runs map[string]int // command ID → times acted on
	got  []CommandPayload
	cli  *paho.Client
	conn net.Conn
	wg   sync.WaitGroup
}

func newCmdDevice(t *testing.T, addr, prefix, id string) *cmdDevice {
	d := &cmdDevice{t: t, addr: addr, prefix: prefix, id: id, runs: map[string]int{},
		reply: func(p CommandPayload) (CommandReply, bool) {
			return CommandReply{ID: p.ID, Result: json.RawMessage(`{"ok":true}`)}, true
		}}
	t.Cleanup(d.stop)
	return d
}

func (d *cmdDevice) topic(s string) string { return d.prefix + "/devices/" + d.id + "/" + s }

// connect connects the device, subscribes to its commands and says online.
func (d *cmdDevice) connect() {
	t := d.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	var cli *paho.Client
	work := make(chan *paho.Publish, 64)
	cli = paho.NewClient(paho.ClientConfig{Conn: conn, OnClientError: func(error) {},
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case work <- pr.Packet:
			default:
				t.Errorf("device %s: command backlog", d.id)
			}
			return true, nil
		}}})
	will := &paho.WillMessage{Topic: d.topic("status"), Payload: []byte("offline"), QoS: 1, Retain: true}
	if _, err := cli.Connect(ctx, &paho.Connect{ClientID: "dev-" + d.id + "-" + randHex(4), CleanStart: true, KeepAlive: 30,
		WillMessage: will, WillProperties: &paho.WillProperties{}}); err != nil {
		t.Fatalf("device %s connect: %v", d.id, err)
	}
	if _, err := cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: d.topic("cmd"), QoS: 1}}}); err != nil {
		t.Fatalf("device %s subscribe: %v", d.id, err)
	}
	d.mu.Lock()
	d.cli, d.conn = cli, conn
	d.mu.Unlock()
	d.wg.Go(func() { // ends when the client does (stop, kill)
		for {
			select {
			case p := <-work:
				d.handle(cli, p)
			case <-cli.Done():
				return
			}
		}
	})
	d.publish(cli, d.topic("status"), "online", true)
}

// publish publishes with QoS 1. A device killed meanwhile (kill drops its
// connection) loses what it was publishing, as a real one would: the
// publish ends with the client instead of waiting out testTimeout for a
// PUBACK that cannot come (a kill right after a reply did that).
func (d *cmdDevice) publish(cli *paho.Client, topic, payload string, retain bool) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	go func() { // ends with ctx (cancel above) or the client
		select {
		case <-cli.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if _, err := cli.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload)}); err != nil {
		select {
		case <-cli.Done():
			return
		default:
		}
		d.t.Errorf("device %s publish %s: %v", d.id, topic, err)
	}
}

// handle acts on a command once per ID and replies.
func (d *cmdDevice) handle(cli *paho.Client, m *paho.Publish) {
	var p CommandPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		d.t.Errorf("device %s: command %q: %v", d.id, m.Payload, err)
		return
	}
	if m.Properties == nil || string(m.Properties.CorrelationData) != p.ID || m.Properties.ResponseTopic != d.topic("cmd/reply") {
		d.t.Errorf("device %s: command properties %+v", d.id, m.Properties)
	}
	d.mu.Lock()
	d.runs[p.ID]++
	d.got = append(d.got, p)
	d.mu.Unlock()
	rep, ok := d.reply(p)
	if !ok {
		return
	}
	b, _ := json.Marshal(rep)
	d.publish(cli, d.topic("cmd/reply"), string(b), false)
}

// kill drops the connection without DISCONNECT: the broker publishes the
// Will (offline).
func (d *cmdDevice) kill() {
	d.mu.Lock()
	conn, cli := d.conn, d.cli
	d.cli, d.conn = nil, nil
	d.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
		<-cli.Done()
	}
	d.wg.Wait()
}

// stop says offline and disconnects cleanly.
func (d *cmdDevice) stop() {
	d.mu.Lock()
	cli := d.cli
	d.cli, d.conn = nil, nil
	d.mu.Unlock()
	if cli != nil {
		d.publish(cli, d.topic("status"), "offline", true)
		closePaho(cli)
	}
	d.wg.Wait()
}

// setOffline publishes a retained "offline" for a device never connected,
// as its Last Will would have, replacing whatever an earlier run left.
func setOffline(t *testing.T, addr, topic string) {
	t.Helper()
	(&goPublisher{addr: addr}).publishRetained(t, topic, "offline")
}

func (g *goPublisher) publishRetained(t *testing.T, topic, payload string) {
	t.Helper()
	cli, _ := g.connect(t, &paho.Connect{})
	defer closePaho(cli)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := cli.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(payload)}); err != nil {
		t.Fatal(err)
	}
}

func (d *cmdDevice) runsOf(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runs[id]
}

// eventRecorder records the command events the bridge publishes.
type eventRecorder struct {
	mu  sync.Mutex
	evs []string // "room event id state"
}

func (r *eventRecorder) Publish(_ context.Context, room, event string, data any, _ ...rthub.PublishOption) error {
	res, ok := data.(Result)
	if !ok {
		return fmt.Errorf("data %T is not a Result", data)
	}
	r.mu.Lock()
	r.evs = append(r.evs, fmt.Sprintf("%s %s %s %s", room, event, res.ID, res.State))
	r.mu.Unlock()
	return nil
}

func (r *eventRecorder) of(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.evs {
		if strings.Contains(e, " "+id+" ") {
			out = append(out, e)
		}
	}
	return out
}

func cmdConfig(addr, p string, cc CommandConfig) Config {
	cc.Topic = p + "/devices/{device}/cmd"
	cc.ReplyTopic = p + "/devices/{device}/cmd/reply"
	cc.StatusTopic = p + "/devices/{device}/status"
	if cc.SweepInterval == 0 {
		cc.SweepInterval = 50 * time.Millisecond
	}
	return Config{URL: "tcp://" + addr, Commands: &cc}
}

// waitFor polls cond until it holds or the test times out.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCommand_Online sends commands to an online device: the reply
// completes them, and each state is published to the device's room.
func TestCommand_Online(t *testing.T) {
	t.Parallel()
	addr := mosquittoAddr(t)
	p := prefix()
	rec := &eventRecorder{}
	b := startBridge(t, rec, cmdConfig(addr, p, CommandConfig{}))
	dev := newCmdDevice(t, addr, p, "d1")
	dev.reply = func(c CommandPayload) (CommandReply, bool) {
		if c.Name == "explode" {
			return CommandReply{ID: c.ID, Error: "not supported"}, true
		}
		return CommandReply{ID: c.ID, Result: c.Args}, true
	}
	dev.connect()
	waitCond(t, "the device online", func() bool { return b.Stats().Commands.Online == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r, err := b.Command(ctx, "d1", Command{Name: "set_interval", Args: json.RawMessage(`{"seconds":5}`)})
	if err != nil {
		t.Fatalf("Command: %v (%+v)", err, r)
	}
	if r.State != CommandDone || string(r.Reply) != `{"seconds":5}` || r.SentAt.IsZero() || r.FinishedAt.IsZero() {
		t.Fatalf("result %+v", r)
	}
	want := []string{"device:d1 device:command " + r.ID + " queued", "device:d1 device:command " + r.ID + " sent", "device:d1 device:command " + r.ID + " done"}
	if got := rec.of(r.ID); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}

	r, err = b.Command(ctx, "d1", Command{ID: "boom-1", Name: "explode"})
	if !errors.Is(err, ErrCommandFailed) || r.State != CommandFailed || r.Error != "not supported" {
		t.Fatalf("failing command: %v, %+v", err, r)
	}
	// The same ID again is refused: it was sent once.
	if _, err := b.Command(ctx, "d1", Command{ID: "boom-1", Name: "explode"}); !errors.Is(err, ErrDuplicateCommand) {
		t.Fatalf("duplicate ID: %v, want ErrDuplicateCommand", err)
	}
	if got, err := b.CommandResult(ctx, "boom-1"); err != nil || got.State != CommandFailed {
		t.Fatalf("CommandResult: %+v, %v", got, err)
	}
	if dev.runsOf("boom-1") != 1 {
		t.Fatalf("boom-1 ran %d times", dev.runsOf("boom-1"))
	}
	st := b.Stats().Commands
	if st.Sent != 2 || st.Done != 1 || st.Failed != 1 || st.Refused != 1 || st.Waiting != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestCommand_OfflineQueued: a command to an offline device waits for it
// and runs exactly once when it connects within the TTL; one whose TTL
// passes while the device is offline returns ErrExpired, never sent.
func TestCommand_OfflineQueued(t *testing.T) {
	t.Parallel()
	addr := mosquittoAddr(t)
	p := prefix()
	rec := &eventRecorder{}
	dev := newCmdDevice(t, addr, p, "d2")
	setOffline(t, addr, dev.topic("status"))
	b := startBridge(t, rec, cmdConfig(addr, p, CommandConfig{}))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	// Expires while the device is offline.
	r, err := b.Command(ctx, "d2", Command{ID: "short", Name: "reboot", TTL: 300 * time.Millisecond})
	if !errors.Is(err, ErrExpired) || r.State != CommandExpired || !r.SentAt.IsZero() {
		t.Fatalf("short TTL: %v, %+v; want ErrExpired, never sent", err, r)
	}
	if got, want := rec.of("short"), []string{"device:d2 device:command short queued", "device:d2 device:command short expired"}; !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}

	// Waits for the device.
	type outcome struct {
		r   Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		r, err := b.Command(ctx, "d2", Command{ID: "long", Name: "set_interval", Args: json.RawMessage(`{"seconds":2}`), TTL: 20 * time.Second})
		done <- outcome{r, err}
	}()
	waitCond(t, "the command queued", func() bool { return len(rec.of("long")) == 1 })
	time.Sleep(200 * time.Millisecond) // a few sweeps: still queued
	if got, _ := b.CommandResult(ctx, "long"); got.State != CommandQueued {
		t.Fatalf("state while offline: %q", got.State)
	}
	dev.connect()
	o := <-done
	if o.err != nil || o.r.State != CommandDone {
		t.Fatalf("after reconnect: %v, %+v", o.err, o.r)
	}
	// A reconnection (offline, online again) does not send it again.
	dev.kill()
	waitCond(t, "the device offline", func() bool { return b.Stats().Commands.Online == 0 })
	dev.connect()
	waitCond(t, "the device online", func() bool { return b.Stats().Commands.Online == 1 })
	time.Sleep(300 * time.Millisecond)
	if n := dev.runsOf("long"); n != 1 {
		t.Fatalf("long ran %d times, want 1", n)
	}
	if n := dev.runsOf("short"); n != 0 {
		t.Fatalf("the expired command ran %d times", n)
	}
}

// TestCommand_NoReply: a command the device receives but does not answer
// expires with SentAt set (the device may have acted), and a reply after
// that changes nothing.
func TestCommand_NoReply(t *testing.T) {
	t.Parallel()
	addr := mosquittoAddr(t)
	p := prefix()
	rec := &eventRecorder{}
	b := startBridge(t, rec, cmdConfig(addr, p, CommandConfig{}))
	dev := newCmdDevice(t, addr, p, "d3")
	var late []CommandPayload
	var mu sync.Mutex
	dev.reply = func(c CommandPayload) (CommandReply, bool) {
		mu.Lock()
		late = append(late, c)
		mu.Unlock()
		return CommandReply{}, false
	}
	dev.connect()
	waitCond(t, "the device online", func() bool { return b.Stats().Commands.Online == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r, err := b.Command(ctx, "d3", Command{ID: "lost", Name: "reboot", TTL: 500 * time.Millisecond})
	if !errors.Is(err, ErrExpired) || r.SentAt.IsZero() {
		t.Fatalf("no reply: %v, %+v; want ErrExpired with SentAt", err, r)
	}
	// The late reply.
	dev.mu.Lock()
	cli := dev.cli
	dev.mu.Unlock()
	dev.publish(cli, dev.topic("cmd/reply"), `{"id":"lost","result":1}`, false)
	waitCond(t, "the late reply", func() bool { return b.Stats().Commands.LateReplies == 1 })
	if got, _ := b.CommandResult(ctx, "lost"); got.State != CommandExpired {
		t.Fatalf("state after a late reply: %q", got.State)
	}
	// Another device cannot finish d3's command.
	other := newCmdDevice(t, addr, p, "d4")
	other.connect()
	done := make(chan error, 1)
	go func() {
		_, err := b.Command(ctx, "d3", Command{ID: "mine", Name: "reboot", TTL: 2 * time.Second})
		done <- err
	}()
	waitCond(t, "mine sent", func() bool { return dev.runsOf("mine") == 1 })
	other.publish(other.cli, other.topic("cmd/reply"), `{"id":"mine"}`, false)
	if err := <-done; !errors.Is(err, ErrExpired) {
		t.Fatalf("a reply from another device finished the command: %v", err)
	}
}

// TestCommand_Bounds: past MaxPerDevice or MaxQueued unfinished commands a
// new one is refused with ErrQueueFull; nothing queued is dropped.
func TestCommand_Bounds(t *testing.T) {
	t.Parallel()
	addr := mosquittoAddr(t)
	p := prefix()
	setOffline(t, addr, p+"/devices/a/status")
	setOffline(t, addr, p+"/devices/b/status")
	rec := &eventRecorder{}
	b := startBridge(t, rec, cmdConfig(addr, p, CommandConfig{MaxPerDevice: 2, MaxQueued: 3}))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tests := []struct {
		device, id string
		err        error
	}{
		{"a", "a1", nil},
		{"a", "a2", nil},
		{"a", "a3", ErrQueueFull}, // per device
		{"b", "b1", nil},
		{"b", "b2", ErrQueueFull}, // total
		{"a", "a1", ErrDuplicateCommand},
		{"b/x", "x", ErrInvalidCommand},
		{"a:b", "x", ErrInvalidCommand},
		{"a", "bad id", ErrInvalidCommand},
	}
	for _, tt := range tests {
		_, err := b.Send(ctx, tt.device, Command{ID: tt.id, Name: "noop"})
		if (tt.err == nil && err != nil) || (tt.err != nil && !errors.Is(err, tt.err)) {
			t.Errorf("Send(%q, %q) = %v, want %v", tt.device, tt.id, err, tt.err)
		}
	}
	for _, id := range []string{"a1", "a2", "b1"} {
		if r, err := b.CommandResult(ctx, id); err != nil || r.State != CommandQueued {
			t.Errorf("%s: %+v, %v", id, r, err)
		}
	}
	if _, err := b.Command(ctx, "a", Command{Name: "x", TTL: 48 * time.Hour}); !errors.Is(err, ErrInvalidCommand) {
		t.Errorf("TTL over MaxTTL: %v", err)
	}
}

// TestCommand_NotConfigured: a bridge without Commands refuses them.
func TestCommand_NotConfigured(t *testing.T) {
	b, err := New(&eventRecorder{}, Config{URL: "tcp://127.0.0.1:1", Routes: []Route{{Topic: "a/{x}", Event: "e", Rooms: []string{"r"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Command(context.Background(), "d", Command{Name: "x"}); !errors.Is(err, ErrNoCommands) {
		t.Fatalf("Command: %v", err)
	}
}

// TestCommand_NewBridgeSameStore: a command queued by one bridge for an
// offline device is sent by the next bridge on the same store (a restart
// of the process, with a store that outlives it) when the device connects,
// once; the states reach a WebSocket client of a real hub in the device's
// room as device:command events.
func TestCommand_NewBridgeSameStore(t *testing.T) {
	t.Parallel()
	addr := mosquittoAddr(t)
	p := prefix()
	store := NewMemoryCommandStore(0)
	hs := newHubServer(t)
	watcher := hs.dial(t, "alice", "staff", []string{"device:d5"}, "device:command")
	dev := newCmdDevice(t, addr, p, "d5")
	setOffline(t, addr, dev.topic("status"))

	b1 := startBridge(t, hs.hub, cmdConfig(addr, p, CommandConfig{Store: store}))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r, err := b1.Send(ctx, "d5", Command{Name: "set_interval", Args: json.RawMessage(`{"seconds":7}`), TTL: 20 * time.Second})
	if err != nil || r.State != CommandQueued {
		t.Fatalf("Send: %+v, %v", r, err)
	}
	if err := b1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b1.Send(ctx, "d5", Command{Name: "x"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Shutdown: %v", err)
	}

	b2 := startBridge(t, hs.hub, cmdConfig(addr, p, CommandConfig{Store: store}))
	dev.connect()
	evs := watcher.wait(t, 3)
	var states []CommandState
	for _, ev := range evs {
		var got Result
		if err := json.Unmarshal(ev.Data, &got); err != nil || got.ID != r.ID || ev.Room != "device:d5" {
			t.Fatalf("event %s@%s %s: %v", ev.Name, ev.Room, ev.Data, err)
		}
		states = append(states, got.State)
		if got.State == CommandDone && string(got.Reply) != `{"ok":true}` {
			t.Fatalf("done without the reply: %s", ev.Data)
		}
	}
	if want := []CommandState{CommandQueued, CommandSent, CommandDone}; !slices.Equal(states, want) {
		t.Fatalf("states %q, want %q", states, want)
	}
	if n := dev.runsOf(r.ID); n != 1 {
		t.Fatalf("ran %d times", n)
	}
	if st := b2.Stats().Commands; st.Sent != 1 || st.Done != 1 {
		t.Fatalf("second bridge's stats %+v", st)
	}
}

// TestCommand_ReleaseWhenDown: a command claimed while the bridge has no
// connection is not lost: the publish never left, so it goes back to
// queued (events queued, sent, queued) and can be claimed again.
func TestCommand_ReleaseWhenDown(t *testing.T) {
	t.Parallel()
	rec := &eventRecorder{}
	store := NewMemoryCommandStore(0)
	b, err := New(rec, Config{URL: "tcp://127.0.0.1:1", Commands: &CommandConfig{Store: store}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.onStatus("d9", []byte("online")) // as if its status arrived; never connected
	ctx := t.Context()
	r, err := b.Send(ctx, "d9", Command{ID: "rel", Name: "noop"})
	if err != nil {
		t.Fatal(err)
	}
	b.flushQueued(ctx) // the command goroutine's step, here with no connection
	want := []string{"device:d9 device:command rel queued", "device:d9 device:command rel sent", "device:d9 device:command rel queued"}
	if got := rec.of(r.ID); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	if got, _ := store.Get(ctx, "rel"); got.State != CommandQueued || !got.SentAt.IsZero() {
		t.Fatalf("after the failed publish: %+v", got)
	}
	if ok, _ := store.Claim(ctx, "rel", time.Now()); !ok {
		t.Fatal("the released command cannot be claimed again")
	}
	if st := b.Stats().Commands; st.Sent != 0 || st.SendErrors != 0 {
		t.Fatalf("stats %+v", st)
	}
}
