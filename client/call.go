package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/org/rthub"
)

// maxPendingCancels bounds the cancel messages a connection holds for its
// writer. Past it a cancel is not sent: the call then ends on the server at
// its deadline, and its result is ignored.
const maxPendingCancels = 64

// Call calls rpc with req and waits for its result, decoded into a Resp.
//
// The call's deadline is ctx's, or, when ctx has none, the RPC's
// ([rthub.RPC.Timeout]); the server is told it and cancels the handler's
// context at the earlier of it and its own limit. When ctx ends first (it
// is cancelled, or the deadline passes), Call returns at once
// and tells the server, which cancels the handler's context (the handler
// may already have acted). Errors from the server are *[rthub.ReplyError]:
// errors.Is(err, rthub.ErrForbidden), [rthub.ErrUnknownRPC],
// [rthub.ErrBadPayload], or the code the handler chose. A call that runs out
// of time fails with an error that matches both [rthub.ErrTimeout] and
// context.DeadlineExceeded, whichever side's deadline came first.
// A result that does not decode into a Resp is [rthub.ErrBadPayload].
//
// Every call carries an idempotency key (random, or [WithKey]'s) and waits
// in the client's outbox (Options.Outbox) until the server answers: while
// the client is reconnecting, and, if the connection drops before the
// result, on the next connection, where the server answers with the first
// run's result (or waits for the run still going) instead of running the
// handler again. It fails with [ErrOutboxFull] when Outbox.MaxEntries
// emits and calls are already waiting, [ErrExpired] past Outbox.TTL, and
// [ErrClosed] once the client has stopped.
func Call[Req, Resp any](ctx context.Context, c *Client, rpc rthub.RPC[Req, Resp], req Req, opts ...SendOption) (Resp, error) {
	var zero Resp
	raw, err := c.callRPC(ctx, rpc.Name(), rpc.Timeout(), req, opts)
	if err != nil {
		return zero, wrap(err, "call %s", rpc.Name())
	}
	v, err := rpc.DecodeResponse(raw)
	if err != nil {
		return zero, wrap(err, "call %s", rpc.Name())
	}
	return v, nil
}

// CallRaw calls the RPC named name with data, encoded by encoding/json (a
// json.RawMessage is sent as is), and returns its result as the server sent
// it. It is [Call] without types, for RPCs declared elsewhere; a ctx without
// deadline gets [rthub.DefaultRPCTimeout].
func (c *Client) CallRaw(ctx context.Context, name string, data any, opts ...SendOption) (json.RawMessage, error) {
	raw, err := c.callRPC(ctx, name, rthub.DefaultRPCTimeout, data, opts)
	return raw, wrap(err, "call %s", name)
}

// callRPC sends a call through the outbox and waits for its result.
func (c *Client) callRPC(ctx context.Context, name string, timeout time.Duration, data any, opts []SendOption) (json.RawMessage, error) {
	raw, err := encodeData(data)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	res, err := c.send(ctx, command{Op: "call", RPC: name, Data: raw}, opts)
	return res, callErr(err)
}

// callErr makes a call that ran out of time fail the same way whether the
// client's deadline or the server's came first: errors.Is matches both
// [rthub.ErrTimeout] and context.DeadlineExceeded.
func callErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, rthub.ErrTimeout):
		return fmt.Errorf("%w: %w", rthub.ErrTimeout, err)
	case errors.Is(err, rthub.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
	}
	return err
}

// cancelCall asks the writer to send a cancel for call id, without waiting:
// with maxPendingCancels already pending, or the connection gone, the cancel
// is dropped (the server's deadline ends the call).
func (cn *conn) cancelCall(id uint64) {
	select {
	case cn.cancels <- id:
	default:
	}
}

// encodeData encodes a command's data: a json.RawMessage as is (it must be
// valid JSON), anything else with encoding/json. Errors wrap
// [rthub.ErrBadPayload].
func encodeData(data any) (json.RawMessage, error) {
	if raw, ok := data.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, fmt.Errorf("%w: data is not valid JSON", rthub.ErrBadPayload)
		}
		return raw, nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", rthub.ErrBadPayload, err)
	}
	return b, nil
}
