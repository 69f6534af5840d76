package rthub

import "fmt"

// ReadMode selects how the hub waits for data from its clients (see
// [Options].ReadMode).
type ReadMode int

const (
	// ReadAuto, the default, waits for data in an epoll set of the hub's own
	// on Linux, for connections over plain TCP or Unix sockets: an idle
	// connection then has no goroutine at all, and a goroutine runs only
	// while a message is being read and handled. The hub also takes such a
	// socket from the Go runtime's netpoller after the handshake (its epoll
	// sets wake the goroutines that wait for it), which saves the runtime's
	// per-socket state (about 800 bytes). Elsewhere (other systems,
	// TLS connections terminated by the http.Server, connections whose
	// client pipelined frames behind the handshake) it is ReadGoroutine.
	ReadAuto ReadMode = iota
	// ReadGoroutine reads every connection on a goroutine of its own, parked
	// while the connection is idle (about 2 KiB of stack each).
	ReadGoroutine
)

// String returns the mode's name.
func (m ReadMode) String() string {
	switch m {
	case ReadAuto:
		return "auto"
	case ReadGoroutine:
		return "goroutine"
	}
	return fmt.Sprintf("ReadMode(%d)", int(m))
}

// validate refuses modes that are not defined.
func (m ReadMode) validate() error {
	if m != ReadAuto && m != ReadGoroutine {
		return fmt.Errorf("rthub: unknown ReadMode %d", int(m))
	}
	return nil
}
