package promrthub

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub"
	"github.com/prometheus/client_golang/prometheus"
)

// StatsSource is what the collector reads on each scrape: [rthub.Hub]
// implements it.
type StatsSource interface {
	Stats() rthub.Stats
}

var _ StatsSource = (*rthub.Hub)(nil)

// Options configures a [Collector]. The zero value exports the hub's
// metrics (once [Collector.SetHub] gave it a hub) and nothing else.
type Options struct {
	// Hub is read on each scrape. Leave it nil when the collector's hooks
	// must go into the hub's Options first, and call [Collector.SetHub]
	// once the hub exists.
	Hub StatsSource
	// Node, if set, is the value of a constant label node on every series,
	// for setups where the scrape target does not tell the nodes apart.
	Node string
	// Broker, if set, is called on each scrape for the broker's per-shard
	// health (the rthub_broker_* families). The redisbroker module's
	// (*Broker).Stats converts in a few lines; see the package example.
	Broker func() []BrokerShard
	// BrokerControl, if set, is called on each scrape for the state of the
	// broker's control plane (the rthub_broker_control_* families),
	// converted from the redisbroker module's (*Broker).Stats().Control.
	BrokerControl func() BrokerControl
	// Bridge, if set, is called on each scrape for the MQTT bridge's
	// counters (the rthub_mqtt_* families), converted from the mqttbridge
	// module's (*Bridge).Stats.
	Bridge func() BridgeStats
	// MemoryLimit is exported as rthub_memory_limit_bytes, the denominator of
	// the memory alert. 0 detects it at New: the cgroup limit (v2
	// memory.max, else v1 memory.limit_in_bytes), else GOMEMLIMIT; nothing
	// is exported when there is none. Negative: never exported.
	MemoryLimit int64
	// MaxRefusalSeries bounds the label sets of rthub_refusals_total;
	// refusals past it are counted with code and status "other". Default 500.
	MaxRefusalSeries int
}

// BrokerShard is one broker shard's health as a [Collector] exports it; the
// fields mirror redisbroker.ShardStats, so that this module does not import
// the broker's.
type BrokerShard struct {
	Name         string        // shard label
	Connected    bool          // pub/sub connection up, subscriptions in place
	Deaf         bool          // the last liveness probe did not come back in time
	ProbeRTT     time.Duration // round trip of the last probe that came back
	LastProbe    time.Time     // when it came back; zero if none has
	Rooms        int           // rooms this node subscribed on the shard
	Resubscribes uint64        // pub/sub connections restored
	Published    uint64        // publish calls
	PublishErrs  uint64        // failed publish calls
	Delivered    uint64        // publications delivered to this node
}

// BrokerControl is the state of a broker's control plane (cluster-wide
// control calls and revocations) as a [Collector] exports it; the fields
// mirror redisbroker.ControlStats.
type BrokerControl struct {
	Live    bool   // control subscription up, heartbeat renewed
	Dropped uint64 // control messages dropped at a full queue
	Resyncs uint64 // control subscriptions put in place, the first included
}

// BridgeStats is an MQTT bridge's state as a [Collector] exports it; the
// fields mirror mqttbridge.Stats, so that this module does not import the
// bridge's.
type BridgeStats struct {
	Connected, Subscribed bool
	// Connects counts connections established, the first included;
	// ConnectErrors failed attempts and subscriptions.
	Connects, ConnectErrors uint64
	// Received and InvalidTopic are the bridge's totals, which include the
	// messages whose topic matched no route (exported with route="").
	Received, InvalidTopic uint64
	Routes                 []BridgeRoute
}

// BridgeRoute holds the counters of one bridge route (mqttbridge.RouteStats).
type BridgeRoute struct {
	Name                                           string
	Received, Sent, Published, PublishErrors       uint64
	DecodeErrors, Skipped, Unchanged, InvalidTopic uint64
	Dropped, Merged                                uint64
	Queued, QueuedBytes, QueueHighWater            int
}

// Collector is a [prometheus.Collector] of a hub's metrics: it reads
// [rthub.Hub.Stats] (and the optional broker and bridge sources) on each
// scrape, so an idle collector costs nothing, and counts the refusals and
// disconnects its hooks see. Register it once; it is safe for concurrent
// use. [Metrics] lists what it exports.
type Collector struct {
	opts   Options
	hub    atomic.Pointer[StatsSource]
	descs  map[string]*prometheus.Desc
	memLim float64 // 0: not exported

	refusals    *prometheus.CounterVec
	disconnects *prometheus.CounterVec
	refMu       sync.Mutex
	refSeen     map[[3]string]bool
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector. It does not register it.
func New(opts Options) *Collector {
	if opts.MaxRefusalSeries <= 0 {
		opts.MaxRefusalSeries = 500
	}
	var constLabels prometheus.Labels
	if opts.Node != "" {
		constLabels = prometheus.Labels{"node": opts.Node}
	}
	c := &Collector{opts: opts, descs: make(map[string]*prometheus.Desc, len(catalog)), refSeen: map[[3]string]bool{}}
	for _, m := range catalog {
		c.descs[m.Name] = prometheus.NewDesc(m.Name, m.Help, m.Labels, constLabels)
	}
	c.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: mRefusals, Help: help(mRefusals), ConstLabels: constLabels}, []string{"op", "code", "status"})
	c.disconnects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: mDisconnects, Help: help(mDisconnects), ConstLabels: constLabels}, []string{"code"})
	switch {
	case opts.MemoryLimit > 0:
		c.memLim = float64(opts.MemoryLimit)
	case opts.MemoryLimit == 0:
		c.memLim = float64(detectMemoryLimit())
	}
	if opts.Hub != nil {
		c.SetHub(opts.Hub)
	}
	return c
}

func help(name string) string {
	for _, m := range catalog {
		if m.Name == name {
			return m.Help
		}
	}
	panic("promrthub: no metric " + name)
}

// SetHub sets (or replaces) the hub read on each scrape. Until it is set,
// the hub's families are not exported.
func (c *Collector) SetHub(h StatsSource) {
	c.hub.Store(&h)
}

// OnRefused returns an [rthub.Options].OnRefused hook that counts each
// refusal in rthub_refusals_total and then calls next (which may be nil).
func (c *Collector) OnRefused(next func(context.Context, rthub.Refusal)) func(context.Context, rthub.Refusal) {
	return func(ctx context.Context, r rthub.Refusal) {
		status := ""
		if r.Status != 0 {
			status = strconv.Itoa(r.Status)
		}
		key := [3]string{r.Op, r.Code, status}
		c.refMu.Lock()
		if !c.refSeen[key] {
			if len(c.refSeen) >= c.opts.MaxRefusalSeries {
				key = [3]string{r.Op, "other", "other"}
			} else {
				c.refSeen[key] = true
			}
		}
		c.refMu.Unlock()
		c.refusals.WithLabelValues(key[:]...).Inc()
		if next != nil {
			next(ctx, r)
		}
	}
}

// OnDisconnect returns an [rthub.Options].OnDisconnect hook that counts each
// ended connection in rthub_disconnects_total by close code, then calls
// next (which may be nil).
func (c *Collector) OnDisconnect(next func(context.Context, rthub.ConnInfo, error)) func(context.Context, rthub.ConnInfo, error) {
	return func(ctx context.Context, ci rthub.ConnInfo, err error) {
		code := rthub.CloseStatus(err)
		label := "unknown"
		if code >= 1000 && code < 5000 { // a valid WebSocket close code: bounded
			label = strconv.Itoa(int(code))
		}
		c.disconnects.WithLabelValues(label).Inc()
		if next != nil {
			next(ctx, ci, err)
		}
	}
}

// Describe sends the descriptors of every family the collector may export.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range catalog {
		if m.Source != "hook" {
			ch <- c.descs[m.Name]
		}
	}
	c.refusals.Describe(ch)
	c.disconnects.Describe(ch)
}

// Collect reads the sources and sends the current values.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if p := c.hub.Load(); p != nil && *p != nil {
		c.collectHub(ch, (*p).Stats())
	}
	c.refusals.Collect(ch)
	c.disconnects.Collect(ch)
	if c.opts.Broker != nil {
		c.collectBroker(ch, c.opts.Broker())
	}
	if c.opts.BrokerControl != nil {
		ctl := c.opts.BrokerControl()
		c.gauge(ch, mBrokerCtlLive, b2f(ctl.Live))
		c.counter(ch, mBrokerCtlDropped, ctl.Dropped)
		c.counter(ch, mBrokerCtlResyncs, ctl.Resyncs)
	}
	if c.opts.Bridge != nil {
		c.collectBridge(ch, c.opts.Bridge())
	}
	if c.memLim > 0 {
		c.gauge(ch, mMemoryLimit, c.memLim)
	}
}

func (c *Collector) gauge(ch chan<- prometheus.Metric, name string, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
}

func (c *Collector) counter(ch chan<- prometheus.Metric, name string, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v), labels...)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *Collector) collectHub(ch chan<- prometheus.Metric, s rthub.Stats) {
	c.gauge(ch, mConnections, float64(s.Connections))
	c.gauge(ch, mUsers, float64(s.Users))
	c.gauge(ch, mRooms, float64(s.Rooms))
	c.counter(ch, mAccepted, s.Accepted)
	c.counter(ch, mHandshakesRefused, s.Unauthorized, "unauthorized")
	c.counter(ch, mHandshakesRefused, s.Throttled, "throttled")
	other := uint64(0)
	if s.Refused > s.Throttled { // Refused includes Throttled
		other = s.Refused - s.Throttled
	}
	c.counter(ch, mHandshakesRefused, other, "other")
	c.counter(ch, mClosed, s.SlowConsumers, "slow_consumer")
	c.counter(ch, mClosed, s.PingTimeouts, "ping_timeout")
	c.counter(ch, mClosed, s.TokenExpired, "token_expired")
	c.counter(ch, mClosed, s.ProtocolErrs, "protocol_error")
	c.counter(ch, mClosed, s.AbuseCloses, "abuse")
	c.counter(ch, mClosed, s.RevokedConns, "revoked")
	c.counter(ch, mPublished, s.Published)
	c.counter(ch, mDelivered, s.Delivered)
	for name, e := range s.Events {
		c.counter(ch, mEvents, e.Published, name, "published")
		c.counter(ch, mEvents, e.Delivered, name, "delivered")
		c.counter(ch, mEvents, e.Dropped, name, "dropped")
	}
	c.counter(ch, mDroppedFrames, s.DroppedFrames)
	c.counter(ch, mOverflow, s.OverflowDropped, "dropped")
	c.counter(ch, mOverflow, s.OverflowConflated, "conflated")
	c.counter(ch, mGapNotices, s.GapNotices)
	c.counter(ch, mFramesSent, s.FramesSent)
	c.counter(ch, mWrites, s.Writes)
	c.counter(ch, mBytesSent, s.BytesSent)
	c.counter(ch, mMessagesIn, s.MessagesIn)
	c.counter(ch, mBytesIn, s.BytesReceived)
	c.counter(ch, mEventBytes, s.EventBytes, "plain")
	c.counter(ch, mEventBytes, s.EventWireBytes, "wire")
	c.counter(ch, mReconnects, s.Reconnects)
	c.gauge(ch, mQueueFrames, float64(s.QueuedFrames))
	c.gauge(ch, mQueueBytes, float64(s.QueuedBytes))
	for code, n := range s.ReplyErrors {
		c.counter(ch, mReplyErrors, n, code)
	}
	c.counter(ch, mForbidden, s.Forbidden)
	c.counter(ch, mRateLimited, s.RateLimited)
	c.counter(ch, mResumes, s.Resumes)
	c.counter(ch, mUnrecovered, s.Unrecovered)
	c.counter(ch, mGapsRecovered, s.GapsRecovered)
	c.counter(ch, mBrokerErrors, s.BrokerErrors)
	c.gauge(ch, mHistoryBytes, float64(s.HistoryBytes))
	c.counter(ch, mHistoryEvictions, s.HistoryEvictions)
	complete := uint64(0)
	if s.ControlCalls > s.ControlIncomplete {
		complete = s.ControlCalls - s.ControlIncomplete
	}
	c.counter(ch, mControlCalls, complete, "complete")
	c.counter(ch, mControlCalls, s.ControlIncomplete, "incomplete")
	c.counter(ch, mRevocations, s.Revocations)
	c.counter(ch, mRevokedRefused, s.RevokedRefused)
	c.gauge(ch, mRevocationsKept, float64(s.RevocationsKept))
	c.counter(ch, mRevocationsDrop, s.RevocationsDropped)
	c.counter(ch, mCalls, s.Calls)
	c.counter(ch, mIdemRetries, s.Replayed, "replayed")
	c.counter(ch, mIdemRetries, s.Joined, "joined")
	c.counter(ch, mRelayedPosts, s.RelayedPosts)

	l := s.BroadcastLatency
	buckets := make(map[float64]uint64, len(l.Bounds))
	for i, b := range l.Bounds {
		buckets[b.Seconds()] = l.Counts[i]
	}
	ch <- prometheus.MustNewConstHistogram(c.descs[mLatency], l.Count, l.Sum.Seconds(), buckets)
}

func (c *Collector) collectBroker(ch chan<- prometheus.Metric, shards []BrokerShard) {
	for _, s := range shards {
		c.gauge(ch, mBrokerConnected, b2f(s.Connected), s.Name)
		c.gauge(ch, mBrokerDeaf, b2f(s.Deaf), s.Name)
		c.gauge(ch, mBrokerProbeRTT, s.ProbeRTT.Seconds(), s.Name)
		last := 0.0
		if !s.LastProbe.IsZero() {
			last = float64(s.LastProbe.UnixNano()) / 1e9
		}
		c.gauge(ch, mBrokerLastProbe, last, s.Name)
		c.gauge(ch, mBrokerRooms, float64(s.Rooms), s.Name)
		c.counter(ch, mBrokerResubscribes, s.Resubscribes, s.Name)
		c.counter(ch, mBrokerPublishes, s.Published, s.Name)
		c.counter(ch, mBrokerPublishErrs, s.PublishErrs, s.Name)
		c.counter(ch, mBrokerDeliveries, s.Delivered, s.Name)
	}
}

func (c *Collector) collectBridge(ch chan<- prometheus.Metric, s BridgeStats) {
	c.gauge(ch, mMQTTConnected, b2f(s.Connected))
	c.gauge(ch, mMQTTSubscribed, b2f(s.Subscribed))
	c.counter(ch, mMQTTConnects, s.Connects)
	c.counter(ch, mMQTTConnectErrors, s.ConnectErrors)
	var recv, invalid uint64
	for _, r := range s.Routes {
		recv += r.Received
		invalid += r.InvalidTopic
		c.counter(ch, mMQTTReceived, r.Received, r.Name)
		for _, o := range []struct {
			outcome string
			n       uint64
		}{
			{"sent", r.Sent}, {"decode_error", r.DecodeErrors}, {"skipped", r.Skipped},
			{"unchanged", r.Unchanged}, {"invalid_topic", r.InvalidTopic},
			{"dropped", r.Dropped}, {"merged", r.Merged},
		} {
			c.counter(ch, mMQTTMessages, o.n, r.Name, o.outcome)
		}
		c.counter(ch, mMQTTPublishes, r.Published, r.Name, "ok")
		c.counter(ch, mMQTTPublishes, r.PublishErrors, r.Name, "error")
		c.gauge(ch, mMQTTQueued, float64(r.Queued), r.Name)
		c.gauge(ch, mMQTTQueuedBytes, float64(r.QueuedBytes), r.Name)
		c.gauge(ch, mMQTTHighWater, float64(r.QueueHighWater), r.Name)
	}
	// Messages whose topic matched no route: in the totals only.
	unrouted, unroutedInvalid := uint64(0), uint64(0)
	if s.Received > recv {
		unrouted = s.Received - recv
	}
	if s.InvalidTopic > invalid {
		unroutedInvalid = s.InvalidTopic - invalid
	}
	c.counter(ch, mMQTTReceived, unrouted, "")
	c.counter(ch, mMQTTMessages, unroutedInvalid, "", "invalid_topic")
}
