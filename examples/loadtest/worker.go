package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/org/rthub/client"
	"github.com/org/rthub/token"
)

// workerConfig is what a worker needs; a child process gets it as JSON in
// the environment variable workerEnv (not on the command line: it holds the
// secret).
type workerConfig struct {
	ID          int      `json:"id"`
	URL         string   `json:"url"`
	Secret      string   `json:"secret"`
	Roles       []string `json:"roles"`
	Room        string   `json:"room"`
	Event       string   `json:"event"`
	Concurrency int      `json:"concurrency"` // dials in flight
	SourceAddrs []string `json:"source_addrs"`
	Compression bool     `json:"compression"`
	Raw         bool     `json:"raw"` // the light raw client (rawclient.go) instead of the Go client
	// Subjects > 0 spreads the clients of all Workers workers over that many
	// token subjects: client i of worker ID is user (i×Workers + ID) mod
	// Subjects, so the workers share the users evenly.
	Subjects int `json:"subjects,omitempty"`
	Workers  int `json:"workers,omitempty"`
	// Spread starts a batch of new dials evenly over this time instead of
	// at once (as clients with a jittered reconnect delay arrive); the
	// handshake time is counted from each dial's own start.
	Spread time.Duration `json:"spread_ns,omitempty"`
}

// subject is the token subject of this worker's client i.
func (c *workerConfig) subject(i int) string {
	if c.Subjects <= 0 {
		return fmt.Sprintf("load-%d-%d", c.ID, i)
	}
	return fmt.Sprintf("load-u%d", (i*max(c.Workers, 1)+c.ID)%c.Subjects)
}

const workerEnv = "RTHUB_LOADTEST_WORKER"

// command is a controller → worker message.
type command struct {
	Target *int       `json:"target,omitempty"` // clients to hold
	Drop   bool       `json:"drop,omitempty"`   // cut every client's TCP connection
	Final  uint64     `json:"final,omitempty"`  // last published sequence number: count the tail as missed
	Churn  *churnSpec `json:"churn,omitempty"`  // start churning slots (churn.go)
	Stop   bool       `json:"stop,omitempty"`   // close all and send a last report
}

// report is a worker → controller message, sent every second: counters are
// totals since the last report, histograms cover the interval.
type report struct {
	Worker    int      `json:"worker"`
	Connected int      `json:"connected"` // clients connected now
	Attempts  int      `json:"attempts"`  // first dials
	Failures  int      `json:"failures"`
	Received  uint64   `json:"received"`
	Missed    uint64   `json:"missed"`
	Reconnect *Hist    `json:"reconnect"`
	Handshake *Hist    `json:"handshake"`
	Latency   *Hist    `json:"latency"`
	Errors    []string `json:"errors,omitempty"` // first few dial errors
	Last      bool     `json:"last,omitempty"`
	Closes    closes   `json:"closes"`            // churn: how connections ended
	Cut       int      `json:"cut,omitempty"`     // churn: dials cut short by the stop (not in Attempts)
	LastUp    int64    `json:"last_up,omitempty"` // UnixNano of the interval's last successful first dial
}

// slot is one simulated user.
type slot struct {
	c       *client.Client
	nc      atomic.Pointer[net.Conn] // current TCP connection, for Drop
	lastSeq uint64                   // under worker.mu
	dropAt  atomic.Int64             // UnixNano of a forced drop not yet recovered
	up      atomic.Bool
	ready   chan struct{} // closed when the first dial is over
}

// worker holds a fleet of clients in this process.
type worker struct {
	cfg workerConfig
	out chan<- report

	mu        sync.Mutex // guards the fields below
	slots     []*slot
	cur       report
	connected atomic.Int64
	next      int // for source addresses and subjects
	wg        sync.WaitGroup
	sem       chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	churnStop context.CancelFunc // stops the churn slots; nil until a Churn command
	tokens    sync.Map           // subject → token, when subjects are shared (bounded by Subjects)
}

func newWorker(cfg workerConfig, out chan<- report) *worker {
	w := &worker{cfg: cfg, out: out, sem: make(chan struct{}, max(cfg.Concurrency, 1))}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.resetReport()
	return w
}

func (w *worker) resetReport() {
	w.cur = report{Worker: w.cfg.ID, Reconnect: newHist(), Handshake: newHist(), Latency: newHist()}
}

// run applies commands until Stop or cmds closes, reporting every second.
func (w *worker) run(cmds <-chan command) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.flush(false)
		case c, ok := <-cmds:
			if !ok || c.Stop {
				w.stopChurn()
				w.setTarget(0)
				w.wg.Wait()
				w.flush(true)
				w.cancel()
				return
			}
			switch {
			case c.Target != nil:
				w.setTarget(*c.Target)
			case c.Drop:
				w.drop()
			case c.Final > 0:
				w.final(c.Final)
			case c.Churn != nil:
				w.startChurn(*c.Churn)
			}
		}
	}
}

func (w *worker) flush(last bool) {
	w.mu.Lock()
	r := w.cur
	w.resetReport()
	w.mu.Unlock()
	r.Connected = int(w.connected.Load())
	r.Last = last
	w.out <- r
}

// setTarget dials or closes clients until n are held (dials run
// concurrently, bounded by Concurrency; failures are counted, not retried).
func (w *worker) setTarget(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	batch, first := n-len(w.slots), len(w.slots)
	for len(w.slots) < n {
		s := &slot{ready: make(chan struct{})}
		w.slots = append(w.slots, s)
		i := w.next
		w.next++
		var wait time.Duration
		if w.cfg.Spread > 0 {
			wait = time.Duration(len(w.slots)-1-first) * w.cfg.Spread / time.Duration(batch)
		}
		w.wg.Go(func() {
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-w.ctx.Done():
					t.Stop()
				}
			}
			if w.cfg.Raw {
				w.dialRaw(s, i)
			} else {
				w.dial(s, i)
			}
		})
	}
	for len(w.slots) > n {
		s := w.slots[len(w.slots)-1]
		w.slots = w.slots[:len(w.slots)-1]
		w.wg.Go(func() {
			<-s.ready // the dial is over
			w.mu.Lock()
			c := s.c
			w.mu.Unlock()
			if c != nil {
				_ = c.Close()
			}
			if p := s.nc.Load(); p != nil && w.cfg.Raw {
				_ = (*p).Close()
			}
		})
	}
}

func (w *worker) dial(s *slot, i int) {
	w.sem <- struct{}{}
	defer func() { <-w.sem }()
	var src *net.TCPAddr
	if len(w.cfg.SourceAddrs) > 0 {
		src = &net.TCPAddr{IP: net.ParseIP(w.cfg.SourceAddrs[i%len(w.cfg.SourceAddrs)])}
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: src, Timeout: 30 * time.Second}
			nc, err := d.DialContext(ctx, network, addr)
			if err == nil {
				s.nc.Store(&nc)
			}
			return nc, err
		},
		DisableKeepAlives: true,
	}
	opts := client.Options{
		TokenFunc:   func(context.Context) (string, error) { return w.token(i) },
		Rooms:       []string{w.cfg.Room},
		HTTPClient:  &http.Client{Transport: tr},
		Compression: w.cfg.Compression,
		OnState: func(st client.State, err error) {
			switch st {
			case client.Connected:
				if !s.up.Swap(true) {
					w.connected.Add(1)
				}
				if at := s.dropAt.Swap(0); at != 0 {
					d := time.Since(time.Unix(0, at))
					w.mu.Lock()
					w.cur.Reconnect.Record(d)
					w.mu.Unlock()
				}
			case client.Reconnecting, client.Closed:
				if s.up.Swap(false) {
					w.connected.Add(-1)
				}
			}
		},
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(w.ctx, 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, w.cfg.URL, opts)
	d := time.Since(start)
	w.mu.Lock()
	defer w.mu.Unlock()
	defer close(s.ready)
	w.cur.Attempts++
	if err != nil {
		w.cur.Failures++
		if len(w.cur.Errors) < 3 {
			w.cur.Errors = append(w.cur.Errors, err.Error())
		}
		return
	}
	w.cur.Handshake.Record(d)
	w.cur.LastUp = time.Now().UnixNano()
	s.c = c
	c.On(w.cfg.Event, func(e client.Event) { w.receive(s, e.Data) })
}

// token returns client i's token: signed once per subject when subjects
// are shared, else for each dial.
func (w *worker) token(i int) (string, error) {
	sub := w.cfg.subject(i)
	if w.cfg.Subjects <= 0 {
		return signToken(w.cfg.Secret, sub, w.cfg.Roles)
	}
	if t, ok := w.tokens.Load(sub); ok {
		return t.(string), nil
	}
	t, err := signToken(w.cfg.Secret, sub, w.cfg.Roles)
	if err == nil {
		w.tokens.Store(sub, t)
	}
	return t, err
}

// tick is the payload the controller publishes.
type tick struct {
	T   int64  `json:"t"` // UnixNano at the publisher, just before POST /publish
	Seq uint64 `json:"s"`
	Pad string `json:"p,omitempty"`
}

func (w *worker) receive(s *slot, data []byte) {
	now := time.Now()
	var tk tick
	if err := json.Unmarshal(data, &tk); err != nil {
		return
	}
	w.record(s, now, tk.T, tk.Seq)
}

// record counts one received tick published at t (UnixNano).
func (w *worker) record(s *slot, now time.Time, t int64, seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cur.Received++
	w.cur.Latency.Record(now.Sub(time.Unix(0, t)))
	if s.lastSeq != 0 && seq > s.lastSeq+1 {
		w.cur.Missed += seq - s.lastSeq - 1
	}
	if seq > s.lastSeq {
		s.lastSeq = seq
	}
}

// drop closes every client's TCP connection under it, as a network failure
// would; the clients reconnect on their own and OnState times it.
func (w *worker) drop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now().UnixNano()
	for _, s := range w.slots {
		if p := s.nc.Load(); p != nil && s.up.Load() {
			s.dropAt.Store(now)
			_ = (*p).Close()
		}
	}
}

// final counts, for every connected client that received something, the
// events after its last one as missed.
func (w *worker) final(seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.slots {
		if s.up.Load() && s.lastSeq != 0 && seq > s.lastSeq {
			w.cur.Missed += seq - s.lastSeq
		}
	}
}

// signToken mints an HS256 token valid 48 h.
func signToken(secret, sub string, roles []string) (string, error) {
	return signTokenTTL(secret, sub, roles, 48*time.Hour)
}

// signTokenTTL mints an HS256 token valid for ttl.
func signTokenTTL(secret, sub string, roles []string, ttl time.Duration) (string, error) {
	return token.Sign([]byte(secret), token.Claims{Subject: sub, Roles: roles, TTL: ttl})
}

// fleet is the controller's handle on one worker, in process or child.
type fleet struct {
	cmds chan command
	done chan struct{}
	cmd  *exec.Cmd
}

// startInProcess runs a worker in this process.
func startInProcess(cfg workerConfig, out chan<- report) *fleet {
	f := &fleet{cmds: make(chan command, 16), done: make(chan struct{})}
	w := newWorker(cfg, out)
	go func() { defer close(f.done); w.run(f.cmds) }()
	return f
}

// startChild re-executes this program with -worker: commands go to its
// stdin and reports come back on its stdout, one JSON object a line.
func startChild(cfg workerConfig, out chan<- report) (*fleet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(cfg)
	cmd := exec.Command(exe, "-worker")
	cmd.Env = append(os.Environ(), workerEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &fleet{cmds: make(chan command, 16), done: make(chan struct{}), cmd: cmd}
	go func() { // writer: owned by f, ends when cmds closes
		enc := json.NewEncoder(stdin)
		for c := range f.cmds {
			_ = enc.Encode(c)
		}
		stdin.Close()
	}()
	go func() { // reader: ends when the child exits
		defer close(f.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var r report
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				out <- r
			}
		}
		_ = cmd.Wait()
	}()
	return f, nil
}

// stop asks the worker to close its clients and waits (bounded) for it.
func (f *fleet) stop() {
	f.cmds <- command{Stop: true}
	close(f.cmds)
	select {
	case <-f.done:
	case <-time.After(30 * time.Second):
		if f.cmd != nil {
			_ = f.cmd.Process.Kill()
			<-f.done
		}
	}
}

// workerMain is the child side of startChild.
func workerMain() error {
	var cfg workerConfig
	if err := json.Unmarshal([]byte(os.Getenv(workerEnv)), &cfg); err != nil {
		return fmt.Errorf("%s: %w", workerEnv, err)
	}
	out := make(chan report, 16)
	cmds := make(chan command, 16)
	go func() {
		dec := json.NewDecoder(os.Stdin)
		for {
			var c command
			if err := dec.Decode(&c); err != nil {
				if err != io.EOF {
					fmt.Fprintln(os.Stderr, "worker: stdin:", err)
				}
				close(cmds)
				return
			}
			cmds <- c
		}
	}()
	w := newWorker(cfg, out)
	done := make(chan struct{})
	go func() { defer close(done); w.run(cmds) }()
	enc := json.NewEncoder(os.Stdout)
	for {
		select {
		case r := <-out:
			if err := enc.Encode(r); err != nil {
				return err
			}
			if r.Last {
				return nil
			}
		case <-done:
			return nil
		}
	}
}
