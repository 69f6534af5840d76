// Command drill runs the failover drills and the multi-node benchmark of
// rthub on Redis at any size (the tests run them at CI size). Run it from
// examples/drill: it builds cmd/drillserver and cmd/drillload with "go
// build". It needs redis-server and nginx (Debian: apt-get install
// redis-server nginx); every process it starts is its own, on free ports,
// and is stopped at the end.
//
//	go run ./cmd/drill all                          # the five drills, CI size
//	go run ./cmd/drill -clients 5000 -phase 30s all # bigger
//	go run ./cmd/drill kill9                        # one: kill9, rolling, redis-restart, blip, revoke
//	go run ./cmd/drill bench -nodes 5 -conns 19000 -rate 1 -duration 30s
//
// It prints a Markdown table of the results and exits 1 if a drill broke
// its guarantees (see drill.Result.Problems).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/org/rthub/examples/drill"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "drill:", err)
		os.Exit(1)
	}
}

// options is what the command line asks for.
type options struct {
	cmd  string // kill9, rolling, redis-restart, blip, revoke, all or bench
	cfg  drill.Config
	bcfg drill.BenchConfig
	keep bool
}

// parseArgs parses the command line (flags before or after the command);
// -help gives flag.ErrHelp.
func parseArgs(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: drill [flags] kill9|rolling|redis-restart|blip|revoke|all\n       drill bench [flags]")
		fs.PrintDefaults()
	}
	fs.IntVar(&o.cfg.Clients, "clients", 1000, "drills: clients, through nginx")
	fs.IntVar(&o.cfg.Rooms, "rooms", 20, "drills: rooms room:<i>, one per client besides bcast")
	fs.Float64Var(&o.cfg.BroadcastRate, "bcast-rate", 5, "drills: events/s to bcast (every client)")
	fs.Float64Var(&o.cfg.RoomRate, "room-rate", 2, "drills: events/s to each room:<i>")
	fs.DurationVar(&o.cfg.Phase, "phase", 3*time.Second, "drills: publishing time before the fault and after recovery")
	fs.DurationVar(&o.cfg.DrainWindow, "drain", 2*time.Second, "drills: the nodes' graceful-shutdown spread")
	fs.DurationVar(&o.cfg.RedisDown, "redis-down", time.Second, "redis-restart: time Redis stays down")
	fs.DurationVar(&o.cfg.BlipFor, "blip", time.Second, "blip: how long the node's Redis connections keep being killed")
	fs.IntVar(&o.bcfg.Nodes, "nodes", 5, "bench: hub nodes")
	fs.IntVar(&o.bcfg.ConnsPerNode, "conns", 1000, "bench: connections per node (at most 19,000 under a 20,000 fd limit)")
	fs.Float64Var(&o.bcfg.Rate, "rate", 1, "bench: broadcasts/s to every connection")
	fs.DurationVar(&o.bcfg.Duration, "duration", 10*time.Second, "bench: publishing time")
	fs.IntVar(&o.bcfg.Payload, "payload", 100, "bench: padding bytes per event")
	fs.BoolVar(&o.keep, "keep", false, "keep the processes' logs (the directory is printed)")
	// Flags may come before or after the command.
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		o.cmd = fs.Arg(0)
		err = fs.Parse(fs.Args()[1:])
	}
	if err != nil {
		return o, err
	}
	if o.cmd == "" || fs.NArg() != 0 {
		fs.Usage()
		return o, errors.New("want one command")
	}
	if o.cmd != "bench" && o.cmd != "all" && drills[o.cmd] == nil {
		fs.Usage()
		return o, fmt.Errorf("unknown command %q", o.cmd)
	}
	return o, nil
}

// drills are the commands that run one drill.
var drills = map[string]func(context.Context, *drill.Env, drill.Config) (drill.Result, error){
	"kill9": drill.Kill9, "rolling": drill.RollingRestart, "redis-restart": drill.RedisRestart, "blip": drill.RedisBlip,
	"revoke": drill.Revoke,
}

func run(args []string) error {
	o, err := parseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	cmd, cfg, bcfg := o.cmd, o.cfg, o.bcfg
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var env drill.Env
	if env.RedisServer, err = drill.LookBinary("redis-server"); err != nil {
		return err
	}
	if cmd != "bench" {
		if env.Nginx, err = drill.LookBinary("nginx"); err != nil {
			return err
		}
	}
	if env.Dir, err = os.MkdirTemp("", "rthub-drill-"); err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "logs in", env.Dir)
	} else {
		defer os.RemoveAll(env.Dir)
	}
	env.Logf = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	if err := drill.Build(ctx, &env, env.Dir); err != nil {
		return err
	}

	if cmd == "bench" {
		r, err := drill.Bench(ctx, &env, bcfg)
		if err != nil {
			return err
		}
		fmt.Print(drill.BenchTable(r))
		return nil
	}
	names := []string{cmd}
	if cmd == "all" {
		names = []string{"kill9", "rolling", "redis-restart", "blip", "revoke"}
	}
	var results []drill.Result
	failed := false
	for _, name := range names {
		r, err := drills[name](ctx, &env, cfg)
		if err != nil {
			return err
		}
		results = append(results, r)
		for _, n := range r.Notes {
			env.Logf("note: %s", n)
		}
		for _, p := range r.Problems() {
			env.Logf("FAIL %s: %s", r.Drill, p)
			failed = true
		}
	}
	fmt.Print(drill.Table(results...))
	if ct := drill.ControlTable(results...); strings.Count(ct, "\n") > 2 {
		fmt.Print("\n" + ct)
	}
	if failed {
		return errors.New("a drill broke its guarantees (FAIL lines above)")
	}
	return nil
}
