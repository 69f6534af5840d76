//go:build linux

package rthub

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// socket is a connection's TCP socket once the epoll path owns it (see
// ownSocket): a descriptor taken out of the Go runtime's netpoller, so the
// runtime keeps no poll descriptor for it (512 bytes off the heap, never
// returned to the OS), and no netFD, addresses or finalizer (about 300 bytes
// of heap). An idle connection costs what this struct costs: 40 bytes.
//
// What the runtime's netpoller did for the socket, the hub's epoll sets do:
// a goroutine that must wait (a frame that arrived in part, a close
// handshake, a write the peer's window does not take) arms the socket in
// its set (reads) or in the set's write companion (writes) and sleeps on a
// channel that the set's goroutine signals, bounded by the deadline the
// conn set. Nobody waits on an idle connection.
//
// The descriptor is reference counted like the runtime's fdMutex: every
// system call on it holds a reference, and Close marks it closed and leaves
// the close(2) to the last holder. So no goroutine ever names the number
// after it was closed, when the kernel may have given it to another
// client's socket.
type socket struct {
	fd    int32
	token uint32        // the connection's token in its epoll set
	refs  atomic.Uint64 // references held; sockClosed once Close ran
	rdl   atomic.Int64  // read deadline, unix nanoseconds; 0: none
	wdl   atomic.Int64  // write deadline, likewise
	set   *epollSet     // the connection's set (read waits); set.w for write waits
}

// sockClosed is the bit of socket.refs that Close sets.
const sockClosed = 1 << 63

// sockConn is the net.Conn side of a socket: the same struct, a second type
// because net.Conn's Read and Write and syscall.RawConn's have the same
// names.
type sockConn socket

var (
	_ net.Conn        = (*sockConn)(nil)
	_ syscall.RawConn = (*socket)(nil)
)

// ownSocket takes c's socket from the runtime (see takeSocket) and makes it
// c's nc and raw. It reports false, leaving c as it was, if that fails.
func (h *Hub) ownSocket(c *conn) bool {
	s, err := takeSocket(c.raw, c.pollSet(), c.rp.token)
	if err != nil {
		return false
	}
	_ = c.nc.Close()
	c.nc, c.raw = (*sockConn)(s), s
	return true
}

// takeSocket duplicates the descriptor behind raw and registers the
// duplicate in set under token, armed for nothing yet (startReading arms
// it). The caller then closes raw's net.Conn: its descriptor goes back to
// the runtime, with its poll descriptor. The duplicate shares the socket's
// file description, so it is already non-blocking, and closing the
// original sends nothing to the peer.
func takeSocket(raw syscall.RawConn, set *epollSet, token uint32) (*socket, error) {
	var fd int
	var errno error
	if err := raw.Control(func(sfd uintptr) {
		fd, errno = dupCloexec(int(sfd))
	}); err != nil {
		return nil, err
	}
	if errno != nil {
		return nil, errno
	}
	s := &socket{fd: int32(fd), token: token, set: set}
	ev := syscall.EpollEvent{Events: syscall.EPOLLONESHOT, Fd: int32(token)}
	if err := syscall.EpollCtl(set.fd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		_ = syscall.Close(fd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return s, nil
}

// dupCloexec duplicates fd, close-on-exec.
func dupCloexec(fd int) (int, error) {
	for {
		nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return -1, os.NewSyscallError("fcntl", errno)
		}
		return int(nfd), nil
	}
}

// acquire takes a reference for a system call on s.fd; it reports false
// once s is closed.
func (s *socket) acquire() bool {
	for {
		v := s.refs.Load()
		if v&sockClosed != 0 {
			return false
		}
		if s.refs.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// release gives a reference back; the last one after Close closes fd.
func (s *socket) release() {
	if s.refs.Add(^uint64(0)) == sockClosed {
		_ = syscall.Close(int(s.fd))
	}
}

// close marks the socket closed: no new system call starts on it, and the
// descriptor is closed now or by the last call still running. Waiters are
// woken, to find it closed. Closing removes the descriptor from every epoll
// set. A second close returns net.ErrClosed.
func (s *socket) close() error {
	for {
		v := s.refs.Load()
		if v&sockClosed != 0 {
			return net.ErrClosed
		}
		if s.refs.CompareAndSwap(v, v|sockClosed) {
			if v == 0 {
				_ = syscall.Close(int(s.fd))
			}
			break
		}
	}
	s.set.wake(s.token)
	s.set.w.wake(s.token)
	return nil
}

// Control runs f on the descriptor, held open for the call.
func (s *socket) Control(f func(fd uintptr)) error {
	if !s.acquire() {
		return net.ErrClosed
	}
	defer s.release()
	f(uintptr(s.fd))
	return nil
}

// Read runs f until it reports done, waiting for the socket to become
// readable between calls, bounded by the read deadline (syscall.RawConn's
// contract, as the runtime keeps it: a deadline already past fails first).
func (s *socket) Read(f func(fd uintptr) (done bool)) error {
	return s.rawIO(f, false)
}

// Write is Read for writing.
func (s *socket) Write(f func(fd uintptr) (done bool)) error {
	return s.rawIO(f, true)
}

func (s *socket) rawIO(f func(fd uintptr) bool, write bool) error {
	for {
		if err := s.expired(write); err != nil {
			return err
		}
		if !s.acquire() {
			return opError(op(write), net.ErrClosed)
		}
		done := f(uintptr(s.fd))
		s.release()
		if done {
			return nil
		}
		if err := s.wait(write); err != nil {
			return err
		}
	}
}

// Read reads into p as net.Conn's Read does: it waits for data, bounded by
// the read deadline, and reports io.EOF at the end of the stream.
func (c *sockConn) Read(p []byte) (int, error) {
	var n int
	var errno error
	if err := (*socket)(c).rawIO(func(fd uintptr) bool {
		n, errno = retryEINTR(func() (int, error) { return syscall.Read(int(fd), p) })
		return errno != syscall.EAGAIN
	}, false); err != nil {
		return 0, err
	}
	switch {
	case errno != nil:
		return 0, opError("read", os.NewSyscallError("read", errno))
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, waiting for the peer to take it, bounded by the
// write deadline.
func (c *sockConn) Write(p []byte) (int, error) {
	written := 0
	var errno error
	err := (*socket)(c).rawIO(func(fd uintptr) bool {
		for written < len(p) {
			var n int
			n, errno = retryEINTR(func() (int, error) { return syscall.Write(int(fd), p[written:]) })
			if errno != nil {
				return errno != syscall.EAGAIN
			}
			written += n
		}
		return true
	}, true)
	switch {
	case err != nil:
		return written, err
	case errno != nil:
		return written, opError("write", os.NewSyscallError("write", errno))
	}
	return written, nil
}

// retryEINTR runs a system call again while it is interrupted.
func retryEINTR(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// expired returns the timeout error if the deadline of the direction has
// passed.
func (s *socket) expired(write bool) error {
	dl := &s.rdl
	if write {
		dl = &s.wdl
	}
	if d := dl.Load(); d != 0 && time.Now().UnixNano() >= d {
		return opError(op(write), os.ErrDeadlineExceeded)
	}
	return nil
}

// wait sleeps until the socket may be readable (or writable), the deadline
// passes (then it returns the timeout error), the deadline changes or the
// socket is closed; the caller tries again. Wake-ups may be spurious.
func (s *socket) wait(write bool) error {
	set, dl, flags := s.set, &s.rdl, uint32(pollFlags)
	if write {
		set, dl, flags = s.set.w, &s.wdl, syscall.EPOLLOUT|syscall.EPOLLONESHOT
	}
	ch := set.await(s.token)
	defer set.done(s.token, ch)
	if !s.acquire() {
		return opError(op(write), net.ErrClosed)
	}
	ev := syscall.EpollEvent{Events: flags, Fd: int32(s.token)}
	err := syscall.EpollCtl(set.fd, syscall.EPOLL_CTL_MOD, int(s.fd), &ev)
	if err == syscall.ENOENT {
		err = syscall.EpollCtl(set.fd, syscall.EPOLL_CTL_ADD, int(s.fd), &ev)
	}
	s.release()
	if err != nil {
		return opError(op(write), os.NewSyscallError("epoll_ctl", err))
	}
	d := dl.Load()
	if d == 0 {
		<-ch
		return nil
	}
	t := time.NewTimer(time.Duration(d - time.Now().UnixNano()))
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return s.expired(write) // nil if the deadline moved meanwhile
	}
}

// op names a direction for errors.
func op(write bool) string {
	if write {
		return "write"
	}
	return "read"
}

// opError wraps err as the net package would.
func opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Err: err}
}

// Close closes the socket (see socket.close).
func (c *sockConn) Close() error { return (*socket)(c).close() }

// SetDeadline sets both deadlines.
func (c *sockConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline bounds the waits of reads; a waiting reader wakes to see
// the new deadline.
func (c *sockConn) SetReadDeadline(t time.Time) error {
	c.rdl.Store(unixNanoOrZero(t))
	c.set.wake(c.token)
	return nil
}

// SetWriteDeadline bounds the waits of writes; a waiting writer wakes to see
// the new deadline.
func (c *sockConn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(unixNanoOrZero(t))
	c.set.w.wake(c.token)
	return nil
}

// LocalAddr and RemoteAddr are not kept (the conn keeps the remote address
// as net/http saw it): both return nil.
func (c *sockConn) LocalAddr() net.Addr  { return nil }
func (c *sockConn) RemoteAddr() net.Addr { return nil }

func unixNanoOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 1)
}
