package client

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/org/rthub"
)

// TestHubDeflate holds regressions for hub bugs found while writing the
// client: the hub once declined every offer with server_no_context_takeover
// (so Options.Compression never compressed), and accepted bare offers without
// client_no_context_takeover (so browsers' context-takeover messages closed
// with 1007).
func TestHubDeflate(t *testing.T) {
	t.Parallel()

	t.Run("deflateNotNegotiated", func(t *testing.T) {
		t.Parallel()
		ts := startHub(t, nil)
		c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), Compression: true})
		big := strings.Repeat("compressible ", 5000)
		before := ts.Hub().Stats().BytesSent
		if err := ts.Hub().Publish(t.Context(), "staff", "chat:message", chatMessage{Text: big}); err != nil {
			t.Fatal(err)
		}
		if err := c.Ping(t.Context()); err != nil { // the event is out before the reply
			t.Fatal(err)
		}
		if sent := ts.Hub().Stats().BytesSent - before; sent > uint64(len(big)/2) {
			t.Errorf("hub sent %d bytes for a %d-byte compressible event: not compressed", sent, len(big))
		}
	})

	// For an offer without no_context_takeover (browsers send
	// "permessage-deflate; client_max_window_bits"), the hub answers plain
	// "permessage-deflate", which lets the client keep its compression
	// context between messages; but the hub inflates each message on its own,
	// so the first message that refers to an earlier one closes the
	// connection with 1007 "bad compressed data".
	t.Run("deflateContextTakeover", func(t *testing.T) {
		t.Parallel()
		ts := startHub(t, nil)
		hdr := http.Header{"Authorization": {"Bearer " + hourToken(t, "alice", "staff")}}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{
			HTTPHeader:      hdr,
			Subprotocols:    []string{rthub.Subprotocol},
			CompressionMode: websocket.CompressionContextTakeover,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		t.Logf("negotiated %q", resp.Header.Get("Sec-WebSocket-Extensions"))
		msg := `{"id":1,"op":"ping","pad":"` + strings.Repeat("hello world ", 30) + `"}`
		for range 3 {
			if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		for replies := 0; replies < 3; {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("after %d replies: %v", replies, err)
			}
			if strings.Contains(string(b), `"reply"`) {
				replies++
			}
		}
	})
}
