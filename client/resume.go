package client

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/url"

	"github.com/org/rthub"
)

// Resuming (docs/protocol.md §5): the client remembers the position of the
// last event it saw in each room, sends those positions when it reconnects
// (in the handshake for the rooms the server joins by itself, in each join
// for its own rooms), and drops an event whose position it has already seen.

// advance records an event's position and reports whether it is new. Events
// without a position (offset 0) are always new.
func (c *Client) advance(room string, off uint64, epoch string) bool {
	if off == 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pos[room]; ok && p.Epoch == epoch && off <= p.Offset {
		return false
	}
	c.pos[room] = rthub.StreamPosition{Offset: off, Epoch: epoch}
	return true
}

// joinedAt records where a join (or the welcome) left the client in room's
// stream and reports a lost resume.
func (c *Client) joinedAt(room string, s stream) {
	c.mu.Lock()
	if p, ok := c.pos[room]; !ok || s.Recovered == nil || !*s.Recovered || p.Epoch != s.Epoch {
		// No position yet, or nothing to continue from: start at the join.
		c.pos[room] = rthub.StreamPosition{Offset: s.Offset, Epoch: s.Epoch}
	}
	c.mu.Unlock()
	if s.Recovered != nil && !*s.Recovered {
		c.reset(room)
	}
}

func (c *Client) reset(room string) {
	c.log.Info("rthub/client: events missed, room reset", slog.String("room", room))
	if c.opts.OnReset != nil {
		c.opts.OnReset(room)
	}
}

// joinReplied handles a join reply's stream data.
func (c *Client) joinReplied(room string, data json.RawMessage) {
	var s stream
	if json.Unmarshal(data, &s) == nil && s.Epoch != "" {
		c.joinedAt(room, s)
	}
}

// forgetPositions drops every position after an event that cannot be read
// (over MaxMessageSize), and reports a reset for each room.
func (c *Client) forgetPositions() {
	c.mu.Lock()
	rooms := make([]string, 0, len(c.pos))
	for r := range c.pos {
		rooms = append(rooms, r)
	}
	clear(c.pos)
	c.mu.Unlock()
	for _, r := range rooms {
		c.reset(r)
	}
}

// since returns the position to resume room from, or nil.
func (c *Client) since(room string) *rthub.StreamPosition {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pos[room]; ok {
		return &p
	}
	return nil
}

// sinceURL is the server URL with the positions of every room the client was
// in, for the server to resume the rooms it joins by itself.
func (c *Client) sinceURL() string {
	c.mu.Lock()
	var m map[string]rthub.StreamPosition
	for room, p := range c.pos {
		if _, in := c.rooms[room]; in {
			if m == nil {
				m = make(map[string]rthub.StreamPosition)
			}
			m[room] = p
		}
	}
	c.mu.Unlock()
	if len(m) == 0 {
		return c.url
	}
	b, err := json.Marshal(m)
	if err != nil {
		return c.url
	}
	u, err := url.Parse(c.url)
	if err != nil {
		return c.url
	}
	q := u.Query()
	q.Set("since", base64.RawURLEncoding.EncodeToString(b))
	u.RawQuery = q.Encode()
	return u.String()
}
