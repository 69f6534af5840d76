// Package js_test tests the npm package @rthub/client (this directory):
// its node tests against real hubs, its types, its size budget, the
// tarball npm pack makes, and the TypeScript blocks of its README. The
// tests need node and this directory's node_modules (npm ci here; .ci/run
// does it): without them they skip, and fail under
// RTHUB_REQUIRE_SERVICES=1. They never reach the network and write only to
// temporary directories.
package js_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub/internal/testenv"
	"go.uber.org/goleak"
)

// sizeBudget is the most the core (dist/index.min.js) may weigh gzipped.
const sizeBudget = 6 * 1024

var (
	buildDir  string // a temporary directory for the build, removed by TestMain
	buildOnce sync.Once
	buildErr  error
	buildOut  []byte
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rthub-js-")
	if err != nil {
		panic(err)
	}
	buildDir = dir
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// tools returns node and the package directory (absolute), or skips the
// test (fails it under RTHUB_REQUIRE_SERVICES=1) when node or the
// package's node_modules is missing.
func tools(t *testing.T) (node, dir string) {
	t.Helper()
	node = testenv.Tool(t, "node", "install Node.js ≥ 20 (Debian package nodejs)")
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"typescript", "esbuild"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", p)); err != nil {
			testenv.Missing(t, "%s has no node_modules/%s; to run this test: (cd %s && npm ci --no-audit --no-fund)", dir, p, dir)
		}
	}
	return node, dir
}

// built builds the package once (scripts/build.mjs) into a temporary
// directory and returns its dist directory.
func built(t *testing.T) string {
	t.Helper()
	node, dir := tools(t)
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "scripts/build.mjs", filepath.Join(buildDir, "dist"))
		cmd.Dir = dir
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("build: %v\n%s", buildErr, buildOut)
	}
	return filepath.Join(buildDir, "dist")
}

// run runs a command in dir for at most limit and fails the test, with
// its output, unless it exits 0. It returns the output.
func run(t *testing.T, dir string, env []string, limit time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestClient runs the node tests (test/*.test.mjs, node's test runner)
// against real hubs: a test server in this process serves a hub per test
// and a control API to publish, mint tokens, disconnect users, drop,
// freeze and restart hubs (see testServer).
func TestClient(t *testing.T) {
	node, dir := tools(t)
	dist := built(t)
	srv := startServer(t)
	files, err := filepath.Glob(filepath.Join(dir, "test", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no node tests in %s/test: %v", dir, err)
	}
	// The files run at once: most of their time is waiting (token expiries, backoffs).
	args := append([]string{"--test", "--test-reporter=spec", "--test-concurrency=" + strconv.Itoa(len(files))}, files...)
	out := run(t, dir, []string{
		"RTHUB_CTL=" + srv.ctlURL,
		"RTHUB_JS_DIST=" + dist,
		"NODE_OPTIONS=--experimental-websocket --no-warnings",
	}, 3*time.Minute, node, args...)
	t.Log(out)
	// Every test ran: a hub test skips only without RTHUB_CTL (set above),
	// so a skipped or todo test here is a bug of the test files.
	for _, re := range []string{`(?m)^ℹ pass [1-9]`, `(?m)^ℹ fail 0$`, `(?m)^ℹ skipped 0$`, `(?m)^ℹ todo 0$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Fatalf("node tests did not all pass (want a line matching %s):\n%s", re, out)
		}
	}
}

// TestSize checks the size budget of the core: dist/index.min.js, the
// whole bundle of the "." entry, minified and gzipped. It also fails while
// the READMEs state another size than the one it measures: this
// directory's the bytes and the KB, the repository's the KB.
func TestSize(t *testing.T) {
	dist := built(t)
	min, err := os.ReadFile(filepath.Join(dist, "index.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = zw.Write(min)
	_ = zw.Close()
	t.Logf("core: %d bytes minified, %d bytes minified + gzipped (budget %d)", len(min), b.Len(), sizeBudget)
	if b.Len() > sizeBudget {
		t.Fatalf("core is %d bytes minified + gzipped, over the budget of %d", b.Len(), sizeBudget)
	}
	kb := strconv.FormatFloat(float64(b.Len())/1024, 'f', 1, 64) + " KB minified"
	for _, doc := range []struct{ file, want string }{
		{"README.md", kb},
		{"README.md", "(" + thousands(b.Len()) + " B, budget 6 KB"},
		{filepath.Join("..", "..", "README.md"), "core " + kb},
	} {
		text, err := os.ReadFile(doc.file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(strings.Fields(string(text)), " "), doc.want) {
			t.Errorf("%s does not say %q: state the size this test measures, with its command and date", doc.file, doc.want)
		}
	}
}

// thousands formats n with a comma between groups of three digits, as the
// docs write numbers (5,629).
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestTypes runs tsc --noEmit over the sources (strict) and over the type
// tests (test/tsconfig.json): test/types.test-d.ts must compile, and each
// of its @ts-expect-error lines (a misspelt event, a wrong payload field,
// a room outside the contract) must be an error, or tsc fails. It also
// compiles the golden declarations of package contract
// (contract/testdata/*.d.ts: recursive and anonymous types, RPCs), which
// the IoT example's contract (checked by TestPack) does not all have.
func TestTypes(t *testing.T) {
	node, dir := tools(t)
	tsc := filepath.Join(dir, "node_modules", "typescript", "bin", "tsc")
	run(t, dir, nil, time.Minute, node, tsc, "--noEmit", "-p", "tsconfig.json")
	run(t, dir, nil, time.Minute, node, tsc, "--noEmit", "-p", "test/tsconfig.json")
	golden, err := filepath.Glob(filepath.Join(dir, "..", "..", "contract", "testdata", "*.d.ts"))
	if err != nil || len(golden) < 2 {
		t.Fatalf("contract/testdata/*.d.ts: %v %v", golden, err)
	}
	run(t, dir, nil, time.Minute, node, append([]string{tsc, "--ignoreConfig", "--noEmit", "--strict", "--target", "es2022", "--lib", "es2022", "--types", ""}, golden...)...)
}
