// Small hand-written SVG charts: no library, no canvas.

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function bounds(points, extra = []) {
  let lo = Infinity, hi = -Infinity;
  for (const [, v] of points) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  for (const v of extra) {
    if (v === undefined || v === null) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const pad = (hi - lo) * 0.08;
  return [lo - pad, hi + pad];
}

function path(points, x0, x1, lo, hi, w, h, left = 0, top = 0) {
  const sx = (t) => left + ((t - x0) / Math.max(1, x1 - x0)) * w;
  const sy = (v) => top + h - ((v - lo) / (hi - lo)) * h;
  return points.map(([t, v], i) => `${i ? "L" : "M"}${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join("");
}

/**
 * Draws a sparkline of points [[t, v], ...] into svg (replacing its
 * content), scaled to the data; the threshold is drawn when in range.
 */
export function sparkline(svg, points, threshold) {
  const W = 200, H = 36;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.replaceChildren();
  if (points.length < 2) return;
  const [lo, hi] = bounds(points);
  const x0 = points[0][0], x1 = points[points.length - 1][0];
  if (threshold !== undefined && threshold !== null && threshold >= lo && threshold <= hi) {
    const y = H - ((threshold - lo) / (hi - lo)) * H;
    svg.append(el("line", { class: "thr", x1: 0, x2: W, y1: y, y2: y, "vector-effect": "non-scaling-stroke" }));
  }
  svg.append(el("path", { class: "line", d: path(points, x0, x1, lo, hi, W, H - 2, 0, 1), "vector-effect": "non-scaling-stroke" }));
}

/**
 * Draws a chart with axes: points [[t, v], ...] and an optional threshold line.
 * @param {SVGSVGElement} svg
 * @param {[number, number][]} points
 * @param {{ threshold?: number, cls?: string }} [opts]
 */
export function chart(svg, points, { threshold = undefined, cls = "" } = {}) {
  // One SVG unit per CSS pixel, so text keeps its size at any width.
  const W = Math.max(200, Math.round(svg.clientWidth || 400)), H = Math.max(100, Math.round(svg.clientHeight || 170));
  const L = 40, R = 8, T = 8, B = 18;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  if (points.length < 2) {
    svg.append(el("text", { class: "axis", x: W / 2, y: H / 2, "text-anchor": "middle" }, "waiting for data…"));
    return;
  }
  // Scaled to the data; the alert level is drawn when it is in range (a
  // cold room at 4 °C with an alert at 30 would otherwise be a flat line).
  const [lo, hi] = bounds(points);
  const x0 = points[0][0], x1 = points[points.length - 1][0];
  const w = W - L - R, h = H - T - B;
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    const y = T + h - (h * i) / 4;
    svg.append(el("line", { class: "grid", x1: L, x2: W - R, y1: y, y2: y }));
    svg.append(el("text", { class: "axis", x: L - 4, y: y + 3, "text-anchor": "end" }, fmt(v)));
  }
  const t = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  svg.append(el("text", { class: "axis", x: L, y: H - 4 }, t(x0)));
  svg.append(el("text", { class: "axis", x: W - R, y: H - 4, "text-anchor": "end" }, t(x1)));
  if (threshold !== undefined && threshold !== null && threshold >= lo && threshold <= hi) {
    const y = T + h - ((threshold - lo) / (hi - lo)) * h;
    svg.append(el("line", { class: "thr", x1: L, x2: W - R, y1: y, y2: y }));
  }
  svg.append(el("path", { class: `line ${cls}`, d: path(points, x0, x1, lo, hi, w, h, L, T) }));
}

function fmt(v) {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function newSVG(cls) {
  return el("svg", { class: cls });
}
