package redisbroker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/org/rthub/brokertest"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/redisbroker"
	"github.com/redis/rueidis"
)

// redisURL returns the shared test Redis (skipping or failing the test
// without it).
func redisURL(t *testing.T) string {
	t.Helper()
	return testenv.URL(t, testenv.Redis)
}

// uniquePrefix returns a key prefix no other test uses (other tests and
// packages share the Redis) and deletes its keys when t ends.
func uniquePrefix(t *testing.T, urls ...string) string {
	t.Helper()
	var b [5]byte
	rand.Read(b[:])
	p := "rthubtest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		for _, u := range urls {
			deleteKeys(t, u, p)
		}
	})
	return p
}

// admin returns a plain client for checking and breaking things.
func admin(t *testing.T, url string) rueidis.Client {
	t.Helper()
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// testenvURL is redisURL for benchmarks.
func testenvURL(b *testing.B) string {
	b.Helper()
	return testenv.URL(b, testenv.Redis)
}

func deleteKeysTB(t testing.TB, url, prefix string) { deleteKeys(t, url, prefix) }

func deleteKeys(t testing.TB, url, prefix string) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return
	}
	opt.DisableCache = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for cursor := uint64(0); ; {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Logf("cleanup of %s*: %v", prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			c.Do(ctx, c.B().Del().Key(e.Elements...).Build())
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// node returns a broker on the given shard URLs, closed when t ends.
func node(t *testing.T, opts redisbroker.Options, urls ...string) *redisbroker.Broker {
	t.Helper()
	for _, u := range urls {
		opts.Shards = append(opts.Shards, redisbroker.Shard{URL: u})
	}
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = 100 * time.Millisecond
	}
	b, err := redisbroker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// started returns a started node with a recorder as its handler.
func started(t *testing.T, opts redisbroker.Options, urls ...string) (*redisbroker.Broker, *brokertest.Recorder) {
	t.Helper()
	b := node(t, opts, urls...)
	rec := brokertest.NewRecorder()
	if err := b.Start(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rec.Err(); err != nil {
			t.Error(err)
		}
	})
	return b, rec
}

// eventually polls cond every 10 ms until it holds, failing t after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killClients kills every connection named "rthub-<nodeID>" and returns how
// many there were.
func killClients(t *testing.T, c rueidis.Client, nodeID string) int {
	t.Helper()
	ctx := context.Background()
	list, err := c.Do(ctx, c.B().ClientList().Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	list = strings.TrimPrefix(list, "txt:") // a RESP3 verbatim string
	for _, line := range strings.Split(list, "\n") {
		f := fields(line)
		if f["name"] != "rthub-"+nodeID {
			continue
		}
		if err := c.Do(ctx, c.B().ClientKill().Id(mustInt(t, f["id"])).Build()).Error(); err != nil {
			t.Fatalf("CLIENT KILL ID %s: %v", f["id"], err)
		}
		n++
	}
	return n
}

func fields(line string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func mustInt(t *testing.T, s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// server is a private redis-server process, for tests that restart Redis or
// need a second instance. Its data is not persisted.
type server struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// startServer starts a redis-server on a free port, or skips t when there is
// no redis-server binary.
func startServer(t *testing.T) *server {
	t.Helper()
	if testenv.Tool(t, "redis-server", "apt-get install redis-server") == "" {
		return nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &server{t: t, port: port}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *server) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func (s *server) start() {
	s.t.Helper()
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "")
	s.cmd.Stdout, s.cmd.Stderr = io.Discard, os.Stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.done = make(chan struct{})
	cmd, done := s.cmd, s.done
	go func() { cmd.Wait(); close(done) }() // owner: s; ends when the process does (kill)
	eventually(s.t, 10*time.Second, "redis-server to accept connections", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port))
		if err != nil {
			return false
		}
		defer c.Close()
		c.Write([]byte("PING\r\n"))
		buf := make([]byte, 7)
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = io.ReadFull(c, buf)
		return err == nil && string(buf) == "+PONG\r\n"
	})
}

// kill stops the process with SIGKILL: Redis loses everything.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// restart kills the server and starts a new, empty one on the same port.
func (s *server) restart() {
	s.kill()
	s.start()
}

// proxy forwards TCP connections to a Redis and can make the pub/sub ones
// deaf: it keeps them open but stops forwarding what Redis sends on them,
// which is how a connection looks when it is "up but receives nothing"
// (a half-broken network path, a proxy that lost state, a failover that left
// the subscriber on the old server).
type proxy struct {
	ln     net.Listener
	target string
	deaf   atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.accept) // owner: p; stopped by close
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
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
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		var pubsub atomic.Bool
		p.wg.Go(func() { // client → Redis; notes a connection that subscribes
			defer up.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if bytes.Contains(bytes.ToUpper(buf[:n]), []byte("SUBSCRIBE")) {
						pubsub.Store(true)
					}
					if _, err := up.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
		p.wg.Go(func() { // Redis → client; dropped on deaf pub/sub connections
			defer c.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 && !(pubsub.Load() && p.deaf.Load()) {
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
