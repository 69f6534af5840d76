package rthub

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestConformanceEcho_serve runs docs/conformance.md's "start the echo
// server" command bounded: this test binary re-run with -test.run
// TestConformanceEcho, RTHUB_ECHO_ADDR on a free loopback port and
// RTHUB_ECHO_FOR=3s instead of 30 minutes. The server it logs echoes a
// message, then the process logs its summary and exits 0.
func TestConformanceEcho_serve(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConformanceEcho$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), echoAddrEnv+"=127.0.0.1:0", echoForEnv+"=3s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { // ends at the process's exit (EOF)
		re := regexp.MustCompile(`echo server on (ws://\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		done <- cmd.Wait()
	}()
	var url string
	select {
	case url = <-addr:
	case err := <-done:
		t.Fatalf("exited before serving: %v\n%s", err, out.String())
	case <-time.After(30 * time.Second):
		t.Fatal("no echo server address logged within 30 s")
	}
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("autobahn ", 200) // over the compression threshold
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != msg {
		t.Fatalf("echo: %v, %d bytes", err, len(got))
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	select {
	case err := <-done:
		if err != nil || !strings.Contains(out.String(), "--- PASS: TestConformanceEcho") {
			t.Fatalf("exit %v:\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still serving 30 s after RTHUB_ECHO_FOR=3s:\n%s", out.String())
	}
}
