package rthub

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
)

func TestConn_CloseHandshake(t *testing.T) {
	t.Parallel()

	// disconnects records the close codes OnDisconnect reports.
	disconnects := func(ch chan CloseCode) func(*Options) {
		return func(o *Options) {
			o.CloseTimeout = 2 * time.Second
			o.OnDisconnect = func(_ context.Context, _ ConnInfo, err error) { ch <- CloseStatus(err) }
		}
	}
	wantDisconnect := func(t *testing.T, ch chan CloseCode, want CloseCode) {
		t.Helper()
		select {
		case got := <-ch:
			if got != want {
				t.Errorf("OnDisconnect code = %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("OnDisconnect not called")
		}
	}

	t.Run("serverInitiatedRaw", func(t *testing.T) {
		t.Parallel()
		ch := make(chan CloseCode, 1)
		h, url := conformHub(t, disconnects(ch))
		rc := dialRaw(t, url, rawOpts{token: testToken(t, "alice", time.Hour, "staff")})
		if m := rc.next(nil).msg; m.Type != "welcome" {
			t.Fatalf("first message %+v", m)
		}
		// Queued data goes out before the close frame.
		if err := h.Publish(t.Context(), "staff", "news:item", map[string]int{"n": 1}); err != nil {
			t.Fatal(err)
		}
		if n, err := h.DisconnectUser(t.Context(), "alice", "bye now"); n != 1 || err != nil {
			t.Fatalf("DisconnectUser = %d, %v", n, err)
		}
		if m := rc.next(nil).msg; m.Type != "event" || m.Event != "news:item" {
			t.Fatalf("message before close = %+v, want the event", m)
		}
		code, reason := rc.expectClose()
		if code != ws.StatusCode(CloseDisconnected) || reason != "bye now" {
			t.Fatalf("close = %d %q, want %d %q", code, reason, CloseDisconnected, "bye now")
		}
		// Both close frames exchanged: the server closes TCP at once (RFC 6455
		// §7.1.1), it does not wait out CloseTimeout (2 s).
		if took := rc.expectEOF(5 * time.Second); took > time.Second {
			t.Errorf("TCP closed %v after the close handshake, want at once", took)
		}
		wantDisconnect(t, ch, CloseDisconnected)
	})

	t.Run("serverInitiatedLibrary", func(t *testing.T) {
		t.Parallel()
		ch := make(chan CloseCode, 1)
		h, url := conformHub(t, disconnects(ch))
		alice := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
		alice.read() // welcome: the connection is registered
		if n, err := h.DisconnectUser(t.Context(), "alice", ""); n != 1 || err != nil {
			t.Fatalf("DisconnectUser = %d, %v", n, err)
		}
		if got := alice.closeCode(); got != int(CloseDisconnected) {
			t.Fatalf("close code = %d, want %d", got, CloseDisconnected)
		}
		wantDisconnect(t, ch, CloseDisconnected)
	})

	t.Run("serverInitiatedClientSilent", func(t *testing.T) {
		t.Parallel()
		ch := make(chan CloseCode, 1)
		h, url := conformHub(t, func(o *Options) {
			disconnects(ch)(o)
			o.CloseTimeout = 200 * time.Millisecond
		})
		rc := dialRaw(t, url, rawOpts{token: testToken(t, "alice", time.Hour, "staff")})
		rc.next(nil) // welcome
		if _, err := h.DisconnectUser(t.Context(), "alice", ""); err != nil {
			t.Fatal(err)
		}
		// Read the close frame but never answer it: the server drops TCP
		// after CloseTimeout, and the close frame was readable before that.
		h1, p, err := rc.readFrame(5 * time.Second)
		for err == nil && h1.OpCode == ws.OpPing { // its ping slot may come now
			h1, p, err = rc.readFrame(5 * time.Second)
		}
		if err != nil || h1.OpCode != ws.OpClose {
			t.Fatalf("frame = %+v, %v; want close", h1, err)
		}
		if code, _ := ws.ParseCloseFrameData(p); code != ws.StatusCode(CloseDisconnected) {
			t.Fatalf("close code = %d", code)
		}
		rc.expectEOF(5 * time.Second)
		wantDisconnect(t, ch, CloseDisconnected)
	})

	t.Run("clientInitiatedRaw", func(t *testing.T) {
		t.Parallel()
		ch := make(chan CloseCode, 1)
		_, url := conformHub(t, disconnects(ch))
		rc := dialRaw(t, url, rawOpts{token: testToken(t, "alice", time.Hour, "staff")})
		rc.next(nil) // welcome
		rc.write(cframe(true, 0, opClose, closeBody(1000, "done")))
		h1, p, err := rc.readFrame(5 * time.Second)
		for err == nil && h1.OpCode != ws.OpClose {
			h1, p, err = rc.readFrame(5 * time.Second)
		}
		if err != nil {
			t.Fatalf("no close echo: %v", err)
		}
		if code, _ := ws.ParseCloseFrameData(p); code != ws.StatusNormalClosure {
			t.Fatalf("echoed code = %d, want 1000", code)
		}
		if took := rc.expectEOF(5 * time.Second); took > time.Second {
			t.Errorf("TCP closed %v after the close handshake, want at once", took)
		}
		wantDisconnect(t, ch, CloseNormal)
	})

	t.Run("clientInitiatedLibrary", func(t *testing.T) {
		t.Parallel()
		ch := make(chan CloseCode, 1)
		_, url := conformHub(t, disconnects(ch))
		alice := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
		alice.read() // welcome
		start := time.Now()
		if err := alice.c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("Close: %v, want a completed handshake", err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Close took %v", took)
		}
		wantDisconnect(t, ch, CloseNormal)
	})
}
