package drill

import (
	"context"
	_ "embed"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// NginxSite is deploy/nginx-rthub.conf: the load balancer configuration the
// drills run, as shipped for users.
//
//go:embed deploy/nginx-rthub.conf
var NginxSite string

var (
	upstreamLine = regexp.MustCompile(`(?m)^(\s*)server 127\.0\.0\.1:\d+ (.*)$`)
	listenLine   = regexp.MustCompile(`(?m)^(\s*)listen \d+;$`)
)

// RenderSite returns NginxSite with the upstream servers replaced by nodes
// (host:port each) and the listen port by listen. It fails unless the file
// has exactly three upstream server lines and one listen line, so that the
// shipped file and the drill cannot drift apart unnoticed.
func RenderSite(nodes []string, listen int) (string, error) {
	lines := upstreamLine.FindAllStringSubmatchIndex(NginxSite, -1)
	if len(lines) != 3 || len(listenLine.FindAllString(NginxSite, -1)) != 1 {
		return "", fmt.Errorf("deploy/nginx-rthub.conf: want 3 upstream server lines and 1 listen line, have %d and %d",
			len(lines), len(listenLine.FindAllString(NginxSite, -1)))
	}
	// Replace the block of server lines with one line per node.
	first, last := lines[0], lines[len(lines)-1]
	indent := NginxSite[first[2]:first[3]]
	params := NginxSite[first[4]:first[5]]
	var b strings.Builder
	for i, n := range nodes {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%sserver %s %s", indent, n, params)
	}
	site := NginxSite[:first[0]] + b.String() + NginxSite[last[1]:]
	site = listenLine.ReplaceAllString(site, fmt.Sprintf("${1}listen 127.0.0.1:%d;", listen))
	return site, nil
}

// mainConf wraps the site in a main configuration whose files all live in
// the scratch directory.
func mainConf(dir string) string {
	user := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody and could not use the scratch directory.
		user = "user root;\n"
	}
	return fmt.Sprintf(`%sworker_processes 2;
worker_rlimit_nofile 20000;
daemon off;
master_process on;
pid %[2]s/nginx.pid;
error_log %[2]s/nginx-error.log warn;
events { worker_connections 19000; }
http {
    access_log off;
    client_body_temp_path %[2]s/nginx-tmp/body;
    proxy_temp_path %[2]s/nginx-tmp/proxy;
    fastcgi_temp_path %[2]s/nginx-tmp/fastcgi;
    uwsgi_temp_path %[2]s/nginx-tmp/uwsgi;
    scgi_temp_path %[2]s/nginx-tmp/scgi;
    include %[2]s/nginx-site.conf;
}
`, user, dir)
}

// Nginx is a private nginx process balancing over the nodes.
type Nginx struct {
	Port int
	p    *proc
}

// StartNginx writes the configuration for nodes (host:port each) into
// env.Dir and starts nginx on a free port.
func StartNginx(ctx context.Context, env *Env, nodes []string) (*Nginx, error) {
	n := &Nginx{}
	err := onFreePort(func(port int) (bool, error) {
		n.Port = port
		var err error
		n.p, err = startNginx(ctx, env, nodes, port)
		return err != nil && n.p != nil, err // on failure, n.p is set only if nginx exited by itself
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

// startNginx starts nginx on port; on failure it returns the process too if
// it exited by itself.
func startNginx(ctx context.Context, env *Env, nodes []string, port int) (*proc, error) {
	site, err := RenderSite(nodes, port)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(env.Dir, "nginx-tmp"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(env.Dir, "nginx.conf")
	if err := os.WriteFile(filepath.Join(env.Dir, "nginx-site.conf"), []byte(site), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(conf, []byte(mainConf(env.Dir)), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc("nginx", filepath.Join(env.Dir, "nginx.log"), env.Nginx,
		"-p", env.Dir, "-c", conf, "-e", filepath.Join(env.Dir, "nginx-error.log"))
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	err = waitFor(ctx, 10*time.Second, "nginx listening on "+addr, func() bool {
		if p.exited() {
			return true
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err == nil && p.exited() {
		b, _ := os.ReadFile(filepath.Join(env.Dir, "nginx-error.log"))
		return p, fmt.Errorf("nginx exited at start: %v\n%s%s", p.err, p.tail(2000), b)
	}
	if err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// URL is the WebSocket URL of the hub behind nginx.
func (n *Nginx) URL() string { return fmt.Sprintf("ws://127.0.0.1:%d/ws", n.Port) }

// Stop stops nginx (SIGTERM: fast shutdown) and waits for it.
func (n *Nginx) Stop() {
	_ = n.p.signal(syscall.SIGTERM)
	if n.p.wait(5*time.Second) != nil {
		n.p.kill()
	}
}
