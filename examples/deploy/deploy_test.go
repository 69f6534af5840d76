package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/org/rthub"
	"github.com/org/rthub/internal/testenv"
	"github.com/org/rthub/promrthub"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// promtool returns the path of promtool (Debian package prometheus), or
// skips the test (fails it under RTHUB_REQUIRE_SERVICES=1, as in CI).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if testenv.Required() {
			t.Fatalf("%s=1 but promtool is not installed (apt-get install prometheus)", testenv.Require)
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	return p
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

// TestRules_promtool: the rules pass promtool check rules, and their unit
// tests (one or more per alert, synthetic series) pass promtool test rules.
func TestRules_promtool(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	run(t, ".", pt, "check", "rules", "rthub.rules.yml")
	run(t, ".", pt, "test", "rules", "rthub.rules.test.yml")
}

// TestPrometheusConfig: the example configuration is valid, with its rules.
func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	run(t, ".", promtool(t), "check", "config", "prometheus.yml")
}

// TestRules_everyAlertTested: each alert has a unit test that expects it
// to fire.
func TestRules_everyAlertTested(t *testing.T) {
	t.Parallel()
	alerts := alertNames(t)
	tests := read(t, "rthub.rules.test.yml")
	for _, a := range alerts {
		if !regexp.MustCompile(`alertname: ` + a + `\n\s+exp_alerts:\n\s+- exp_labels:`).MatchString(tests) {
			t.Errorf("alert %s: no unit test expects it to fire", a)
		}
	}
	if len(alerts) < 5 {
		t.Errorf("%d alerts, want at least the five of issue 7", len(alerts))
	}
}

// TestRules_runbooks: every alert's runbook_url names a section of
// docs/operations.md that exists.
func TestRules_runbooks(t *testing.T) {
	t.Parallel()
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#{2,4} (.+)$`).FindAllStringSubmatch(read(t, "../../docs/operations.md"), -1) {
		anchors[anchor(m[1])] = true
	}
	urls := regexp.MustCompile(`runbook_url: "docs/operations.md#([a-z0-9-]+)"`).FindAllStringSubmatch(read(t, "rthub.rules.yml"), -1)
	if len(urls) != len(alertNames(t)) {
		t.Errorf("%d runbook URLs for %d alerts", len(urls), len(alertNames(t)))
	}
	for _, u := range urls {
		if !anchors[u[1]] {
			t.Errorf("runbook_url #%s: no such section in docs/operations.md", u[1])
		}
	}
}

// anchor is the GitHub anchor of a Markdown heading.
func anchor(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func alertNames(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^\s+- alert: (\w+)$`).FindAllStringSubmatch(read(t, "rthub.rules.yml"), -1) {
		out = append(out, m[1])
	}
	return out
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dashboard is the part of the Grafana JSON the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Schema     int     `json:"schemaVersion"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal([]byte(read(t, "grafana-dashboard.json")), &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	return d
}

// TestDashboard: the Grafana JSON parses, and its panels are well formed:
// unique IDs, inside the 24-column grid, each query on the datasource
// variable; and it covers what issue 7 asks for.
func TestDashboard(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.Schema < 30 {
		t.Errorf("uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.Schema)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	for _, v := range []string{"datasource", "job", "instance"} {
		if !slices.Contains(vars, v) {
			t.Errorf("no template variable %s", v)
		}
	}
	ids := map[int]bool{}
	var titles []string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		titles = append(titles, strings.ToLower(p.Title))
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d targets", p.Title, p.Datasource, len(p.Targets))
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" {
				t.Errorf("panel %q: empty expr or refId", p.Title)
			}
		}
	}
	all := strings.Join(titles, "|")
	for _, want := range []string{"connections", "broadcast latency", "reconnects", "rooms", "bytes sent", "errors", "rate limits", "broker", "mqtt", "memory"} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel about %q", want)
		}
	}
}

// TestDashboard_promql: every dashboard query is valid PromQL, checked by
// promtool as recording rules (Grafana's variables replaced).
func TestDashboard_promql(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	d := loadDashboard(t)
	r := strings.NewReplacer("$__rate_interval", "5m", "$job", ".*", "$instance", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			n++
			q, _ := json.Marshal(r.Replace(tg.Expr)) // a JSON string is a YAML string
			fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", n, q)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.rules.yml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, pt, "check", "rules", "dashboard.rules.yml")
}

// exported returns every series name a node exports: the promrthub
// collector with all its sources and hooks, plus client_golang's Go and
// process collectors (what examples/iotserver registers).
func exported(t *testing.T) map[string]bool {
	t.Helper()
	col := promrthub.New(promrthub.Options{
		MemoryLimit:   1 << 30,
		Broker:        func() []promrthub.BrokerShard { return []promrthub.BrokerShard{{Name: "s0"}} },
		BrokerControl: func() promrthub.BrokerControl { return promrthub.BrokerControl{} },
		Bridge: func() promrthub.BridgeStats {
			return promrthub.BridgeStats{Routes: []promrthub.BridgeRoute{{Name: "readings"}}}
		},
	})
	col.SetHub(stats{})
	col.OnRefused(nil)(context.Background(), rthub.Refusal{Op: "join", Code: "forbidden"})
	col.OnDisconnect(nil)(context.Background(), rthub.ConnInfo{}, rthub.CloseError{Code: 1001})
	reg := prometheus.NewRegistry()
	reg.MustRegister(col, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

type stats struct{}

// Stats has one reply error code and one event: a labelled family appears
// only with a series.
func (stats) Stats() rthub.Stats {
	return rthub.Stats{ReplyErrors: map[string]uint64{"forbidden": 0}, Events: map[string]rthub.EventCounts{"tick": {}}}
}

// metricRef finds the metric names in a file: the families of rthub, the
// process and the Go runtime.
var metricRef = regexp.MustCompile(`\b(?:rthub|process|go)_[a-z0-9_]+\b`)

// TestReferencedMetricsExist: every metric the dashboard, the rules, their
// tests and the Prometheus configuration name (queries and comments alike)
// is exported, and every rthub family is used on the dashboard.
func TestReferencedMetricsExist(t *testing.T) {
	t.Parallel()
	names := exported(t)
	for _, f := range []string{"grafana-dashboard.json", "rthub.rules.yml", "rthub.rules.test.yml", "prometheus.yml", "README.md"} {
		for _, ref := range metricRef.FindAllString(read(t, f), -1) {
			if !names[ref] && !strings.HasPrefix(ref, "rthub_test") {
				t.Errorf("%s names %s, which no collector exports", f, ref)
			}
		}
	}
	// Whole names: rthub_x is not on the dashboard because rthub_x_total is
	// (a histogram counts through its _bucket, _sum and _count series).
	onDash := map[string]bool{}
	for _, ref := range metricRef.FindAllString(read(t, "grafana-dashboard.json"), -1) {
		onDash[ref] = true
	}
	for _, m := range promrthub.Metrics() {
		if !onDash[m.Name] && !onDash[m.Name+"_bucket"] && !onDash[m.Name+"_sum"] && !onDash[m.Name+"_count"] {
			t.Errorf("%s is not on the dashboard", m.Name)
		}
	}
}
