package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/org/rthub"
)

// message is any server → client message (docs/protocol.md §2.1).
type message struct {
	Type    string            `json:"type"`
	ID      uint64            `json:"id"`
	OK      bool              `json:"ok"`
	Error   *rthub.ReplyError `json:"error"`
	Event   string            `json:"event"`
	Room    string            `json:"room"`
	Reason  string            `json:"reason"`
	Data    json.RawMessage   `json:"data"`
	Conn    string            `json:"conn"`
	Rooms   []string          `json:"rooms"`
	Expires int64             `json:"expires"`
	Ping    int64             `json:"ping"`
	Offset  uint64            `json:"offset"`
	CID     string            `json:"cid"`
	Epoch   string            `json:"epoch"`
	// Streams (welcome) gives each auto-joined room's position.
	Streams map[string]stream `json:"streams"`
}

// stream is a room's position in a welcome or a join reply.
type stream struct {
	Offset    uint64 `json:"offset"`
	Epoch     string `json:"epoch"`
	Recovered *bool  `json:"recovered"`
}

// err returns a reply's error: nil for ok, a *rthub.ReplyError otherwise.
func (m *message) err() error {
	switch {
	case m.Error != nil:
		return m.Error
	case !m.OK:
		return &rthub.ReplyError{Code: "internal", Message: "reply is neither ok nor an error"}
	}
	return nil
}

// command is a client → server command (docs/protocol.md §2.2).
type command struct {
	ID     uint64                `json:"id"`
	Op     string                `json:"op"`
	Room   string                `json:"room,omitempty"`
	Event  string                `json:"event,omitempty"`
	Token  string                `json:"token,omitempty"`
	Target *string               `json:"target,omitempty"`
	Since  *rthub.StreamPosition `json:"since,omitempty"`
	State  bool                  `json:"state,omitempty"`
	Data   json.RawMessage       `json:"data,omitempty"`
	// RPC and Timeout (milliseconds) are a call's, Call a cancel's, Idem
	// the idempotency key of an emit or a call (docs/protocol.md §2.5).
	RPC     string `json:"rpc,omitempty"`
	Timeout int64  `json:"timeout,omitempty"`
	Call    uint64 `json:"call,omitempty"`
	Idem    string `json:"idem,omitempty"`
}

var (
	errIdle    = errors.New("rthub/client: no message or ping from the server in time")
	errClosing = errors.New("rthub/client: the server did not answer the close frame in time")
)

// conn is one WebSocket connection of a client, with its two goroutines: the
// reader, which dispatches what the server sends and closes done when the
// connection ends, and the writer. The client's run goroutine starts them
// (start) and waits for them (wg) before it moves on.
type conn struct {
	c      *Client
	ws     wire                    // *websocket.Conn, or the HTTP stream
	viaWS  bool                    // ws is a WebSocket (TransportAuto counts its failures)
	id     string                  // the welcome's conn ID
	ctx    context.Context         // bounds every read and write; cancelling it drops the connection
	cancel context.CancelCauseFunc // with errIdle, errClosing or a write error
	idle   time.Duration           // drop the connection after this long without a message; 0: never
	born   time.Time               // when the connection attempt started (monotonic)
	last   atomic.Int64            // time since born of the last message or ping from the server
	out    chan []byte             // encoded commands to the writer
	// cancels holds the ids of calls to cancel, for the writer (bounded:
	// see cancelCall).
	cancels chan uint64
	// expiring signals the run goroutine that the token expires soon.
	expiring chan struct{}
	done     chan struct{} // closed by the reader when the connection has ended
	err      error         // why it ended; written before done is closed
	wg       sync.WaitGroup

	mu      sync.Mutex
	pending map[uint64]func(*message) // reply callbacks by command ID; nil once ended
}

func newConn(c *Client) *conn {
	cn := &conn{
		c:        c,
		out:      make(chan []byte),
		cancels:  make(chan uint64, maxPendingCancels),
		expiring: make(chan struct{}, 1),
		done:     make(chan struct{}),
		pending:  make(map[uint64]func(*message)),
		born:     time.Now(),
	}
	cn.ctx, cn.cancel = context.WithCancelCause(context.Background())
	return cn
}

// start runs the reader and the writer of the connection that w welcomed.
func (cn *conn) start(ws wire, w *message) {
	cn.ws = ws
	cn.id = w.Conn
	cn.idle = cn.c.idleFor(time.Duration(w.Ping) * time.Second)
	cn.alive()
	cn.wg.Go(cn.readLoop)
	cn.wg.Go(cn.writeLoop)
}

// onPing notes that the server is alive; coder/websocket answers the ping.
func (cn *conn) onPing(context.Context, []byte) bool {
	cn.alive()
	return true
}

// alive notes that the server sent something.
func (cn *conn) alive() { cn.last.Store(int64(time.Since(cn.born))) }

// readLoop reads and dispatches messages until the connection ends.
func (cn *conn) readLoop() {
	for {
		typ, b, err := cn.ws.Read(cn.ctx)
		if err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				// A resume would replay it and fail again: give up the
				// positions, so the rooms start afresh (reset) instead.
				cn.c.forgetPositions()
			}
			cn.end(err)
			return
		}
		cn.alive()
		if typ != websocket.MessageText {
			cn.c.log.Warn("rthub/client: ignoring a binary message")
			continue
		}
		cn.c.dispatch(cn, b)
	}
}

// end records why the connection ended, forgets pending replies and closes
// done.
func (cn *conn) end(err error) {
	if cn.ctx.Err() != nil {
		err = context.Cause(cn.ctx)
	}
	cn.err = closeCause(err)
	cn.mu.Lock()
	cn.pending = nil
	cn.mu.Unlock()
	close(cn.done)
}

// closeCause turns a read error into the reason a connection ended: the
// server's close code as a rthub.CloseError, or, for anything else, a
// CloseError with 1006 (abnormal closure) that also wraps err.
func closeCause(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return rthub.CloseError{Code: rthub.CloseCode(ce.Code), Reason: ce.Reason}
	}
	return fmt.Errorf("%w: %w", rthub.CloseError{Code: rthub.CloseAbnormal, Reason: "connection lost"}, err)
}

// writeLoop writes commands until the connection ends, and drops a
// connection on which the server has been silent too long.
func (cn *conn) writeLoop() {
	var tick <-chan time.Time
	if cn.idle > 0 {
		t := time.NewTicker(cn.idle / 4)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case b := <-cn.out:
			if err := cn.write(b); err != nil {
				// Make the reader see the end, then stop.
				cn.cancel(fmt.Errorf("rthub/client: write: %w", err))
				return
			}
		case id := <-cn.cancels:
			b, _ := json.Marshal(command{Op: "cancel", Call: id})
			if err := cn.write(b); err != nil {
				cn.cancel(fmt.Errorf("rthub/client: write: %w", err))
				return
			}
		case <-tick:
			if time.Since(cn.born)-time.Duration(cn.last.Load()) > cn.idle {
				cn.cancel(errIdle)
				return
			}
		case <-cn.done:
			return
		}
	}
}

// write writes one message within writeTimeout. The HTTP stream bounds
// each POST by it instead: its waits after a 429 are the hub's to set
// (each at most maxRetryWait), and a hub that answers is alive.
func (cn *conn) write(b []byte) error {
	if _, ok := cn.ws.(*streamWire); ok {
		return cn.ws.Write(cn.ctx, websocket.MessageText, b)
	}
	ctx, cancel := context.WithTimeout(cn.ctx, writeTimeout)
	defer cancel()
	return cn.ws.Write(ctx, websocket.MessageText, b)
}

// register arranges for fn to receive, on the reader goroutine, the reply to
// command id. It reports false once the connection has ended.
func (cn *conn) register(id uint64, fn func(*message)) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.pending == nil {
		return false
	}
	cn.pending[id] = fn
	return true
}

func (cn *conn) unregister(id uint64) {
	cn.mu.Lock()
	delete(cn.pending, id)
	cn.mu.Unlock()
}

// resolve hands a reply to the callback of its command.
func (cn *conn) resolve(m *message) {
	cn.mu.Lock()
	fn := cn.pending[m.ID]
	delete(cn.pending, m.ID)
	cn.mu.Unlock()
	if fn != nil {
		fn(m)
	}
}

// send hands an encoded command to the writer.
func (cn *conn) send(ctx context.Context, b []byte) error {
	select {
	case cn.out <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-cn.done:
		return cn.err
	}
}

// close closes the connection normally and waits for its goroutines. A
// server that does not answer the close frame within closeTimeout is cut off
// by cancelling the reader's Read, which makes coder/websocket drop the
// connection. If Close took the read lock before the reader, the reader is
// not in Read and Close's own 5 s read limit ends the wait instead.
func (cn *conn) close() {
	closed := make(chan struct{})
	go func() { // owned here: waited for below
		defer close(closed)
		_ = cn.ws.Close(websocket.StatusNormalClosure, "")
	}()
	t := time.NewTimer(closeTimeout)
	select {
	case <-closed:
	case <-t.C:
		cn.cancel(errClosing)
		<-closed
	}
	t.Stop()
	cn.wg.Wait()
}

// dispatch handles one server message on the reader goroutine.
func (c *Client) dispatch(cn *conn, b []byte) {
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		c.log.Warn("rthub/client: undecodable message", slog.Any("err", err))
		return
	}
	switch m.Type {
	case "event":
		if c.holdEvent(&m) {
			return // a join with state is pending: after its snapshot
		}
		c.dispatchEvent(&m)
	case "gap":
		c.gap(cn, m.Room)
	case "reply":
		cn.resolve(&m)
	case "joined":
		c.mu.Lock()
		if _, ok := c.rooms[m.Room]; !ok {
			c.rooms[m.Room] = false
		}
		c.mu.Unlock()
	case "left":
		c.mu.Lock()
		delete(c.rooms, m.Room)
		delete(c.pos, m.Room)
		delete(c.stateRooms, m.Room)
		delete(c.holds, m.Room)
		c.mu.Unlock()
		c.log.Info("rthub/client: left room", slog.String("room", m.Room), slog.String("reason", m.Reason))
	case "reset":
		c.mu.Lock()
		c.pos[m.Room] = rthub.StreamPosition{Offset: m.Offset, Epoch: m.Epoch}
		c.mu.Unlock()
		c.reset(m.Room)
		c.lostContinuity(cn, m.Room)
	case "expiring":
		if c.opts.TokenFunc != nil {
			select {
			case cn.expiring <- struct{}{}:
			default:
			}
		}
	default:
		c.log.Debug("rthub/client: ignoring message", slog.String("type", m.Type))
	}
}

// dispatchEvent hands an event to its handlers unless it was seen already
// (a replay overlapping what arrived live, or an event in a snapshot).
func (c *Client) dispatchEvent(m *message) {
	if !c.advance(m.Room, m.Offset, m.Epoch) {
		return
	}
	c.hmu.RLock()
	hs := c.handlers[m.Event]
	c.hmu.RUnlock()
	ev := Event{Name: m.Event, Room: m.Room, Data: m.Data, CID: m.CID, Position: rthub.StreamPosition{Offset: m.Offset, Epoch: m.Epoch}}
	for _, h := range hs {
		h(ev)
	}
}
