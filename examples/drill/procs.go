package drill

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
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Env is where drills run: a scratch directory for configurations and logs,
// and the programs they start.
type Env struct {
	// Dir holds generated configurations and every process's log.
	Dir string
	// ServerBin and LoadBin are the drillserver and drillload binaries (see
	// [Build]).
	ServerBin, LoadBin string
	// RedisServer and Nginx are the paths of redis-server and nginx.
	RedisServer, Nginx string
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

func (e *Env) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

// LookBinary finds a program on PATH or in the sbin directories, where
// Debian installs nginx (a non-root PATH often lacks them).
func LookBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/sbin, /usr/local/sbin, /sbin", name)
}

// Build builds the drillserver and drillload binaries into dir with one "go
// build" and sets env's ServerBin and LoadBin. It must run inside this module
// (tests do; so does "go run ./cmd/drill" from examples/drill).
func Build(ctx context.Context, env *Env, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"github.com/org/rthub/examples/drill/cmd/drillserver", "github.com/org/rthub/examples/drill/cmd/drillload")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build drillserver drillload: %w\n%s", err, b)
	}
	env.ServerBin, env.LoadBin = filepath.Join(dir, "drillserver"), filepath.Join(dir, "drillload")
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc is a child process whose output goes to a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed

	lines chan string // stdout lines, for processes started with startProcLines
}

// startProc starts bin with args, its stdout and stderr appended to logPath.
// The child is killed if the harness dies (Pdeathsig), so no drill leaves a
// process behind.
func startProc(name, logPath, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { // owner: p; ends when the process exits (kill, signal, or by itself)
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startProcLines is startProc with the process's stdout lines delivered to
// readLine instead of the log.
func startProcLines(name, logPath, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = f
	out, err := cmd.StdoutPipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{}), lines: make(chan string, 16)}
	go func() { // owner: p; ends at the process's exit, after its output
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// readLine decodes the process's next stdout line (JSON) into v, waiting up
// to d.
func readLine(ctx context.Context, p *proc, d time.Duration, v any) error {
	select {
	case line, ok := <-p.lines:
		if !ok {
			<-p.done
			return fmt.Errorf("%s exited (%v) without the expected output:\n%s", p.name, p.err, p.tail(2000))
		}
		if err := json.Unmarshal([]byte(line), v); err != nil {
			return fmt.Errorf("%s: %q: %w", p.name, line, err)
		}
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s: no output after %v", p.name, d)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// signal sends sig unless the process has exited.
func (p *proc) signal(sig os.Signal) error {
	if p.exited() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// wait waits up to d for the process to exit.
func (p *proc) wait(d time.Duration) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s (pid %d) still running after %v", p.name, p.pid(), d)
	}
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	_ = p.signal(syscall.SIGKILL)
	<-p.done
}

// tail returns the last n bytes of the process's log.
func (p *proc) tail(n int64) string {
	f, err := os.Open(p.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %s", d, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// Redis is a private redis-server without persistence: a restart loses
// everything, as a Redis without AOF/RDB does.
type Redis struct {
	env  *Env
	Port int
	p    *proc
}

// StartRedis starts redis-server on a free port.
func StartRedis(ctx context.Context, env *Env) (*Redis, error) {
	r := &Redis{env: env}
	err := onFreePort(func(port int) (bool, error) {
		r.Port = port
		err := r.start(ctx)
		return err != nil && r.p != nil && r.p.exited(), err
	})
	return r, err
}

// onFreePort calls start with a free port, and again with another one (up to
// three times) when start reports that its process exited at once: another
// process may have taken the port in between (tests of other packages run at
// the same time).
func onFreePort(start func(port int) (exited bool, err error)) error {
	var err error
	for range 3 {
		var port int
		if port, err = FreePort(); err != nil {
			return err
		}
		var exited bool
		if exited, err = start(port); err == nil || !exited {
			return err
		}
	}
	return err
}

// URL is the redis:// URL of the server's database 0.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

func (r *Redis) start(ctx context.Context) error {
	p, err := startProc("redis-server", filepath.Join(r.env.Dir, "redis.log"), r.env.RedisServer,
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", r.env.Dir, "--maxclients", "10000")
	if err != nil {
		return err
	}
	r.p = p
	addr := fmt.Sprintf("127.0.0.1:%d", r.Port)
	return waitFor(ctx, 10*time.Second, "redis-server accepting connections on "+addr, func() bool {
		return !p.exited() && redisPing(addr)
	})
}

// Kill stops the server with SIGKILL: every key is lost.
func (r *Redis) Kill() {
	if r.p != nil {
		r.p.kill()
	}
}

// Restart kills the server, waits down, and starts an empty one on the same
// port.
func (r *Redis) Restart(ctx context.Context, down time.Duration) error {
	r.Kill()
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.start(ctx)
}

// Pid is the server process's ID.
func (r *Redis) Pid() int { return r.p.pid() }

func redisPing(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 7)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "+PONG\r\n"
}

// Node is one drillserver process: a hub node.
type Node struct {
	env  *Env
	ID   string // node ID: its Redis connections are named rthub-<ID>
	Port int
	args []string
	p    *proc
}

// Addr is the node's listen address.
func (n *Node) Addr() string { return fmt.Sprintf("127.0.0.1:%d", n.Port) }

// start starts the process and waits until /healthz says it is ready.
func (n *Node) start(ctx context.Context) error {
	args := append([]string{"-addr", n.Addr(), "-node", n.ID}, n.args...)
	p, err := startProc("node "+n.ID, filepath.Join(n.env.Dir, "node-"+n.ID+".log"), n.env.ServerBin, args...)
	if err != nil {
		return err
	}
	n.p = p
	err = waitFor(ctx, 15*time.Second, "node "+n.ID+" healthy", func() bool { return p.exited() || n.Healthy() })
	if err == nil && p.exited() {
		err = fmt.Errorf("node %s exited at start: %v\n%s", n.ID, p.err, p.tail(2000))
	}
	return err
}

// Healthy reports whether GET /healthz answers 200.
func (n *Node) Healthy() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + n.Addr() + "/healthz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Kill9 kills the node with SIGKILL: its connections drop at once, nothing
// is cleaned up.
func (n *Node) Kill9() { n.p.kill() }

// Terminate sends SIGTERM and waits (up to d) for the drain to finish and the
// process to exit; it reports a non-zero exit.
func (n *Node) Terminate(d time.Duration) error {
	if err := n.p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if err := n.p.wait(d); err != nil {
		n.p.kill()
		return err
	}
	if n.p.err != nil {
		return fmt.Errorf("node %s exited: %w\n%s", n.ID, n.p.err, n.p.tail(2000))
	}
	return nil
}

// Running reports whether the process is up.
func (n *Node) Running() bool { return n.p != nil && !n.p.exited() }

// Pid is the node process's ID.
func (n *Node) Pid() int { return n.p.pid() }

// Tail returns the end of the node's log.
func (n *Node) Tail() string {
	if n.p == nil {
		return ""
	}
	return n.p.tail(4000)
}
