package mqttbridge

// Integration test harness: MQTT brokers (embedded mochi-mqtt, or the real
// Mosquitto of RTHUB_MQTT_URL), external publishers (a Go MQTT 5 client, or
// the real mosquitto_pub CLI), and a real hub served over HTTP with the
// repository's WebSocket client.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/org/rthub"
	"github.com/org/rthub/client"
	"github.com/org/rthub/internal/testenv"
)

// testTimeout bounds every wait of the integration tests: generous, since CI
// runs all modules at once under -race on two cores.
const testTimeout = 30 * time.Second

// testBroker is a broker with a publisher that talks to it.
type testBroker struct {
	name string
	url  string // for Config.URL
	pub  externalPublisher
}

// externalPublisher publishes as an independent MQTT client would.
type externalPublisher interface {
	// publish sends one QoS 1 message with MQTT 5 user properties and
	// returns once the broker has it.
	publish(t *testing.T, topic, payload string, props ...UserProperty)
	// device connects a client, with a Last Will on topic unless will is
	// empty; send publishes on topic (QoS 1, in order), kill drops its TCP
	// connection without DISCONNECT.
	device(t *testing.T, clientID, topic, will string) testDevice
	// takeover connects with clientID and a clean start, taking the session
	// of whoever had it, and disconnects.
	takeover(t *testing.T, clientID string)
}

type testDevice interface {
	send(t *testing.T, payloads ...string)
	kill(t *testing.T)
}

// forEachBroker runs fn against the embedded broker (with a Go publisher) and
// against the real Mosquitto (with mosquitto_pub), in parallel subtests.
func forEachBroker(t *testing.T, fn func(t *testing.T, b *testBroker)) {
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		fn(t, embeddedBroker(t))
	})
	t.Run("mosquitto", func(t *testing.T) {
		t.Parallel()
		fn(t, mosquittoBroker(t))
	})
}

// embedded is a mochi-mqtt broker in the test process.
type embedded struct {
	mu     sync.Mutex
	srv    *mqtt.Server
	addr   string
	closed bool
}

// startEmbedded starts a broker on addr ("127.0.0.1:0" for any port). setup,
// if not nil, adds hooks and listeners instead of the allow-all default.
func startEmbedded(t *testing.T, addr string, setup func(*mqtt.Server)) *embedded {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if setup != nil {
		setup(srv)
	} else if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	var tcp *listeners.TCP
	for i := 0; ; i++ { // the port of a restarted broker may linger for a moment
		tcp = listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
		err := srv.AddListener(tcp)
		if err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("embedded broker listen %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	e := &embedded{srv: srv, addr: tcp.Address()}
	t.Cleanup(e.close)
	return e
}

func (e *embedded) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.closed = true
		_ = e.srv.Close()
	}
}

func embeddedBroker(t *testing.T) *testBroker {
	e := startEmbedded(t, "127.0.0.1:0", nil)
	return &testBroker{name: "embedded", url: "tcp://" + e.addr, pub: &goPublisher{addr: e.addr}}
}

// mosquittoBroker is the real Mosquitto of RTHUB_MQTT_URL, with mosquitto_pub
// as the publisher. It skips (or fails under RTHUB_REQUIRE_SERVICES=1) when
// either is missing.
func mosquittoBroker(t *testing.T) *testBroker {
	t.Helper()
	raw := testenv.URL(t, testenv.MQTT)
	path, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		msg := "mosquitto_pub not found (apt-get install mosquitto-clients): " + err.Error()
		if testenv.Required() {
			t.Fatalf("%s=1 but %s", testenv.Require, msg)
		}
		t.Skip(msg)
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s=%q: %v", testenv.MQTT, raw, err)
	}
	port := u.Port()
	if port == "" {
		port = "1883"
	}
	return &testBroker{name: "mosquitto", url: "tcp://" + net.JoinHostPort(u.Hostname(), port),
		pub: &cliPublisher{bin: path, host: u.Hostname(), port: port}}
}

// goPublisher publishes with MQTT 5 clients built on paho, one connection
// per call, as devices would.
type goPublisher struct {
	addr       string
	tls        *tls.Config
	user, pass string
}

// dialPaho connects a paho client; the cleanup waits for its goroutines.
func dialPaho(t *testing.T, addr string, tlsCfg *tls.Config, cp *paho.Connect) (*paho.Client, net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var conn net.Conn
	var err error
	if tlsCfg != nil {
		conn, err = (&tls.Dialer{Config: tlsCfg}).DialContext(ctx, "tcp", addr)
		if err == nil {
			conn = packets.NewThreadSafeConn(conn) // paho writes from several goroutines
		}
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	cli := paho.NewClient(paho.ClientConfig{Conn: conn, OnClientError: func(error) {}})
	if _, err := cli.Connect(ctx, cp); err != nil {
		t.Fatalf("connect %s as %q: %v", addr, cp.ClientID, err)
	}
	t.Cleanup(func() { closePaho(cli) })
	return cli, conn
}

func closePaho(cli *paho.Client) {
	_ = cli.Disconnect(&paho.Disconnect{})
	<-cli.Done()
}

func (g *goPublisher) connect(t *testing.T, cp *paho.Connect) (*paho.Client, net.Conn) {
	t.Helper()
	if cp.ClientID == "" {
		cp.ClientID = "pub-" + randHex(6)
	}
	cp.CleanStart, cp.KeepAlive = true, 30
	if g.user != "" {
		cp.Username, cp.UsernameFlag = g.user, true
		cp.Password, cp.PasswordFlag = []byte(g.pass), true
	}
	return dialPaho(t, g.addr, g.tls, cp)
}

func (g *goPublisher) publish(t *testing.T, topic, payload string, props ...UserProperty) {
	t.Helper()
	cli, _ := g.connect(t, &paho.Connect{})
	defer closePaho(cli)
	p := &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload), Properties: &paho.PublishProperties{}}
	for _, up := range props {
		p.Properties.User.Add(up.Key, up.Value)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := cli.Publish(ctx, p); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

type goDevice struct {
	cli   *paho.Client
	conn  net.Conn
	topic string
}

func (g *goPublisher) device(t *testing.T, clientID, topic, will string) testDevice {
	cp := &paho.Connect{ClientID: clientID}
	if will != "" {
		cp.WillMessage = &paho.WillMessage{Topic: topic, Payload: []byte(will), QoS: 1}
		cp.WillProperties = &paho.WillProperties{}
	}
	cli, conn := g.connect(t, cp)
	return &goDevice{cli: cli, conn: conn, topic: topic}
}

func (d *goDevice) send(t *testing.T, payloads ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, pl := range payloads {
		if _, err := d.cli.Publish(ctx, &paho.Publish{Topic: d.topic, QoS: 1, Payload: []byte(pl)}); err != nil {
			t.Errorf("device publish: %v", err)
			return
		}
	}
}

func (d *goDevice) kill(t *testing.T) {
	_ = d.conn.Close() // no DISCONNECT: the broker sends the Will
	<-d.cli.Done()
}

func (g *goPublisher) takeover(t *testing.T, clientID string) {
	cli, _ := g.connect(t, &paho.Connect{ClientID: clientID})
	// Stay until the bridge takes its ID back: a DISCONNECT of ours racing
	// with the bridge's reconnection can make mochi-mqtt v2.7.9 forget the
	// bridge's new session (it deletes the client by ID).
	select {
	case <-cli.Done():
	case <-time.After(testTimeout):
		t.Fatal("the bridge did not take its client ID back")
	}
}

// cliPublisher runs the real mosquitto_pub.
type cliPublisher struct {
	bin, host, port string
}

func (c *cliPublisher) args(extra ...string) []string {
	return append([]string{"-V", "mqttv5", "-h", c.host, "-p", c.port, "-q", "1"}, extra...)
}

func (c *cliPublisher) run(t *testing.T, stdin io.Reader, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, c.args(args...)...)
	cmd.Stdin = stdin
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *cliPublisher) publish(t *testing.T, topic, payload string, props ...UserProperty) {
	t.Helper()
	args := []string{"-t", topic, "-m", payload}
	for _, p := range props {
		args = append(args, "-D", "publish", "user-property", p.Key, p.Value)
	}
	c.run(t, nil, args...)
}

type cliDevice struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	out   *bytes.Buffer
}

func (c *cliPublisher) device(t *testing.T, clientID, topic, will string) testDevice {
	t.Helper()
	args := []string{"-i", clientID, "-t", topic, "-l"}
	if will != "" {
		args = append(args, "--will-topic", topic, "--will-payload", will, "--will-qos", "1")
	}
	cmd := exec.Command(c.bin, c.args(args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &cliDevice{cmd: cmd, stdin: stdin, done: make(chan struct{}), out: new(bytes.Buffer)}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { // ends when the process does; kill and the cleanup wait for it
		_ = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() { d.kill(t) })
	return d
}

func (d *cliDevice) send(t *testing.T, payloads ...string) {
	t.Helper()
	if _, err := io.WriteString(d.stdin, strings.Join(payloads, "\n")+"\n"); err != nil {
		t.Errorf("mosquitto_pub device: %v (%s)", err, d.out)
	}
}

func (d *cliDevice) kill(t *testing.T) {
	_ = d.cmd.Process.Kill() // SIGKILL: no DISCONNECT, the broker sends the Will
	<-d.done
}

func (c *cliPublisher) takeover(t *testing.T, clientID string) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	// The bridge may take its session back before mosquitto_pub has
	// published and disconnected (exit status 7, connection lost): the
	// takeover happened all the same, which the test checks on the bridge.
	_ = exec.CommandContext(ctx, c.bin, c.args("-i", clientID, "-t", "rthub-test/takeover", "-m", "x")...).Run()
}

// hubServer is a real hub over HTTP. Staff auto-join "staff" and may join
// device rooms; viewers may only join device rooms.
type hubServer struct {
	hub *rthub.Hub
	url string
}

var hubSecret = []byte("mqttbridge-test-secret-0123456789abcdef")

func newHubServer(t *testing.T) *hubServer {
	t.Helper()
	hub, err := rthub.New(rthub.Options{
		Auth: rthub.AuthOptions{Keys: map[string]any{"": hubSecret}},
		Policy: rthub.Policy{Roles: map[string]rthub.RoleRules{
			"staff":  {Join: []string{"device:*"}, AutoJoin: []string{"staff"}},
			"viewer": {Join: []string{"device:*"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	t.Cleanup(func() {
		hub.Close()
		srv.Close()
	})
	return &hubServer{hub: hub, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
}

// rawClient reads a hub's frames directly, to see fields the Go client
// does not expose (the event's "cid").
type rawClient struct {
	c *websocket.Conn
}

type rawFrame struct {
	Type, Event, Room, Cid string
	Data                   json.RawMessage
}

func (h *hubServer) rawDial(t *testing.T, sub, role string) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	hdr := http.Header{}
	hdr.Set("Authorization", "Bearer "+h.token(t, sub, role))
	c, _, err := websocket.Dial(ctx, h.url, &websocket.DialOptions{HTTPHeader: hdr, Subprotocols: []string{rthub.Subprotocol}})
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &rawClient{c: c}
}

// next returns the next event frame, skipping the others (welcome, ...).
func (r *rawClient) next(t *testing.T) rawFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		_, b, err := r.c.Read(ctx)
		if err != nil {
			t.Fatalf("raw read: %v", err)
		}
		var f rawFrame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("raw frame %q: %v", b, err)
		}
		if f.Type == "event" {
			return f
		}
	}
}

func (h *hubServer) token(t *testing.T, sub, role string) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub, "roles": []string{role}, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(hubSecret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// collector is a WebSocket client that records the events it receives.
type collector struct {
	mu      sync.Mutex
	events  []client.Event
	changed chan struct{}
}

// dial connects a client as sub with role, joined to rooms, recording the
// events named events.
func (h *hubServer) dial(t *testing.T, sub, role string, rooms []string, events ...string) *collector {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := client.Dial(ctx, h.url, client.Options{Token: h.token(t, sub, role), Rooms: rooms})
	if err != nil {
		t.Fatalf("dial hub as %s: %v", sub, err)
	}
	t.Cleanup(func() { c.Close() })
	col := &collector{changed: make(chan struct{}, 1)}
	for _, ev := range events {
		c.On(ev, func(e client.Event) {
			col.mu.Lock()
			col.events = append(col.events, e)
			col.mu.Unlock()
			select {
			case col.changed <- struct{}{}:
			default:
			}
		})
	}
	return col
}

func (c *collector) all() []client.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// wait returns the events once there are at least n.
func (c *collector) wait(t *testing.T, n int) []client.Event {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		if ev := c.all(); len(ev) >= n {
			return ev
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d events; have %v", n, fmtEvents(c.all()))
		}
	}
}

func fmtEvents(evs []client.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Name + "@" + e.Room + " " + string(e.Data)
	}
	return out
}

// waitStats waits until cond holds for the bridge's stats: counters move
// just after the publish a client may already have received.
func waitStats(t *testing.T, b *Bridge, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		st := b.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the stats; last %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startBridge starts a bridge and waits until it is subscribed.
func startBridge(t *testing.T, pub rthub.Publisher, cfg Config) *Bridge {
	t.Helper()
	if cfg.ReconnectMin == 0 {
		cfg.ReconnectMin, cfg.ReconnectMax = 50*time.Millisecond, 500*time.Millisecond
	}
	if cfg.Logger == nil && testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	b, err := New(pub, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := b.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v (stats %+v)", err, b.Stats())
	}
	return b
}

// prefix returns a topic prefix no other test run uses, so that parallel
// runs on a shared broker do not see each other's messages.
func prefix() string { return "rthub-test/" + randHex(8) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// gatedPublisher passes publishes to next, holding them while closed.
type gatedPublisher struct {
	next rthub.Publisher
	mu   sync.Mutex
	open chan struct{}
}

func newGate(next rthub.Publisher) *gatedPublisher {
	return &gatedPublisher{next: next, open: make(chan struct{})}
}

func (g *gatedPublisher) Publish(ctx context.Context, room, event string, data any, opts ...rthub.PublishOption) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.next.Publish(ctx, room, event, data, opts...)
}

func (g *gatedPublisher) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// seqPayloads returns n payloads, format filled with 0 ... n-1.
func seqPayloads(n int, format string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}
