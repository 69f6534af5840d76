//go:build !linux

package rthub

import "syscall"

// poller is Linux only: elsewhere every connection is read on a goroutine of
// its own (ReadAuto is ReadGoroutine).
type poller struct{}

// epollSet is never made off Linux.
type epollSet struct{}

// hubPoller returns nil off Linux.
func hubPoller(*Hub) *poller { return nil }

func (p *poller) reserve(*conn) uint32 { panic("unreachable") }
func (p *poller) set(uint32) *epollSet { panic("unreachable") }
func (p *poller) close()               {}
func (s *epollSet) add(*conn) error    { panic("unreachable") }
func (s *epollSet) arm(*conn) error    { panic("unreachable") }
func (s *epollSet) remove(*conn)       { panic("unreachable") }
func (s *epollSet) forget(*conn)       { panic("unreachable") }

// readableNow is never called off Linux.
func readableNow(syscall.RawConn) bool { panic("unreachable") }

// shutdownSocket is never called off Linux (no connection is in a set).
func shutdownSocket(syscall.RawConn) { panic("unreachable") }

// ownSocket is never called off Linux (there is no poller).
func (h *Hub) ownSocket(*conn) bool { panic("unreachable") }
