package rthub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/org/rthub/internal/jsonschema"
)

// DefaultRPCTimeout is how long a call may run when its RPC was declared
// without [RPCTimeout]: the hub cancels the handler's context after it, and
// the Go client gives a call without a context deadline this long.
const DefaultRPCTimeout = 30 * time.Second

// RPC is a named remote procedure that clients call with a Req and that
// answers a Resp or an error with a code. Declare each RPC once, at package
// level, and use it on both sides: the server handles it ([RPC.Handle], in
// Options.RPCs) and clients call it (the Go client's client.Call, the browser
// client's typed call):
//
//	var SetThreshold = rthub.NewRPC[Threshold, Ack]("device:set-threshold")
//
// A call is authorized by role like an emit (RoleRules.Call), costs
// Limits.RPCCosts[name] commands (default 1), runs its handler on a goroutine
// of its own with a deadline, and can be cancelled by the client
// (docs/rpc.md, docs/protocol.md §2.5). RPC is a small comparable value; the
// zero RPC has no name and is refused by the hub.
type RPC[Req, Resp any] struct {
	name    string
	timeout time.Duration
}

// RPCOption configures an RPC at its declaration ([NewRPC]).
type RPCOption func(*rpcConfig)

type rpcConfig struct {
	timeout time.Duration
}

// RPCTimeout sets the longest a call of the RPC may run. The hub gives the
// handler a context with the earlier of this and the deadline the client
// asked for; a client that gives no deadline gets this one. It must be
// positive. Default [DefaultRPCTimeout].
func RPCTimeout(d time.Duration) RPCOption {
	return func(c *rpcConfig) { c.timeout = d }
}

// RPCInfo describes a declared RPC, for generated contracts (package
// github.com/org/rthub/contract).
type RPCInfo struct {
	// Name is the RPC's name on the wire.
	Name string
	// Request and Response are the Go types of its request and result.
	Request, Response reflect.Type
	// Timeout is the longest a call may run (see [RPCTimeout]).
	Timeout time.Duration
}

// rpcs is the process-wide registry of declared RPCs, for duplicate
// detection and for [RPCs].
var rpcs struct {
	sync.Mutex
	byName map[string]RPCInfo
}

// NewRPC declares an RPC. The name follows the room-name syntax (letters,
// digits, "_-.:@/", segments separated by ':'), e.g. "device:set-threshold";
// RPC names are a namespace of their own, apart from event names. Declaring
// an invalid name, the same name twice or a timeout that is not positive
// panics: all are programming errors found at start-up, as with [NewEvent].
func NewRPC[Req, Resp any](name string, opts ...RPCOption) RPC[Req, Resp] {
	if err := validEventName(name); err != nil {
		panic(fmt.Sprintf("rthub: NewRPC(%q): %v", name, err))
	}
	cfg := rpcConfig{timeout: DefaultRPCTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.timeout <= 0 {
		panic(fmt.Sprintf("rthub: NewRPC(%q): timeout %v is not positive", name, cfg.timeout))
	}
	rpcs.Lock()
	defer rpcs.Unlock()
	if rpcs.byName == nil {
		rpcs.byName = make(map[string]RPCInfo)
	}
	if info, dup := rpcs.byName[name]; dup {
		panic(fmt.Sprintf("rthub: NewRPC(%q): RPC already declared with types %v → %v", name, info.Request, info.Response))
	}
	rpcs.byName[name] = RPCInfo{Name: name, Request: reflect.TypeFor[Req](), Response: reflect.TypeFor[Resp](), Timeout: cfg.timeout}
	return RPC[Req, Resp]{name: name, timeout: cfg.timeout}
}

// RPCs yields every RPC declared with [NewRPC] in this process, sorted by
// name. Each iteration reads the RPCs declared when it starts.
func RPCs() iter.Seq[RPCInfo] {
	return func(yield func(RPCInfo) bool) {
		rpcs.Lock()
		names := slices.Sorted(maps.Keys(rpcs.byName))
		infos := make([]RPCInfo, len(names))
		for i, n := range names {
			infos[i] = rpcs.byName[n]
		}
		rpcs.Unlock()
		for _, info := range infos {
			if !yield(info) {
				return
			}
		}
	}
}

// Name returns the RPC's name as it appears on the wire.
func (r RPC[Req, Resp]) Name() string { return r.name }

// Timeout returns the longest a call of the RPC may run ([RPCTimeout]).
func (r RPC[Req, Resp]) Timeout() time.Duration {
	if r.timeout <= 0 {
		return DefaultRPCTimeout
	}
	return r.timeout
}

// DecodeResponse parses a call's result as a Resp, for clients.
func (r RPC[Req, Resp]) DecodeResponse(data []byte) (Resp, error) {
	var v Resp
	if len(data) == 0 {
		data = []byte("null")
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%w: result of %s: %v", ErrBadPayload, r.name, err)
	}
	return v, nil
}

// Request is a call of an RPC, decoded, as its handler receives it.
type Request[T any] struct {
	// Conn is the calling connection.
	Conn ConnInfo
	// Data is the decoded request.
	Data T
	// Raw is the request as the client sent it (valid JSON).
	Raw json.RawMessage
	// Key is the client's idempotency key for the call, "" if it gave none
	// (docs/rpc.md).
	Key string

	hub *Hub
}

// Hub returns the hub the call arrived on, to publish from a handler.
func (r Request[T]) Hub() *Hub { return r.hub }

// RPCHandler serves the calls of one RPC; make one with [RPC.Handle] and pass
// it in Options.RPCs.
type RPCHandler interface {
	rpcName() string
	requestType() reflect.Type
	maxTimeout() time.Duration
	serve(ctx context.Context, h *Hub, c ConnInfo, key string, raw json.RawMessage) (json.RawMessage, error)
}

type rpcHandlerFunc[Req, Resp any] struct {
	rpc RPC[Req, Resp]
	fn  func(ctx context.Context, req Request[Req]) (Resp, error)
}

func (hf rpcHandlerFunc[Req, Resp]) rpcName() string { return hf.rpc.name }

func (hf rpcHandlerFunc[Req, Resp]) requestType() reflect.Type { return reflect.TypeFor[Req]() }

func (hf rpcHandlerFunc[Req, Resp]) maxTimeout() time.Duration { return hf.rpc.Timeout() }

func (hf rpcHandlerFunc[Req, Resp]) serve(ctx context.Context, h *Hub, c ConnInfo, key string, raw json.RawMessage) (json.RawMessage, error) {
	var v Req
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, decodeError(hf.rpc.name, err)
	}
	resp, err := hf.fn(ctx, Request[Req]{Conn: c, Data: v, Raw: raw, Key: key, hub: h})
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("rthub: encoding the result of %s: %w", hf.rpc.name, err)
	}
	return b, nil
}

// Handle returns an RPCHandler that decodes calls of r into a Req and calls
// fn on a goroutine of its own, so that a slow call holds up neither the
// connection's other commands nor other calls. At most
// Options.MaxCallsPerConn calls of one connection run at once; past that the
// hub stops reading the connection's commands until one ends.
//
// ctx is the connection's, with a deadline (the earlier of the RPC's
// [RPCTimeout] and the client's), and is also cancelled when the client
// cancels the call or the connection ends: fn must return soon after it is
// done. A call with an idempotency key ([Request].Key) is the exception:
// its ctx does not end with the connection (only at the deadline, on the
// client's cancel, or when the hub closes), because the client retries it
// on its next connection and the retry waits for this run's result. fn's result is encoded with encoding/json and sent to the client.
// fn's error goes back as the reply's error, as for [Event.Handle]: a
// sentinel of this package or a *[ReplyError] chooses the code; any other
// error is reported as "internal" without details, except that an error
// returned after ctx ended is reported as "timeout" ([ErrTimeout]) or
// "canceled" ([ErrCanceled]). A request that does not decode is answered
// with bad_payload and fn is not called; with Options.ValidateEmits the
// request is first checked against the JSON Schema of Req. A panic in fn is
// recovered and answered as "internal".
func (r RPC[Req, Resp]) Handle(fn func(ctx context.Context, req Request[Req]) (Resp, error)) RPCHandler {
	return rpcHandlerFunc[Req, Resp]{rpc: r, fn: fn}
}

// rpcTable is a hub's RPC handlers, built by New.
type rpcTable struct {
	handlers map[string]RPCHandler
	validate map[string]*jsonschema.Validator // nil without Options.ValidateEmits
}

// buildRPCs checks the RPC handlers of opts (defaults already set).
func buildRPCs(opts *Options) (*rpcTable, []error) {
	var errs []error
	t := &rpcTable{handlers: make(map[string]RPCHandler, len(opts.RPCs))}
	for _, hd := range opts.RPCs {
		if hd == nil {
			errs = append(errs, errors.New("rthub: nil RPCHandler"))
			continue
		}
		name := hd.rpcName()
		if name == "" {
			errs = append(errs, errors.New("rthub: RPCHandler of the zero RPC (declare RPCs with NewRPC)"))
			continue
		}
		if _, dup := t.handlers[name]; dup {
			errs = append(errs, fmt.Errorf("rthub: two handlers for RPC %q", name))
		}
		t.handlers[name] = hd
	}
	if opts.ValidateEmits {
		t.validate = make(map[string]*jsonschema.Validator, len(t.handlers))
		for name, hd := range t.handlers {
			v, err := jsonschema.NewValidator(hd.requestType(), jsonschema.Limits{MaxBytes: int(min(opts.MaxMessageSize, 1<<30))})
			if err != nil {
				errs = append(errs, fmt.Errorf("rthub: ValidateEmits: handler of RPC %q: request type %v: %w", name, hd.requestType(), err))
				continue
			}
			t.validate[name] = v
		}
	}
	for ev, cost := range opts.Limits.RPCCosts {
		switch {
		case cost < 0:
			errs = append(errs, fmt.Errorf("rthub: Limits.RPCCosts[%q] is negative", ev))
		case opts.Limits.Commands > 0 && opts.Limits.CommandBurst > 0 && cost > opts.Limits.CommandBurst:
			errs = append(errs, fmt.Errorf("rthub: Limits.RPCCosts[%q] = %d exceeds CommandBurst %d: it could never be paid", ev, cost, opts.Limits.CommandBurst))
		}
	}
	return t, errs
}

// checkCallRules reports Call patterns of the policy that match no RPC
// handler: such calls would always be refused as unknown_rpc.
func checkCallRules(p Policy, t *rpcTable) []error {
	names := slices.Sorted(maps.Keys(t.handlers))
	roles := slices.Sorted(maps.Keys(p.Roles))
	var errs []error
	for _, role := range roles {
		for i, pat := range p.Roles[role].Call {
			if ValidPattern(pat) != nil {
				continue // compilePolicy reports it
			}
			if !slices.ContainsFunc(names, func(n string) bool { return Match(pat, n) }) {
				errs = append(errs, fmt.Errorf("rthub: Policy: role %q: Call[%d]: no handler in Options.RPCs "+
					"serves RPC %q: clients' calls would be refused as unknown_rpc", role, i, pat))
			}
		}
	}
	return errs
}

// callSlots bounds and tracks one connection's running calls. It is made on
// the connection's first call.
type callSlots struct {
	sem chan struct{} // one token per running call (Options.MaxCallsPerConn)

	mu      sync.Mutex
	running map[uint64]context.CancelCauseFunc // by command id (calls with an id)
}

// errCallCanceled is the cause of a call's context when the client
// cancelled it; it wraps context.Canceled.
var errCallCanceled = fmt.Errorf("rthub: call canceled by the client: %w", context.Canceled)

// calls returns the connection's call slots, making them on first use. Read
// loop only (it is the only writer of c.rl.calls).
func (c *conn) calls() *callSlots {
	rl := c.loopState()
	if rl.calls == nil {
		rl.calls = &callSlots{
			sem:     make(chan struct{}, c.hub.opts.MaxCallsPerConn),
			running: make(map[uint64]context.CancelCauseFunc),
		}
	}
	return rl.calls
}

// clientCall checks a call (docs/protocol.md §2.5) on the read loop and
// starts its handler on a goroutine of its own; the reply is sent when the
// handler returns. Refusals are answered at once.
func (h *Hub) clientCall(c *conn, cmd command) {
	hd, err := h.checkCall(c, cmd)
	if err != nil {
		c.reply(cmd.ID, nil, err)
		return
	}
	cs := c.calls()
	if cmd.ID != 0 {
		cs.mu.Lock()
		_, busy := cs.running[cmd.ID]
		cs.mu.Unlock()
		if busy {
			c.reply(cmd.ID, nil, fmt.Errorf("%w: a call with id %d is still running", ErrBadRequest, cmd.ID))
			return
		}
	}
	// Wait for a slot: the read loop stops reading this connection's
	// commands meanwhile (backpressure), bounded by the connection's life.
	select {
	case cs.sem <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	timeout := hd.maxTimeout()
	if cmd.Timeout > 0 {
		timeout = min(timeout, time.Duration(cmd.Timeout)*time.Millisecond)
	}
	// A call with an idempotency key outlives its connection: the client
	// retries it on its next connection and joins this run (idempotency.go).
	parent := c.ctx
	if cmd.Idem != "" && h.idem != nil {
		parent = h.ctx
	}
	cctx, cancel := context.WithCancelCause(parent)
	ctx, stop := context.WithTimeout(cctx, timeout)
	if cmd.ID != 0 {
		cs.mu.Lock()
		cs.running[cmd.ID] = cancel
		cs.mu.Unlock()
	}
	info := c.info()
	h.stats.calls.Add(1)
	h.wg.Go(func() {
		defer func() {
			stop()
			cancel(nil)
			if cmd.ID != 0 {
				cs.mu.Lock()
				delete(cs.running, cmd.ID)
				cs.mu.Unlock()
			}
			<-cs.sem
		}()
		data, err := h.once(ctx, c, &cmd, timeout+h.opts.BrokerTimeout, func() (json.RawMessage, error, bool) {
			data, err := h.runCall(ctx, hd, info, cmd)
			// An error returned after the call's context ended (timeout,
			// cancel, the connection gone) may mean the handler gave up:
			// not remembered, a retry runs it again.
			return data, err, err == nil || ctx.Err() == nil
		})
		if err != nil && ctx.Err() != nil && ErrorCode(err) == "internal" {
			err = ctxError(ctx, cmd.RPC, err) // ended while waiting for a first run
		}
		if data == nil && err == nil {
			data = json.RawMessage("null")
		}
		c.reply(cmd.ID, data, err)
	})
}

// checkCall finds the handler of a call and checks that the connection may
// make it.
func (h *Hub) checkCall(c *conn, cmd command) (RPCHandler, error) {
	hd, ok := h.rpc.handlers[cmd.RPC]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownRPC, truncate(cmd.RPC, 64))
	}
	id := c.ident.Load()
	if err := h.policy.authorize(c.ctx, id, ActionCall, "", cmd.RPC); err != nil {
		r := c.refusal("call", ErrorCode(err))
		r.Event = cmd.RPC
		h.refused(c.ctx, r)
		return nil, err
	}
	if v := h.rpc.validate[cmd.RPC]; v != nil {
		data := cmd.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		if err := v.Validate(data); err != nil {
			return nil, schemaError(cmd.RPC, err)
		}
	}
	return hd, nil
}

// runCall runs the handler of one call, turning a panic into ErrInternal
// and an error returned after ctx ended into ErrTimeout or ErrCanceled.
func (h *Hub) runCall(ctx context.Context, hd RPCHandler, info ConnInfo, cmd command) (data json.RawMessage, err error) {
	func() {
		defer func() {
			if p := recover(); p != nil {
				h.log.Error("rthub: RPC handler panicked", slog.String("rpc", cmd.RPC), slog.Any("panic", p))
				data, err = nil, ErrInternal
			}
		}()
		data, err = hd.serve(ctx, h, info, cmd.Idem, cmd.Data)
	}()
	if err == nil {
		return data, nil
	}
	if ctx.Err() != nil && ErrorCode(err) == "internal" && !errors.Is(err, ErrInternal) {
		return nil, ctxError(ctx, cmd.RPC, err)
	}
	if ErrorCode(err) == "internal" && !errors.Is(err, ErrInternal) {
		h.log.Warn("rthub: RPC handler failed", slog.String("rpc", cmd.RPC), slog.Any("err", err))
	}
	return nil, err
}

// ctxError is the error of a call whose context ended: ErrCanceled when the
// client cancelled it, ErrTimeout past its deadline, err otherwise (the
// connection ended: nobody reads the reply).
func ctxError(ctx context.Context, rpc string, err error) error {
	switch {
	case errors.Is(context.Cause(ctx), errCallCanceled):
		return fmt.Errorf("%w: %w", ErrCanceled, err)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%w: %s did not finish in time (handler: %w)", ErrTimeout, rpc, err)
	}
	return err
}

// clientCancel cancels the context of the connection's running call
// cmd.Call; a call that already ended (or never ran) is ignored. It is
// answered ok either way: the call itself answers too, typically with the
// code canceled.
func (h *Hub) clientCancel(c *conn, cmd command) {
	if cs := c.loopState().calls; cs != nil {
		cs.mu.Lock()
		cancel := cs.running[cmd.Call]
		cs.mu.Unlock()
		if cancel != nil {
			cancel(errCallCanceled)
		}
	}
	c.reply(cmd.ID, nil, nil)
}
