package rthub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// ConnInfo describes a connection to hooks and handlers. It is a snapshot:
// Identity is replaced (not modified) when the client refreshes its token.
type ConnInfo struct {
	// ID identifies the connection on this hub (see [Hub.JoinConn]).
	ID string
	// Identity is who the connection authenticated as.
	Identity *Identity
	// RemoteAddr is the peer's address as net/http saw it.
	RemoteAddr string
	// ClientIP is the client's address: the TCP peer's, or the one a trusted
	// proxy reported (see [Limits.TrustedProxies]).
	ClientIP netip.Addr
}

// roomRef is one room a connection is in. server marks rooms joined through the
// server-side API: a token refresh does not re-evaluate them against the policy.
// idx is the connection's position in the room's member slice.
type roomRef struct {
	name   string
	idx    int
	server bool
}

// conn is one WebSocket connection.
//
// Goroutines: the reader owns the read side and, at the connection's end,
// tears it down. On the goroutine path (ReadGoroutine, not Linux, TLS) it is
// the read loop, one per connection, started after the handshake on a fresh
// goroutine so the handshake's larger stack is not kept. On the epoll path
// (see readPoll) it is a goroutine that exists only while the connection has
// data. Writes happen on the hub's flush workers, at most one at a time per
// connection (c.writing). All are counted in the hub's WaitGroup.
type conn struct {
	hub        *Hub
	ctx        context.Context              // the connection's: cancelled at teardown (and by Hub.Close); see connctx.go
	cx         atomic.Pointer[connCtxState] // ctx's state, made on first use; c.cancel cancels ctx
	nc         net.Conn
	raw        syscall.RawConn // for non-blocking writes; nil: blocking only
	pre        *preReader      // bytes buffered during the handshake followed by nc; nil: read nc
	id         string
	remoteAddr string
	ip         netip.Addr  // client IP (see Limits.TrustedProxies)
	hs         *httpStream // the HTTP stream transport's state; nil for a WebSocket
	// rl is the read loop's lazily made state (command rate, running RPC
	// calls), made on the first command; the pointer is the read loop's.
	rl *readLoopState

	ident     atomic.Pointer[Identity]
	expiry    deadline     // the token's warning and exp on the hub's clock; removed at teardown
	warnedExp atomic.Int64 // the exp (unix seconds) the expiring warning was sent for
	lastIn    atomic.Int64 // unix nanoseconds of the last frame read
	readErr   error        // why the read loop ended; read loop only
	ctrlTAT   int64        // control-frame limit (GCRA theoretical arrival, unix ns); read loop only
	rp        readPoll     // the epoll read path's state (readpoll.go)

	mu      sync.Mutex
	queue   *batch    // frames waiting for the writer; nil when empty
	queued  int       // bytes in queue
	flightN int       // frames the writer took and has not finished writing
	flightB int       // their bytes; both count against the queue bounds
	gaps    []gapNote // losses of lossy rooms not yet announced (see noteGapLocked)
	// ctl holds the pending close and pong frames and the read loop's
	// drained signal, made by the first of them: most connections never
	// need any (see ctlFrames).
	ctl     *ctlFrames
	rooms   []roomRef
	viewing string // what the client says it is viewing (presence); "" for nothing

	// The small fields last, together: no padding between them (the struct
	// stays in a smaller size class; see docs/performance.md).
	hdr  [14]byte  // frame header scratch; read loop only
	code CloseCode // c.mu
	// conflatable: a keyed event of a conflate room was queued since the
	// last conflation pass (c.mu)
	conflatable bool
	writing     bool // a flush worker owns the write side (c.mu)
	// slowPeer: the last write found the socket full (the writer's own:
	// one writer at a time)
	slowPeer bool
	closing  bool // no more data frames; a close frame is queued or sent (c.mu)
	closed   bool // teardown done (c.mu)
	closeTx  bool // our close frame was written (c.mu)
	closeRx  bool // the client's close frame was read
	pingDue  bool // the keepalive ping is pending (c.mu)
	deflate  bool
}

// preReader reads the bytes a client sent right behind its handshake, then
// the socket (io.MultiReader's behaviour, in 8 bytes of the conn instead of
// an interface's 16).
type preReader struct {
	pre bytes.Reader
	nc  net.Conn
}

func (r *preReader) Read(p []byte) (int, error) {
	if r.pre.Len() > 0 {
		return r.pre.Read(p)
	}
	return r.nc.Read(p)
}

// reader is what the read loop reads frames from.
func (c *conn) reader() io.Reader {
	if c.pre != nil {
		return c.pre
	}
	return c.nc
}

// readLoopState is what a connection's read loop makes on first use: an
// idle connection that never sent a command has none of it.
type readLoopState struct {
	limit cmdLimit   // command rate state (ratelimit.go)
	calls *callSlots // the running RPC calls, made on the first call (rpc.go)
}

// loopState returns c's read loop state, making it. Read loop only.
func (c *conn) loopState() *readLoopState {
	if c.rl == nil {
		c.rl = &readLoopState{}
	}
	return c.rl
}

// ctlFrames are a connection's pending control frames besides the ping and
// the channel waitQueue waits on, under c.mu. Made on first use and kept: a
// connection that needed them once may again, and their 56 bytes stay out
// of every idle connection that never does.
type ctlFrames struct {
	close   []byte        // pending close frame
	pong    []byte        // pending pong: only the latest ping is answered (RFC 6455 §5.5.3)
	drained chan struct{} // signalled when the writer takes the queue; made by waitQueue
}

// ctlLocked returns c's control frames, making them. c.mu is held.
func (c *conn) ctlLocked() *ctlFrames {
	if c.ctl == nil {
		c.ctl = &ctlFrames{}
	}
	return c.ctl
}

// pongLocked returns the pending pong, or nil. c.mu is held.
func (c *conn) pongLocked() []byte {
	if c.ctl == nil {
		return nil
	}
	return c.ctl.pong
}

// dropCloseLocked forgets a pending close frame. c.mu is held.
func (c *conn) dropCloseLocked() {
	if c.ctl != nil {
		c.ctl.close = nil
	}
}

// batch is a reusable list of frames for one vectored write. meta is nil
// unless an event of a lossy room (Policy.Overflow) was queued: then meta[i]
// describes bufs[i]. Connections in OverflowClose rooms only never have it,
// so their queue costs what it did before the overflow policy.
type batch struct {
	bufs net.Buffers
	meta []frameMeta
}

var batchPool = sync.Pool{New: func() any { return &batch{bufs: make(net.Buffers, 0, 16)} }}

// info returns the connection's current ConnInfo.
func (c *conn) info() ConnInfo {
	return ConnInfo{ID: c.id, Identity: c.ident.Load(), RemoteAddr: c.remoteAddr, ClientIP: c.ip}
}

// send queues one data frame and schedules a flush if needed. It never
// blocks: a full queue closes the connection as a slow consumer. It reports
// whether the frame was queued.
func (c *conn) send(frame []byte) bool {
	queued, start := c.enqueue(frame)
	if start {
		c.hub.schedule(c)
	}
	return queued
}

// enqueue queues one data frame without scheduling; start reports that the
// caller must hand the connection to a flush worker (publish batches those).
func (c *conn) enqueue(frame []byte) (queued, start bool) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false, false
	}
	if !c.fitsLocked(1, len(frame)) && !c.shedUntilFitsLocked(1, len(frame)) {
		c.dropQueueLocked()
		c.startCloseLocked(CloseSlowConsumer, "slow consumer")
		c.hub.stats.slowConsumers.Add(1)
		start := c.kickLocked()
		c.mu.Unlock()
		// Unblock a writer stuck on a peer that does not read.
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.hub.opts.CloseTimeout))
		return false, start
	}
	c.appendLocked(frame, frameMeta{})
	start = c.kickLocked()
	c.mu.Unlock()
	return true, start
}

// shedUntilFitsLocked makes space for msgs frames of n bytes that may not
// be dropped by shedding events of lossy rooms; it reports whether they fit
// now. Without such events queued it does nothing. c.mu is held.
func (c *conn) shedUntilFitsLocked(msgs, n int) bool {
	for c.queue != nil && c.queue.meta != nil {
		if !c.shedLocked(false) {
			return false
		}
		if c.fitsLocked(msgs, n) {
			return true
		}
	}
	return false
}

// prepend puts frame first in the queue. It is for the welcome, while the
// write side is still held (see setupConn), so nothing was written yet.
func (c *conn) prepend(frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	if c.queue == nil {
		c.queue = batchPool.Get().(*batch)
	}
	c.queue.bufs = slices.Insert(c.queue.bufs, 0, frame)
	if c.queue.meta != nil {
		c.queue.meta = slices.Insert(c.queue.meta, 0, frameMeta{})
	}
	c.queued += len(frame)
}

// sendPing queues the keepalive ping. At most one is pending: a ping not yet
// written when the next is due is not queued twice.
func (c *conn) sendPing() {
	c.mu.Lock()
	if c.closing || c.pingDue || !c.fitsLocked(1, len(pingFrame)) && !c.shedUntilFitsLocked(1, len(pingFrame)) {
		// A queue full of frames that may not be dropped skips the ping:
		// control frames count against the queue bounds too.
		c.mu.Unlock()
		return
	}
	c.pingDue = true
	start := c.kickLocked()
	c.mu.Unlock()
	if start {
		c.hub.schedule(c)
	}
}

// sendPong queues the answer to a client's ping. Only the latest ping is
// answered (RFC 6455 §5.5.3): a pong still pending is replaced, so the pongs
// a connection holds are bounded by one frame of at most 127 bytes, whatever
// the client sends and however slowly it reads. The pending ping and pong
// count against the queue's bounds (SendQueueMessages, SendQueueBytes) like
// every other frame; with the queue full of frames that may not be dropped
// they are skipped.
func (c *conn) sendPong(payload []byte) {
	c.mu.Lock()
	msgs, grow := 1, frameHeaderLen(len(payload))+len(payload)
	if pong := c.pongLocked(); pong != nil {
		msgs, grow = 0, grow-len(pong)
	}
	if c.closing || !c.fitsLocked(msgs, grow) && !c.shedUntilFitsLocked(msgs, grow) {
		// Not answered when the queue is full of frames that may not be
		// dropped (the client's next ping is): control frames count
		// against the queue bounds too.
		c.mu.Unlock()
		return
	}
	ctl := c.ctlLocked()
	ctl.pong = appendFrame(ctl.pong[:0], opPong, false, payload)
	start := c.kickLocked()
	c.mu.Unlock()
	if start {
		c.hub.schedule(c)
	}
}

// kickLocked marks the write side busy and reports whether the caller must
// schedule a flush.
func (c *conn) kickLocked() bool {
	if c.writing || c.closed {
		return false
	}
	c.writing = true
	return true
}

func (c *conn) dropQueueLocked() {
	if c.queue != nil {
		c.hub.stats.droppedFrames.Add(uint64(len(c.queue.bufs)))
		releaseBatch(c.queue)
		c.queue = nil
		c.queued = 0
	}
	c.flightN, c.flightB = 0, 0
	c.gaps = nil
	c.signalDrainedLocked()
}

// signalDrainedLocked wakes a read loop waiting in waitQueue.
func (c *conn) signalDrainedLocked() {
	if c.ctl != nil && c.ctl.drained != nil {
		select {
		case c.ctl.drained <- struct{}{}:
		default:
		}
	}
}

// waitQueue pauses the read loop while the outbound queue is over half full.
// The read loop produces the replies, so a client that pipelines commands
// faster than it reads replies is slowed down (TCP backpressure) instead of
// being closed as a slow consumer; publishers never wait. A writer that stays
// stuck ends with WriteTimeout, which closes the connection and wakes us.
func (c *conn) waitQueue() {
	maxMsgs := max(1, c.hub.opts.SendQueueMessages/2)
	maxBytes := max(1, c.hub.opts.SendQueueBytes/2)
	for {
		c.mu.Lock()
		if c.closing || c.queue == nil || len(c.queue.bufs) < maxMsgs && c.queued < maxBytes {
			c.mu.Unlock()
			return
		}
		ctl := c.ctlLocked()
		if ctl.drained == nil {
			ctl.drained = make(chan struct{}, 1)
		}
		ch := ctl.drained
		c.mu.Unlock()
		<-ch
	}
}

func releaseBatch(b *batch) {
	clear(b.bufs[:cap(b.bufs)])
	b.bufs = b.bufs[:0]
	b.meta = nil
	if cap(b.bufs) > 1024 {
		return // don't pool outsized batches
	}
	batchPool.Put(b)
}

// startCloseLocked begins the closing handshake: no more data frames, a close
// frame goes out after what is queued.
func (c *conn) startCloseLocked(code CloseCode, reason string) {
	if c.closing {
		return
	}
	c.closing = true
	c.code = code
	c.ctlLocked().close = closeFrame(code, reason)
}

// closeWith starts a server-initiated close. The read loop finishes the
// handshake (it waits up to Options.CloseTimeout for the client's close frame)
// and tears down. It reports whether this call started the close (false if
// the connection was already closing).
func (c *conn) closeWith(code CloseCode, reason string) bool {
	c.mu.Lock()
	started := !c.closing
	c.startCloseLocked(code, reason)
	start := c.kickLocked()
	c.mu.Unlock()
	if start {
		c.hub.schedule(c)
	}
	return started
}

// takeWork takes what the writer must write next: the queued frames, or,
// once they are out, the pending close frame. With nothing left it clears
// c.writing and returns nothing. The writer calls it once the previous
// batch is written, so what it took last stops counting as in flight. With
// one, a queue holding events of lossy rooms gives up only its first frame:
// the writer of a peer that reads slowly then holds a single frame, and the
// rest stays queued where the overflow policy can still shed it.
func (c *conn) takeWork(one bool) (b *batch, cf []byte, closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flightN, c.flightB = 0, 0
	if q := c.queue; c.slowPeer && c.conflatable && q != nil && q.meta != nil && len(q.bufs) > 1 {
		// The peer reads slowly: write only the newest event of each key.
		c.conflatable = false
		if markSuperseded(q.meta) > 0 {
			c.rebuildLocked()
		}
	}
	b = c.queue
	if one && b != nil && b.meta != nil && len(b.bufs) > 1 {
		head := batchPool.Get().(*batch)
		head.bufs = append(head.bufs, b.bufs[0])
		c.flightB = len(b.bufs[0])
		c.queued -= len(b.bufs[0])
		b.bufs[0] = nil
		b.bufs = slices.Delete(b.bufs, 0, 1)
		b.meta = slices.Delete(b.meta, 0, 1)
		b = head
	} else {
		c.flightB = c.queued
		c.queue = nil
		c.queued = 0
	}
	c.signalDrainedLocked()
	if pong := c.pongLocked(); c.pingDue || pong != nil {
		// The pending control frames go first.
		if b == nil {
			b = batchPool.Get().(*batch)
		}
		var ctrl [2][]byte
		n := 0
		if c.pingDue {
			ctrl[n] = pingFrame
			n++
		}
		if pong != nil {
			ctrl[n] = pong // handed over: the next pong gets a new buffer
			n++
			c.ctl.pong = nil
		}
		c.flightB += len(ctrl[0]) + len(ctrl[1])
		c.pingDue = false
		b.bufs = slices.Insert(b.bufs, 0, ctrl[:n]...)
		if b.meta != nil {
			var zero [2]frameMeta
			b.meta = slices.Insert(b.meta, 0, zero[:n]...)
		}
	}
	if b != nil {
		c.flightN = len(b.bufs)
	}
	if b == nil && c.ctl != nil && c.ctl.close != nil {
		cf, c.ctl.close = c.ctl.close, nil
	}
	if b == nil && cf == nil {
		c.writing = false
	}
	return b, cf, c.closing
}

// writeFailed marks the connection dead after a write error and closes the
// socket, which ends the read loop (it tears down).
func (c *conn) writeFailed() {
	c.mu.Lock()
	c.closing = true
	c.dropCloseLocked()
	c.dropQueueLocked()
	c.writing = false
	c.mu.Unlock()
	c.closeSocket()
}

// requeueUnwritten hands the frames of the lossy batch b (written from a copy,
// so b.bufs is intact) that the socket did not take at all back to the
// queue, and keeps in b only what was written or started; rest is what
// tryWritev left. It returns what the writer must still finish: the rest of
// a frame written in part, or nil. A closing connection keeps everything
// for the writer: what was queued goes out before the close frame.
func (c *conn) requeueUnwritten(b *batch, rest net.Buffers) net.Buffers {
	i := len(b.bufs) - len(rest)
	p := 0
	if len(rest[0]) < len(b.bufs[i]) {
		p = 1 // started: must be finished
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return rest
	}
	c.requeueLocked(b.bufs[i+p:], b.meta[i+p:])
	// What was written is out; only the frame started stays in flight.
	c.flightN, c.flightB = p, 0
	if p == 1 {
		c.flightB = len(rest[0])
	}
	c.mu.Unlock()
	clear(b.bufs[i+p:])
	b.bufs, b.meta = b.bufs[:i+p], b.meta[:i+p]
	if p == 0 {
		return nil
	}
	return rest[:1]
}

// closeFrameWritten runs after our close frame went out: the client gets
// CloseTimeout to answer; if it already did, the server closes TCP first
// (RFC 6455 §7.1.1), which ends the read loop.
func (c *conn) closeFrameWritten() {
	if c.hs != nil {
		c.streamClosed()
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.hub.opts.CloseTimeout))
	if c.closeSent() {
		c.closeSocket()
	}
	c.wakeReader() // epoll path: a parked connection needs a reader for the deadline
}

func (c *conn) counted(b *batch, written int64) {
	n := len(b.bufs)
	c.hub.stats.framesSent.Add(uint64(n))
	c.hub.stats.bytesSent.Add(uint64(written))
	if hook := c.hub.testHookFlushed; hook != nil {
		hook(n)
	}
}

// flush writes everything queued until the queue is empty. It runs on a flush
// worker; c.writing guarantees a single writer per connection, so frames keep
// their order. Frames queued together go out in one writev.
//
// Writes do not wait: what the socket does not take at once (its peer reads
// slowly) is handed to flushBlocking on a goroutine of its own, so a worker
// serving a chunk of a broadcast is never held up by one slow client. Without
// non-blocking writes (not Linux, or not a TCP socket) it blocks, bounded by
// WriteTimeout.
func (c *conn) flush(w *writev) {
	if c.raw == nil {
		c.flushBlocking(nil, false)
		return
	}
	for {
		b, cf, _ := c.takeWork(false)
		if b == nil && cf == nil {
			return
		}
		var bufs net.Buffers
		// A stream's frames are written as events: no frame of a batch maps
		// to one buffer, so its lossy batches are written like the others.
		lossy := b != nil && b.meta != nil && c.hs == nil
		switch {
		case lossy:
			bufs = slices.Clone(b.bufs) // tryWritev re-slices; b stays intact
		case b != nil:
			bufs = b.bufs
		default:
			bufs = net.Buffers{cf}
		}
		if c.hs != nil {
			bufs = c.hs.encode(c, bufs)
		}
		before := w.syscalls
		written, rest, err := tryWritev(c.raw, bufs, w)
		c.hub.stats.writes.Add(w.syscalls - before)
		blocked := rest != nil
		c.slowPeer = blocked
		if blocked && lossy && err == nil {
			rest = c.requeueUnwritten(b, rest)
		}
		if rest != nil {
			rest = slices.Clone(rest) // b's slots are cleared on release
		}
		if b != nil {
			c.counted(b, written)
			releaseBatch(b)
		}
		if err != nil {
			c.writeFailed()
			return
		}
		if blocked && lossy && rest == nil {
			// The socket is full and every frame it did not take is queued
			// again: wait until it takes more, then take the queue anew.
			c.hub.wg.Go(c.awaitWritable)
			return
		}
		if blocked {
			// The socket is full: a goroutine of its own finishes the
			// write and writes the rest as the peer reads.
			c.hub.wg.Go(func() { c.flushBlocking(rest, cf != nil) })
			return
		}
		if cf != nil {
			c.closeFrameWritten()
		}
	}
}

// flushBlocking finishes a write the socket would not take at once (pending,
// which is a close frame if isClose) and then writes the rest of the queue,
// each write bounded by WriteTimeout (CloseTimeout once closing). It owns the
// write side until the queue is empty.
func (c *conn) flushBlocking(pending net.Buffers, isClose bool) {
	closing := isClose
	for {
		if pending == nil {
			b, cf, cl := c.takeWork(true)
			if b == nil && cf == nil {
				// Clear the deadline: the non-blocking path refuses to
				// write once a deadline has passed.
				_ = c.nc.SetWriteDeadline(time.Time{})
				return
			}
			closing, isClose = cl, cf != nil
			if b != nil {
				pending = b.bufs
			} else {
				pending = net.Buffers{cf}
			}
			if c.hs != nil {
				pending = c.hs.encode(c, pending)
			}
			pending = slices.Clone(pending)
			if b != nil {
				c.counted(b, 0)
				releaseBatch(b)
			}
		}
		timeout := c.hub.opts.WriteTimeout
		if closing {
			timeout = c.hub.opts.CloseTimeout
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
		written, err := pending.WriteTo(c.nc)
		c.hub.stats.bytesSent.Add(uint64(written))
		c.hub.stats.writes.Add(1)
		pending = nil
		if err != nil {
			c.writeFailed()
			return
		}
		if isClose {
			c.closeFrameWritten()
		} else if c.raw != nil && c.lossyQueued() {
			// The peer took a frame: back to non-blocking writes, which
			// leave what the socket does not take queued, where the
			// overflow policy can still shed it (see requeueUnwritten).
			_ = c.nc.SetWriteDeadline(time.Time{})
			c.hub.schedule(c)
			return
		}
	}
}

// awaitWritable waits, bounded by WriteTimeout, until the socket takes more
// data and hands the connection back to a flush worker; it owns the write
// side meanwhile. The queue stays where the overflow policy can shed from
// it, so what the peer reads next is the newest the queue has.
func (c *conn) awaitWritable() {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.hub.opts.WriteTimeout))
	err := waitWritable(c.raw)
	_ = c.nc.SetWriteDeadline(time.Time{})
	if err != nil {
		c.writeFailed()
		return
	}
	c.hub.schedule(c)
}

// lossyQueued reports whether the queue holds frames with metadata (events
// of lossy rooms).
func (c *conn) lossyQueued() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queue != nil && c.queue.meta != nil && !c.closing
}

// closeSent records that the close frame was written and reports whether the
// client's close frame was already read.
func (c *conn) closeSent() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeTx = true
	return c.closeRx
}

// peerClosed ends the read loop when the client sent a close frame.
type peerClosed struct{ code CloseCode }

func (p peerClosed) Error() string { return "rthub: closed by peer" }

// readLoop reads and handles client messages until the connection ends, then
// tears it down. It is the connection's owning goroutine.
func (c *conn) readLoop() {
	defer c.teardown()
	for {
		if c.raw != nil && c.pre == nil {
			waitReadable(c.raw) // idle connections park here, on a small stack
		}
		msg, _, err := c.readMessage(false)
		if err != nil {
			c.readErr = err
			c.closeForReadError(err)
			c.awaitClose()
			return
		}
		c.waitQueue()
		c.hub.handleMessage(c, msg)
	}
}

// closeForReadError answers a read failure with the close code the protocol
// gives it (nothing is sent when the network itself failed).
func (c *conn) closeForReadError(err error) {
	var pe *protocolError
	var pc peerClosed
	switch {
	case errors.As(err, &pc):
		// Echo the peer's close (RFC 6455 §5.5.1) unless we started the close.
		code := pc.code
		if code == 0 || code == 1005 {
			code = CloseNormal
		}
		c.closeWith(code, "")
		c.mu.Lock()
		c.closeRx = true
		c.mu.Unlock()
	case errors.Is(err, errControlFlood):
		if c.closeWith(ClosePolicyViolation, "control frame flood") {
			c.hub.refused(c.hub.ctx, c.refusal("abuse", "rate_limited"))
		}
	case errors.As(err, &pe):
		c.hub.stats.protocolErrors.Add(1)
		c.closeWith(pe.code, pe.msg)
	case errors.Is(err, ErrMessageTooBig):
		c.hub.stats.protocolErrors.Add(1)
		c.closeWith(CloseMessageTooBig, "message too big")
	case errors.Is(err, ErrBadRequest):
		c.hub.stats.protocolErrors.Add(1)
		c.closeWith(CloseInvalidPayload, "bad compressed data")
	default:
		// Network error, timeout, or a server-side close that reset the conn:
		// nothing more can be sent.
		c.mu.Lock()
		if !c.closing {
			c.closing = true
			c.code = CloseAbnormal
		}
		c.dropCloseLocked()
		c.dropQueueLocked()
		c.mu.Unlock()
	}
}

// awaitClose waits, bounded by CloseTimeout, for the close frame to be written
// and for the client to close its side, so the client reads our close frame
// instead of a reset.
func (c *conn) awaitClose() {
	c.mu.Lock()
	done := c.closeTx && c.closeRx
	c.mu.Unlock()
	if done {
		return // the closing handshake is complete; teardown closes TCP
	}
	deadline := time.Now().Add(c.hub.opts.CloseTimeout)
	_ = c.nc.SetReadDeadline(deadline)
	var buf [512]byte
	for {
		// Discard whatever the client still sends until it closes.
		if _, err := c.nc.Read(buf[:]); err != nil {
			return
		}
	}
}

// teardown removes the connection from the hub and closes the socket. It runs
// once, at the end of the read loop (or of the epoll path's last reader).
func (c *conn) teardown() {
	c.mu.Lock()
	c.closing = true
	c.closed = true
	c.dropCloseLocked()
	c.dropQueueLocked()
	code := c.code
	c.mu.Unlock()
	c.releaseSocket()
	c.hub.clock.cancel(&c.expiry)
	c.hub.unregister(c)
	if code == 0 {
		code = CloseAbnormal
	}
	c.hub.disconnected(c, CloseError{Code: code}, c.readErr)
	c.cancel()
}

// readMessage reads one complete data message, answering control frames on
// the way. It enforces the protocol: masking, RSV bits, opcodes, fragmentation,
// the size limit (after inflating too) and UTF-8 (see msgReader, which the
// conformance echo server shares); binary messages are refused with 1003.
// With yield it returns after a control frame met between messages, with ok
// false (the epoll path then parks the connection instead of waiting for the
// next message on a goroutine).
func (c *conn) readMessage(yield bool) (msg []byte, ok bool, err error) {
	mr := msgReader{
		limit:   c.hub.opts.MaxMessageSize,
		deflate: c.deflate,
		yield:   yield,
		frame:   func() { c.lastIn.Store(time.Now().UnixNano()) },
		control: func(op byte, payload []byte) error {
			if ok, abusive := c.hub.allowControl(c, time.Now()); abusive {
				return errControlFlood
			} else if ok && op == opPing {
				c.sendPong(payload)
			}
			return nil
		},
	}
	op, msg, err := mr.read(c.reader(), c.hdr[:])
	if err != nil || op == 0 {
		return nil, false, err
	}
	c.hub.stats.messagesIn.Add(1)
	c.hub.stats.bytesIn.Add(uint64(len(msg)))
	return msg, true, nil
}

// parseClosePayload validates a client close frame's body (RFC 6455 §5.5.1,
// §7.4): empty, or a valid code and a UTF-8 reason.
func parseClosePayload(p []byte) (CloseCode, error) {
	if len(p) == 0 {
		return 1005, nil
	}
	if len(p) == 1 {
		return 0, errProtocol("close frame with a 1-byte body")
	}
	code, reason := ws.ParseCloseFrameDataUnsafe(p)
	if !validCloseCode(uint16(code)) {
		return 0, errProtocol("invalid close code %d", code)
	}
	if !utf8.ValidString(reason) {
		return 0, &protocolError{code: CloseInvalidPayload, msg: "close reason is not valid UTF-8"}
	}
	return CloseCode(code), nil
}

// validCloseCode reports whether a peer may send code (RFC 6455 §7.4).
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011, code >= 3000 && code <= 4999:
		return true
	case code == 1012 || code == 1013 || code == 1014:
		return true
	}
	return false
}

// sendJSON queues one control message of the protocol.
func (c *conn) sendJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.hub.log.Error("rthub: encoding message", slog.Any("err", err))
		return
	}
	c.send(textFrame(b))
}
