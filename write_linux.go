//go:build linux

package rthub

import (
	"net"
	"syscall"
	"unsafe"
)

// iovMax is the most buffers one writev takes (IOV_MAX on Linux).
const iovMax = 1024

// writev is a flush worker's scratch for non-blocking vectored writes. Its
// callback is bound once, so a write allocates nothing.
type writev struct {
	iov      []syscall.Iovec
	n        uintptr
	errno    syscall.Errno
	call     func(fd uintptr) bool
	maxIov   int    // buffers per syscall; iovMax unless a benchmark lowers it
	syscalls uint64 // writev calls made, for Stats
}

func newWritev(maxIov int) *writev {
	if maxIov <= 0 || maxIov > iovMax {
		maxIov = iovMax
	}
	w := &writev{iov: make([]syscall.Iovec, 0, 64), maxIov: maxIov}
	w.call = w.do
	return w
}

func (w *writev) do(fd uintptr) bool {
	w.n, _, w.errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
	return true // never wait for writability here
}

// tryWritev writes as much of bufs as the socket takes now, without waiting:
// one writev per up to iovMax buffers, stopping at EAGAIN. It returns the
// bytes written and what is left (nil when everything went out). bufs'
// elements may be re-sliced. It never blocks on a slow peer, which is what
// lets one flush worker serve many connections in turn.
func tryWritev(rc syscall.RawConn, bufs net.Buffers, w *writev) (written int64, rest net.Buffers, err error) {
	for {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		if len(bufs) == 0 {
			return written, nil, nil
		}
		w.iov = w.iov[:0]
		for _, b := range bufs {
			if len(b) == 0 {
				continue
			}
			w.iov = append(w.iov, syscall.Iovec{Base: &b[0], Len: uint64(len(b))})
			if len(w.iov) == w.maxIov {
				break
			}
		}
		cerr := rc.Write(w.call)
		w.syscalls++
		clear(w.iov) // drop the pointers into the frames
		if cerr != nil {
			return written, nil, cerr
		}
		n := w.n
		switch w.errno {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return written, bufs, nil
		default:
			return written, nil, w.errno
		}
		written += int64(n)
		for n > 0 {
			if l := uintptr(len(bufs[0])); n >= l {
				n -= l
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
	}
}

// syscallConn returns the connection's syscall.RawConn for non-blocking writes,
// or nil if it has none (then every write blocks, bounded by WriteTimeout).
func syscallConn(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// waitReadable parks until the socket has data (or an error or EOF to
// report), using a non-blocking one-byte MSG_PEEK. It parks on a short call
// chain, so an idle connection's goroutine uses well under a quarter of its
// stack and the garbage collector shrinks the stack to its minimum: the
// read path's deeper chain (frame header → io.ReadFull → net.Conn.Read) keeps
// it at twice that. See docs/performance.md (idle memory).
func waitReadable(raw syscall.RawConn) {
	var b [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN // data, EOF or an error: let the read report it
	})
}

// waitWritable parks until the socket would take more data (or has an
// error to report), bounded by the connection's write deadline: the
// writer of a slow reader of lossy rooms waits here without taking frames
// from the queue, so the overflow policy can still shed them while the
// reader catches up. A zero-timeout ppoll tells whether the socket is
// writable now; if not, the runtime's poller waits for it.
func waitWritable(raw syscall.RawConn) error {
	return raw.Write(func(fd uintptr) bool {
		pfd := struct {
			fd              int32
			events, revents int16
		}{fd: int32(fd), events: pollOut}
		var ts syscall.Timespec
		n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		return errno != 0 || n > 0 // writable, or an error for the write to report
	})
}

// pollOut is POLLOUT.
const pollOut = 0x4
