package rthub

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type thresholdReq struct {
	Device string  `json:"device"`
	Limit  float64 `json:"limit"`
}

type thresholdAck struct {
	Device string  `json:"device"`
	Old    float64 `json:"old"`
	Limit  float64 `json:"limit"`
}

var (
	testSetThreshold = NewRPC[thresholdReq, thresholdAck]("device:threshold")
	testSlowRPC      = NewRPC[int, int]("test:slow", RPCTimeout(300*time.Millisecond))
	testAdminRPC     = NewRPC[struct{}, string]("admin:reboot")
)

// rpcPolicy adds RPC rules to the test policy: staff and admin may call
// calls, admin also adminCalls.
func rpcPolicy(calls []string, adminCalls ...string) Policy {
	p := Policy{Roles: map[string]RoleRules{}}
	for name, r := range testPolicy.Roles {
		r.Call = calls
		if name == "admin" {
			r.Call = append(slices.Clip(calls), adminCalls...)
		}
		p.Roles[name] = r
	}
	return p
}

func TestDecodeCommand_Call(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		wantErr error
		want    command
	}{
		{`{"id":1,"op":"call","rpc":"device:set-threshold","data":{"limit":3},"timeout":500,"idem":"k1"}`, nil,
			command{ID: 1, Op: "call", RPC: "device:set-threshold", Timeout: 500, Idem: "k1"}},
		{`{"id":1,"op":"call","rpc":"x"}`, nil, command{ID: 1, Op: "call", RPC: "x"}},
		{`{"id":1,"op":"call"}`, ErrBadRequest, command{ID: 1, Op: "call"}},
		{`{"id":1,"op":"call","rpc":"x","timeout":-1}`, ErrBadRequest, command{ID: 1, Op: "call", RPC: "x", Timeout: -1}},
		{`{"id":1,"op":"call","rpc":"x","timeout":"5"}`, ErrBadRequest, command{ID: 1}},
		{`{"id":2,"op":"cancel","call":7}`, nil, command{ID: 2, Op: "cancel", Call: 7}},
		{`{"op":"cancel","call":7}`, nil, command{Op: "cancel", Call: 7}},
		{`{"id":2,"op":"cancel"}`, ErrBadRequest, command{ID: 2, Op: "cancel"}},
		{`{"id":2,"op":"cancel","call":-7}`, ErrBadRequest, command{ID: 2}},
		{`{"id":3,"op":"emit","event":"chat:message","room":"staff","idem":"e1"}`, nil,
			command{ID: 3, Op: "emit", Event: "chat:message", Room: "staff", Idem: "e1"}},
	}
	for _, tc := range tests {
		cmd, err := decodeCommand([]byte(tc.in))
		if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
			t.Errorf("decodeCommand(%s) err = %v, want %v", tc.in, err, tc.wantErr)
			continue
		}
		cmd.Data = nil
		if !reflect.DeepEqual(cmd, tc.want) {
			t.Errorf("decodeCommand(%s) = %+v, want %+v", tc.in, cmd, tc.want)
		}
	}
}

func TestNewRPC_Panics(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"badName", func() { NewRPC[int, int]("bad name") }},
		{"duplicate", func() { NewRPC[int, int]("device:set-threshold") }},
		{"zeroTimeout", func() { NewRPC[int, int]("test:zero-timeout", RPCTimeout(0)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tc.fn()
		})
	}
}

func TestRPCs_Registry(t *testing.T) {
	t.Parallel()
	var found bool
	for info := range RPCs() {
		if info.Name == testSlowRPC.Name() {
			found = true
			if info.Timeout != 300*time.Millisecond || info.Request.Kind().String() != "int" {
				t.Errorf("RPCs() entry = %+v", info)
			}
		}
	}
	if !found {
		t.Error("RPCs() lacks test:slow")
	}
	if got := testSetThreshold.Timeout(); got != DefaultRPCTimeout {
		t.Errorf("Timeout() = %v, want the default", got)
	}
	if got := (RPC[int, int]{}).Timeout(); got != DefaultRPCTimeout {
		t.Errorf("zero RPC Timeout() = %v", got)
	}
}

func TestNew_RPCOptions(t *testing.T) {
	t.Parallel()
	base := func() Options {
		return Options{Auth: AuthOptions{Keys: map[string]any{"": testSecret}}, Policy: rpcPolicy([]string{"device:*", "test:*"}, "admin:*"),
			Handlers: []Handler{testChat.Relay()},
			RPCs: []RPCHandler{
				testSetThreshold.Handle(func(context.Context, Request[thresholdReq]) (thresholdAck, error) { return thresholdAck{}, nil }),
				testSlowRPC.Handle(func(context.Context, Request[int]) (int, error) { return 0, nil }),
				testAdminRPC.Handle(func(context.Context, Request[struct{}]) (string, error) { return "", nil }),
			}}
	}
	tests := []struct {
		name string
		mod  func(*Options)
		want string // substring of the error; "" for success
	}{
		{"ok", func(*Options) {}, ""},
		{"nilHandler", func(o *Options) { o.RPCs = append(o.RPCs, nil) }, "nil RPCHandler"},
		{"zeroRPC", func(o *Options) {
			o.RPCs = append(o.RPCs, RPC[int, int]{}.Handle(func(context.Context, Request[int]) (int, error) { return 0, nil }))
		}, "zero RPC"},
		{"duplicate", func(o *Options) { o.RPCs = append(o.RPCs, o.RPCs[0]) }, "two handlers for RPC"},
		{"unservedRule", func(o *Options) { o.RPCs = o.RPCs[:2] }, `no handler in Options.RPCs serves RPC "admin:*"`},
		{"badPattern", func(o *Options) {
			r := o.Policy.Roles["staff"]
			r.Call = []string{"bad name"}
			o.Policy.Roles["staff"] = r
		}, "Call[0]"},
		{"negativeCost", func(o *Options) { o.Limits.RPCCosts = map[string]int{"test:slow": -1} }, "RPCCosts"},
		{"unpayableCost", func(o *Options) { o.Limits.RPCCosts = map[string]int{"test:slow": 101} }, "never be paid"},
		{"negativeMaxCalls", func(o *Options) { o.MaxCallsPerConn = -1 }, "MaxCallsPerConn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := base()
			tc.mod(&opts)
			h, err := New(opts)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				h.Close()
				return
			}
			if err == nil {
				h.Close()
				t.Fatalf("New succeeded, want an error with %q", tc.want)
			}
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want ErrInvalidOptions with %q", err, tc.want)
			}
		})
	}
}

// TestHub_Call runs calls over a real socket: results, the error codes, the
// deadline and the client's cancel.
func TestHub_Call(t *testing.T) {
	t.Parallel()
	handlerCtx := make(chan error, 4)
	var runs atomic.Int64
	_, url := testHub(t, func(o *Options) {
		o.Policy = rpcPolicy([]string{"device:*", "test:*"}, "admin:*")
		o.Limits.RPCCosts = map[string]int{"admin:reboot": 60}
		o.RPCs = []RPCHandler{
			testSetThreshold.Handle(func(ctx context.Context, req Request[thresholdReq]) (thresholdAck, error) {
				runs.Add(1)
				switch req.Data.Device {
				case "offline":
					return thresholdAck{}, &ReplyError{Code: "device_offline", Message: "device is offline"}
				case "missing":
					return thresholdAck{}, ErrNotFound
				case "secret":
					return thresholdAck{}, errors.New("database password is hunter2")
				case "panic":
					panic("boom")
				}
				if _, ok := ctx.Deadline(); !ok {
					return thresholdAck{}, errors.New("no deadline")
				}
				return thresholdAck{Device: req.Data.Device, Old: 1, Limit: req.Data.Limit}, nil
			}),
			testSlowRPC.Handle(func(ctx context.Context, req Request[int]) (int, error) {
				<-ctx.Done()
				handlerCtx <- context.Cause(ctx)
				return 0, ctx.Err()
			}),
			testAdminRPC.Handle(func(context.Context, Request[struct{}]) (string, error) { return "rebooting", nil }),
		}
	})
	staff := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	staff.readType("welcome")

	call := func(w *wsClient, fields map[string]any) serverMsg {
		t.Helper()
		return w.cmd("call", fields)
	}
	tests := []struct {
		name     string
		fields   map[string]any
		wantData string
		wantCode string
	}{
		{"ok", map[string]any{"rpc": "device:threshold", "data": thresholdReq{Device: "d7", Limit: 3.5}},
			`{"device":"d7","old":1,"limit":3.5}`, ""},
		{"appCode", map[string]any{"rpc": "device:threshold", "data": thresholdReq{Device: "offline"}}, "", "device_offline"},
		{"sentinel", map[string]any{"rpc": "device:threshold", "data": thresholdReq{Device: "missing"}}, "", "not_found"},
		{"internal", map[string]any{"rpc": "device:threshold", "data": thresholdReq{Device: "secret"}}, "", "internal"},
		{"panic", map[string]any{"rpc": "device:threshold", "data": thresholdReq{Device: "panic"}}, "", "internal"},
		{"badPayload", map[string]any{"rpc": "device:threshold", "data": map[string]any{"limit": "high"}}, "", "bad_payload"},
		{"unknown", map[string]any{"rpc": "device:nope"}, "", "unknown_rpc"},
		{"forbidden", map[string]any{"rpc": "admin:reboot"}, "", "forbidden"},
		{"timeout", map[string]any{"rpc": "test:slow", "data": 1}, "", "timeout"},
		{"clientTimeout", map[string]any{"rpc": "test:slow", "data": 1, "timeout": 50}, "", "timeout"},
	}
	for _, tc := range tests {
		r := call(staff, tc.fields)
		if tc.wantCode != "" {
			if r.Error == nil || r.Error.Code != tc.wantCode {
				t.Errorf("%s: reply %+v error %+v, want code %s", tc.name, r, r.Error, tc.wantCode)
			}
			if r.Error != nil && strings.Contains(r.Error.Message, "hunter2") {
				t.Errorf("%s: reply discloses the handler's error: %q", tc.name, r.Error.Message)
			}
			continue
		}
		if !r.OK || string(r.Data) != tc.wantData {
			t.Errorf("%s: reply ok=%v data=%s error=%+v, want %s", tc.name, r.OK, r.Data, r.Error, tc.wantData)
		}
	}
	for range 2 { // the two timeouts
		if cause := <-handlerCtx; !errors.Is(cause, context.DeadlineExceeded) {
			t.Errorf("slow handler's ctx cause = %v, want DeadlineExceeded", cause)
		}
	}

	// The client cancels a running call: the handler's ctx ends with the
	// cancel's cause and the call answers canceled.
	staff.write(map[string]any{"id": 100, "op": "call", "rpc": "test:slow", "data": 1, "timeout": 60000})
	staff.write(map[string]any{"op": "cancel", "call": 100})
	if cause := <-handlerCtx; !errors.Is(cause, errCallCanceled) {
		t.Errorf("cancelled handler's ctx cause = %v, want errCallCanceled", cause)
	}
	if r := staff.readType("reply"); r.ID != 100 || r.Error == nil || r.Error.Code != "canceled" {
		t.Errorf("cancelled call's reply = %+v error %+v, want canceled", r, r.Error)
	}

	// Costs: admin:reboot costs 60 of the burst of 100.
	admin := dial(t, url, testToken(t, "root", time.Hour, "admin"))
	admin.readType("welcome")
	if r := call(admin, map[string]any{"rpc": "admin:reboot"}); !r.OK || string(r.Data) != `"rebooting"` {
		t.Errorf("admin:reboot = %+v", r)
	}
	if r := call(admin, map[string]any{"rpc": "admin:reboot"}); r.Error == nil || r.Error.Code != "rate_limited" {
		t.Errorf("second admin:reboot = %+v, want rate_limited", r)
	}
}

// TestHub_CallEndsWithConn: the handler's ctx is cancelled when the
// connection ends.
func TestHub_CallEndsWithConn(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	ended := make(chan error, 1)
	_, url := testHub(t, func(o *Options) {
		o.Policy = rpcPolicy([]string{"test:*"})
		o.RPCs = []RPCHandler{testSlowRPC.Handle(func(ctx context.Context, req Request[int]) (int, error) {
			close(started)
			<-ctx.Done()
			ended <- ctx.Err()
			return 0, ctx.Err()
		})}
	})
	w := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	w.readType("welcome")
	w.write(map[string]any{"id": 1, "op": "call", "rpc": "test:slow", "timeout": 60000})
	<-started
	w.c.CloseNow()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler ctx err = %v, want Canceled", err)
		}
	case <-time.After(2 * time.Second): // RPCTimeout is 300 ms: this proves nothing then
		t.Fatal("handler ctx not cancelled")
	}
}

// TestHub_MaxCallsPerConn: past the bound, the connection's next command
// waits for a running call to end.
func TestHub_MaxCallsPerConn(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var running, peak atomic.Int64
	_, url := testHub(t, func(o *Options) {
		o.Policy = rpcPolicy([]string{"device:*"})
		o.MaxCallsPerConn = 2
		o.RPCs = []RPCHandler{testSetThreshold.Handle(func(ctx context.Context, req Request[thresholdReq]) (thresholdAck, error) {
			n := running.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			defer running.Add(-1)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return thresholdAck{Device: req.Data.Device}, nil
		})}
	})
	w := dial(t, url, testToken(t, "alice", time.Hour, "staff"))
	w.readType("welcome")
	for i := 1; i <= 3; i++ {
		w.write(map[string]any{"id": i, "op": "call", "rpc": "device:threshold", "data": thresholdReq{Device: "d"}})
	}
	w.write(map[string]any{"id": 4, "op": "ping"})
	if m, err := w.readErr(300 * time.Millisecond); err == nil {
		t.Fatalf("got %+v while the calls are held: the ping was not held back", m)
	}
	w.c.CloseNow()
	close(release)
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrent calls = %d, want 2", p)
	}
}

func TestReplyError_RPCCodes(t *testing.T) {
	t.Parallel()
	for _, s := range []error{ErrUnknownRPC, ErrTimeout, ErrCanceled} {
		code := ErrorCode(s)
		if code == "internal" {
			t.Errorf("ErrorCode(%v) = internal", s)
		}
		if !errors.Is(&ReplyError{Code: code}, s) {
			t.Errorf("ReplyError{%s} is not %v", code, s)
		}
	}
	var re *ReplyError
	if !errors.As(replyErrorFor(errors.Join(ErrTimeout, errors.New("x"))), &re) || re.Code != "timeout" {
		t.Errorf("replyErrorFor(timeout) = %+v", re)
	}
}

// callSeeds are call, cancel and keyed commands for FuzzDecodeCall.
var callSeeds = []string{
	`{"id":1,"op":"call","rpc":"device:threshold","data":{"device":"d7","limit":3},"timeout":500,"idem":"k1"}`,
	`{"id":1,"op":"call","rpc":"x"}`,
	`{"id":1,"op":"call","rpc":"x","timeout":-1}`,
	`{"id":1,"op":"call","rpc":"x","timeout":1e3}`,
	`{"id":1,"op":"call","rpc":"x","idem":""}`,
	`{"id":1,"op":"call","rpc":"x","idem":"\u00e9"}`,
	`{"id":1,"op":"call","rpc":"x","idem":7}`,
	`{"id":2,"op":"cancel","call":7}`,
	`{"id":2,"op":"cancel","call":0}`,
	`{"id":2,"op":"cancel","call":"7"}`,
	`{"id":3,"op":"emit","event":"chat:message","room":"staff","idem":"e1"}`,
	`{"id":3,"op":"join","room":"staff","idem":"e1"}`,
}

// FuzzDecodeCall: decodeCommand never panics on call, cancel and keyed
// commands; what it accepts has the fields the hub relies on.
func FuzzDecodeCall(f *testing.F) {
	for _, s := range callSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := decodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrUnknownOp) {
				t.Fatalf("err = %v, want ErrBadRequest or ErrUnknownOp", err)
			}
			return
		}
		switch cmd.Op {
		case cmdCall:
			if cmd.RPC == "" || cmd.Timeout < 0 {
				t.Fatalf("accepted call %+v", cmd)
			}
		case cmdCancel:
			if cmd.Call == 0 {
				t.Fatalf("accepted cancel without a call id")
			}
		}
		if cmd.Idem != "" && (!validIdemKey(cmd.Idem) || cmd.Op != cmdEmit && cmd.Op != cmdCall) {
			t.Fatalf("accepted idem %q on %s", cmd.Idem, cmd.Op)
		}
	})
}
