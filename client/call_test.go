package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/org/rthub"
)

type setLimit struct {
	Device string  `json:"device"`
	Limit  float64 `json:"limit"`
}

type limitAck struct {
	Device string  `json:"device"`
	Limit  float64 `json:"limit"`
}

var (
	testSetLimit = rthub.NewRPC[setLimit, limitAck]("device:set-limit")
	testBlock    = rthub.NewRPC[string, string]("device:block", rthub.RPCTimeout(time.Minute))
)

// rpcServer starts a hub serving testSetLimit and testBlock; block's
// handler reports its ctx's cause on causes.
func rpcServer(t *testing.T, causes chan<- error) *testServer {
	t.Helper()
	return startHub(t, func(o *rthub.Options) {
		o.Policy = rthub.Policy{Roles: map[string]rthub.RoleRules{}}
		for name, r := range testPolicy.Roles {
			r.Call = []string{"device:*"}
			o.Policy.Roles[name] = r
		}
		o.RPCs = []rthub.RPCHandler{
			testSetLimit.Handle(func(ctx context.Context, req rthub.Request[setLimit]) (limitAck, error) {
				switch req.Data.Device {
				case "offline":
					return limitAck{}, &rthub.ReplyError{Code: "device_offline", Message: "device d9 is offline"}
				case "missing":
					return limitAck{}, rthub.ErrNotFound
				}
				return limitAck{Device: req.Data.Device, Limit: req.Data.Limit}, nil
			}),
			testBlock.Handle(func(ctx context.Context, req rthub.Request[string]) (string, error) {
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return "", ctx.Err()
			}),
		}
	})
}

func TestCall(t *testing.T) {
	t.Parallel()
	causes := make(chan error, 4)
	ts := rpcServer(t, causes)
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff")})
	ctx := t.Context()

	got, err := Call(ctx, c, testSetLimit, setLimit{Device: "d7", Limit: 2.5})
	if err != nil || got != (limitAck{Device: "d7", Limit: 2.5}) {
		t.Fatalf("Call = %+v, %v", got, err)
	}

	tests := []struct {
		name   string
		call   func() error
		target error  // errors.Is
		code   string // ReplyError code
	}{
		{"appCode", func() error { _, err := Call(ctx, c, testSetLimit, setLimit{Device: "offline"}); return err }, nil, "device_offline"},
		{"sentinel", func() error { _, err := Call(ctx, c, testSetLimit, setLimit{Device: "missing"}); return err }, rthub.ErrNotFound, "not_found"},
		{"unknown", func() error { _, err := c.CallRaw(ctx, "device:none", nil); return err }, rthub.ErrUnknownRPC, "unknown_rpc"},
		{"badPayload", func() error { _, err := c.CallRaw(ctx, "device:set-limit", map[string]any{"limit": "x"}); return err }, rthub.ErrBadPayload, "bad_payload"},
		{"badJSON", func() error { _, err := c.CallRaw(ctx, "device:set-limit", []byte("{")); return err }, rthub.ErrBadPayload, ""},
	}
	for _, tc := range tests {
		err := tc.call()
		if tc.target != nil && !errors.Is(err, tc.target) {
			t.Errorf("%s: err = %v, want errors.Is %v", tc.name, err, tc.target)
		}
		var re *rthub.ReplyError
		if tc.code != "" && (!errors.As(err, &re) || re.Code != tc.code) {
			t.Errorf("%s: err = %v, want a ReplyError with code %s", tc.name, err, tc.code)
		}
	}

	// The client's deadline reaches the handler's ctx.
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = Call(dctx, c, testBlock, "x")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, rthub.ErrTimeout) {
		t.Errorf("Call with a deadline: err = %v, want DeadlineExceeded and ErrTimeout", err)
	}
	if cause := within(t, causes, "the handler's end"); cause == nil {
		t.Error("no cause")
	}

	// Cancelling the call cancels the handler's ctx, long before the RPC's
	// minute is up.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	n := ts.Hub().Stats().Calls
	go func() { _, err := Call(cctx, c, testBlock, "x"); done <- err }()
	waitCalls(t, ts.Hub(), n+1) // the handler runs: a cancel now is for a running call
	cancel()
	if err := within(t, done, "Call's return"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Call: err = %v, want Canceled", err)
	}
	if cause := within(t, causes, "the handler's end"); !errors.Is(cause, context.Canceled) {
		t.Errorf("handler ctx cause = %v, want the client's cancel", cause)
	}
}

// TestCall_Expired: a call whose connection drops waits in the outbox for
// the next connection; with no server coming back, it fails with
// ErrExpired at the outbox TTL, and OnExpired is told.
func TestCall_Expired(t *testing.T) {
	t.Parallel()
	causes := make(chan error, 1)
	ts := rpcServer(t, causes)
	expired := make(chan Expired, 1)
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"),
		Outbox: OutboxOptions{TTL: time.Second, OnExpired: func(e Expired) { expired <- e }}})
	done := make(chan error, 1)
	go func() {
		_, err := Call(t.Context(), c, testBlock, "x", WithKey("call-1"))
		done <- err
	}()
	waitCalls(t, ts.Hub(), 1)
	if st := c.Outbox(); st.Pending != 1 || st.Sent != 1 {
		t.Errorf("Outbox() = %+v, want 1 pending, 1 sent", st)
	}
	ts.kill()
	errorIs(t, within(t, done, "Call's return"), ErrExpired)
	e := within(t, expired, "OnExpired")
	if e != (Expired{Op: "call", Name: "device:block", Key: "call-1", Attempts: 1}) {
		t.Errorf("OnExpired got %+v", e)
	}
	if st := c.Outbox(); st.Pending != 0 || st.Expired != 1 {
		t.Errorf("Outbox() = %+v, want 0 pending, 1 expired", st)
	}
}

// TestOutbox_Full: past MaxEntries, EmitOnce and Call fail at once.
func TestOutbox_Full(t *testing.T) {
	t.Parallel()
	causes := make(chan error, 2)
	ts := rpcServer(t, causes)
	c := dialTest(t, ts.url, Options{Token: hourToken(t, "alice", "staff"), Outbox: OutboxOptions{MaxEntries: 1}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { _, err := Call(ctx, c, testBlock, "x"); done <- err }()
	waitCalls(t, ts.Hub(), 1)
	_, err := Call(t.Context(), c, testSetLimit, setLimit{Device: "d1"})
	errorIs(t, err, ErrOutboxFull)
	errorIs(t, c.EmitOnce(t.Context(), "chat:message", "staff", chatMessage{Text: "hi"}), ErrOutboxFull)
	cancel()
	errorIs(t, within(t, done, "Call's return"), context.Canceled)
	within(t, causes, "the handler's end")
	if err := c.EmitOnce(t.Context(), "chat:message", "staff", chatMessage{Text: "hi"}); err != nil {
		t.Errorf("EmitOnce after the outbox emptied: %v", err)
	}
}

// waitCalls waits until the hub has started n calls.
func waitCalls(t *testing.T, h *rthub.Hub, n uint64) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for h.Stats().Calls < n {
		if time.Now().After(deadline) {
			t.Fatalf("the hub started %d calls, want %d", h.Stats().Calls, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
