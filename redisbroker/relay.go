package redisbroker

import (
	"context"
	"errors"
	"fmt"

	"github.com/org/rthub"
)

// This file implements [rthub.NodeRelay]: a hub node's relay channel,
// "<Prefix>relay:<node>", lives on the shard that rendezvous hashing picks
// for "relay:<node>" (every node agrees without coordination); the node
// subscribes it on that shard's pub/sub connection with its rooms and probe
// channel, and Relay is one PUBLISH there, whose count of receivers tells a
// node that is gone.

var _ rthub.NodeRelay = (*Broker)(nil)

// relayShard is the shard of node's relay channel.
func (b *Broker) relayShard(node string) *shard {
	return b.shards[shardIndex(b.keys, "relay:"+node)]
}

// ListenRelay implements [rthub.NodeRelay]. It must be called before Start
// (the hub does); messages arrive once the pub/sub connection of the relay
// channel's shard is up, shortly after Start, and after each reconnection
// (messages relayed while it was down are lost, as Relay could not tell).
func (b *Broker) ListenRelay(node string, fn func(msg []byte)) error {
	if node == "" || fn == nil {
		return errors.New("redisbroker: ListenRelay needs a node ID and a function")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed.Load():
		return rthub.ErrBrokerClosed
	case b.started:
		return errors.New("redisbroker: ListenRelay after Start")
	}
	for _, s := range b.shards {
		s.relayCh, s.relayFn = "", nil
	}
	s := b.relayShard(node)
	s.relayCh, s.relayFn = b.names.relay(node), fn
	return nil
}

// Relay implements [rthub.NodeRelay]: one PUBLISH on the relay channel's
// shard. Its error wraps [rthub.ErrNoNode] when no connection subscribes
// the channel (the node is gone, or its pub/sub connection is down).
func (b *Broker) Relay(ctx context.Context, node string, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return rthub.ErrBrokerClosed
	}
	if len(msg) > rthub.MaxRelayBytes {
		return fmt.Errorf("%w: relayed message of %d bytes, at most %d", rthub.ErrBadRequest, len(msg), rthub.MaxRelayBytes)
	}
	s := b.relayShard(node)
	n, err := s.client.Do(ctx, s.client.B().Publish().Channel(b.names.relay(node)).Message(string(msg)).Build()).AsInt64()
	if err != nil {
		return b.wrap(ctx, "relay", node, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q", rthub.ErrNoNode, node)
	}
	return nil
}
