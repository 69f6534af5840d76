//go:build !linux

package rthub

import (
	"net"
	"syscall"
)

// syscallConn returns nil off Linux: every write takes the blocking path.
func syscallConn(net.Conn) syscall.RawConn { return nil }

type writev struct{ syscalls uint64 }

func newWritev(int) *writev { return nil }

func tryWritev(syscall.RawConn, net.Buffers, *writev) (int64, net.Buffers, error) {
	panic("unreachable")
}

// waitReadable is a no-op off Linux: the read itself waits.
func waitReadable(syscall.RawConn) {}

// waitWritable is never called off Linux (there is no raw connection).
func waitWritable(syscall.RawConn) error { panic("unreachable") }
