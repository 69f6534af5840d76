package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/org/rthub/internal/testenv"
)

// vendoredClient is the build of @rthub/client (clients/js) the dashboard
// imports, committed so that the binary serves it with no Node at run
// time; refreshCmd (from the repository root) rewrites it.
const (
	vendoredClient = "web/vendor/rthub-client.js"
	refreshCmd     = "node clients/js/scripts/vendor.mjs examples/iotserver/web/vendor/rthub-client.js"
)

// jsTools returns node and the absolute path of clients/js with its
// node_modules (esbuild, typescript), or skips the test (fails it under
// RTHUB_REQUIRE_SERVICES=1) when either is missing: tests never install
// anything (.ci/run runs npm ci in clients/js).
func jsTools(t *testing.T) (node, pkg string) {
	t.Helper()
	node = need(t, "node", "Node.js builds and type-checks the browser client")
	pkg, err := filepath.Abs(filepath.Join("..", "..", "clients", "js"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"esbuild", "typescript"} {
		if _, err := os.Stat(filepath.Join(pkg, "node_modules", p)); err != nil {
			testenv.Missing(t, "%s has no node_modules/%s; to run this test: (cd %s && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)", pkg, p, pkg)
		}
	}
	return node, pkg
}

// TestVendoredClient rebuilds @rthub/client into a temporary file the way
// refreshCmd does and fails while the committed web/vendor/rthub-client.js
// differs: the dashboard always serves the package as its source builds.
func TestVendoredClient(t *testing.T) {
	t.Parallel()
	node, pkg := jsTools(t)
	out := filepath.Join(t.TempDir(), "rthub-client.js")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(pkg, "scripts", "vendor.mjs"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(vendoredClient)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale (clients/js changed since it was built); from the repository root run:\n\t%s", vendoredClient, refreshCmd)
	}
}

// TestDashboardTypes type-checks the dashboard (web/*.js, // @ts-check)
// against the package's types and the generated contract
// (contract/contract.d.ts) with tsc --noEmit -p tsconfig.json (the
// TypeScript of clients/js): a call the client does not have, an event or
// room the contract does not know, or a wrong alert:ack payload fails.
func TestDashboardTypes(t *testing.T) {
	t.Parallel()
	node, pkg := jsTools(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(pkg, "node_modules", "typescript", "bin", "tsc"), "--noEmit", "-p", "tsconfig.json")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc -p tsconfig.json: %v\n%s", err, b)
	}
}
