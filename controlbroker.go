package rthub

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// ControlBroker is an optional extra of a [Broker] (found by interface
// assertion, like [StateBroker] and [PresenceStore]) that carries the
// control plane: control messages to every node of the cluster and their
// answers ([Hub.ControlUser], [Hub.Revoke]), and the revocations every node
// enforces. Without it, control calls act on the calling node only. The
// memory broker (its peers are the nodes) and the Redis broker implement it;
// package brokertest checks the contract.
//
// Liveness: the broker knows which nodes are live (the Redis broker: each
// node renews a heartbeat with a TTL while its control subscription is up),
// so that a call can tell "every node answered" from "some node is
// missing". Messages and records are opaque bytes to the broker, each at
// most [MaxControlBytes].
type ControlBroker interface {
	// StartControl makes this node, named node (unique in the cluster), a
	// member of the control plane until Close: the broker passes h every
	// control message any node sends (this one's included) and counts this
	// node as live. It calls h on goroutines of its own, not on the
	// delivery of publications, at most a bounded number at a time; a
	// message that finds them all busy may be dropped (its sender sees
	// this node missing). ctx bounds the start-up only. Called once, after
	// Start.
	StartControl(ctx context.Context, node string, h ControlHandler) error

	// Control sends msg to every live node and collects their answers until
	// every node that was live when msg was sent has answered, or ctx ends:
	// the nodes that had not answered by then are listed in missing (not an
	// error). The error is for a msg that could not be sent at all.
	Control(ctx context.Context, msg []byte) (replies []ControlReply, missing []string, err error)

	// PutRevocation keeps rec for ttl, for [ControlBroker.Revocations].
	PutRevocation(ctx context.Context, rec []byte, ttl time.Duration) error

	// Revocations returns the records kept whose ttl has not passed, at most
	// limit of them (limit > 0).
	Revocations(ctx context.Context, limit int) ([][]byte, error)
}

// ControlHandler receives the control messages a [ControlBroker] delivers
// to this node. The hub implements it.
type ControlHandler interface {
	// HandleControl carries out msg and returns the answer the broker sends
	// back to its sender. ctx ends when the broker closes; the handler
	// bounds its own work. It may call the broker's methods but Control.
	HandleControl(ctx context.Context, msg []byte) []byte
	// HandleControlResync tells the handler that control messages may have
	// been missed (the broker's connection to its backend was lost and is
	// back): the hub reloads the revocations. It must not block.
	HandleControlResync()
}

// ControlReply is one node's answer to a control message.
type ControlReply struct {
	Node string // the answering node's name (StartControl's node)
	Data []byte // what its handler returned
}

// MaxControlBytes bounds a control message, an answer and a revocation
// record; brokers refuse bigger ones.
const MaxControlBytes = 64 << 10

// controlHandler is the hub's ControlHandler.
type controlHandler struct{ h *Hub }

// HandleControl implements [ControlHandler].
func (ch controlHandler) HandleControl(ctx context.Context, msg []byte) []byte {
	h := ch.h
	ctx, cancel := context.WithTimeout(ctx, h.opts.BrokerTimeout)
	defer cancel()
	var m controlMsg
	var a controlAnswer
	if err := json.Unmarshal(msg, &m); err != nil {
		a = controlAnswer{Code: "bad_request", Msg: "node " + h.nodeID + ": undecodable control message"}
	} else {
		a = h.applyControl(ctx, m)
	}
	out, _ := json.Marshal(a) // cannot fail
	return out
}

// HandleControlResync implements [ControlHandler].
func (ch controlHandler) HandleControlResync() {
	select {
	case ch.h.revKick <- struct{}{}:
	default: // a reload is pending already
	}
}

// startControl joins the control plane and loads the revocations, when the
// broker is a ControlBroker (called by New). A node that cannot load them
// (the broker is out of reach) serves without them, logs an error and
// retries every BrokerTimeout.
func (h *Hub) startControl(ctx context.Context) error {
	cb, ok := BrokerAs[ControlBroker](h.broker)
	if !ok {
		return nil
	}
	h.ctl = cb
	// Join first, load second: a revocation sent in between is in the load.
	if err := cb.StartControl(ctx, h.nodeID, controlHandler{h}); err != nil {
		return fmt.Errorf("rthub: starting the control plane: %w", err)
	}
	h.bg.Go(h.revocationLoader)
	if err := h.loadRevocations(ctx); err != nil {
		h.log.Error("rthub: serving without the cluster's revocations until they load", slog.Any("err", err))
		controlHandler{h}.HandleControlResync()
	}
	return nil
}

// loadRevocations replaces the replica with the broker's revocations and
// closes this node's connections whose token it revokes: a revocation
// pushed while the node's control subscription was down reached no
// connection here, and the reload after the resync is where it arrives.
func (h *Hub) loadRevocations(ctx context.Context) error {
	limit := h.opts.Revocation.MaxEntries
	raw, err := h.ctl.Revocations(ctx, limit+1)
	if err != nil {
		h.stats.brokerErrors.Add(1)
		return fmt.Errorf("rthub: loading revocations: %w", err)
	}
	recs := make([]revocationRec, 0, len(raw))
	for _, b := range raw {
		var rec revocationRec
		if json.Unmarshal(b, &rec) == nil && (rec.TokenID != "" || rec.Subject != "") {
			recs = append(recs, rec)
		}
	}
	if dropped := h.revs.replace(recs, time.Now()); dropped > 0 || len(raw) > limit {
		h.stats.revocationsDropped.Add(uint64(max(dropped, 1)))
		h.log.Error("rthub: the broker keeps more revocations than Revocation.MaxEntries: some revoked tokens would be accepted here",
			slog.Int("max", limit))
	}
	h.closeRevoked(time.Now())
	return nil
}

// closeRevoked closes the connections whose token the replica revokes (the
// ones a push already closed are closing: not counted again).
func (h *Hub) closeRevoked(now time.Time) {
	if h.revs.len() == 0 {
		return
	}
	n := 0
	for _, c := range h.snapshotConns(nil) {
		if id := c.ident.Load(); id != nil && h.revs.revoked(id, now) && c.closeWith(CloseTokenRevoked, "token revoked") {
			n++
		}
	}
	h.stats.revokedConns.Add(uint64(n))
}

// revocationLoader reloads the revocations after a control resync, until
// the hub stops. Owner: the hub (h.bg); stopped by h.stop. A failed load is
// retried every BrokerTimeout.
func (h *Hub) revocationLoader() {
	var retry <-chan time.Time
	for {
		select {
		case <-h.stop:
			return
		case <-h.revKick:
		case <-retry:
		}
		retry = nil
		ctx, cancel := context.WithTimeout(h.ctx, h.opts.BrokerTimeout)
		err := h.loadRevocations(ctx)
		cancel()
		if err != nil {
			h.log.Warn("rthub: reloading revocations", slog.Any("err", err))
			retry = time.After(h.opts.BrokerTimeout)
		}
	}
}
