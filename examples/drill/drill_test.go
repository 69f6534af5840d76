package drill_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/org/rthub/examples/drill"
	"github.com/org/rthub/internal/testenv"
)

// The drills at CI size: 1000 clients, ~12 s each. Bigger runs:
//
//	RTHUB_DRILL_CLIENTS=5000 RTHUB_DRILL_PHASE=30s go test -run Drill -v -timeout 30m .
//
// or go run ./cmd/drill (see its -help). RTHUB_DRILL_REPORT=<file> appends
// each drill's results table to the file (.ci/run prints it);
// RTHUB_DRILL_KEEP=1 keeps the processes' logs (kept anyway on failure).

func TestDrillKill9(t *testing.T) {
	r := runDrill(t, drill.Kill9)
	noLoss(t, r)
	if r.Drops == 0 {
		t.Error("no client lost its connection: the kill had no effect")
	}
}

func TestDrillRollingRestart(t *testing.T) {
	r := runDrill(t, drill.RollingRestart)
	noLoss(t, r)
	if len(r.Steps) != 3 {
		t.Errorf("%d restart steps, want 3", len(r.Steps))
	}
	for i, d := range r.Steps {
		if d > 30*time.Second {
			t.Errorf("restart of node %d: clients all back after %v, want within 30 s", i+1, d)
		}
	}
	if m := r.Max(); m > 30*time.Second {
		t.Errorf("a client was away %v, want at most 30 s", m)
	}
	if r.Drops < r.Clients {
		t.Errorf("%d connections drained for %d clients: every node's clients should have moved", r.Drops, r.Clients)
	}
}

func TestDrillRedisRestart(t *testing.T) {
	r := runDrill(t, drill.RedisRestart)
	// History is gone: resets are expected, silent loss is not.
	if r.Lost != 0 || r.Stuck != 0 {
		t.Errorf("%d publications lost without a reset, %d client rooms stuck", r.Lost, r.Stuck)
	}
	if r.Dup != 0 || r.OutOfOrder != 0 {
		t.Errorf("%d duplicated, %d out of order", r.Dup, r.OutOfOrder)
	}
	if r.Resets == 0 {
		t.Error("no client was told to reset although Redis lost every stream")
	}
}

func TestDrillRedisBlip(t *testing.T) {
	r := runDrill(t, drill.RedisBlip)
	noLoss(t, r)
	if r.Server.Resubscribes == 0 {
		t.Error("no node resubscribed after the CLIENT KILL")
	}
	if r.Server.GapsRecovered == 0 {
		t.Error("the node filled no gap from history: the blip missed nothing, so it tested nothing")
	}
}

// noLoss asserts the guarantee of drills 1, 2 and 4: every publication exactly
// once, in order, and no reset (history covered every gap).
func noLoss(t *testing.T, r drill.Result) {
	t.Helper()
	if r.Lost != 0 || r.Dup != 0 || r.OutOfOrder != 0 || r.Stuck != 0 {
		t.Errorf("lost %d, duplicated %d, out of order %d, stuck %d: want 0 each", r.Lost, r.Dup, r.OutOfOrder, r.Stuck)
	}
	if r.Resets != 0 || r.Reported != 0 {
		t.Errorf("%d resets (%d publications reported missed): history should have covered every gap", r.Resets, r.Reported)
	}
	if r.Received == 0 || r.Deliveries == 0 {
		t.Errorf("nothing delivered (%d of %d)", r.Received, r.Deliveries)
	}
}

var (
	buildOnce sync.Once
	serverBin string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// env checks for redis-server and nginx (skipping, or failing under
// RTHUB_REQUIRE_SERVICES=1, without them), builds drillserver once, and
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
		serverBin, buildErr = drill.BuildServer(ctx, binDir)
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
	return &drill.Env{Dir: dir, ServerBin: serverBin, RedisServer: redis, Nginx: nginx, Logf: t.Logf}
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

// runDrill runs one drill, logs its table and appends it to
// RTHUB_DRILL_REPORT; it fails t if the drill could not run.
func runDrill(t *testing.T, fn drillFunc) drill.Result {
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
	for _, n := range r.Notes {
		t.Logf("note: %s", n)
	}
	if path := os.Getenv("RTHUB_DRILL_REPORT"); path != "" {
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			_, _ = f.WriteString(table)
			f.Close()
		}
	}
	return r
}
