package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/org/rthub/client"
	"go.uber.org/goleak"
)

// runMainEnv makes the test binary run the server's main instead of the
// tests, so that tests can start the real program as a process and stop it
// with a real SIGTERM, without a separate build.
const runMainEnv = "IOTSERVER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// proc is the server running as a child process.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	out    *syncBuffer   // stdout
	err    *syncBuffer   // stderr
	exited chan struct{} // closed when the process has exited
	werr   error         // Wait's result, set before exited is closed
}

var openRE = regexp.MustCompile(`open http://(\S+)`)

// startProcess starts the server as a process with env (on top of the
// test's environment, minus the service URLs: zero-setup unless given) and
// waits for it to print its address. It is killed if still running when the
// test ends.
func startProcess(t *testing.T, env map[string]string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RTHUB_POSTGRES_URL=") && !strings.HasPrefix(kv, "RTHUB_MQTT_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, runMainEnv+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{cmd: cmd, out: &syncBuffer{}, err: &syncBuffer{}, exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = p.err
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	copied := make(chan struct{})
	go func() { // ends at the process's exit (EOF)
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.out.Write([]byte(line + "\n"))
			if m := openRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { // ends at the process's exit
		<-copied
		p.werr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case p.addr = <-addr:
	case <-p.exited:
		t.Fatalf("server exited at start: %v\nstdout:\n%s\nstderr:\n%s", p.werr, p.out, p.err)
	case <-time.After(60 * time.Second):
		t.Fatalf("server printed no address within 60 s\nstdout:\n%s\nstderr:\n%s", p.out, p.err)
	}
	return p
}

// terminate sends SIGTERM and returns how long the process took to exit,
// failing the test if it exits with an error or not within limit.
func (p *proc) terminate(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.werr != nil {
			t.Fatalf("server exited with %v after SIGTERM\nstdout:\n%s\nstderr:\n%s", p.werr, p.out, p.err)
		}
	case <-time.After(limit):
		t.Fatalf("server still running %v after SIGTERM\nstderr:\n%s", limit, p.err)
	}
	return time.Since(start)
}

// TestProcess_SIGTERM starts the real program, connects a client, and stops
// it with SIGTERM: the client is told to reconnect (1001, the hub drains
// first) and the process exits with status 0 within SHUTDOWN_TIMEOUT.
func TestProcess_SIGTERM(t *testing.T) {
	t.Parallel()
	env := baseEnv()
	env["SHUTDOWN_TIMEOUT"] = "5s"
	env["WS_DRAIN_WINDOW"] = "1s"
	p := startProcess(t, env)
	s := &testServer{addr: p.addr, cfg: Config{Secret: []byte(testSecret)}}
	states := make(chan client.State, 16)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+p.addr+"/ws", client.Options{
		Token:   s.token(t, "alice"),
		OnState: func(st client.State, _ error) { states <- st },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := collect(c, SensorData.Name())
	data.next(t, 10*time.Second, "sensor:data from the simulated devices", nil)

	took := p.terminate(t, 5*time.Second+3*time.Second)
	t.Logf("exited %v after SIGTERM", took.Round(time.Millisecond))
	// The client saw the drain as "reconnect", not as a terminal close.
	waitState(t, states, client.Reconnecting, 5*time.Second)
	out := p.out.String() // complete: the process has exited
	if !strings.Contains(out, "shutting down") {
		t.Fatalf("stdout has no shutdown message:\n%s", out)
	}
	if strings.Contains(out, "demo mode") || strings.Contains(out, "alice-pw") {
		t.Fatalf("credentials printed outside demo mode:\n%s", out)
	}
}

// waitState waits for the client state want, failing on Closed.
func waitState(t *testing.T, states <-chan client.State, want client.State, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case st := <-states:
			if st == want {
				return
			}
			if st == client.Closed {
				t.Fatalf("client closed for good while waiting for %v", want)
			}
		case <-timer.C:
			t.Fatalf("client not %v within %v", want, d)
		}
	}
}

// TestProcess_DemoMode: with nothing set but free ports, the server prints
// its URL and the demo logins, and they work.
func TestProcess_DemoMode(t *testing.T) {
	t.Parallel()
	p := startProcess(t, map[string]string{
		"ADDR": "127.0.0.1:0", "MQTT_EMBEDDED_ADDR": "127.0.0.1:0", "LOG_LEVEL": "warn",
		"JWT_SECRET": "", "SEED_USERS": "",
	})
	// The address line comes first; wait for the rest of the banner.
	eventually(t, 10*time.Second, "the demo logins printed", func() bool { return strings.Contains(p.out.String(), "admin  admin / admin") })
	out := p.out.String()
	for _, want := range []string{"open http://127.0.0.1:", "demo mode", "staff  alice / alice", "admin  admin / admin", "store:      memory", "embedded on tcp://127.0.0.1:"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	s := &testServer{addr: p.addr}
	var tok tokenResponse
	if code := s.do(t, "POST", "/api/login", "", loginRequest{"admin", "admin"}, &tok); code != 200 || tok.Token == "" {
		t.Fatalf("demo login admin/admin: %d", code)
	}
	p.terminate(t, 20*time.Second)
}
