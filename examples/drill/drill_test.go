package drill_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub/examples/drill"
	"github.com/org/rthub/internal/testenv"
	"go.uber.org/goleak"
)

// The drills at CI size: 1000 clients, ~12 s each. Bigger runs:
//
//	RTHUB_DRILL_CLIENTS=5000 RTHUB_DRILL_PHASE=30s go test -run Drill -v -timeout 30m .
//
// or go run ./cmd/drill (see its -help). Each test logs its results table
// (go test -v shows it). RTHUB_DRILL_KEEP=1 keeps the processes' logs (kept
// anyway on failure).

func TestDrillKill9(t *testing.T)          { runDrill(t, drill.Kill9) }
func TestDrillRollingRestart(t *testing.T) { runDrill(t, drill.RollingRestart) }
func TestDrillRedisRestart(t *testing.T)   { runDrill(t, drill.RedisRestart) }
func TestDrillRedisBlip(t *testing.T)      { runDrill(t, drill.RedisBlip) }
func TestDrillRevoke(t *testing.T)         { runDrill(t, drill.Revoke) }

var (
	buildOnce sync.Once
	bins      drill.Env // ServerBin, LoadBin
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		// Every client, publisher, hub and broker the tests started has stopped.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// env checks for redis-server and nginx (skipping, or failing under
// RTHUB_REQUIRE_SERVICES=1, without them), builds the binaries once, and
// returns an Env in a fresh directory.
func env(t *testing.T) *drill.Env {
	t.Helper()
	redis, nginx := needBinary(t, "redis-server"), needBinary(t, "nginx")
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "rthub-drill-bin-"); buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		buildErr = drill.Build(ctx, &bins, binDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	dir, err := os.MkdirTemp("", "rthub-drill-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("RTHUB_DRILL_KEEP") != "" {
			t.Logf("logs of the processes kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return &drill.Env{Dir: dir, ServerBin: bins.ServerBin, LoadBin: bins.LoadBin, RedisServer: redis, Nginx: nginx, Logf: t.Logf}
}

func needBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := drill.LookBinary(name)
	if err != nil {
		if testenv.Required() {
			t.Fatalf("%s=1 but %v", testenv.Require, err)
		}
		t.Skipf("%v (the drills need redis-server and nginx, from Debian's packages)", err)
	}
	return p
}

// config is the CI size, or what RTHUB_DRILL_CLIENTS and RTHUB_DRILL_PHASE say.
func config(t *testing.T) drill.Config {
	var cfg drill.Config
	if v := os.Getenv("RTHUB_DRILL_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("RTHUB_DRILL_CLIENTS=%q: %v", v, err)
		}
		cfg.Clients = n
	}
	if v := os.Getenv("RTHUB_DRILL_PHASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("RTHUB_DRILL_PHASE=%q: %v", v, err)
		}
		cfg.Phase = d
	}
	return cfg
}

type drillFunc func(context.Context, *drill.Env, drill.Config) (drill.Result, error)

// runDrill runs one drill, logs its table and checks the drill's guarantees
// (Result.Problems).
func runDrill(t *testing.T, fn drillFunc) {
	t.Helper()
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r, err := fn(ctx, e, config(t))
	if err != nil {
		t.Fatal(err)
	}
	table := drill.Table(r)
	t.Logf("results:\n%s", table)
	if r.Control != nil {
		t.Logf("control plane:\n%s", drill.ControlTable(r))
	}
	for _, n := range r.Notes {
		t.Logf("note: %s", n)
	}
	for _, p := range r.Problems() {
		t.Error(p)
	}
}

// TestBenchSmoke runs the multi-node benchmark at a tiny size, so that its
// harness keeps working; the real runs are "go run ./cmd/drill bench".
func TestBenchSmoke(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := drill.Bench(ctx, e, drill.BenchConfig{Nodes: 2, ConnsPerNode: 50, Rate: 5, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("results:\n%s", drill.BenchTable(r))
	if r.Conns != 100 || r.Broadcasts == 0 || r.Deliveries != r.Expected {
		t.Errorf("%d connections, %d broadcasts, %d of %d deliveries: want 100 connections and every delivery",
			r.Conns, r.Broadcasts, r.Deliveries, r.Expected)
	}
}
