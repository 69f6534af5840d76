package main

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// writeOutputs writes result.json and report.html into dir, and for the
// churn scenario memory.csv and churn.svg.
func writeOutputs(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), b, 0o644); err != nil {
		return err
	}
	if len(res.Memory) > 0 {
		if err := writeChurnOutputs(dir, res); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "report.html"), []byte(renderHTML(res)), 0o644)
}

// line is one series of a chart.
type line struct {
	Name   string
	Color  string
	X, Y   []float64
	Dashed bool
}

// chart renders a line chart as an inline SVG element with axes, ticks,
// labels and a legend. Empty series are skipped; an empty chart says so.
func chart(title, xlabel, ylabel string, lines []line) string {
	const W, H = 1080.0, 300.0
	const L, R, T, B = 80.0, 20.0, 36.0, 48.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`, int(W), int(H), int(W), int(H))
	fmt.Fprintf(&b, `<text x="%g" y="20" font-size="15" font-weight="bold">%s</text>`, L, esc(title))
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), 0.0, math.Inf(-1)
	n := 0
	for _, l := range lines {
		for i := range l.X {
			xmin, xmax = math.Min(xmin, l.X[i]), math.Max(xmax, l.X[i])
			if math.IsNaN(l.Y[i]) || math.IsInf(l.Y[i], 0) {
				continue
			}
			ymin, ymax = math.Min(ymin, l.Y[i]), math.Max(ymax, l.Y[i])
			n++
		}
	}
	if n == 0 {
		fmt.Fprintf(&b, `<text x="%g" y="%g" fill="#888">no data</text></svg>`, W/2-30, H/2)
		return b.String()
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	yticks := niceTicks(ymin, ymax, 5)
	ymin, ymax = yticks[0], yticks[len(yticks)-1]
	if ymax <= ymin {
		ymax = ymin + 1
	}
	px := func(x float64) float64 { return L + (x-xmin)/(xmax-xmin)*(W-L-R) }
	py := func(y float64) float64 { return H - B - (y-ymin)/(ymax-ymin)*(H-T-B) }
	// Grid and y ticks.
	for _, y := range yticks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, L, py(y), W-R, py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, L-6, py(y)+4, fmtNum(y))
	}
	for _, x := range niceTicks(xmin, xmax, 8) {
		if x < xmin || x > xmax {
			continue
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`, px(x), H-B, px(x), H-B+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, px(x), H-B+18, fmtNum(x))
	}
	// Axes and labels.
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`, L, H-B, W-R, H-B)
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#333"/>`, L, T, L, H-B)
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%s</text>`, (L+W-R)/2, H-8, esc(xlabel))
	fmt.Fprintf(&b, `<text x="16" y="%g" text-anchor="middle" transform="rotate(-90 16 %g)">%s</text>`, (T+H-B)/2, (T+H-B)/2, esc(ylabel))
	// Lines and legend.
	lx := W - R
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if len(l.X) == 0 {
			continue
		}
		var pts []string
		for j := range l.X {
			if math.IsNaN(l.Y[j]) || math.IsInf(l.Y[j], 0) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(l.X[j]), py(l.Y[j])))
		}
		dash := ""
		if l.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`, l.Color, dash, strings.Join(pts, " "))
		w := 32 + 7.5*float64(len(l.Name))
		lx -= w
		fmt.Fprintf(&b, `<line x1="%.1f" y1="14" x2="%.1f" y2="14" stroke="%s" stroke-width="3"%s/><text x="%.1f" y="18">%s</text>`, lx, lx+16, l.Color, dash, lx+20, esc(l.Name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	start := math.Floor(lo/step) * step
	var t []float64
	for i := 0; ; i++ {
		v := start + float64(i)*step
		t = append(t, math.Round(v/step)*step)
		if v >= hi-step*1e-9 && len(t) >= 2 {
			break
		}
	}
	return t
}

func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return fmt.Sprintf("%.3gG", v/1e9)
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case a == math.Trunc(a):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func esc(s string) string { return html.EscapeString(s) }

// renderHTML renders the self-contained report.
func renderHTML(r *Result) string {
	var b strings.Builder
	status, color := "PASS", "#1a7f37"
	if !r.Pass {
		status, color = "FAIL", "#cf222e"
	}
	fmt.Fprintf(&b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rthub load test: %s</title>
<style>body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f5f5f5}.v{font-weight:bold;padding:2px 8px;color:#fff;border-radius:4px}
td.num{text-align:right;font-variant-numeric:tabular-nums}</style></head><body>
`, esc(r.Config.Scenario))
	fmt.Fprintf(&b, `<h1>rthub load test: %s <span class="v" style="background:%s">%s</span></h1>
`, esc(r.Config.Scenario), color, status)
	fmt.Fprintf(&b, `<p>%s · target %s · users %d · rate %g/s · payload %d B · duration %v · procs %d · elapsed %.1f s</p>
`, r.Start.Format("2006-01-02 15:04:05 MST"), esc(r.Config.URL), r.Config.Users, r.Config.Rate, r.Config.Payload, r.Config.Duration, r.Config.Procs, r.Elapsed)

	b.WriteString("<h2>Verdicts</h2>\n<table><tr><th>check</th><th>result</th><th>detail</th></tr>\n")
	for _, v := range r.Verdicts {
		s, c := "PASS", "#1a7f37"
		if !v.Pass {
			s, c = "FAIL", "#cf222e"
		}
		fmt.Fprintf(&b, `<tr><td>%s</td><td><span class="v" style="background:%s">%s</span></td><td>%s</td></tr>`+"\n", esc(v.Name), c, s, esc(v.Detail))
	}
	b.WriteString("</table>\n<h2>Summary</h2>\n<table><tr><th>metric</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th>mean</th><th>samples</th></tr>\n")
	for _, row := range []struct {
		name string
		s    Summary
	}{{"handshake (ms)", r.Handshake}, {"broadcast latency (ms)", r.Latency}, {"reconnection (ms)", r.Reconnect}} {
		fmt.Fprintf(&b, `<tr><td>%s</td><td class="num">%.2f</td><td class="num">%.2f</td><td class="num">%.2f</td><td class="num">%.2f</td><td class="num">%.2f</td><td class="num">%d</td></tr>`+"\n",
			row.name, row.s.P50, row.s.P95, row.s.P99, row.s.Max, row.s.Mean, row.s.N)
	}
	b.WriteString("</table>\n<table><tr>" + strings.Repeat("<th>figure</th><th>value</th>", 3) + "</tr>\n")
	keys := make([]string, 0, len(r.Summary))
	for k := range r.Summary {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys { // three figures a row
		if i%3 == 0 {
			b.WriteString("<tr>")
		}
		fmt.Fprintf(&b, `<td>%s</td><td class="num">%s</td>`, esc(k), esc(fmtValue(k, r.Summary[k])))
		if i%3 == 2 || i == len(keys)-1 {
			b.WriteString("</tr>\n")
		}
	}
	b.WriteString("</table>\n")

	b.WriteString("<h2>Charts</h2>\n")
	if len(r.Memory) > 0 {
		for _, p := range churnPanels(r) {
			b.WriteString(p)
		}
	} else {
		charts(&b, r)
	}
	if len(r.Steps) > 0 {
		b.WriteString("<h2>Stress steps</h2>\n<table><tr><th>users</th><th>connected</th><th>p99 ms</th><th>delivery %</th><th>ok</th></tr>\n")
		for _, s := range r.Steps {
			fmt.Fprintf(&b, `<tr><td class="num">%d</td><td class="num">%d</td><td class="num">%.2f</td><td class="num">%.3f</td><td>%v</td></tr>`+"\n", s.Users, s.Connected, s.P99, s.DeliveryPc, s.OK)
		}
		b.WriteString("</table>\n")
	}
	if len(r.Errors) > 0 {
		b.WriteString("<h2>First errors</h2>\n<ul>\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "<li>%s</li>\n", esc(e))
		}
		b.WriteString("</ul>\n")
	}
	b.WriteString(`<p style="color:#666">Latency: publisher timestamp (before POST /publish) to client receipt, same machine clock; percentiles from log buckets (±1 %). Raw numbers: result.json.</p>
</body></html>
`)
	return b.String()
}

// charts writes the charts of the scenarios other than churn.
func charts(b *strings.Builder, r *Result) {
	var t, p50, p95, p99, mx, conn, tgt, rate []float64
	for _, p := range r.Series {
		t = append(t, p.T)
		conn = append(conn, float64(p.Connected))
		tgt = append(tgt, float64(p.Target))
		rate = append(rate, float64(p.Received))
		if p.Received == 0 {
			p50, p95, p99, mx = append(p50, math.NaN()), append(p95, math.NaN()), append(p99, math.NaN()), append(mx, math.NaN())
			continue
		}
		p50, p95, p99, mx = append(p50, p.P50), append(p95, p.P95), append(p99, p.P99), append(mx, p.Max)
	}
	b.WriteString(chart("Broadcast latency per second", "seconds since start", "ms", []line{
		{Name: "p50", Color: "#2da44e", X: t, Y: p50}, {Name: "p95", Color: "#bf8700", X: t, Y: p95},
		{Name: "p99", Color: "#cf222e", X: t, Y: p99}, {Name: "max", Color: "#8250df", X: t, Y: mx, Dashed: true}}))
	b.WriteString(chart("Connections", "seconds since start", "clients", []line{
		{Name: "target", Color: "#999", X: t, Y: tgt, Dashed: true}, {Name: "connected", Color: "#0969da", X: t, Y: conn}}))
	b.WriteString(chart("Messages received per second", "seconds since start", "messages/s", []line{
		{Name: "received/s", Color: "#0969da", X: t, Y: rate}}))
	var st, rss, heap, gor []float64
	for _, s := range r.Server {
		st = append(st, s.T)
		rss = append(rss, mib(s.RSS))
		heap = append(heap, mib(s.HeapInuse))
		gor = append(gor, float64(s.Goroutines))
	}
	mem := []line{{Name: "RSS", Color: "#0969da", X: st, Y: rss}, {Name: "HeapInuse", Color: "#2da44e", X: st, Y: heap}}
	title := "Server memory"
	if r.SoakFit != nil && len(st) > 0 {
		f := *r.SoakFit
		x0, x1 := st[0], st[len(st)-1]
		mem = append(mem, line{Name: "RSS fit", Color: "#cf222e", Dashed: true, X: []float64{x0, x1},
			Y: []float64{(f[0]*x0 + f[1]) / (1 << 20), (f[0]*x1 + f[1]) / (1 << 20)}})
		v := "PASS"
		for _, vd := range r.Verdicts {
			if vd.Name == "soak RSS flat" && !vd.Pass {
				v = "FAIL"
			}
		}
		title = fmt.Sprintf("Server memory: RSS slope %.2f MiB/h: %s", f[0]*3600/(1<<20), v)
	}
	b.WriteString(chart(title, "seconds since start", "MiB", mem))
	b.WriteString(chart("Server goroutines", "seconds since start", "goroutines", []line{{Name: "goroutines", Color: "#8250df", X: st, Y: gor}}))
}

func fmtValue(k string, v any) string {
	f, ok := v.(float64)
	if !ok {
		if u, ok2 := v.(uint64); ok2 && (strings.Contains(k, "rss") || strings.Contains(k, "heap")) {
			return fmt.Sprintf("%.2f MiB", mib(u))
		}
		return fmt.Sprint(v)
	}
	switch {
	case strings.HasSuffix(k, "_pct"):
		return fmt.Sprintf("%.3f %%", f)
	case strings.Contains(k, "bytes_per_hour"):
		return fmt.Sprintf("%.2f MiB/h", f/(1<<20))
	case strings.Contains(k, "per_conn") && !strings.Contains(k, "bytes_per"):
		return fmt.Sprintf("%.1f KiB", f/1024)
	case strings.Contains(k, "per_conn"):
		return fmt.Sprintf("%.0f B", f)
	default:
		return fmt.Sprintf("%.1f", f)
	}
}
