package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/org/rthub/internal/doccheck"
	"github.com/org/rthub/internal/testenv"
)

//go:generate env RTHUB_UPDATE_DOCS=1 go test -run=^TestDocs$ .

// TestDocs checks the examples module's Markdown (the loadtest and deploy
// READMEs): see internal/doccheck.
func TestDocs(t *testing.T) {
	doccheck.CheckModule(t)
}

// quickstartAddr is the quickstart's default ADDR (its TestDocs_commands
// checks that it still is): where a documented loadtest without -url goes.
const quickstartAddr = "127.0.0.1:8080"

// TestDocs_commands: every documented `go run ./examples/loadtest` (READMEs,
// docs/performance.md, load-tests/) parses, flags and environment, as the
// tool would parse it; and where the same block starts the quickstart, the
// tool's URL and secret are the server's.
func TestDocs_commands(t *testing.T) {
	servers := map[string]doccheck.Command{} // by file and block
	for _, c := range doccheck.GoRuns(t, "examples/quickstart") {
		servers[key(c)] = c
	}
	n := 0
	for _, c := range doccheck.GoRuns(t, "examples/loadtest") {
		n++
		get := c.Getenv(t)
		t.Setenv("JWT_SECRET", get("JWT_SECRET"))
		cfg, err := parseFlags(c.Args)
		if err != nil {
			t.Errorf("%s:%d: %s: %v", c.File, c.Line, c, err)
			continue
		}
		for _, k := range c.Assigned {
			if k != "JWT_SECRET" {
				t.Errorf("%s:%d: %s sets %s, which the tool does not read", c.File, c.Line, c, k)
			}
		}
		srv, ok := servers[key(c)]
		if !ok || cfg.printToken {
			continue
		}
		sget := srv.Getenv(t)
		addr := sget("ADDR")
		if addr == "" {
			addr = quickstartAddr
		}
		if u, err := url.Parse(cfg.URL); err != nil || u.Host != addr {
			t.Errorf("%s:%d: %s goes to %s, but the quickstart of line %d listens on %s", c.File, c.Line, c, cfg.URL, srv.Line, addr)
		}
		if s := sget("JWT_SECRET"); s != cfg.secret {
			t.Errorf("%s:%d: %s signs with %q, but the quickstart of line %d verifies with %q", c.File, c.Line, c, cfg.secret, srv.Line, s)
		}
	}
	t.Logf("%d documented loadtest commands", n)
}

// TestDocs_runs runs each documented pair of the quickstart and a fanout
// (the README's Reproduce block, docs/performance.md's latency block, this
// README's first block) bounded: the real quickstart program (built with go
// build) with the block's settings on a free port, then the tool with the
// block's flags and these overrides: -url (that port), -users 10, -duration
// 3s, -procs 0, and -min-delivery 50: the tool waits 1 s after the last
// publication, and on a loaded CI machine under the race detector the last
// event of such a short run may arrive later; the runs the docs report
// judge 99.9 %. Every verdict must pass. A chromium screenshot line in
// the block is run too, on the report just written (chromium is in CI; the
// step skips without it, fails under RTHUB_REQUIRE_SERVICES=1).
func TestDocs_runs(t *testing.T) {
	type pair struct {
		server doccheck.Command
		tools  []doccheck.Command
		shots  []doccheck.Command
	}
	var pairs []*pair
	byBlock := map[string]*pair{}
	for _, c := range doccheck.GoRuns(t, "examples/quickstart") {
		p := &pair{server: c}
		byBlock[key(c)] = p
		pairs = append(pairs, p)
	}
	for _, c := range doccheck.GoRuns(t, "examples/loadtest") {
		if p := byBlock[key(c)]; p != nil && scenario(c.Args) == "fanout" {
			p.tools = append(p.tools, c)
		}
	}
	for _, c := range doccheck.Commands(t) {
		if p := byBlock[key(c)]; p != nil && c.Args[0] == "chromium" {
			p.shots = append(p.shots, c)
		}
	}
	bin := filepath.Join(t.TempDir(), "quickstart")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./examples/quickstart")
	build.Dir = doccheck.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/quickstart: %v\n%s", err, out)
	}
	ran := 0
	for _, p := range pairs {
		if len(p.tools) == 0 {
			continue
		}
		ran++
		t.Run(strings.ReplaceAll(p.server.File, "/", "_"), func(t *testing.T) {
			t.Parallel()
			addr := startQuickstart(t, bin, p.server)
			out := filepath.Join(t.TempDir(), "out")
			for _, c := range p.tools {
				// The block's JWT_SECRET as -secret (what the tool falls back
				// to), so that the subtests can run in parallel.
				args := append(c.Args[:len(c.Args):len(c.Args)], "-secret", c.Getenv(t)("JWT_SECRET"),
					"-url", "ws://"+addr+"/ws", "-users", "10", "-duration", "3s", "-procs", "0", "-min-delivery", "50")
				cfg, err := parseFlags(args)
				if err != nil {
					t.Fatalf("%s:%d: %v", c.File, c.Line, err)
				}
				documentedOut := cfg.Out
				res, err := run(t.Context(), cfg, io.Discard)
				if err != nil {
					t.Fatalf("%s:%d: %s (bounded): %v", c.File, c.Line, c, err)
				}
				if !res.Pass {
					t.Errorf("%s:%d: %s (bounded): verdicts %+v", c.File, c.Line, c, res.Verdicts)
				}
				if documentedOut == "" {
					continue
				}
				if err := writeOutputs(out, res); err != nil {
					t.Fatal(err)
				}
				for _, s := range p.shots {
					screenshot(t, s, documentedOut, out)
				}
			}
		})
	}
	if ran == 0 {
		t.Fatal("no documented block starts the quickstart and runs a fanout: nothing was checked")
	}
}

// key identifies a command's block.
func key(c doccheck.Command) string { return fmt.Sprintf("%s:%d", c.File, c.Block) }

// scenario returns the -scenario of a command's arguments.
func scenario(args []string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "-scenario="); ok {
			return v
		}
		if a == "-scenario" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// startQuickstart starts the built quickstart with the documented command's
// variables and ADDR=127.0.0.1:0, and returns the address it listens on. It
// is stopped (SIGTERM, then waited for) when the test ends.
func startQuickstart(t *testing.T, bin string, c doccheck.Command) string {
	t.Helper()
	get := c.Getenv(t)
	cmd := exec.Command(bin)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); c.Env[k] == "" && k != "ADDR" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k := range c.Env {
		if k != "ADDR" {
			cmd.Env = append(cmd.Env, k+"="+get(k))
		}
	}
	cmd.Env = append(cmd.Env, "ADDR=127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	exited := make(chan error, 1)
	go func() { // ends at the process's exit (EOF)
		re := regexp.MustCompile(`listening on ws://(\S+)/ws`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("quickstart exit: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("quickstart still running 30 s after SIGTERM")
		}
	})
	select {
	case a := <-addr:
		return a
	case err := <-exited:
		exited <- err
		t.Fatalf("%s:%d: quickstart exited at start: %v\n%s", c.File, c.Line, err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("%s:%d: quickstart printed no address within 60 s\n%s", c.File, c.Line, stderr.String())
	}
	return ""
}

// screenshot runs a documented chromium line with the documented output
// directory replaced by out, and checks it wrote a PNG.
func screenshot(t *testing.T, c doccheck.Command, documentedOut, out string) {
	t.Helper()
	bin, err := exec.LookPath(c.Args[0])
	if err != nil {
		if testenv.Required() {
			t.Fatalf("%s=1 but %s is not installed (%s:%d)", testenv.Require, c.Args[0], c.File, c.Line)
		}
		t.Skipf("%s not installed: the screenshot line of %s:%d not run", c.Args[0], c.File, c.Line)
	}
	args := make([]string, len(c.Args)-1)
	png := ""
	for i, a := range c.Args[1:] {
		args[i] = strings.ReplaceAll(a, documentedOut, out)
		if v, ok := strings.CutPrefix(args[i], "--screenshot="); ok {
			png = v
		}
	}
	if png == "" || !strings.HasPrefix(png, out) {
		t.Fatalf("%s:%d: no --screenshot= under the report's directory %s", c.File, c.Line, documentedOut)
	}
	// Chromium's own files go to a home of its own.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s:%d: %s: %v\n%s", c.File, c.Line, c, err, o)
	}
	b, err := os.ReadFile(png)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("%s:%d: no PNG at %s (%v)", c.File, c.Line, png, err)
	}
}
