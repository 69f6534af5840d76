package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// RunScript runs a node script (a playwright-core driver, say) in dir with
// env added to the test's environment, for at most limit. Each line the
// script prints is logged and passed to on; a non-empty answer is written
// back, with a newline, to the script's stdin (its requests to the test:
// restart the server, publish). The error is non-nil unless the script
// printed a line PASS and exited 0; stderr is what it wrote there.
func RunScript(t testing.TB, node, dir, script string, env []string, limit time.Duration, on func(line string) string) (stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	var errBuf lockedBuffer
	cmd.Stderr = &errBuf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	passed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		passed = passed || line == "PASS"
		if answer := on(line); answer != "" {
			_, _ = stdin.Write([]byte(answer + "\n"))
		}
	}
	err = cmd.Wait() // stderr is complete once Wait returns
	if err == nil && !passed {
		err = errors.New("the script did not print PASS")
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", script, err)
	}
	return errBuf.String(), err
}

// lockedBuffer is a strings.Builder safe for the writer goroutine exec
// starts and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
