package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// BroadcastRoom is the room every drill client is in (joined automatically).
const BroadcastRoom = "bcast"

// Target is a node the publisher may send to.
type Target struct {
	Addr string
	down atomic.Bool
}

// SetDown takes the node out of (or puts it back into) the publisher's
// rotation; the harness does it before it kills or stops a node, so that
// publications are not lost in flight by the harness's own doing.
func (t *Target) SetDown(down bool) { t.down.Store(down) }

// PublisherOptions configures [StartPublisher].
type PublisherOptions struct {
	Targets []*Target
	Token   string // bearer token with role "publisher"
	// Rates: events per second to each room.
	Rates map[string]float64
	// Pad adds this many bytes to each event's data.
	Pad int
}

// Publisher publishes numbered events to rooms at steady rates, one room's
// events one after the other (so their order is the numbering), spreading
// them over the nodes round robin. It records which numbers were accepted.
//
// A publication refused for certain (connection refused, or 503 from a
// draining node, which refuses before publishing) is retried on the next
// node. Any other failure (a broker error, a connection dropped mid-request)
// may or may not have been published: it is counted in Errors, not retried,
// and not expected by the clients, who may still receive it.
type Publisher struct {
	opts   PublisherOptions
	pad    string
	hc     *http.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
	rr     atomic.Uint64

	mu       sync.Mutex
	accepted map[string][]int64

	errors, retries atomic.Int64
	lastErr         atomic.Value // string
}

// StartPublisher starts one goroutine per room; Stop stops them.
func StartPublisher(opts PublisherOptions) *Publisher {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Publisher{
		opts:     opts,
		pad:      strings.Repeat("x", opts.Pad),
		cancel:   cancel,
		accepted: make(map[string][]int64),
		hc: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		},
	}
	for room, rate := range opts.Rates {
		p.wg.Go(func() { p.run(ctx, room, rate) }) // owner: p; stopped and waited for by Stop
	}
	return p
}

func (p *Publisher) run(ctx context.Context, room string, rate float64) {
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for seq := int64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The publication in flight finishes even when Stop is called, so that
		// its outcome is known.
		if p.publish(context.WithoutCancel(ctx), room, seq) {
			p.mu.Lock()
			p.accepted[room] = append(p.accepted[room], seq)
			p.mu.Unlock()
		}
	}
}

// publish sends one event and reports whether a node accepted it.
func (p *Publisher) publish(ctx context.Context, room string, seq int64) bool {
	body, _ := json.Marshal(map[string]any{
		"room": room, "event": SeqEvent, "data": SeqData{Seq: seq, T: time.Now().UnixNano(), Pad: p.pad},
	})
	n := len(p.opts.Targets)
	start := int(p.rr.Add(1))
	for i := range n {
		t := p.opts.Targets[(start+i)%n]
		if t.down.Load() {
			continue
		}
		err := p.post(ctx, t.Addr, body)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if !errors.Is(err, errNotPublished) {
			p.errors.Add(1)
			p.lastErr.Store(err.Error())
			return false
		}
		p.retries.Add(1)
	}
	p.errors.Add(1)
	p.lastErr.Store("no node accepted the publication")
	return false
}

// errNotPublished marks failures after which the event was certainly not
// published.
var errNotPublished = errors.New("not published")

func (p *Publisher) post(ctx context.Context, addr string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.opts.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial") {
			return fmt.Errorf("%w: %v", errNotPublished, err)
		}
		return err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
		return nil
	case http.StatusServiceUnavailable:
		return fmt.Errorf("%w: %s: %s", errNotPublished, resp.Status, bytes.TrimSpace(b))
	}
	return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
}

// Stop stops publishing and waits for the publications in flight.
func (p *Publisher) Stop() {
	p.cancel()
	p.wg.Wait()
	p.hc.CloseIdleConnections()
}

// Accepted returns, per room, the numbers of the accepted publications.
func (p *Publisher) Accepted() map[string][]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string][]int64, len(p.accepted))
	for r, s := range p.accepted {
		out[r] = append([]int64(nil), s...)
	}
	return out
}

// LastAccepted returns the number of the last accepted publication per room.
func (p *Publisher) LastAccepted() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.accepted))
	for r, s := range p.accepted {
		if len(s) > 0 {
			out[r] = s[len(s)-1]
		}
	}
	return out
}

// Errors counts publications that failed and may or may not have been
// published; Retries counts those refused for certain and sent again.
func (p *Publisher) Errors() int64  { return p.errors.Load() }
func (p *Publisher) Retries() int64 { return p.retries.Load() }

// LastError is the last failure counted in Errors.
func (p *Publisher) LastError() string {
	s, _ := p.lastErr.Load().(string)
	return s
}
