package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/redisbroker"
	"github.com/redis/rueidis"
)

// Cluster is a drill's servers: a private Redis, the hub nodes, and nginx in
// front of them.
type Cluster struct {
	env     *Env
	Redis   *Redis
	Nodes   []*Node
	Nginx   *Nginx
	Targets []*Target // the nodes, for the publisher
	Secret  []byte
}

// ClusterOptions configures [StartCluster].
type ClusterOptions struct {
	Nodes       int           // default 3
	DrainWindow time.Duration // the nodes' -drain; default 5 s
	HistorySize int           // the nodes' -history; 0: the broker's default (100)
	// NoNginx leaves nginx out (the benchmark connects to the nodes).
	NoNginx bool
	// HTTPStream enables the nodes' HTTP stream transport (-http-stream).
	HTTPStream bool
	// Origins are extra browser origins the nodes allow (-origin).
	Origins []string
}

// StartCluster starts redis-server, the nodes and nginx, each on a free port.
func StartCluster(ctx context.Context, env *Env, opts ClusterOptions) (cl *Cluster, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.DrainWindow == 0 {
		opts.DrainWindow = 5 * time.Second
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	cl = &Cluster{env: env, Secret: []byte(hex.EncodeToString(secret))}
	defer func() {
		if err != nil {
			cl.Close()
		}
	}()
	if cl.Redis, err = StartRedis(ctx, env); err != nil {
		return cl, err
	}
	var addrs []string
	for i := range opts.Nodes {
		n := &Node{env: env, ID: fmt.Sprintf("n%d", i+1), args: []string{
			"-redis", cl.Redis.URL(), "-prefix", "drill:", "-secret", string(cl.Secret),
			"-drain", opts.DrainWindow.String(), "-history", strconv.Itoa(opts.HistorySize),
			"-http-stream=" + strconv.FormatBool(opts.HTTPStream), "-origin", strings.Join(opts.Origins, ","),
		}}
		cl.Nodes = append(cl.Nodes, n)
		err := onFreePort(func(port int) (bool, error) {
			n.Port = port
			err := n.start(ctx)
			return err != nil && n.p != nil && n.p.exited(), err
		})
		if err != nil {
			return cl, err
		}
		addrs = append(addrs, n.Addr())
		cl.Targets = append(cl.Targets, &Target{Addr: n.Addr()})
	}
	lb := "no nginx"
	if !opts.NoNginx {
		if cl.Nginx, err = StartNginx(ctx, env, addrs); err != nil {
			return cl, err
		}
		lb = fmt.Sprintf("nginx :%d", cl.Nginx.Port)
	}
	env.logf("cluster: redis-server :%d, nodes %s, %s (logs in %s)", cl.Redis.Port, strings.Join(addrs, " "), lb, env.Dir)
	return cl, nil
}

// Close kills every process of the cluster.
func (cl *Cluster) Close() {
	if cl.Nginx != nil {
		cl.Nginx.Stop()
	}
	for _, n := range cl.Nodes {
		if n.Running() {
			n.Kill9()
		}
	}
	if cl.Redis != nil {
		cl.Redis.Kill()
	}
}

// Restart starts node n again (same ID, same port) and waits until it is
// healthy.
func (cl *Cluster) Restart(ctx context.Context, n *Node) error { return n.start(ctx) }

// NodeStats is the part of a node's GET /stats the drills read.
type NodeStats struct {
	Node   string            `json:"node"`
	Hub    rthub.Stats       `json:"hub"`
	Broker redisbroker.Stats `json:"broker"`
}

// Stats returns the stats of every running node.
func (cl *Cluster) Stats(ctx context.Context) ([]NodeStats, error) {
	var out []NodeStats
	hc := http.Client{Timeout: 5 * time.Second}
	for _, n := range cl.Nodes {
		if !n.Running() {
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Addr()+"/stats", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return out, fmt.Errorf("node %s stats: %w", n.ID, err)
		}
		var st NodeStats
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil {
			return out, fmt.Errorf("node %s stats: %w", n.ID, err)
		}
		out = append(out, st)
	}
	return out, nil
}

// KillRedisClients kills, with CLIENT KILL, every connection the node
// nodeID has to Redis (they are named rthub-<nodeID>): the network blip of
// drill 4. It returns how many it killed.
func (cl *Cluster) KillRedisClients(ctx context.Context, nodeID string) (int, error) {
	c, err := cl.admin()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ids, err := clientIDs(ctx, c, "rthub-"+nodeID)
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := c.Do(ctx, c.B().ClientKill().Id(id).Build()).Error(); err != nil {
			return 0, fmt.Errorf("CLIENT KILL ID %d: %w", id, err)
		}
	}
	return len(ids), nil
}

// clientIDs lists the IDs of the connections called name.
func clientIDs(ctx context.Context, c rueidis.Client, name string) ([]int64, error) {
	list, err := c.Do(ctx, c.B().ClientList().Build()).ToString()
	if err != nil {
		return nil, fmt.Errorf("CLIENT LIST: %w", err)
	}
	var ids []int64
	for line := range strings.SplitSeq(strings.TrimPrefix(list, "txt:"), "\n") {
		var id int64
		var named bool
		for kv := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "id":
				id, _ = strconv.ParseInt(v, 10, 64)
			case "name":
				named = v == name
			}
		}
		if named && id > 0 {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// RedisCPU returns the CPU seconds (user + system) redis-server has used.
func (cl *Cluster) RedisCPU(ctx context.Context) (float64, error) {
	c, err := cl.admin()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return redisCPU(ctx, c)
}

func redisCPU(ctx context.Context, c rueidis.Client) (float64, error) {
	info, err := c.Do(ctx, c.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		return 0, err
	}
	var sum float64
	var n int
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, err
			}
			sum += f
			n++
		}
	}
	if n != 2 {
		return 0, errors.New("INFO cpu: used_cpu_user/used_cpu_sys not found")
	}
	return sum, nil
}

func (cl *Cluster) admin() (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(cl.Redis.URL())
	if err != nil {
		return nil, err
	}
	opt.DisableCache = true
	opt.ClientName = "drill-admin"
	return rueidis.NewClient(opt)
}
