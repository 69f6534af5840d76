package rthub

import (
	"log/slog"
	"sync/atomic"
)

// readPoll is a connection's part in the hub's epoll read path (see poller
// and ReadAuto). token is the connection's key in its epoll set (which it
// also names, see poller.set), or 0 for a connection read by a goroutine of
// its own (readLoop); it is chosen before the connection is set up and never
// changes. The struct is 8 bytes, so the conn keeps its size class.
//
// state says who may read the connection: pollNew, nobody yet (it is being
// set up); pollArmed, nobody (the poller starts a reader when the socket is
// readable); pollReading, exactly one goroutine, the one that moved it
// there; pollClosed, nobody ever again.
// Every move to pollReading is a CompareAndSwap from pollArmed, and only the
// reader moves it back or to pollClosed, so a connection is never read by two
// goroutines at once and its messages are handled in order.
type readPoll struct {
	state atomic.Int32
	token uint32
}

const (
	pollNew int32 = iota
	pollArmed
	pollReading
	pollClosed
)

// attachPoll chooses the epoll set that will wait for c's data, if c can be
// read that way: the hub runs the epoll path, c's socket has a RawConn (TCP
// or Unix, not TLS) and nothing is buffered ahead of the socket (the bytes a
// client pipelined behind its handshake). It runs before c is set up, so
// before any other goroutine looks at c.rp.
func (h *Hub) attachPoll(c *conn) {
	if h.poll == nil || c.raw == nil || c.pre != nil {
		return
	}
	c.rp.token = h.poll.reserve(c)
	if !h.opts.testKeepNetConn {
		h.ownSocket(c) // if it fails, the runtime keeps the socket: still the epoll path
	}
}

// detachPoll takes back the token of a connection that will not be read
// (the hub refused to register it).
func (h *Hub) detachPoll(c *conn) {
	if c.rp.token != 0 {
		h.poll.set(c.rp.token).forget(c)
	}
}

// pollSet returns the epoll set of a connection of the epoll path.
func (c *conn) pollSet() *epollSet { return c.hub.poll.set(c.rp.token) }

// startReading hands a connection that was just set up to its reader: the
// epoll set, or a goroutine of its own. The caller's h.wg.Add (register)
// is released when the connection is torn down.
func (h *Hub) startReading(c *conn) {
	if c.rp.token != 0 {
		c.rp.state.Store(pollArmed)
		err := c.pollSet().add(c)
		if err == nil {
			// A close that began during the setup (OnConnect, a refused
			// auto-join) found no reader to wake: its closing handshake
			// needs one.
			if c.isClosing() {
				c.wakeReader()
			}
			return
		}
		if !c.rp.state.CompareAndSwap(pollArmed, pollReading) {
			return // a close woke a reader meanwhile: it reads to the end
		}
		// The epoll set refused the socket (max_user_watches, say): read it
		// on a goroutine. Closing still goes through closeSocket, which
		// shuts the socket down, and that ends the goroutine's read too.
		h.log.Warn("rthub: epoll registration failed; reading on a goroutine", slog.Any("err", err))
	}
	// A fresh goroutine for the connection's life: the handshake and setup
	// grew this one's stack, and net/http's per-request state is released when
	// we return. The read loop parks with a small stack.
	go func() {
		defer h.wg.Done() // Add is in register
		c.readLoop()
	}()
}

// serveReady reads and handles the messages of a connection the poller (or
// wakeReader) handed over in state pollReading, until the socket has no
// more for now; then it gives the connection back to the poller and ends.
// At the end of the connection it tears it down. It runs under h.wg.
func (c *conn) serveReady() {
	for {
		msg, ok, err := c.readMessage(true)
		if err != nil {
			c.readErr = err
			c.closeForReadError(err)
			c.awaitClose()
			c.teardown()
			c.hub.wg.Done() // the connection's own count (register)
			return
		}
		if ok {
			c.waitQueue()
			c.hub.handleMessage(c, msg)
		}
		if c.park() {
			return
		}
	}
}

// park gives the connection back to the poller. It reports false when the
// caller must keep reading: more data is waiting in the socket (a client
// that pipelines commands is read on without a round trip through the
// poller), the connection is closing (the client's close frame, or the
// end of the socket, comes within CloseTimeout: a closing connection is
// read on a goroutine, like the goroutine path, so its read deadline
// works), or the set would not re-arm it.
func (c *conn) park() bool {
	if readableNow(c.raw) {
		return false
	}
	c.rp.state.Store(pollArmed)
	if !c.isClosing() {
		if err := c.pollSet().arm(c); err == nil {
			return true
		}
	}
	// Take it back, unless the poller or wakeReader already did (then
	// that reader reads on).
	return !c.rp.state.CompareAndSwap(pollArmed, pollReading)
}

// wakeReader starts a reader for a parked connection of the epoll path.
// closeFrameWritten calls it: the read deadline it sets is only seen by a
// goroutine that reads.
func (c *conn) wakeReader() {
	if c.rp.token != 0 && c.rp.state.CompareAndSwap(pollArmed, pollReading) {
		c.hub.wg.Go(c.serveReady)
	}
}

// isClosing reports whether the connection stopped taking data frames.
func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// closeSocket ends the connection's TCP from any goroutine, which ends its
// read. On the goroutine path that is nc.Close. On the epoll path the socket
// is only shut down (both ways): its descriptor stays open until the reader's
// teardown has removed it from the epoll set, so a descriptor number the
// kernel reuses for a new connection is never touched for the old one. The
// shutdown wakes a blocked read with EOF, and a parked connection through
// the epoll set (EPOLLHUP).
func (c *conn) closeSocket() {
	if c.rp.token == 0 {
		_ = c.nc.Close()
		return
	}
	shutdownSocket(c.raw)
}

// releaseSocket closes the socket at teardown, after taking it out of the
// epoll set. Only the connection's reader calls it.
func (c *conn) releaseSocket() {
	if c.rp.token != 0 {
		c.rp.state.Store(pollClosed)
		c.pollSet().remove(c)
	}
	_ = c.nc.Close()
}
