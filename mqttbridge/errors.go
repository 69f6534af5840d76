package mqttbridge

import "errors"

// Sentinel errors. Test them with [errors.Is].
var (
	// ErrInvalidConfig is wrapped by every error [New] returns: the Config it
	// was given is wrong (each problem is listed in the error's text).
	ErrInvalidConfig = errors.New("mqttbridge: invalid config")

	// ErrClosed is returned by [Bridge.Start], [Bridge.Run] and
	// [Bridge.WaitReady] after [Bridge.Shutdown] or [Bridge.Close].
	ErrClosed = errors.New("mqttbridge: bridge closed")

	// ErrSkip, returned by a [DecodeFunc], drops the message on purpose: it
	// is counted in Stats.Skipped, not as a decode error, and not logged.
	ErrSkip = errors.New("mqttbridge: skip message")

	// ErrDecode wraps the error of a [DecodeFunc] (or of encoding its result
	// as JSON) in Stats.LastError.
	ErrDecode = errors.New("mqttbridge: payload does not decode")

	// ErrInvalidTopic is wrapped in Stats.LastError when a message's topic
	// matches no route, or a topic variable cannot be put in a room name
	// (empty, a ':' or a character rooms do not allow).
	ErrInvalidTopic = errors.New("mqttbridge: invalid topic")

	// ErrConnect wraps the failure of a connection attempt or of a
	// subscription (refused by the broker, timed out) in Stats.LastError.
	ErrConnect = errors.New("mqttbridge: connect")

	// ErrNoCommands is returned by [Bridge.Command] and [Bridge.Send] of a
	// bridge whose Config.Commands is nil.
	ErrNoCommands = errors.New("mqttbridge: commands not configured")

	// ErrInvalidCommand is wrapped by the error of [Bridge.Command] and
	// [Bridge.Send] for a bad device ID, name, ID, arguments or TTL.
	ErrInvalidCommand = errors.New("mqttbridge: invalid command")

	// ErrQueueFull is wrapped by the error of [Bridge.Command] and
	// [Bridge.Send] when the device already has
	// CommandConfig.MaxPerDevice unfinished commands, or the store
	// CommandConfig.MaxQueued: the new command is refused (nothing queued
	// is dropped).
	ErrQueueFull = errors.New("mqttbridge: command queue full")

	// ErrDuplicateCommand is wrapped by the error of [Bridge.Command] and
	// [Bridge.Send] for a Command.ID the store already knows: a command ID
	// is sent at most once.
	ErrDuplicateCommand = errors.New("mqttbridge: duplicate command ID")

	// ErrExpired is returned by [Bridge.Command] (with the [Result]) when
	// the command's TTL passed before the device replied: either it was
	// never sent (the device stayed offline; Result.SentAt is zero) or it
	// was sent and no reply came (Result.SentAt is set: the device may
	// have acted on it).
	ErrExpired = errors.New("mqttbridge: command expired")

	// ErrCommandFailed is returned by [Bridge.Command] (with the [Result])
	// when the device replied with an error (Result.Error).
	ErrCommandFailed = errors.New("mqttbridge: command failed on the device")

	// ErrUnknownCommand is returned by [Bridge.CommandResult] and
	// [CommandStore.Get] for an ID the store does not know.
	ErrUnknownCommand = errors.New("mqttbridge: unknown command")
)
