package client

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub"
)

// cutProxy is a loopback TCP proxy to a hub whose connections the test cuts
// for real: cut closes both TCP connections of every pair open now.
type cutProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	cuts  int
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Go(p.accept) // owner: p; ended by close
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

// cut closes every connection through the proxy.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.cuts++
}

func (p *cutProxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

type flapReq struct {
	N int `json:"n"`
}

var (
	flapRPC   = rthub.NewRPC[flapReq, string]("flap:call")
	flapEvent = rthub.NewEvent[flapReq]("flap:emit")
)

// TestOutbox_Flapping is the test: 1,000 emits and calls while the
// connection is cut every 200 ms. The handlers see each key exactly once
// and every caller gets its result.
func TestOutbox_Flapping(t *testing.T) {
	t.Parallel()
	const ops, workers = 1000, 20
	var mu sync.Mutex
	runs := make(map[string]int) // handler runs by idempotency key
	record := func(key string) {
		mu.Lock()
		runs[key]++
		mu.Unlock()
	}
	ts := startHub(t, func(o *rthub.Options) {
		o.Policy = rthub.Policy{Roles: map[string]rthub.RoleRules{"staff": {
			AutoJoin: []string{"staff"},
			Emit:     []rthub.EmitRule{{Events: []string{"flap:emit"}, Rooms: []string{"staff"}}},
			Call:     []string{"flap:*"},
		}}}
		o.Handlers = []rthub.Handler{flapEvent.Handle(func(ctx context.Context, in rthub.Incoming[flapReq]) error {
			record(fmt.Sprint(in.Data.N))
			return nil
		})}
		o.RPCs = []rthub.RPCHandler{flapRPC.Handle(func(ctx context.Context, req rthub.Request[flapReq]) (string, error) {
			record(req.Key)
			time.Sleep(5 * time.Millisecond) // a call takes a while: some cuts land during runs, and retries join them
			return fmt.Sprintf("result %d", req.Data.N), nil
		})}
		o.Limits = rthub.Limits{Commands: -1, HandshakesPerUser: -1}
	})
	proxy := newCutProxy(t, ts.addr)
	var reconnects atomic.Int64
	c := dialTest(t, "ws://"+proxy.ln.Addr().String()+"/ws", Options{
		Token: hourToken(t, "alice", "staff"),
		OnState: func(s State, _ error) {
			if s == Reconnecting {
				reconnects.Add(1)
			}
		},
	})

	stop := make(chan struct{})
	var cutter sync.WaitGroup
	cutter.Go(func() { // owner: this test; stopped by stop
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				proxy.cut()
			case <-stop:
				return
			}
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()
	var wrong, failed atomic.Int64
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := range jobs {
				if n%2 == 0 {
					got, err := Call(ctx, c, flapRPC, flapReq{N: n}, WithKey(fmt.Sprintf("call-%d", n)))
					if err != nil {
						failed.Add(1)
						t.Errorf("call %d: %v", n, err)
					} else if got != fmt.Sprintf("result %d", n) {
						wrong.Add(1)
						t.Errorf("call %d = %q", n, got)
					}
					continue
				}
				// The emit's key is its number: the handler records it.
				if err := EmitEventOnce(ctx, c, flapEvent, "staff", flapReq{N: n}, WithKey(fmt.Sprint(n))); err != nil {
					failed.Add(1)
					t.Errorf("emit %d: %v", n, err)
				}
			}
		})
	}
	// Paced, one every 3 ms, so that the run spans some 15 cuts.
	pace := time.NewTicker(3 * time.Millisecond)
	for n := range ops {
		<-pace.C
		jobs <- n
	}
	pace.Stop()
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	cutter.Wait()

	mu.Lock()
	defer mu.Unlock()
	dups, missing := 0, 0
	for n := range ops {
		key := fmt.Sprint(n)
		if n%2 == 0 {
			key = fmt.Sprintf("call-%d", n)
		}
		switch runs[key] {
		case 1:
		case 0:
			missing++
		default:
			dups++
		}
	}
	handlerRuns := 0
	for _, r := range runs {
		handlerRuns += r
	}
	st, hs := c.Outbox(), ts.Hub().Stats()
	proxy.mu.Lock()
	cuts := proxy.cuts
	proxy.mu.Unlock()
	t.Logf("flapping (Go client): %d calls + %d emits in %v; cuts %d, reconnects %d; sends %d, retries %d, expired %d; "+
		"handler runs %d (keys run twice %d, never %d); answered from memory: %d replayed + %d joined a running first run",
		ops/2, ops/2, elapsed.Round(time.Millisecond), cuts, reconnects.Load(), st.Sent, st.Retries, st.Expired,
		handlerRuns, dups, missing, hs.Replayed, hs.Joined)
	if dups != 0 || missing != 0 || handlerRuns != ops || failed.Load() != 0 || wrong.Load() != 0 {
		t.Errorf("exactly once failed: runs %d, keys run twice %d, never %d; failed callers %d, wrong results %d",
			handlerRuns, dups, missing, failed.Load(), wrong.Load())
	}
	if cuts < 10 || reconnects.Load() < 10 {
		t.Errorf("only %d cuts and %d reconnects: the test did not flap", cuts, reconnects.Load())
	}
	if st.Pending != 0 {
		t.Errorf("outbox holds %d entries after every caller returned", st.Pending)
	}
}
