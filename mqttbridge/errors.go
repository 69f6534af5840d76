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
)
