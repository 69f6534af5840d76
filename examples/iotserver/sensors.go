package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/org/rthub/mqttbridge"
)

// Topics. A deployment may put them under a prefix (MQTT_TOPIC_PREFIX), e.g.
// "site1/", so that several servers (or test runs) share one broker.
const (
	readingTopic = "sensors/%s/reading"   // payload: ReadingPayload (JSON)
	statusTopic  = "devices/%s/status"    // payload: "online" or "offline" (retained; the Last Will says offline)
	commandTopic = "devices/%s/cmd"       // to the device: mqttbridge.CommandPayload (JSON, QoS 1)
	replyTopic   = "devices/%s/cmd/reply" // from the device: mqttbridge.CommandReply (JSON)
)

// ReadingPayload is what a device publishes on sensors/{id}/reading:
//
//	{"ts":"2026-11-20T10:00:00Z","values":{"temperature":22.4,"humidity":41.0}}
//
// ts is optional (the server's receive time is used without it).
type ReadingPayload struct {
	TS     time.Time          `json:"ts,omitzero"`
	Values map[string]float64 `json:"values"`
}

// SimConfig configures the simulated sensors.
type SimConfig struct {
	Devices  int           // number of devices (SIM_DEVICES, default 6)
	Interval time.Duration // time between two readings of a device (SIM_INTERVAL, default 1 s)
	// BreachEvery is the mean time between two threshold breaches of one
	// device (SIM_BREACH_EVERY, default 3 min; 0 turns breaches off). A
	// breach lifts one metric past its alert level for 15–40 s.
	BreachEvery time.Duration
	// DropoutEvery is the mean time between two dropouts of one device
	// (SIM_DROPOUT_EVERY, default 5 min; 0 turns them off). In a dropout
	// the device's TCP connection is cut without a DISCONNECT, so the
	// broker publishes its Last Will (offline); it reconnects 5–20 s later.
	DropoutEvery time.Duration
	// Seed makes the values repeatable (0: random).
	Seed uint64
}

// metricShape is how one metric of a simulated device moves: a sine wave
// around Base plus noise, and during a breach an extra Breach.
type metricShape struct {
	Name      string
	Base, Amp float64
	Period    time.Duration
	Noise     float64
	Breach    float64 // added at the peak of a breach
	Digits    int
}

// deviceKinds are the kinds of simulated device, by index modulo 3.
var deviceKinds = []struct {
	kind    string
	metrics []metricShape
}{
	{"climate", []metricShape{
		{Name: "temperature", Base: 23, Amp: 3, Period: 3 * time.Minute, Noise: 0.15, Breach: 10, Digits: 2},
		{Name: "humidity", Base: 45, Amp: 8, Period: 5 * time.Minute, Noise: 0.6, Breach: 30, Digits: 1},
	}},
	{"cold-room", []metricShape{
		{Name: "temperature", Base: 4, Amp: 1.2, Period: 2 * time.Minute, Noise: 0.1, Breach: 30, Digits: 2},
	}},
	{"air", []metricShape{
		{Name: "temperature", Base: 21, Amp: 2, Period: 4 * time.Minute, Noise: 0.1, Breach: 12, Digits: 2},
		{Name: "co2", Base: 650, Amp: 180, Period: 6 * time.Minute, Noise: 12, Breach: 900, Digits: 0},
	}},
}

// Simulator runs the simulated devices: each one an MQTT client of its own,
// with a Last Will on its status topic, publishing readings.
type Simulator struct {
	tracing *tracing // nil: off; set before Start
	boot    string   // random, in every correlation ID of this run
	cfg     SimConfig
	broker  *url.URL
	prefix  string
	log     *slog.Logger
	devices []*simDevice
	wg      sync.WaitGroup
}

// simDevice is one simulated device. Its goroutine (run) publishes; the
// connection manager of autopaho reconnects it.
type simDevice struct {
	sim    *Simulator
	id     string
	name   string
	kind   string
	shapes []metricShape
	phase  float64
	rng    *mrand.Rand // used by run only

	up       atomic.Bool
	mu       sync.Mutex
	conn     net.Conn  // the current TCP connection, to cut it
	offUntil time.Time // no connection before this (a dropout)
	// breach state, used by run only
	breachMetric int
	breachStart  time.Time
	breachLen    time.Duration

	// Commands (commands.go): received by the MQTT client, applied by run.
	cmds       chan *paho.Publish // at most cmdBacklog; more are dropped (they expire unanswered)
	interval   time.Duration      // the reading interval (set_interval); written by run under mu
	thresholds map[string]float64 // the alert levels set (set_threshold); under mu
	applied    []string           // the last cmdMemory command IDs applied, oldest first; under mu
}

// cmdBacklog bounds a device's commands waiting to be applied, and
// cmdMemory the command IDs it remembers to apply each at most once (QoS 1
// may deliver one twice).
const (
	cmdBacklog = 16
	cmdMemory  = 64
)

// NewSimulator prepares cfg.Devices devices publishing to the broker at
// brokerURL (tcp://host:port or mqtt://host:port) under topic prefix.
func NewSimulator(cfg SimConfig, brokerURL, prefix string, log *slog.Logger) (*Simulator, error) {
	u, err := url.Parse(brokerURL)
	if err != nil {
		return nil, fmt.Errorf("simulator: broker URL: %w", err)
	}
	if cfg.Interval <= 0 {
		return nil, errors.New("simulator: interval must be positive")
	}
	var boot [2]byte
	_, _ = rand.Read(boot[:])
	s := &Simulator{cfg: cfg, broker: u, prefix: prefix, log: log, boot: hex.EncodeToString(boot[:])}
	seed := cfg.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	for i := range cfg.Devices {
		k := deviceKinds[i%len(deviceKinds)]
		rng := mrand.New(mrand.NewPCG(seed, uint64(i)))
		s.devices = append(s.devices, &simDevice{
			sim:        s,
			id:         fmt.Sprintf("dev-%02d", i+1),
			name:       fmt.Sprintf("%s %d", k.kind, i+1),
			kind:       k.kind,
			shapes:     k.metrics,
			phase:      rng.Float64() * 2 * math.Pi,
			rng:        rng,
			cmds:       make(chan *paho.Publish, cmdBacklog),
			interval:   cfg.Interval,
			thresholds: map[string]float64{},
		})
	}
	return s, nil
}

// DeviceInfo is a simulated device's ID, name and kind.
type DeviceInfo struct{ ID, Name, Kind string }

// Devices lists the simulated devices.
func (s *Simulator) Devices() []DeviceInfo {
	out := make([]DeviceInfo, len(s.devices))
	for i, d := range s.devices {
		out[i] = DeviceInfo{d.id, d.name, d.kind}
	}
	return out
}

// Start connects every device and starts publishing; the devices stop when
// ctx ends, and Wait waits for them.
func (s *Simulator) Start(ctx context.Context) {
	for _, d := range s.devices {
		s.wg.Go(func() { d.run(ctx) })
	}
}

// Wait waits until every device has disconnected after ctx ended.
func (s *Simulator) Wait() { s.wg.Wait() }

// Connected counts the devices with an MQTT connection up.
func (s *Simulator) Connected() int {
	n := 0
	for _, d := range s.devices {
		if d.up.Load() {
			n++
		}
	}
	return n
}

// Dropout cuts the device's connection at once, without an MQTT
// DISCONNECT, so the broker publishes its Last Will; the device reconnects
// after d. It reports false for an unknown device.
func (s *Simulator) Dropout(id string, d time.Duration) bool {
	for _, dev := range s.devices {
		if dev.id == id {
			dev.dropout(d)
			return true
		}
	}
	return false
}

func (d *simDevice) dropout(dur time.Duration) {
	d.mu.Lock()
	d.offUntil = time.Now().Add(dur)
	c := d.conn
	d.conn = nil
	d.mu.Unlock()
	if c != nil {
		d.sim.log.Info("simulator: dropout", "device", d.id, "for", dur.Round(time.Second))
		_ = c.Close()
	}
}

func (d *simDevice) topic(format string) string {
	return d.sim.prefix + fmt.Sprintf(format, d.id)
}

// run connects the device and publishes a reading every interval until ctx
// ends, then disconnects cleanly (the device says offline itself: a clean
// DISCONNECT suppresses the Last Will).
func (d *simDevice) run(ctx context.Context) {
	var idb [4]byte
	_, _ = rand.Read(idb[:])
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{d.sim.broker},
		KeepAlive:                     10,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                5 * time.Second,
		ReconnectBackoff:              autopaho.NewConstantBackoff(time.Second),
		WillMessage:                   &paho.WillMessage{Topic: d.topic(statusTopic), Payload: []byte(statusOffline), QoS: 1, Retain: true},
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			d.mu.Lock()
			wait := time.Until(d.offUntil)
			d.mu.Unlock()
			if wait > 0 {
				return nil, fmt.Errorf("simulated dropout for %v more", wait.Round(time.Second))
			}
			var dialer net.Dialer
			c, err := dialer.DialContext(ctx, "tcp", u.Host)
			if err != nil {
				return nil, err
			}
			d.mu.Lock()
			d.conn = c
			d.mu.Unlock()
			return c, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			d.up.Store(true)
			// Subscribe to commands first (a clean session each time), then
			// say online, retained, so that a server (re)starting later
			// learns the status and its queued commands find us listening.
			// Not from this callback's goroutine: it must not block.
			// run is still running (it waits for cm.Done), so the group's
			// count is not zero here.
			d.sim.wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if _, err := cm.Subscribe(pctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: d.topic(commandTopic), QoS: 1}}}); err != nil {
					d.sim.log.Debug("simulator: subscribe to commands", "device", d.id, "err", err)
				}
				_, _ = cm.Publish(pctx, &paho.Publish{Topic: d.topic(statusTopic), QoS: 1, Retain: true, Payload: []byte(statusOnline)})
			})
		},
		OnConnectionDown: func() bool { d.up.Store(false); return true },
		ClientConfig: paho.ClientConfig{ClientID: "iotsim-" + d.id + "-" + hex.EncodeToString(idb[:]),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				select {
				case d.cmds <- pr.Packet:
				default:
					d.sim.log.Warn("simulator: command backlog full; command dropped", "device", d.id)
				}
				return true, nil
			}}},
	}
	// The connection outlives ctx by the goodbye below; Disconnect ends it.
	cmCtx, cmCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cmCancel()
	cm, err := autopaho.NewConnection(cmCtx, cfg)
	if err != nil {
		d.sim.log.Error("simulator: connect", "device", d.id, "err", err)
		return
	}
	t := time.NewTicker(d.interval)
	defer t.Stop()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			// Say offline ourselves (a clean disconnect sends no Will), then
			// disconnect; bounded, the broker may be gone already.
			if d.up.Load() {
				pctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, _ = cm.Publish(pctx, &paho.Publish{Topic: d.topic(statusTopic), QoS: 1, Retain: true, Payload: []byte(statusOffline)})
				cancel()
			}
			dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := cm.Disconnect(dctx)
			cancel()
			if err != nil {
				// paho writes the DISCONNECT with no deadline: if the broker
				// stopped reading, that write never returns. Closing the
				// socket ends it, and with it the connection manager.
				d.sim.log.Warn("simulator: disconnect", "device", d.id, "err", err)
				d.mu.Lock()
				if d.conn != nil {
					_ = d.conn.Close()
				}
				d.mu.Unlock()
			}
			<-cm.Done()
			return
		case p := <-d.cmds:
			d.command(ctx, cm, t, p)
		case now := <-t.C:
			d.maybeDropout()
			if !d.up.Load() {
				continue
			}
			body, _ := json.Marshal(ReadingPayload{TS: now.UTC(), Values: d.sample(now)})
			// The reading's correlation ID, "<device>.<run>.<n>", goes in the
			// MQTT 5 user property the bridge reads (with the trace context
			// when tracing is on).
			seq++
			cid := fmt.Sprintf("%s.%s.%d", d.id, d.sim.boot, seq)
			topic := d.topic(readingTopic)
			props := &paho.PublishProperties{}
			end := d.sim.tracing.sensorSpan(ctx, d.id, topic, cid, &props.User)
			pctx, cancel := context.WithTimeout(ctx, d.interval)
			_, err := cm.Publish(pctx, &paho.Publish{Topic: topic, QoS: 0, Payload: body, Properties: props})
			cancel()
			end(err)
			if err != nil && ctx.Err() == nil {
				d.sim.log.Debug("simulator: publish", "device", d.id, "err", err)
			}
		}
	}
}

// chance reports true with probability interval/every (a Poisson process
// with mean every, sampled each interval).
func (d *simDevice) chance(every time.Duration) bool {
	return every > 0 && d.rng.Float64() < float64(d.interval)/float64(every)
}

// command applies a command (at most once per ID, not after it expired)
// and replies with the device's settings, or the error.
func (d *simDevice) command(ctx context.Context, cm *autopaho.ConnectionManager, t *time.Ticker, p *paho.Publish) {
	var c mqttbridge.CommandPayload
	if err := json.Unmarshal(p.Payload, &c); err != nil || c.ID == "" {
		d.sim.log.Warn("simulator: bad command", "device", d.id, "err", err)
		return
	}
	if !c.Expires.IsZero() && time.Now().After(c.Expires) {
		return // too late: the server has given up on it
	}
	d.mu.Lock()
	seen := slices.Contains(d.applied, c.ID)
	d.mu.Unlock()
	if seen {
		return // a QoS 1 duplicate: applied once already (its reply went out)
	}
	var errMsg string
	switch c.Name {
	case cmdSetInterval:
		var a IntervalArgs
		if err := json.Unmarshal(c.Args, &a); err != nil || a.Seconds < 1 || a.Seconds > 3600 {
			errMsg = "set_interval: want seconds 1 … 3600"
			break
		}
		d.mu.Lock() // written by run only; read by config under mu
		d.interval = time.Duration(a.Seconds) * time.Second
		d.mu.Unlock()
		t.Reset(d.interval)
	case cmdSetThreshold:
		var a ThresholdArgs
		if err := json.Unmarshal(c.Args, &a); err != nil || a.Metric == "" || math.IsNaN(a.Value) || math.IsInf(a.Value, 0) {
			errMsg = "set_threshold: want a metric and a finite value"
			break
		}
		d.mu.Lock()
		d.thresholds[a.Metric] = a.Value
		d.mu.Unlock()
	default:
		errMsg = fmt.Sprintf("unknown command %q", truncate(c.Name, 40))
	}
	d.mu.Lock()
	d.applied = append(d.applied, c.ID)
	if len(d.applied) > cmdMemory {
		d.applied = slices.Delete(d.applied, 0, 1)
	}
	d.mu.Unlock()
	rep := mqttbridge.CommandReply{ID: c.ID, Error: errMsg}
	if errMsg == "" {
		rep.Result, _ = json.Marshal(d.config())
	}
	body, _ := json.Marshal(rep)
	to := d.topic(replyTopic)
	if p.Properties != nil && p.Properties.ResponseTopic != "" {
		to = p.Properties.ResponseTopic
	}
	d.sim.log.Info("simulator: command", "device", d.id, "id", c.ID, "name", c.Name, "error", errMsg)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cm.Publish(pctx, &paho.Publish{Topic: to, QoS: 1, Payload: body,
		Properties: &paho.PublishProperties{CorrelationData: []byte(c.ID)}}); err != nil && ctx.Err() == nil {
		// Lost: the server's TTL expires the command ("sent, no reply").
		d.sim.log.Warn("simulator: command reply", "device", d.id, "id", c.ID, "err", err)
	}
}

// config is the device's settings, its reply to a command.
func (d *simDevice) config() DeviceConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DeviceConfig{IntervalSeconds: d.interval.Seconds(), Thresholds: maps.Clone(d.thresholds)}
}

// Applied returns the IDs of the last commands the device applied, oldest
// first (at most 64), and its settings; ok is false for an unknown device.
func (s *Simulator) Applied(id string) (ids []string, cfg DeviceConfig, ok bool) {
	for _, d := range s.devices {
		if d.id == id {
			d.mu.Lock()
			ids = slices.Clone(d.applied)
			d.mu.Unlock()
			return ids, d.config(), true
		}
	}
	return nil, DeviceConfig{}, false
}

func (d *simDevice) maybeDropout() {
	if d.up.Load() && d.chance(d.sim.cfg.DropoutEvery) {
		d.dropout(time.Duration(5+d.rng.IntN(16)) * time.Second)
	}
}

// sample returns the device's values at now: sine plus noise, plus a
// breach bump (a plateau with ramps) while one is running.
func (d *simDevice) sample(now time.Time) map[string]float64 {
	if d.breachLen == 0 && d.chance(d.sim.cfg.BreachEvery) {
		d.breachMetric = d.rng.IntN(len(d.shapes))
		d.breachStart = now
		d.breachLen = time.Duration(15+d.rng.IntN(26)) * time.Second
	}
	out := make(map[string]float64, len(d.shapes))
	for i, m := range d.shapes {
		t := float64(now.UnixNano()) / float64(m.Period)
		v := m.Base + m.Amp*math.Sin(2*math.Pi*t+d.phase) + m.Noise*d.rng.NormFloat64()
		if d.breachLen > 0 && i == d.breachMetric {
			v += m.Breach * bump(now.Sub(d.breachStart), d.breachLen)
		}
		p := math.Pow(10, float64(m.Digits))
		out[m.Name] = math.Round(v*p) / p
	}
	if d.breachLen > 0 && now.Sub(d.breachStart) >= d.breachLen {
		d.breachLen = 0
	}
	return out
}

// bump is 0 → 1 over the first 5 s of a breach, 1 for most of it, and back
// to 0 over its last 5 s.
func bump(elapsed, total time.Duration) float64 {
	const ramp = 5 * time.Second
	switch {
	case elapsed < 0 || elapsed >= total:
		return 0
	case elapsed < ramp:
		return float64(elapsed) / float64(ramp)
	case total-elapsed < ramp:
		return float64(total-elapsed) / float64(ramp)
	}
	return 1
}
