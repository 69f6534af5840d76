package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/org/rthub/internal/doccheck"
)

// TestDocs_commands: every documented `go run ./examples/quickstart` (in the
// READMEs and docs/) sets only variables the quickstart reads, with values
// it accepts, and passes no arguments (it takes none).
func TestDocs_commands(t *testing.T) {
	// examples/loadtest's TestDocs_commands and the tool's default -url
	// assume this default.
	if cfg, err := configFromEnv(func(string) string { return "" }); err != nil || cfg.addr != "127.0.0.1:8080" {
		t.Errorf("default ADDR %q (%v): the docs and the load tool assume 127.0.0.1:8080", cfg.addr, err)
	}
	doccheck.CheckEnvCommands(t, "examples/quickstart", func(getenv func(string) string) error {
		_, err := configFromEnv(getenv)
		return err
	})
}

// lines collects a process's output lines.
type lines struct {
	mu  sync.Mutex
	all []string
	new chan struct{} // closed and replaced at each line
}

func (l *lines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, s)
	close(l.new)
	l.new = make(chan struct{})
}

// wait returns the first line matching re, waiting up to d.
func (l *lines) wait(t *testing.T, re *regexp.Regexp, d time.Duration) []string {
	t.Helper()
	deadline := time.After(d)
	for {
		l.mu.Lock()
		for _, s := range l.all {
			if m := re.FindStringSubmatch(s); m != nil {
				l.mu.Unlock()
				return m
			}
		}
		ch := l.new
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no line matching %s within %v; output:\n%s", re, d, l)
		}
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

// TestProcess_demo runs the README's `go run ./examples/quickstart` (the
// real program as a process, with nothing set but a free port) and does what
// its output says: the demo tokens and the wscat line it prints work. The
// test dials with the printed line's subprotocol, header and URL (as wscat
// would), sends the printed join command, and receives the reply and a
// simulated reading; SIGTERM then drains and exits 0.
func TestProcess_demo(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "ADDR", "JWT_SECRET", "PUBLISH_INTERVAL", "WATCH", "WRITE_DELAY", "PRESENCE", "DEBUG_ADDR", "DEBUG_REMOTE",
			"MAX_CONNS_PER_USER", "MAX_CONNS_PER_IP", "HANDSHAKES_PER_IP", "HANDSHAKES_PER_USER", "HANDSHAKE_BURST":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, runMainEnv+"=1", "ADDR=127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := &lines{new: make(chan struct{})}
	exited := make(chan error, 1)
	go func() { // ends at the process's exit (EOF)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.add(sc.Text())
		}
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	out.wait(t, regexp.MustCompile(`^demo mode`), 60*time.Second)
	for _, want := range []string{`^\s+staff alice: \S+\.\S+\.\S+$`, `^\s+admin root:\s+\S+\.\S+\.\S+$`} {
		out.wait(t, regexp.MustCompile(want), 5*time.Second)
	}
	wscat := out.wait(t, regexp.MustCompile(`^\s+(npx wscat .*)$`), 5*time.Second)[1]
	join := out.wait(t, regexp.MustCompile(`^\s+then type: (\{.*\})$`), 5*time.Second)[1]

	cmds, err := doccheck.ParseShell(wscat)
	if err != nil || len(cmds) != 1 {
		t.Fatalf("printed wscat line %q: %v", wscat, err)
	}
	var proto, header, url string
	for i, a := range cmds[0].Args[:len(cmds[0].Args)-1] {
		switch a {
		case "-s":
			proto = cmds[0].Args[i+1]
		case "-H":
			header = cmds[0].Args[i+1]
		case "-c":
			url = cmds[0].Args[i+1]
		}
	}
	name, value, ok := strings.Cut(header, ": ")
	if proto == "" || !ok || url == "" {
		t.Fatalf("printed wscat line %q: want -s, -H and -c", wscat)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	d := ws.Dialer{Protocols: []string{proto}, Header: ws.HandshakeHeaderHTTP(http.Header{name: {value}})}
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dialing as the printed wscat line does: %v", err)
	}
	defer nc.Close()
	// The frames the server sent right after the handshake may be in br.
	conn := io.ReadWriter(nc)
	if br != nil {
		conn = struct {
			io.Reader
			io.Writer
		}{br, nc}
	}
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	if err := wsutil.WriteClientText(conn, []byte(join)); err != nil {
		t.Fatal(err)
	}
	var welcome, replied, reading bool
	for !(welcome && replied && reading) {
		data, err := wsutil.ReadServerText(conn)
		if err != nil {
			t.Fatalf("reading (welcome %v, join reply %v, reading %v): %v", welcome, replied, reading, err)
		}
		var m struct {
			Type, Event, Room string
			ID                int
			OK                bool
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		switch {
		case m.Type == "welcome":
			welcome = true
		case m.Type == "reply" && m.ID == 1:
			if !m.OK {
				t.Fatalf("the printed join was refused: %s", data)
			}
			replied = true
		case m.Type == "event" && m.Event == "sensor:data" && m.Room == "device:1":
			reading = true
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM\n%s", out)
	}
	if !strings.Contains(out.String(), "shutting down") {
		t.Errorf("no shutdown line:\n%s", out)
	}
}
