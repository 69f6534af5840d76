//go:build linux

package rthub

import (
	"errors"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// poller waits for client data on the epoll path (ReadAuto): a few epoll
// sets of the hub's own, one goroutine each. A connection is in one set
// from its setup to its teardown, registered EPOLLONESHOT: when it becomes
// readable (data, FIN, RST, a shutdown) the set's goroutine hands it to a
// new goroutine (serveReady), which reads and handles what came and
// re-arms it. So the goroutines that exist are the sets' and one per
// connection with data; an idle connection has none.
//
// The sets' goroutines do not block a thread in epoll_wait: each epoll
// descriptor is itself in the runtime's netpoller (an epoll descriptor is
// pollable), and the goroutine waits for it to become readable through its
// RawConn, polling the set with a zero timeout.
//
// The hub owns each socket of the path (see socket): it is not in the
// runtime's netpoller, so the sets also wake the goroutines that wait for
// one. A reader that must wait (a frame that came in part, the closing
// handshake) re-arms the connection in its set and sleeps until the set's
// goroutine signals it; a writer the peer's window holds up arms the socket
// for EPOLLOUT in the set's write companion (epollSet.w, a second epoll
// descriptor with a goroutine of its own: one descriptor cannot be in one
// epoll set twice). Waiters are found by token in the set's waiters map: at
// most one reader and one writer per connection, so the map is bounded by
// the hub's connections.
//
// A socket the hub could not take from the runtime (see ownSocket) stays a
// net.Conn: the runtime keeps its own registration (edge-triggered), the
// set's is independent of it, and its waits are the runtime's.
//
// The hub owns the poller: it is made in New and closed by stopBackground,
// after every connection was torn down (so after every remove), and its
// goroutines are in h.bg.
type poller struct {
	sets []*epollSet
	next atomic.Uint32 // the last token handed out (see reserve)
}

// epollSet is one epoll descriptor and the connections in it, by token.
type epollSet struct {
	f  *os.File        // the epoll descriptor, for its RawConn and Close
	rc syscall.RawConn // f's
	fd int             // the epoll descriptor's number, valid until f.Close
	w  *epollSet       // the write companion (nil in a companion)

	mu      sync.Mutex
	conns   map[uint32]*conn         // by token; bounded by the hub's connections
	waiters map[uint32]chan struct{} // goroutines waiting for a socket (see socket.wait)
}

// pollEvents is the most events one poll of a set takes.
const pollEvents = 256

// newPoller makes n epoll sets, or returns an error if the system refuses
// (then the hub reads on goroutines).
func newPoller(n int) (*poller, error) {
	p := &poller{}
	for range n {
		s, err := newEpollSet()
		if err != nil {
			p.close()
			return nil, err
		}
		p.sets = append(p.sets, s)
		if s.w, err = newEpollSet(); err != nil {
			p.close()
			return nil, err
		}
	}
	return p, nil
}

func newEpollSet() (*epollSet, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(fd), "rthub-epoll") // non-blocking: in the runtime's poller
	// Only a file in the runtime's poller has deadlines: check it is one,
	// or waiting through its RawConn would fail.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		_ = f.Close()
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &epollSet{f: f, rc: rc, fd: fd, conns: make(map[uint32]*conn), waiters: make(map[uint32]chan struct{})}, nil
}

// hubPoller makes the hub's poller for opts: one set per GOMAXPROCS (at
// most 8), or none (nil) for ReadGoroutine or if the system refuses.
func hubPoller(h *Hub) *poller {
	if h.opts.ReadMode != ReadAuto {
		return nil
	}
	p, err := newPoller(min(runtime.GOMAXPROCS(0), 8))
	if err != nil {
		h.log.Warn("rthub: no epoll read path; reading on goroutines", slog.Any("err", err))
		return nil
	}
	for _, s := range p.sets {
		h.bg.Go(s.run)
		h.bg.Go(s.w.run)
	}
	return p
}

// reserve gives a new connection a token (never 0), which also names its
// set, and enters the connection in the set's map. Tokens count up and wrap
// after 2³² connections; one still in use is skipped. An event queued for a
// token before it was given again is harmless: it finds the new connection
// not armed (pollNew), or wakes its reader early (which then waits in its
// read, as a goroutine with data on the way would).
func (p *poller) reserve(c *conn) uint32 {
	for {
		t := p.next.Add(1)
		if t == 0 {
			continue
		}
		s := p.set(t)
		s.mu.Lock()
		if _, used := s.conns[t]; !used {
			s.conns[t] = c
			s.mu.Unlock()
			return t
		}
		s.mu.Unlock()
	}
}

// set returns the set of token t.
func (p *poller) set(t uint32) *epollSet { return p.sets[t%uint32(len(p.sets))] }

// close closes the sets, which ends their goroutines. The hub calls it once
// every connection is torn down.
func (p *poller) close() {
	for _, s := range p.sets {
		_ = s.f.Close()
		if s.w != nil {
			_ = s.w.f.Close()
		}
	}
}

// run hands the connections of the set that become readable to readers,
// or wakes the goroutine waiting for one, until the set is closed.
func (s *epollSet) run() {
	events := make([]syscall.EpollEvent, pollEvents)
	for {
		n := 0
		err := s.rc.Read(func(fd uintptr) bool {
			for {
				var errno error
				n, errno = syscall.EpollWait(int(fd), events, 0)
				if errno == syscall.EINTR {
					continue
				}
				if errno != nil {
					n = 0
					return true // only EBADF or EINVAL: a bug; the close ends us
				}
				return n > 0 // none: wait for the runtime to report the set readable
			}
		})
		if err != nil {
			return // closed
		}
		for i := range events[:n] {
			ev := &events[i]
			token := uint32(ev.Fd)
			s.mu.Lock()
			c, w := s.conns[token], s.waiters[token]
			s.mu.Unlock()
			if w != nil {
				notify(w)
				continue
			}
			// A connection torn down since the event was queued has no
			// token any more; one being read already (wakeReader got it)
			// is re-armed by its reader.
			if c != nil && c.rp.state.CompareAndSwap(pollArmed, pollReading) {
				c.hub.wg.Go(c.serveReady)
			}
		}
		clear(events[:n])
	}
}

// pollFlags are the events a parked connection waits for: data, the peer's
// FIN, hang-up and errors (the last two are always reported), once.
const pollFlags = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// add registers c (state pollArmed, its token reserved) in the set, or arms
// it if it is in already (ownSocket put it there). A connection it fails
// for keeps its token until its teardown.
func (s *epollSet) add(c *conn) error {
	err := s.ctl(c, syscall.EPOLL_CTL_ADD)
	if errors.Is(err, syscall.EEXIST) {
		err = s.arm(c)
	}
	return err
}

// arm re-arms c after a read.
func (s *epollSet) arm(c *conn) error { return s.ctl(c, syscall.EPOLL_CTL_MOD) }

// remove takes c out of the set; its reader calls it at teardown, before
// the socket is closed. A connection not in the set is no error.
func (s *epollSet) remove(c *conn) {
	_ = s.ctl(c, syscall.EPOLL_CTL_DEL)
	s.forget(c)
}

// await enters a waiter for token: the set's goroutine signals the channel
// when the socket it is armed for has an event. The caller calls done.
func (s *epollSet) await(token uint32) chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.waiters[token] = ch
	s.mu.Unlock()
	return ch
}

// done removes the waiter ch of token.
func (s *epollSet) done(token uint32, ch chan struct{}) {
	s.mu.Lock()
	if s.waiters[token] == ch {
		delete(s.waiters, token)
	}
	s.mu.Unlock()
}

// wake signals the waiter of token, if any, to look again (a deadline
// moved, the socket closed).
func (s *epollSet) wake(token uint32) {
	s.mu.Lock()
	ch := s.waiters[token]
	s.mu.Unlock()
	if ch != nil {
		notify(ch)
	}
}

// notify sends on a waiter's channel without blocking: one pending signal
// is enough.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// forget gives c's token back.
func (s *epollSet) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c.rp.token)
	s.mu.Unlock()
}

// ctl runs one epoll_ctl for c's socket. It goes through the socket's
// RawConn.Control, which holds the descriptor open for the call: a closed
// socket fails with an error instead of naming a number the kernel may
// have given to another connection.
func (s *epollSet) ctl(c *conn, op int) error {
	ev := syscall.EpollEvent{Events: pollFlags, Fd: int32(c.rp.token)}
	var errno error
	err := c.raw.Control(func(fd uintptr) {
		errno = syscall.EpollCtl(s.fd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	if errno != nil {
		return os.NewSyscallError("epoll_ctl", errno)
	}
	return nil
}

// readableNow reports whether the socket has data (or an EOF or an error to
// report) right now, with a non-blocking one-byte MSG_PEEK that never waits.
func readableNow(raw syscall.RawConn) bool {
	var b [1]byte
	ready := false
	err := raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ready = err != syscall.EAGAIN
		return true // never wait
	})
	return ready || err != nil
}

// shutdownSocket shuts a socket down both ways (see conn.closeSocket). A
// socket already closed is left alone.
func shutdownSocket(raw syscall.RawConn) {
	_ = raw.Control(func(fd uintptr) {
		// ENOTCONN (the peer reset it) is the only expected error, and
		// the reset already woke the reader.
		_ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR)
	})
}
