package mqttbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/org/rthub"
)

// commander is the downlink of a bridge: the online devices, the callers
// waiting in Command, the command goroutine (runCommands), which alone
// publishes commands and expires them, and the reply goroutine
// (runReplies), which records replies. Replies have a goroutine of their
// own so that the MQTT client's delivery goroutine, waiting for room in
// the reply queue, never waits for a command publish: that publish waits
// for its PUBACK, which the client reads only once the delivery goroutine
// takes the next message.
type commander struct {
	cfg    CommandConfig
	store  CommandStore
	topic  *pattern // Topic, {device} its only variable
	reply  *pattern
	status *pattern
	// statusShared is true when a route has the status pattern's filter:
	// the bridge subscribes once, and the route gets the message too.
	statusShared bool
	rooms        []*template
	grace        time.Duration // how long past Expires a waiter waits for the sweep

	mu       sync.Mutex
	online   map[string]struct{} // at most MaxDevices
	flush    map[string]struct{} // online devices to send queued commands to
	flushAll bool                // every online device with queued commands (after a reconnection)
	retryAll bool                // flushAll at the next sweep (the store failed)
	waiters  map[string]chan Result
	signal   chan struct{} // cap 1: flush or flushAll set

	replies chan reply // from the MQTT client's delivery goroutine

	stats      commandCounters
	publishLog logLimiter
	replyLog   logLimiter
	onlineLog  logLimiter
	storeLog   logLimiter
}

// reply is a message on a reply topic.
type reply struct {
	device      string
	payload     []byte
	correlation []byte
}

// replyQueue bounds the replies waiting for the reply goroutine; past it
// the MQTT client's delivery goroutine waits (the broker holds the rest).
const replyQueue = 1024

// setDefaults fills in c's defaults and returns every problem.
func (c *CommandConfig) setDefaults() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("Commands: "+format, args...)) }
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Topic, "devices/{device}/cmd")
	def(&c.ReplyTopic, "devices/{device}/cmd/reply")
	def(&c.StatusTopic, "devices/{device}/status")
	def(&c.Event, "device:command")
	if c.Rooms == nil {
		c.Rooms = []string{"device:{device}"}
	}
	if c.Online == nil {
		c.Online = ParseOnline
	}
	defDur := func(d *time.Duration, v time.Duration, name string) {
		if *d == 0 {
			*d = v
		} else if *d < 0 {
			bad("%s is negative", name)
		}
	}
	defInt := func(p *int, v int, name string) {
		if *p == 0 {
			*p = v
		} else if *p < 0 {
			bad("%s is negative", name)
		}
	}
	defDur(&c.TTL, 5*time.Minute, "TTL")
	defDur(&c.MaxTTL, 24*time.Hour, "MaxTTL")
	if c.TTL > c.MaxTTL {
		bad("TTL %v is over MaxTTL %v", c.TTL, c.MaxTTL)
	}
	defDur(&c.SweepInterval, time.Second, "SweepInterval")
	defInt(&c.MaxPerDevice, 16, "MaxPerDevice")
	defInt(&c.MaxQueued, 10_000, "MaxQueued")
	defInt(&c.MaxArgs, 16<<10, "MaxArgs")
	defInt(&c.MaxDevices, 100_000, "MaxDevices")
	if c.Store == nil {
		c.Store = NewMemoryCommandStore(0)
	}
	return errs
}

// newCommander validates cfg against the routes' patterns.
func newCommander(cfg CommandConfig, routes []*route, shared bool) (*commander, []error) {
	errs := cfg.setDefaults()
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("Commands: "+format, args...)) }
	c := &commander{cfg: cfg, store: cfg.Store, grace: 2 * cfg.SweepInterval,
		online: map[string]struct{}{}, flush: map[string]struct{}{}, waiters: map[string]chan Result{},
		signal: make(chan struct{}, 1), replies: make(chan reply, replyQueue)}
	devicePattern := func(name, s string) *pattern {
		p, err := parsePattern(s)
		if err != nil {
			bad("%s: %v", name, err)
			return nil
		}
		if len(p.vars) != 1 || p.vars[0] != "device" {
			bad("%s %q: want exactly one variable, {device}", name, s)
			return nil
		}
		for _, l := range p.levels {
			if l.kind == levelPlus || l.kind == levelHash {
				bad("%s %q: no '+' or '#'", name, s)
				return nil
			}
		}
		return p
	}
	c.topic = devicePattern("Topic", cfg.Topic)
	c.reply = devicePattern("ReplyTopic", cfg.ReplyTopic)
	c.status = devicePattern("StatusTopic", cfg.StatusTopic)
	if c.reply != nil && c.status != nil && overlaps(c.reply, c.status) {
		bad("ReplyTopic %q and StatusTopic %q overlap", cfg.ReplyTopic, cfg.StatusTopic)
	}
	for _, r := range routes {
		if c.reply != nil && overlaps(c.reply, r.pat) {
			bad("ReplyTopic %q overlaps Routes[%d]'s Topic %q", cfg.ReplyTopic, r.idx, r.Topic)
		}
		if c.status != nil && overlaps(c.status, r.pat) {
			switch {
			case r.pat.filter == c.status.filter && !shared:
				c.statusShared = true
			case shared:
				bad("StatusTopic %q overlaps Routes[%d]'s Topic %q: not allowed with ShareGroup (the bridge subscribes to it unshared)", cfg.StatusTopic, r.idx, r.Topic)
			default:
				bad("StatusTopic %q overlaps Routes[%d]'s Topic %q without being the same pattern", cfg.StatusTopic, r.idx, r.Topic)
			}
		}
	}
	if cfg.Event == "" || rthub.ValidRoom(cfg.Event) != nil {
		bad("Event %q is not a valid event name", cfg.Event)
	}
	if c.status != nil {
		for _, s := range cfg.Rooms {
			t, err := parseTemplate(s, c.status)
			if err == nil {
				err = validRoomTemplate(t, 1)
			}
			if err != nil {
				bad("Rooms: %v", err)
				continue
			}
			c.rooms = append(c.rooms, t)
		}
	}
	return c, errs
}

// filters returns the subscriptions the downlink adds.
func (c *commander) filters() []string {
	f := []string{c.reply.filter}
	if !c.statusShared {
		f = append(f, c.status.filter)
	}
	return f
}

// commandTopic returns the device's command topic.
func (c *commander) commandTopic(device string) string { return c.topic.expandTopic(device) }

// replyTopic returns the device's reply topic.
func (c *commander) replyTopic(device string) string { return c.reply.expandTopic(device) }

func (c *commander) isOnline(device string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.online[device]
	return ok
}

func (c *commander) scheduleFlush(device string) {
	c.mu.Lock()
	if _, ok := c.online[device]; ok {
		c.flush[device] = struct{}{}
	}
	c.mu.Unlock()
	c.wake()
}

func (c *commander) scheduleFlushAll() {
	c.mu.Lock()
	c.flushAll = true
	c.mu.Unlock()
	c.wake()
}

// scheduleFlushAllLater asks for another flush of every device at the
// next sweep (after a store error).
func (c *commander) scheduleFlushAllLater() {
	c.mu.Lock()
	c.retryAll = true
	c.mu.Unlock()
}

func (c *commander) wake() {
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// addWaiter registers a caller of Command, at most MaxQueued at once.
func (c *commander) addWaiter(id string) (chan Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiters) >= c.cfg.MaxQueued {
		return nil, errQueueFullTotal(c.cfg.MaxQueued)
	}
	if _, dup := c.waiters[id]; dup {
		return nil, fmt.Errorf("%w: %q", ErrDuplicateCommand, id)
	}
	w := make(chan Result, 1)
	c.waiters[id] = w
	return w, nil
}

func (c *commander) removeWaiter(id string) {
	c.mu.Lock()
	delete(c.waiters, id)
	c.mu.Unlock()
}

// finish hands r to its waiter, if any.
func (c *commander) finish(r Result) {
	c.mu.Lock()
	w := c.waiters[r.ID]
	delete(c.waiters, r.ID)
	c.mu.Unlock()
	if w != nil {
		w <- r // cap 1, one send: the waiter was removed
	}
}

// wait waits for the outcome of the command r, registered as w.
func (c *commander) wait(ctx context.Context, b *Bridge, r Result, w chan Result) (Result, error) {
	// The sweep expires the command in the store; should another bridge
	// sharing it do so, this bridge learns nothing: stop waiting a little
	// after Expires anyway.
	t := time.NewTimer(time.Until(r.Expires) + c.grace)
	defer t.Stop()
	select {
	case f := <-w:
		return f, outcomeErr(f)
	case <-t.C:
		c.removeWaiter(r.ID)
		r.State = CommandExpired
		if s, err := c.store.Get(ctx, r.ID); err == nil && s.State.Finished() {
			r = s
		}
		return r, outcomeErr(r)
	case <-ctx.Done():
		c.removeWaiter(r.ID)
		return r, ctx.Err()
	case <-b.stopIntake:
		c.removeWaiter(r.ID)
		return r, ErrClosed
	}
}

// outcomeErr is Command's error for a finished command.
func outcomeErr(r Result) error {
	switch r.State {
	case CommandDone:
		return nil
	case CommandFailed:
		return fmt.Errorf("%w: %s", ErrCommandFailed, r.Error)
	case CommandExpired:
		if r.SentAt.IsZero() {
			return fmt.Errorf("%w: device %q was not online before the TTL", ErrExpired, r.Device)
		}
		return fmt.Errorf("%w: sent, but device %q did not reply within the TTL", ErrExpired, r.Device)
	}
	return fmt.Errorf("mqttbridge: command in state %q", r.State)
}

// onStatus records a status message of device, on the MQTT client's
// delivery goroutine (no I/O).
func (b *Bridge) onStatus(device string, payload []byte) {
	c := b.cmd
	on, ok := c.cfg.Online(payload)
	if !ok || !validTopicLevel(device) {
		return
	}
	c.mu.Lock()
	_, was := c.online[device]
	switch {
	case !on:
		delete(c.online, device)
		delete(c.flush, device)
	case was:
		// Online again (a reconnection the bridge did not see as offline,
		// or a retained repeat): send what may still wait.
		c.flush[device] = struct{}{}
	case len(c.online) >= c.cfg.MaxDevices:
		c.mu.Unlock()
		c.stats.onlineOverflow.Add(1)
		if ok, n := c.onlineLog.allow(time.Now()); ok {
			b.log.Warn("mqttbridge: too many online devices to remember; commands to this one wait", slog.String("device", truncate(device, 64)),
				slog.Int("max_devices", c.cfg.MaxDevices), slog.Int("suppressed", n))
		}
		return
	default:
		c.online[device] = struct{}{}
		c.flush[device] = struct{}{}
	}
	c.mu.Unlock()
	if on {
		c.wake()
	}
}

// onReply queues a reply for the command goroutine, waiting while the
// queue is full (until the bridge stops).
func (b *Bridge) onReply(device string, p *paho.Publish) {
	var corr []byte
	if p.Properties != nil {
		corr = p.Properties.CorrelationData
	}
	select {
	case b.cmd.replies <- reply{device: device, payload: p.Payload, correlation: corr}:
	case <-b.stopIntake:
	}
}

// stopContext returns a context cancelled when stop closes or the bridge
// is aborted; its cancel must be called.
func (b *Bridge) stopContext(stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(b.ctx)
	go func() { // ends when ctx does: at stop, or at the caller's cancel
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// runReplies is the reply goroutine: it records replies until stop closes.
func (b *Bridge) runReplies(stop <-chan struct{}) {
	ctx, cancel := b.stopContext(stop)
	defer cancel()
	for {
		select {
		case <-stop:
			return
		case r := <-b.cmd.replies:
			b.handleReply(ctx, r)
		}
	}
}

// runCommands is the command goroutine: it sends queued commands to online
// devices and expires commands, until stop closes.
func (b *Bridge) runCommands(stop <-chan struct{}) {
	c := b.cmd
	ctx, cancel := b.stopContext(stop)
	defer cancel()
	tick := time.NewTicker(c.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-c.signal:
			b.flushQueued(ctx)
		case <-tick.C:
			b.sweep(ctx)
			c.mu.Lock()
			retry := c.retryAll
			c.retryAll = false
			c.mu.Unlock()
			if retry {
				c.scheduleFlushAll()
			}
		}
	}
}

// flushQueued sends the queued commands of the devices scheduled: those
// that came online, or after a (re)connection every online device the
// store has commands for.
func (b *Bridge) flushQueued(ctx context.Context) {
	c := b.cmd
	c.mu.Lock()
	all := c.flushAll
	c.flushAll = false
	devices := make([]string, 0, len(c.flush))
	for d := range c.flush {
		devices = append(devices, d)
	}
	clear(c.flush)
	c.mu.Unlock()
	if all {
		waiting, err := c.store.Waiting(ctx, time.Now(), c.cfg.MaxQueued)
		if err != nil {
			b.storeErr(err, "waiting")
			c.scheduleFlushAllLater()
		}
		for _, d := range waiting {
			if c.isOnline(d) && !slices.Contains(devices, d) {
				devices = append(devices, d)
			}
		}
	}
	for _, d := range devices {
		if ctx.Err() != nil {
			return
		}
		if !b.sendQueued(ctx, d) {
			return // no connection: onConnectionUp schedules every device again
		}
	}
}

// sendQueued sends the device's queued commands, oldest first, each at most
// once. It reports false if the connection is down.
func (b *Bridge) sendQueued(ctx context.Context, device string) bool {
	c := b.cmd
	cmds, err := c.store.Queued(ctx, device, time.Now(), c.cfg.MaxPerDevice)
	if err != nil {
		b.storeErr(err, "queued")
		return true
	}
	for _, r := range cmds {
		if !c.isOnline(device) {
			return true
		}
		now := time.Now().UTC()
		ok, err := c.store.Claim(ctx, r.ID, now)
		if err != nil {
			b.storeErr(err, "claim")
			return true
		}
		if !ok {
			continue // another bridge sent it, or it expired meanwhile
		}
		// The event before the publish: the device's reply (handled by the
		// reply goroutine) may come back before the publish returns, and
		// clients should see sent before done.
		r.State, r.SentAt = CommandSent, now
		b.publishCommand(ctx, r)
		if err := b.publishToDevice(ctx, r); err != nil {
			if errors.Is(err, autopaho.ConnectionDownError) || errors.Is(err, errNotRunning) {
				// Not written: queued again, sent after the reconnection.
				if err := c.store.Release(ctx, r.ID); err != nil {
					b.storeErr(err, "release")
				}
				r.State, r.SentAt = CommandQueued, time.Time{}
				b.publishCommand(ctx, r)
				return false
			}
			// It may have reached the broker: at most once, so it stays sent.
			c.stats.sendErrors.Add(1)
			b.noteErr(fmt.Errorf("mqttbridge: command %s to %q: %w", r.ID, device, err))
			b.log.Warn("mqttbridge: command publish failed; not retried (it may have been delivered)",
				slog.String("id", r.ID), slog.String("device", device), slog.Any("err", err))
		}
		c.stats.sent.Add(1)
	}
	return true
}

var errNotRunning = errors.New("mqttbridge: not connected")

// publishToDevice publishes r on its device's command topic, QoS 1.
func (b *Bridge) publishToDevice(ctx context.Context, r Result) error {
	c := b.cmd
	b.mu.Lock()
	cm := b.cm
	up := b.connected
	b.mu.Unlock()
	if cm == nil || !up {
		return errNotRunning
	}
	body, err := json.Marshal(CommandPayload{ID: r.ID, Name: r.Name, Args: r.Args, Expires: r.Expires})
	if err != nil {
		return err
	}
	left := time.Until(r.Expires)
	expiry := uint32(max(1, (left+time.Second-1)/time.Second))
	pctx, cancel := context.WithTimeout(ctx, b.cfg.ConnectTimeout)
	defer cancel()
	_, err = cm.Publish(pctx, &paho.Publish{
		Topic: c.commandTopic(r.Device), QoS: 1, Payload: body,
		Properties: &paho.PublishProperties{
			ContentType:     "application/json",
			ResponseTopic:   c.replyTopic(r.Device),
			CorrelationData: []byte(r.ID),
			MessageExpiry:   &expiry,
		},
	})
	return err
}

// handleReply records a device's reply.
func (b *Bridge) handleReply(ctx context.Context, m reply) {
	c := b.cmd
	rep, err := ParseReply(m.payload, m.correlation)
	if err != nil {
		c.stats.badReplies.Add(1)
		if ok, n := c.replyLog.allow(time.Now()); ok {
			b.log.Warn("mqttbridge: bad command reply", slog.String("device", truncate(m.device, 64)), slog.Any("err", err), slog.Int("suppressed", n))
		}
		return
	}
	state := CommandDone
	if rep.Error != "" {
		state = CommandFailed
	}
	r, ok, err := c.store.Finish(ctx, rep.ID, m.device, state, rep.Result, rep.Error, time.Now().UTC())
	if err != nil {
		b.storeErr(err, "finish")
		return
	}
	if !ok {
		// Unknown, finished (a duplicate reply) or expired, or finished by
		// another bridge sharing the store: a caller here still learns it.
		c.stats.lateReplies.Add(1)
		if s, err := c.store.Get(ctx, rep.ID); err == nil && s.Device == m.device && s.State.Finished() {
			c.finish(s)
		}
		return
	}
	if state == CommandDone {
		c.stats.done.Add(1)
	} else {
		c.stats.failed.Add(1)
	}
	b.publishCommand(ctx, r)
	c.finish(r)
}

// sweep expires the commands past their TTL.
func (b *Bridge) sweep(ctx context.Context) {
	c := b.cmd
	for range 100 { // at most 100 × 256 per tick; the rest at the next
		rs, err := c.store.Expire(ctx, time.Now().UTC(), 256)
		if err != nil {
			b.storeErr(err, "expire")
			return
		}
		for _, r := range rs {
			c.stats.expired.Add(1)
			b.publishCommand(ctx, r)
			c.finish(r)
		}
		if len(rs) < 256 {
			return
		}
	}
}

func (b *Bridge) storeErr(err error, op string) {
	if errors.Is(err, context.Canceled) && b.ctx.Err() != nil {
		return
	}
	b.cmd.stats.storeErrors.Add(1)
	err = fmt.Errorf("mqttbridge: command store %s: %w", op, err)
	b.noteErr(err)
	if ok, n := b.cmd.storeLog.allow(time.Now()); ok {
		b.log.Error("mqttbridge: command store", slog.Any("err", err), slog.Int("suppressed", n))
	}
}

// CommandStats are the downlink's counters, in [Stats].Commands.
type CommandStats struct {
	// Added counts the commands stored; Refused those refused by the store
	// (ErrQueueFull, ErrDuplicateCommand, its errors).
	Added, Refused uint64
	// Sent counts the commands published to devices (once each).
	Sent uint64
	// SendErrors counts publishes that failed after they may have left
	// (the command stays sent: it is not retried).
	SendErrors uint64
	// Done, Failed and Expired count the outcomes this bridge recorded.
	Done, Failed, Expired uint64
	// BadReplies counts reply messages that did not parse; LateReplies
	// replies to a command the store did not have unfinished (duplicates,
	// too late, unknown).
	BadReplies, LateReplies uint64
	// StoreErrors counts failed store calls; PublishErrors failed command
	// events.
	StoreErrors, PublishErrors uint64
	// OnlineOverflow counts devices not remembered as online because
	// MaxDevices were.
	OnlineOverflow uint64
	// Online is the number of devices online now; Waiting the callers
	// waiting in Command.
	Online, Waiting int
}

type commandCounters struct {
	added, refused, sent, sendErrors           atomic.Uint64
	done, failed, expired                      atomic.Uint64
	badReplies, lateReplies                    atomic.Uint64
	storeErrors, publishErrors, onlineOverflow atomic.Uint64
}

func (c *commander) snapshot() CommandStats {
	s := CommandStats{
		Added: c.stats.added.Load(), Refused: c.stats.refused.Load(),
		Sent: c.stats.sent.Load(), SendErrors: c.stats.sendErrors.Load(),
		Done: c.stats.done.Load(), Failed: c.stats.failed.Load(), Expired: c.stats.expired.Load(),
		BadReplies: c.stats.badReplies.Load(), LateReplies: c.stats.lateReplies.Load(),
		StoreErrors: c.stats.storeErrors.Load(), PublishErrors: c.stats.publishErrors.Load(),
		OnlineOverflow: c.stats.onlineOverflow.Load(),
	}
	c.mu.Lock()
	s.Online, s.Waiting = len(c.online), len(c.waiters)
	c.mu.Unlock()
	return s
}
