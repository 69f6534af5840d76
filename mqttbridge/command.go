package mqttbridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// CommandConfig configures the bridge's downlink: commands from
// [Bridge.Command] and [Bridge.Send] to devices. Zero fields take the
// documented defaults. See the package documentation, "Commands".
type CommandConfig struct {
	// Topic is the template of a device's command topic, with the one
	// variable {device} as a whole level. Default "devices/{device}/cmd".
	// Commands are published there with QoS 1.
	Topic string
	// ReplyTopic is the pattern of a device's reply topic, with {device}.
	// Default "devices/{device}/cmd/reply". The bridge subscribes to it
	// (never shared, so that with Config.ShareGroup every bridge sees every
	// reply) and sends it to the device in each command as the MQTT 5
	// Response Topic. It must not overlap a route's pattern.
	ReplyTopic string
	// StatusTopic is the pattern of a device's online status topic, with
	// {device}: its retained "online" message and its Last Will "offline".
	// Default "devices/{device}/status". It may be a route's Topic too (the
	// route then publishes the status as usual); it must not overlap any
	// other route's pattern, nor any route's with Config.ShareGroup.
	StatusTopic string
	// Online reads a status message: online or not, and ok false for a
	// payload it does not understand (ignored). Default [ParseOnline].
	Online func(payload []byte) (online, ok bool)

	// TTL is a command's default time to live, from [Bridge.Send]: a
	// command not replied to by then is [CommandExpired]. Default 5 min.
	TTL time.Duration
	// MaxTTL bounds Command.TTL. Default 24 h.
	MaxTTL time.Duration
	// MaxPerDevice bounds a device's unfinished (queued or sent) commands;
	// one more is refused with [ErrQueueFull]. Default 16.
	MaxPerDevice int
	// MaxQueued bounds the unfinished commands of the store (of every
	// bridge sharing it); one more is refused with [ErrQueueFull]. Default
	// 10,000. It also bounds the callers a bridge keeps waiting in
	// [Bridge.Command].
	MaxQueued int
	// MaxArgs bounds a command's encoded arguments, in bytes. Default 16 KiB.
	MaxArgs int
	// MaxDevices bounds the devices the bridge remembers as online. Past
	// it, a device coming online is not remembered (its commands wait as
	// if it were offline, until one it remembers goes offline), counted in
	// CommandStats.OnlineOverflow and logged. Default 100,000.
	MaxDevices int
	// Store keeps the commands. Default a [MemoryCommandStore] of its own.
	Store CommandStore
	// SweepInterval is how often the bridge expires commands past their
	// TTL. Default 1 s.
	SweepInterval time.Duration

	// Event is the hub event the bridge publishes on each change of a
	// command's state (queued, sent, done, failed, expired), with the
	// [Result] as its data. Default "device:command".
	Event string
	// Rooms are the room templates of the event, with {device}. Default
	// "device:{device}". Use an empty, non-nil slice for no events.
	Rooms []string
}

// CommandState is the state of a command.
type CommandState string

// The states of a command: queued → sent → done or failed; queued or sent
// → expired.
const (
	// CommandQueued: stored, waiting for the device to be online.
	CommandQueued CommandState = "queued"
	// CommandSent: published to the device's command topic (once).
	CommandSent CommandState = "sent"
	// CommandDone: the device replied without an error.
	CommandDone CommandState = "done"
	// CommandFailed: the device replied with an error.
	CommandFailed CommandState = "failed"
	// CommandExpired: the TTL passed before a reply.
	CommandExpired CommandState = "expired"
)

// Finished reports whether s is a final state: done, failed or expired.
func (s CommandState) Finished() bool {
	return s == CommandDone || s == CommandFailed || s == CommandExpired
}

// Command is a command to a device, for [Bridge.Command] and [Bridge.Send].
type Command struct {
	// ID identifies the command; default a random "c" followed by 16 hex
	// digits. At most 64 bytes of letters, digits, '-', '_' and '.'. A
	// command ID is sent at most once: an ID the store knows is refused
	// with [ErrDuplicateCommand], so a caller may retry with the same ID
	// without the device acting twice.
	ID string
	// Name is what the device is told to do, e.g. "set_threshold"
	// (required; at most 64 bytes of letters, digits, '-', '_', '.' and ':').
	Name string
	// Args are the command's arguments, JSON (optional; at most
	// CommandConfig.MaxArgs bytes).
	Args json.RawMessage
	// TTL is the command's time to live; default CommandConfig.TTL, at most
	// CommandConfig.MaxTTL.
	TTL time.Duration
}

// Result is a command and its state: what [Bridge.Command] and
// [Bridge.Send] return, what a [CommandStore] keeps, and the data of the
// command event (CommandConfig.Event).
type Result struct {
	ID      string          `json:"id"`
	Device  string          `json:"device"`
	Name    string          `json:"name"`
	Args    json.RawMessage `json:"args,omitempty"`
	State   CommandState    `json:"state"`
	Created time.Time       `json:"created"`
	Expires time.Time       `json:"expires"`
	// SentAt is when the command was published, zero if it never was.
	SentAt time.Time `json:"sent_at,omitzero"`
	// FinishedAt is when it was done, failed or expired.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Reply is the "result" of the device's reply (done), if any.
	Reply json.RawMessage `json:"reply,omitempty"`
	// Error is the device's error message (failed).
	Error string `json:"error,omitempty"`
}

// CommandPayload is what the bridge publishes on a device's command topic
// (QoS 1, content type application/json; MQTT 5 properties: Response
// Topic the device's reply topic, Correlation Data the ID, Message Expiry
// the seconds left until Expires):
//
//	{"id":"c0f3…","name":"set_interval","args":{"seconds":5},"expires":"2026-12-02T08:05:00Z"}
//
// A device acts on a command ID at most once (QoS 1 may deliver it twice),
// ignores it after expires, and replies on its reply topic with a
// [CommandReply].
type CommandPayload struct {
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Args    json.RawMessage `json:"args,omitempty"`
	Expires time.Time       `json:"expires"`
}

// CommandReply is what a device publishes on its reply topic: the
// command's ID (or, without it, the MQTT 5 Correlation Data of the reply
// carries it), and either an error message (the command failed) or an
// optional result:
//
//	{"id":"c0f3…","result":{"interval":5}}
//	{"id":"c0f3…","error":"interval out of range"}
type CommandReply struct {
	ID     string          `json:"id,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// ParseReply decodes a reply payload: a JSON object [CommandReply], whose
// ID is taken from correlation (the MQTT 5 Correlation Data) when the
// payload has none. It returns an error for anything else, or a reply
// without a valid ID.
func ParseReply(payload, correlation []byte) (CommandReply, error) {
	var r CommandReply
	if err := json.Unmarshal(payload, &r); err != nil {
		return CommandReply{}, fmt.Errorf("reply: %v", err)
	}
	if r.ID == "" {
		r.ID = string(correlation)
	}
	if !validCommandID(r.ID) {
		return CommandReply{}, fmt.Errorf("reply: bad or missing command id %q", truncate(r.ID, 70))
	}
	if len(r.Error) > 1024 {
		r.Error = r.Error[:1024]
	}
	return r, nil
}

// ParseOnline is the default CommandConfig.Online: "online" or "offline",
// as plain text (any case, surrounding space ignored), a JSON string or a
// JSON object {"status": ...}.
func ParseOnline(payload []byte) (online, ok bool) {
	s := strings.TrimSpace(string(payload))
	if strings.HasPrefix(s, "{") {
		var v struct {
			Status string `json:"status"`
		}
		if json.Unmarshal(payload, &v) != nil {
			return false, false
		}
		s = v.Status
	} else if strings.HasPrefix(s, `"`) {
		if json.Unmarshal([]byte(s), &s) != nil {
			return false, false
		}
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "online":
		return true, true
	case "offline":
		return false, true
	}
	return false, false
}

// Command sends cmd to the device and waits for its outcome: the [Result]
// and nil once the device replied without an error, or the Result and an
// error wrapping [ErrCommandFailed] (the device's error) or [ErrExpired]
// (no reply within the TTL). A command to an offline device is queued and
// sent when the device comes online, within its TTL. It also returns
// [ErrQueueFull], [ErrDuplicateCommand], [ErrInvalidCommand],
// [ErrNoCommands], [ErrClosed], the store's error, or ctx's error when ctx
// ends first: the command then stays queued (see [Bridge.CommandResult]).
func (b *Bridge) Command(ctx context.Context, device string, cmd Command) (Result, error) {
	r, w, err := b.send(ctx, device, cmd, true)
	if err != nil {
		return r, err
	}
	return b.cmd.wait(ctx, b, r, w)
}

// Send queues cmd for the device and returns at once with its Result in
// state [CommandQueued] (sent when the device is online); its later states
// are published as CommandConfig.Event and kept by the store
// ([Bridge.CommandResult]). Errors as for [Bridge.Command], except the
// outcome ones.
func (b *Bridge) Send(ctx context.Context, device string, cmd Command) (Result, error) {
	r, _, err := b.send(ctx, device, cmd, false)
	return r, err
}

// CommandResult returns the command with this ID from the store, or an
// error wrapping [ErrUnknownCommand].
func (b *Bridge) CommandResult(ctx context.Context, id string) (Result, error) {
	if b.cmd == nil {
		return Result{}, ErrNoCommands
	}
	return b.cmd.store.Get(ctx, id)
}

// send validates and stores a command, registering a waiter if wait.
func (b *Bridge) send(ctx context.Context, device string, cmd Command, wait bool) (Result, chan Result, error) {
	c := b.cmd
	if c == nil {
		return Result{}, nil, ErrNoCommands
	}
	if err := ctx.Err(); err != nil {
		return Result{}, nil, err
	}
	b.mu.Lock()
	closed := b.state == stateClosed
	b.mu.Unlock()
	if closed {
		return Result{}, nil, ErrClosed
	}
	if cmd.ID == "" {
		var id [8]byte
		_, _ = rand.Read(id[:])
		cmd.ID = "c" + hex.EncodeToString(id[:])
	}
	if cmd.TTL == 0 {
		cmd.TTL = c.cfg.TTL
	}
	switch {
	case !validVarValue(device) || !validTopicLevel(device):
		return Result{}, nil, fmt.Errorf("%w: device %q cannot be a topic level and room segment", ErrInvalidCommand, truncate(device, 70))
	case !validCommandID(cmd.ID):
		return Result{}, nil, fmt.Errorf("%w: ID %q: want 1 to 64 letters, digits, '-', '_' or '.'", ErrInvalidCommand, truncate(cmd.ID, 70))
	case !validCommandName(cmd.Name):
		return Result{}, nil, fmt.Errorf("%w: name %q: want 1 to 64 letters, digits, '-', '_', '.' or ':'", ErrInvalidCommand, truncate(cmd.Name, 70))
	case len(cmd.Args) > c.cfg.MaxArgs:
		return Result{}, nil, fmt.Errorf("%w: args are %d bytes, over MaxArgs %d", ErrInvalidCommand, len(cmd.Args), c.cfg.MaxArgs)
	case len(cmd.Args) > 0 && !json.Valid(cmd.Args):
		return Result{}, nil, fmt.Errorf("%w: args are not valid JSON", ErrInvalidCommand)
	case cmd.TTL < 0 || cmd.TTL > c.cfg.MaxTTL:
		return Result{}, nil, fmt.Errorf("%w: TTL %v is not in (0, MaxTTL %v]", ErrInvalidCommand, cmd.TTL, c.cfg.MaxTTL)
	}
	now := time.Now().UTC()
	r := Result{ID: cmd.ID, Device: device, Name: cmd.Name, Args: cmd.Args, State: CommandQueued,
		Created: now, Expires: now.Add(cmd.TTL)}
	var w chan Result
	if wait {
		var err error
		if w, err = c.addWaiter(r.ID); err != nil {
			return Result{}, nil, err
		}
	}
	if err := c.store.Add(ctx, r, c.cfg.MaxPerDevice, c.cfg.MaxQueued); err != nil {
		if w != nil {
			c.removeWaiter(r.ID)
		}
		c.stats.refused.Add(1)
		if errors.Is(err, ErrDuplicateCommand) {
			err = fmt.Errorf("%w: %q", err, r.ID)
		}
		return Result{}, nil, err
	}
	c.stats.added.Add(1)
	b.publishCommand(ctx, r)
	if c.isOnline(device) {
		c.scheduleFlush(device)
	}
	return r, w, nil
}

// publishCommand publishes the command event of r to its rooms.
func (b *Bridge) publishCommand(ctx context.Context, r Result) {
	c := b.cmd
	for _, t := range c.rooms {
		room := t.expand([]string{r.Device})
		if err := b.pub.Publish(ctx, room, c.cfg.Event, r); err != nil {
			c.stats.publishErrors.Add(1)
			if ok, n := c.publishLog.allow(time.Now()); ok {
				b.log.Warn("mqttbridge: command event not published", slog.String("room", room), slog.Any("err", err), slog.Int("suppressed", n))
			}
		}
	}
}

// errQueueFullDevice and errQueueFullTotal are the errors a CommandStore's
// Add returns at the bounds.
func errQueueFullDevice(device string, n int) error {
	return fmt.Errorf("%w: device %q has %d unfinished commands", ErrQueueFull, device, n)
}

func errQueueFullTotal(n int) error {
	return fmt.Errorf("%w: %d unfinished commands", ErrQueueFull, n)
}

// ErrQueueFullDevice returns the error a [CommandStore]'s Add returns when
// the device has n (CommandConfig.MaxPerDevice) unfinished commands; it
// wraps [ErrQueueFull].
func ErrQueueFullDevice(device string, n int) error { return errQueueFullDevice(device, n) }

// ErrQueueFullTotal returns the error a [CommandStore]'s Add returns when
// the store has n (CommandConfig.MaxQueued) unfinished commands; it wraps
// [ErrQueueFull].
func ErrQueueFullTotal(n int) error { return errQueueFullTotal(n) }

func validCommandID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func validCommandName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// validTopicLevel reports whether s can be one level of a topic name.
func validTopicLevel(s string) bool {
	return s != "" && !strings.ContainsAny(s, "/+#\x00")
}
