package js_test

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/org/rthub"
)

// FlapReq is the payload of flap:emit and the request of flap:call, which
// the node tests send while their connection is cut (rpc.test.mjs).
type FlapReq struct {
	N int `json:"n"`
}

// Echo is the request and result of test:echo.
type Echo struct {
	Text string `json:"text"`
}

var (
	flapEmit = rthub.NewEvent[FlapReq]("flap:emit")
	flapCall = rthub.NewRPC[FlapReq, string]("flap:call")
	testEcho = rthub.NewRPC[Echo, Echo]("test:echo")
	testHold = rthub.NewRPC[struct{}, string]("test:hold", rthub.RPCTimeout(time.Minute))
)

// runCounter counts, by idempotency key, the runs of a test hub's
// flap:emit and flap:call handlers, and the test:hold calls whose context
// the client's cancel ended. Its map holds one entry per key the node
// tests send (at most some thousands per hub).
type runCounter struct {
	mu       sync.Mutex
	runs     map[string]int
	canceled int
}

func (rc *runCounter) record(key string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.runs == nil {
		rc.runs = make(map[string]int)
	}
	rc.runs[key]++
}

func (rc *runCounter) emitHandler() rthub.Handler {
	return flapEmit.Handle(func(_ context.Context, in rthub.Incoming[FlapReq]) error {
		rc.record(fmt.Sprint("emit-", in.Data.N))
		return nil
	})
}

func (rc *runCounter) rpcHandlers() []rthub.RPCHandler {
	return []rthub.RPCHandler{
		flapCall.Handle(func(_ context.Context, req rthub.Request[FlapReq]) (string, error) {
			rc.record(req.Key)
			time.Sleep(5 * time.Millisecond) // some cuts land during runs
			return fmt.Sprintf("result %d", req.Data.N), nil
		}),
		testEcho.Handle(func(_ context.Context, req rthub.Request[Echo]) (Echo, error) {
			if req.Data.Text == "" {
				return Echo{}, &rthub.ReplyError{Code: "empty", Message: "nothing to echo"}
			}
			return Echo{Text: req.Data.Text + "!"}, nil
		}),
		testHold.Handle(func(ctx context.Context, _ rthub.Request[struct{}]) (string, error) {
			<-ctx.Done()
			if context.Cause(ctx) != ctx.Err() { // the client's cancel, not the deadline
				rc.mu.Lock()
				rc.canceled++
				rc.mu.Unlock()
			}
			return "", ctx.Err()
		}),
	}
}

// report is the /runs answer: the runs by key, the cancelled holds, and the
// hub's counts of retries answered from memory.
func (rc *runCounter) report(h *rthub.Hub) map[string]any {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]any{"runs": maps.Clone(rc.runs), "canceled": rc.canceled}
	if h != nil {
		st := h.Stats()
		out["replayed"], out["joined"] = st.Replayed, st.Joined
	}
	return out
}
