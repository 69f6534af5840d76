package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeChurnOutputs writes the churn scenario's memory.csv (one row per
// /debug/memory sample) and churn.svg (its panels stacked in one
// standalone SVG, for the docs to link).
func writeChurnOutputs(dir string, res *Result) error {
	if err := os.WriteFile(filepath.Join(dir, "memory.csv"), []byte(churnCSV(res)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "churn.svg"), []byte(churnSVG(res)), 0o644)
}

// churnCSV renders the samples: bytes and counts as the server reported them.
func churnCSV(res *Result) string {
	var b strings.Builder
	b.WriteString("t_s,phase,heap_alloc,heap_inuse,heap_objects,stack_inuse,rss,goroutines,connections,clients,accepted,token_closes,gc_s\n")
	for _, m := range res.Memory {
		fmt.Fprintf(&b, "%.1f,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%.4f\n", m.T, m.Phase, m.HeapAlloc, m.HeapInuse, m.HeapObjects,
			m.StackInuse, m.RSS, m.Goroutines, m.Connections, m.Clients, m.Accepted, m.TokenExpiry, m.GCSeconds)
	}
	return b.String()
}

// churnSVG stacks the churn panels under a two-line title in one SVG
// document.
func churnSVG(res *Result) string {
	panels := churnPanels(res)
	const W, head = 1080, 56
	var b strings.Builder
	h := head + panelH*len(panels)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`, W, h, W, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`, W, h) // readable on dark pages too
	l1, l2 := churnTitle(res)
	fmt.Fprintf(&b, `<text x="16" y="24" font-size="17" font-weight="bold">%s</text>`, esc(l1))
	fmt.Fprintf(&b, `<text x="16" y="46" font-size="13" fill="#444">%s</text>`, esc(l2))
	for i, p := range panels {
		fmt.Fprintf(&b, `<g transform="translate(0,%d)">%s</g>`, head+i*panelH, p)
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// churnTitle is the run in two lines: the verdict, then the settings.
func churnTitle(res *Result) (string, string) {
	cc := res.Config.Churn
	v := "PASS"
	if !res.Pass {
		v = "FAIL"
	}
	return fmt.Sprintf("rthub churn: %s (%v connects in %v)", v, res.Summary["connects"], res.Config.Duration),
		fmt.Sprintf("%d slots (%d per user) in %s, lifetimes %v–%v, %g %% abrupt closes, tokens valid %v; warm-up %v, settle %v; %s",
			cc.Slots, cc.PerUser, res.Config.Room, cc.MinLife, cc.MaxLife, cc.AbruptPct, cc.TokenTTL, cc.Warmup, cc.Settle, res.Start.Format("2006-01-02 15:04 MST"))
}

// panelH is the height of one churn panel: a title line over a chart.
const panelH = 324

// panel puts title over a chart (rendered without one, so that its legend
// has the top line to itself).
func panel(title, chartSVG string) string {
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="1080" height="%d" viewBox="0 0 1080 %d" font-family="sans-serif"><text x="80" y="18" font-size="15" font-weight="bold">%s</text><g transform="translate(0,24)">%s</g></svg>`,
		panelH, panelH, esc(title), chartSVG)
}

// churnPanels renders the churn charts: live heap after GC and goroutines
// (each with its baseline and the verdict's limit), connections, RSS. A
// vertical line marks when the clients were told to close.
func churnPanels(res *Result) []string {
	cc := res.Config.Churn
	mem := res.Memory
	if len(mem) == 0 {
		return []string{panel("Churn: no samples", chart("", "", "", nil))}
	}
	scale, xlabel := 1.0, "seconds since start"
	if last := mem[len(mem)-1].T; last >= 300 {
		scale, xlabel = 1.0/60, "minutes since start"
	}
	start, base, final := mem[0], mem[0], mem[len(mem)-1]
	for _, m := range mem {
		if m.Phase == "baseline" {
			base = m
			break
		}
	}
	var x, alloc, inuse, rss, gor, conns []float64
	maxHeap, maxG, maxConns, maxRSS := 0.0, 0.0, 0.0, 0.0
	for _, m := range mem {
		x = append(x, m.T*scale)
		alloc = append(alloc, mib(m.HeapAlloc))
		inuse = append(inuse, mib(m.HeapInuse))
		rss = append(rss, mib(m.RSS))
		gor = append(gor, float64(m.Goroutines))
		conns = append(conns, float64(m.Connections))
		maxHeap, maxG = max(maxHeap, mib(m.HeapInuse), mib(m.HeapAlloc)), max(maxG, float64(m.Goroutines))
		maxConns, maxRSS = max(maxConns, float64(m.Connections)), max(maxRSS, mib(m.RSS))
	}
	var cx, cy []float64
	for _, p := range res.Series {
		cx = append(cx, p.T*scale)
		cy = append(cy, float64(p.Connected))
		maxConns = max(maxConns, float64(p.Connected))
	}
	x0, x1 := x[0], x[len(x)-1]
	flat := func(name, color string, y float64) line {
		return line{Name: name, Color: color, Dashed: true, X: []float64{x0, x1}, Y: []float64{y, y}}
	}
	// markers: vertical lines at the measured churn's start (after a warm-up)
	// and end, then the panel's lines.
	markers := func(top float64, lines ...line) []line {
		var m []line
		if cc.Warmup > 0 {
			ts := res.ChurnStart * scale
			m = append(m, line{Name: "churn starts", Color: "#ddd", X: []float64{ts, ts}, Y: []float64{0, top}})
		}
		te := res.ChurnEnd * scale
		m = append(m, line{Name: "clients closed", Color: "#bbb", X: []float64{te, te}, Y: []float64{0, top}})
		return append(m, lines...)
	}
	verdict := func(name string) string {
		for _, v := range res.Verdicts {
			if v.Name == name {
				if v.Pass {
					return "PASS"
				}
				return "FAIL"
			}
		}
		return "not judged"
	}
	limit := mib(base.HeapAlloc) * (1 + cc.HeapTol/100)
	heapLines := []line{
		flat("baseline", "#555", mib(base.HeapAlloc)),
		flat(fmt.Sprintf("limit %+g %%", cc.HeapTol), "#cf222e", limit),
	}
	if start.Phase != "baseline" {
		heapLines = append(heapLines, line{Name: "before any client", Color: "#aaa", Dashed: true, X: []float64{x0, x1},
			Y: []float64{mib(start.HeapAlloc), mib(start.HeapAlloc)}})
	}
	heapLines = append(heapLines, line{Name: "HeapInuse", Color: "#2da44e", X: x, Y: inuse},
		line{Name: "HeapAlloc (live)", Color: "#0969da", X: x, Y: alloc})
	heap := panel(fmt.Sprintf("Server live heap after forced GC: baseline %.2f → end %.2f MiB (%+.1f %%, limit %+g %%): %s",
		mib(base.HeapAlloc), mib(final.HeapAlloc), pct(base.HeapAlloc, final.HeapAlloc), cc.HeapTol, verdict("heap back to baseline")),
		chart("", xlabel, "MiB", markers(maxHeap, heapLines...)))
	g := panel(fmt.Sprintf("Server goroutines: baseline %d → end %d (tolerance ±%d): %s", base.Goroutines, final.Goroutines, cc.GoroutineTol,
		verdict("goroutines back to baseline")), chart("", xlabel, "goroutines", markers(maxG,
		flat("baseline", "#555", float64(base.Goroutines)),
		flat(fmt.Sprintf("baseline +%d", cc.GoroutineTol), "#cf222e", float64(base.Goroutines+cc.GoroutineTol)),
		line{Name: "goroutines", Color: "#8250df", X: x, Y: gor},
	)))
	c := panel(fmt.Sprintf("Connections: %d slots; the server ends with %d: %s", cc.Slots, final.Connections,
		verdict("connections back to 0")), chart("", xlabel, "connections", markers(maxConns,
		line{Name: "clients connected", Color: "#999", X: cx, Y: cy},
		line{Name: "server connections", Color: "#0969da", X: x, Y: conns},
	)))
	r := panel(fmt.Sprintf("Server RSS after FreeOSMemory: baseline %.1f → end %.1f MiB (not judged)", mib(base.RSS), mib(final.RSS)), chart("", xlabel, "MiB", markers(maxRSS,
		flat("baseline", "#555", mib(base.RSS)),
		line{Name: "RSS", Color: "#bf8700", X: x, Y: rss},
	)))
	return []string{heap, g, c, r}
}
