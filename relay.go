package rthub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
)

// This file holds the optional broker capability that carries a message to
// one node of a cluster ([NodeRelay]), and the hub's use of it: commands an
// HTTP stream client POSTs to any node reach the node that holds its stream
// (docs/scaling.md, "HTTP streams without sticky sessions").

// NodeRelay is an optional extra of a [Broker] (found by interface
// assertion, like [StateBroker] and [PresenceStore]) that carries a message
// to one node of the cluster. The hub uses it for the commands of HTTP stream
// connections ([HTTPStreamOptions]): a POST may reach any node behind a
// round-robin balancer, and the node that received it relays the commands to
// the node holding the stream. The memory broker and the Redis broker
// implement it. Without it, a POST that reaches another node than its
// stream's is answered with 404 not_found, and HTTP streams need sticky
// sessions (or a single node). The hub also finds it on the broker a
// wrapper returns from an Unwrap() Broker method, so a wrapper need not
// forward it (relayed messages are then not seen by the wrapper).
//
// Delivery is at most once and in order: messages one node relays to
// another arrive in the order Relay returned for them. A message relayed to
// a node that is gone is lost, or refused with an error wrapping
// [ErrNoNode] when the broker can tell.
type NodeRelay interface {
	// ListenRelay makes the messages relayed to node go to fn. The hub calls
	// it once, before [Broker.Start], with its own node ID; messages arrive
	// from Start until Close. Calls to fn come one at a time, on a goroutine
	// of the broker's delivery: fn hands the message on and returns without
	// blocking; it may keep msg.
	ListenRelay(node string, fn func(msg []byte)) error
	// Relay delivers msg to the node that listens as node. It returns once
	// the backend took the message; the error wraps [ErrNoNode] when no node
	// listens as node, ctx.Err() when ctx ended first, and [ErrBrokerClosed]
	// after Close. msg is at most [MaxRelayBytes] bytes; longer ones are
	// refused with an error wrapping [ErrBadRequest].
	Relay(ctx context.Context, node string, msg []byte) error
}

// MaxRelayBytes bounds a message given to [NodeRelay.Relay].
const MaxRelayBytes = 1 << 20

// ErrNoNode means that no node of the cluster listens as the node a
// [NodeRelay] was asked to relay to: it is gone (its stream connections went
// with it).
var ErrNoNode = errors.New("rthub: no such node")

// nodeRelay returns b's NodeRelay (found with [BrokerAs]), or nil.
func nodeRelay(b Broker) NodeRelay {
	r, _ := BrokerAs[NodeRelay](b)
	return r
}

// relayed is one POST's commands on their way to the node holding the
// stream: the stream's session, the subject the POST's token was verified
// for, and the commands, each one JSON message.
type relayed struct {
	session string
	subject string
	body    []byte // the commands as posted, split by splitCommands at the receiver
}

// appendRelayed encodes m: "r1 <len(session)> <len(subject)>\n" followed by
// the session, the subject and the body.
func appendRelayed(dst []byte, m relayed) []byte {
	dst = append(dst, "r1 "...)
	dst = strconv.AppendInt(dst, int64(len(m.session)), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(len(m.subject)), 10)
	dst = append(dst, '\n')
	dst = append(dst, m.session...)
	dst = append(dst, m.subject...)
	return append(dst, m.body...)
}

// errBadRelay is what parseRelayed returns for anything appendRelayed did not
// write.
var errBadRelay = fmt.Errorf("%w: malformed relayed commands", ErrBadRequest)

// parseRelayed decodes what appendRelayed wrote. The body shares msg.
func parseRelayed(msg []byte) (relayed, error) {
	rest, ok := cutPrefix(msg, "r1 ")
	if !ok {
		return relayed{}, errBadRelay
	}
	ns, rest, ok := cutNumber(rest, ' ')
	if !ok {
		return relayed{}, errBadRelay
	}
	nu, rest, ok := cutNumber(rest, '\n')
	if !ok || ns > maxSessionLen || nu > maxAuthBytes || ns+nu > len(rest) {
		return relayed{}, errBadRelay
	}
	return relayed{session: string(rest[:ns]), subject: string(rest[ns : ns+nu]), body: rest[ns+nu:]}, nil
}

func cutPrefix(b []byte, p string) ([]byte, bool) {
	if len(b) < len(p) || string(b[:len(p)]) != p {
		return b, false
	}
	return b[len(p):], true
}

// cutNumber reads a decimal of at most 7 digits ended by end.
func cutNumber(b []byte, end byte) (int, []byte, bool) {
	n := 0
	for i, ch := range b {
		switch {
		case ch == end && i > 0:
			return n, b[i+1:], true
		case ch < '0' || ch > '9' || i >= 7:
			return 0, b, false
		}
		n = n*10 + int(ch-'0')
	}
	return 0, b, false
}

// handleRelayed is the hub's NodeRelay listener: commands another node
// received for a stream of this one. It runs on the broker's delivery
// goroutine, so it only queues them (see queueCommands).
func (h *Hub) handleRelayed(msg []byte) {
	m, err := parseRelayed(msg)
	if err == nil {
		var cmds [][]byte
		cmds, err = splitCommands(m.body, h.opts.MaxMessageSize, h.opts.HTTPStream.MaxQueuedCommands)
		if err == nil {
			var c *conn
			c, err = h.queueCommands(m.session, m.subject, cmds)
			if c != nil && err != nil {
				// The stream is here but its inbox is full: the POST was
				// answered 202 on the node that relayed it, so the refusal
				// a local POST gets as 429 goes to each command's reply
				// instead (at most MaxQueuedCommands of them).
				for _, cmd := range cmds {
					c.reply(commandID(cmd), nil, err)
				}
			}
		}
	}
	if err != nil {
		h.log.LogAttrs(h.ctx, slog.LevelDebug, "rthub: relayed commands refused", slog.Any("err", err))
	}
}
