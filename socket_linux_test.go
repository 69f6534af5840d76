//go:build linux

package rthub

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// socketPoller starts a poller of one set (and its write companion) for the
// socket tests; it is closed at the end of the test.
func socketPoller(t *testing.T) *poller {
	t.Helper()
	p, err := newPoller(1)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(p.sets[0].run)
	wg.Go(p.sets[0].w.run)
	t.Cleanup(func() { p.close(); wg.Wait() })
	return p
}

// ownedPair returns a socket the test owns, taken from the server side of a
// TCP connection, and the client side.
func ownedPair(t *testing.T, p *poller) (*socket, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	raw := syscallConn(srv)
	s, err := takeSocket(raw, p.set(1), p.next.Add(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = (*sockConn)(s).Close() })
	return s, client
}

// TestSocket_ReadWrite: reads and writes of an owned socket wait through
// the sets, as they would in the runtime's netpoller.
func TestSocket_ReadWrite(t *testing.T) {
	p := socketPoller(t)
	s, client := ownedPair(t, p)
	sc := (*sockConn)(s)

	// A read waits for data that comes later (through the set).
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = client.Write([]byte("hello"))
	}()
	buf := make([]byte, 16)
	n, err := sc.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}

	// A write larger than the socket buffers waits for the peer to read.
	big := bytes.Repeat([]byte("x"), 8<<20)
	got := make(chan int, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		n, _ := io.Copy(io.Discard, io.LimitReader(client, int64(len(big))))
		got <- int(n)
	}()
	if n, err := sc.Write(big); err != nil || n != len(big) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n := <-got; n != len(big) {
		t.Fatalf("peer read %d bytes, want %d", n, len(big))
	}

	// The peer's close is io.EOF.
	_ = client.Close()
	if n, err := sc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer's close = %d, %v; want 0, EOF", n, err)
	}
}

func TestSocket_Deadlines(t *testing.T) {
	p := socketPoller(t)
	s, _ := ownedPair(t, p)
	sc := (*sockConn)(s)
	buf := make([]byte, 16)

	// A deadline set before the read bounds its wait.
	_ = sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := sc.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("the error %v is not a net.Error timeout", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Fatalf("Read returned after %v, before its deadline", d)
	}

	// A deadline already past fails the raw read before it runs.
	called := false
	if err := s.Read(func(uintptr) bool { called = true; return true }); !errors.Is(err, os.ErrDeadlineExceeded) || called {
		t.Fatalf("RawConn.Read past the deadline = %v (f called: %v)", err, called)
	}

	// A deadline set while a reader waits wakes it.
	_ = sc.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := sc.Read(buf); done <- err }()
	time.Sleep(50 * time.Millisecond)
	_ = sc.SetReadDeadline(time.Now())
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("woken reader: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a reader waiting without a deadline did not see the one set meanwhile")
	}

	// Likewise a writer held up by a peer that does not read.
	_ = sc.SetReadDeadline(time.Time{})
	go func() { _, err := sc.Write(bytes.Repeat([]byte("x"), 16<<20)); done <- err }()
	time.Sleep(100 * time.Millisecond)
	_ = sc.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("woken writer: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked writer did not see its new deadline")
	}
}

// TestSocket_CloseWakes: closing a socket wakes the goroutines waiting on
// it, which find it closed, and the descriptor leaves the sets (the waiters
// map is empty afterwards).
func TestSocket_CloseWakes(t *testing.T) {
	p := socketPoller(t)
	s, _ := ownedPair(t, p)
	sc := (*sockConn)(s)
	rd, wr := make(chan error, 1), make(chan error, 1)
	go func() { _, err := sc.Read(make([]byte, 16)); rd <- err }()
	go func() { _, err := sc.Write(bytes.Repeat([]byte("x"), 16<<20)); wr <- err }()
	time.Sleep(100 * time.Millisecond)
	if err := sc.Close(); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan error{"reader": rd, "writer": wr} {
		select {
		case err := <-ch:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("%s after Close: %v, want net.ErrClosed", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the %s waiting on the socket was not woken by Close", name)
		}
	}
	if err := sc.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close = %v, want net.ErrClosed", err)
	}
	for _, set := range []*epollSet{p.sets[0], p.sets[0].w} {
		set.mu.Lock()
		n := len(set.waiters)
		set.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d waiters left after Close", n)
		}
	}
}

// TestSocket_NoWriteAfterClose: writers racing a Close never write to the
// descriptor number after it was closed, when the kernel hands it to the
// next socket. Each round closes a socket while writers hammer it, then
// opens new connections (which take the freed numbers); none of their
// peers may receive a byte.
func TestSocket_NoWriteAfterClose(t *testing.T) {
	p := socketPoller(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for round := range 20 {
		s, _ := ownedPair(t, p)
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 {
			wg.Go(func() {
				b := []byte("LEAK")
				for {
					select {
					case <-stop:
						return
					default:
					}
					_ = s.Write(func(fd uintptr) bool {
						_, _ = syscall.Write(int(fd), b)
						return true
					})
				}
			})
		}
		time.Sleep(time.Millisecond)
		_ = (*sockConn)(s).Close()
		// New sockets, made while the writers still run: they take the
		// lowest free numbers, the closed one first.
		var peers []net.Conn
		for range 4 {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			a, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			peers = append(peers, c, a) // either side may have the freed number
		}
		time.Sleep(2 * time.Millisecond)
		close(stop)
		wg.Wait()
		for _, c := range peers {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			if n, _ := c.Read(make([]byte, 64)); n > 0 {
				t.Fatalf("round %d: a new connection received %d bytes written to a closed socket", round, n)
			}
			_ = c.Close()
		}
	}
}

// TestReadPoll_OwnsSocket: on the epoll path every connection's socket is
// the hub's (out of the runtime's netpoller); a command trickled in byte by
// byte, so its reader waits mid-frame through the set, is still answered;
// with the comparison knob (testKeepNetConn) the socket stays a net.Conn.
func TestReadPoll_OwnsSocket(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "owned", true: "netconn"}[keep], func(t *testing.T) {
			h, url := testHub(t, func(o *Options) { o.ReadMode = ReadAuto; o.testKeepNetConn = keep })
			rc := dialRaw(t, url, rawOpts{token: testToken(t, "ann", time.Hour, "staff")})
			if m := rc.next(nil).msg; m.Type != "welcome" {
				t.Fatalf("first message %q, want welcome", m.Type)
			}
			cs := h.snapshotConns(nil)
			if len(cs) != 1 {
				t.Fatalf("%d connections", len(cs))
			}
			_, owned := cs[0].raw.(*socket)
			if owned == keep {
				t.Fatalf("socket owned by the hub: %v, want %v", owned, !keep)
			}
			frame := frameBytes(0x81, true, []byte(`{"op":"ping","id":7}`))
			for _, b := range frame {
				rc.write([]byte{b})
				time.Sleep(2 * time.Millisecond)
			}
			rc.repliesUntil(7) // fails the test unless reply 7 comes, ok
		})
	}
}
