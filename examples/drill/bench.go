package drill

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BenchConfig sizes the multi-node benchmark. Zero fields take the defaults.
type BenchConfig struct {
	Nodes        int           // hub nodes, one Redis; default 5
	ConnsPerNode int           // connections per node (≤ 19,000 with a 20,000 fd limit); default 1000
	Rate         float64       // broadcasts per second to "bcast" (every connection); default 1
	Duration     time.Duration // publishing time; default 10 s
	Payload      int           // bytes of padding in each event's data; default 100
}

func (c *BenchConfig) fill() {
	if c.Nodes == 0 {
		c.Nodes = 5
	}
	if c.ConnsPerNode == 0 {
		c.ConnsPerNode = 1000
	}
	if c.Rate == 0 {
		c.Rate = 1
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Payload == 0 {
		c.Payload = 100
	}
}

// BenchResult is what the benchmark measured.
type BenchResult struct {
	Config       BenchConfig
	Conns        int     // connections up when publishing started
	Broadcasts   int     // publications accepted
	Deliveries   int64   // events the connections received
	Expected     int64   // Broadcasts × Conns
	PerSecond    float64 // Deliveries / delivery time (first to last arrival)
	P50, P99     time.Duration
	Max          time.Duration
	Mean         time.Duration
	ConnectTime  time.Duration // to open every connection
	RedisCPU     float64       // CPU seconds redis-server used while publishing
	NodesCPU     float64       // CPU seconds the hub nodes used while publishing
	LoadCPU      float64       // CPU seconds the load processes used while publishing
	NodeRSS      []int64       // resident memory of each node at the end, bytes
	PubErrors    int64
	LoadFailures int64 // connections that could not be opened
}

// loadLine is the drillload worker's first line.
type loadLine struct {
	Connected int64  `json:"connected"`
	Failed    int64  `json:"failed"`
	LastError string `json:"last_error"`
}

// loadReport is drillload's final line.
type loadReport struct {
	Conns      int      `json:"conns"`
	Closed     int64    `json:"closed"`
	Deliveries int64    `json:"deliveries"`
	Buckets    []uint64 `json:"buckets"`
	MaxNanos   int64    `json:"max_nanos"`
	SumNanos   int64    `json:"sum_nanos"`
	FirstNanos int64    `json:"first_nanos"`
	LastNanos  int64    `json:"last_nanos"`
}

// bucketBound is the upper bound of drillload's latency bucket i.
func bucketBound(i int) time.Duration {
	return time.Duration(float64(50*time.Microsecond) * math.Pow(1.25, float64(i)))
}

// Bench runs the multi-node broadcast benchmark: Nodes drillserver processes
// on one private Redis, one drillload process per node holding ConnsPerNode
// connections to it directly (no nginx: it would need two descriptors per
// connection), and a publisher broadcasting to "bcast", which every
// connection is in. Latency is from the publisher's POST to the arrival at
// the client.
func Bench(ctx context.Context, env *Env, cfg BenchConfig) (BenchResult, error) {
	cfg.fill()
	res := BenchResult{Config: cfg}
	cl, err := StartCluster(ctx, env, ClusterOptions{Nodes: cfg.Nodes, NoNginx: true})
	if err != nil {
		return res, err
	}
	defer cl.Close()

	var ws []*proc
	defer func() {
		for _, w := range ws {
			w.kill()
		}
	}()
	start := time.Now()
	for i, n := range cl.Nodes {
		p, err := startProcLines(fmt.Sprintf("load %d", i+1), filepath.Join(env.Dir, fmt.Sprintf("load-%d.log", i+1)),
			env.LoadBin, "-url", "ws://"+n.Addr()+"/ws", "-conns", strconv.Itoa(cfg.ConnsPerNode),
			"-secret", string(cl.Secret), "-name", fmt.Sprintf("w%d", i+1))
		if err != nil {
			return res, err
		}
		ws = append(ws, p)
	}
	for i, w := range ws {
		var first loadLine
		if err := readLine(ctx, w, 10*time.Minute, &first); err != nil {
			return res, fmt.Errorf("load %d: %w", i+1, err)
		}
		res.Conns += int(first.Connected)
		res.LoadFailures += first.Failed
		if first.Failed > 0 {
			env.logf("load %d: %d connections failed, last: %s", i+1, first.Failed, first.LastError)
		}
	}
	res.ConnectTime = time.Since(start)
	env.logf("bench: %d connections up in %v", res.Conns, res.ConnectTime.Round(time.Millisecond))

	tok, err := Token(cl.Secret, "publisher", "publisher")
	if err != nil {
		return res, err
	}
	cpu0, err := cl.RedisCPU(ctx)
	if err != nil {
		return res, err
	}
	nodes0, load0 := procCPU(cl.nodePids()...), procCPU(workerPids(ws)...)
	pub := StartPublisher(PublisherOptions{Targets: cl.Targets, Token: tok, Rates: map[string]float64{BroadcastRoom: cfg.Rate}, Pad: cfg.Payload})
	err = sleep(ctx, cfg.Duration)
	pub.Stop()
	if err != nil {
		return res, err
	}
	_ = sleep(ctx, 2*time.Second) // deliveries in flight
	cpu1, err := cl.RedisCPU(ctx)
	if err != nil {
		return res, err
	}
	res.RedisCPU = cpu1 - cpu0
	res.NodesCPU = procCPU(cl.nodePids()...) - nodes0
	res.LoadCPU = procCPU(workerPids(ws)...) - load0
	for _, pid := range cl.nodePids() {
		res.NodeRSS = append(res.NodeRSS, procRSS(pid))
	}
	res.Broadcasts = len(pub.Accepted()[BroadcastRoom])
	res.PubErrors = pub.Errors()
	res.Expected = int64(res.Broadcasts) * int64(res.Conns)

	buckets := make([]uint64, 64)
	var sum, maxN, first, last int64
	for i, w := range ws {
		_ = w.signal(syscall.SIGTERM)
		var rep loadReport
		if err := readLine(ctx, w, 60*time.Second, &rep); err != nil {
			return res, fmt.Errorf("load %d: %w", i+1, err)
		}
		res.Deliveries += rep.Deliveries
		for j, n := range rep.Buckets {
			buckets[j] += n
		}
		sum += rep.SumNanos
		maxN = max(maxN, rep.MaxNanos)
		if rep.FirstNanos != 0 && (first == 0 || rep.FirstNanos < first) {
			first = rep.FirstNanos
		}
		last = max(last, rep.LastNanos)
	}
	if res.Deliveries > 0 {
		res.Mean = time.Duration(sum / res.Deliveries)
		res.Max = time.Duration(maxN)
		res.P50, res.P99 = min(quantile(buckets, 0.5), res.Max), min(quantile(buckets, 0.99), res.Max)
		if span := time.Duration(last - first); span > 0 {
			res.PerSecond = float64(res.Deliveries) / span.Seconds()
		}
	}
	return res, nil
}

// quantile returns the upper bound of the bucket holding the q-quantile
// (buckets are 25 % wide: the true value is at most that much lower).
func quantile(buckets []uint64, q float64) time.Duration {
	var total uint64
	for _, n := range buckets {
		total += n
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var cum uint64
	for i, n := range buckets {
		cum += n
		if cum >= rank {
			return bucketBound(i)
		}
	}
	return bucketBound(len(buckets) - 1)
}

func (cl *Cluster) nodePids() []int {
	var out []int
	for _, n := range cl.Nodes {
		if n.Running() {
			out = append(out, n.Pid())
		}
	}
	return out
}

func workerPids(ws []*proc) []int {
	out := make([]int, len(ws))
	for i, w := range ws {
		out[i] = w.pid()
	}
	return out
}

// procCPU returns the CPU seconds (user + system) the processes used.
func procCPU(pids ...int) float64 {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			k, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + k
		}
	}
	return float64(ticks) / 100 // USER_HZ
}

// procRSS returns a process's resident memory in bytes.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// BenchTable formats a benchmark result as a Markdown table row with header.
func BenchTable(r BenchResult) string {
	var b strings.Builder
	b.WriteString("| nodes × conns | connections | broadcasts/s | broadcasts | deliveries | of expected | deliveries/s | p50 | p99 | max | Redis CPU | nodes CPU | load CPU | node RSS | connect time |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var rss []string
	for _, n := range r.NodeRSS {
		rss = append(rss, fmt.Sprintf("%d", n>>20))
	}
	pct := 0.0
	if r.Expected > 0 {
		pct = 100 * float64(r.Deliveries) / float64(r.Expected)
	}
	fmt.Fprintf(&b, "| %d × %d | %d | %g | %d | %d | %.2f %% | %.0f | %s | %s | %s | %.2f s | %.1f s | %.1f s | %s MiB | %v |\n",
		r.Config.Nodes, r.Config.ConnsPerNode, r.Conns, r.Config.Rate, r.Broadcasts, r.Deliveries, pct, r.PerSecond,
		msf(r.P50), msf(r.P99), msf(r.Max), r.RedisCPU, r.NodesCPU, r.LoadCPU, strings.Join(rss, "/"), r.ConnectTime.Round(time.Second))
	return b.String()
}

// msf formats d in milliseconds with one decimal.
func msf(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
