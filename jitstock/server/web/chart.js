// Inline SVG charts: a level history with reorder point / safety stock lines and order
// and delivery markers, and a Pareto chart. No library: a few hundred points need none.
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs, parent) {
  const el = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

// Axis labels: date when the span is long, seconds when it is short.
function fmtTime(ms, spanMs) {
  const d = new Date(ms);
  if (spanMs > 3 * 86400000) return d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
  if (spanMs > 86400000) return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  if (spanMs <= 1800000) return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

// opts: {points:[[ts, count]], start, end, rop, ss, capacity, orders:[{ts_ms,id,qty}], deliveries:[...],
//        onZoom(start, end), fmt(ms)}. Drawn at the container's pixel size, so text is never stretched.
function levelChart(container, opts) {
  container.textContent = "";
  const W = Math.max(260, Math.round(container.clientWidth || 800)), H = 300, L = 48, R = 14, T = 12, B = 28;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "level history" }, container);
  const span = Math.max(1, opts.end - opts.start);
  const counts = opts.points.map(p => p[1]);
  const top = Math.max(1, opts.capacity || 0, opts.rop || 0, opts.ss || 0, ...counts) * 1.1;
  const x = t => L + (t - opts.start) / span * (W - L - R);
  const y = v => T + (1 - v / top) * (H - T - B);
  svgEl("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }, svg);
  svgEl("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }, svg);
  for (let i = 0; i <= 4; i++) {
    const v = Math.round(top * i / 4);
    svgEl("text", { class: "y-label", x: L - 6, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = v;
  }
  // x labels: as many as fit; the first anchored at its start, the last at its end (never clipped)
  const nx = Math.max(1, Math.min(6, Math.floor((W - L - R) / (span <= 1800000 ? 110 : 90))));
  for (let i = 0; i <= nx; i++) {
    const t = opts.start + span * i / nx;
    svgEl("text", { class: "x-label", x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === nx ? "end" : "middle" }, svg).textContent = fmtTime(t, span);
  }
  if (opts.rop != null) {
    svgEl("line", { class: "rop-line", x1: L, x2: W - R, y1: y(opts.rop), y2: y(opts.rop), "data-value": opts.rop }, svg);
  }
  if (opts.ss != null) {
    svgEl("line", { class: "ss-line", x1: L, x2: W - R, y1: y(opts.ss), y2: y(opts.ss), "data-value": opts.ss }, svg);
  }
  if (opts.points.length) {
    // a step line: a count holds until the next reading
    let d = "";
    opts.points.forEach((p, i) => {
      const px = x(p[0]).toFixed(1), py = y(p[1]).toFixed(1);
      d += i === 0 ? `M${px},${py}` : `H${px}V${py}`;
    });
    d += `H${x(Math.min(opts.end, opts.now || opts.end)).toFixed(1)}`;
    svgEl("path", { class: "level", d }, svg);
  } else {
    svgEl("text", { class: "empty", x: (L + W - R) / 2, y: (T + H - B) / 2, "text-anchor": "middle" }, svg).textContent = "No readings in this range";
  }
  for (const o of opts.orders || []) {
    const g = svgEl("g", { class: "order-marker", "data-order": o.id }, svg);
    const px = x(o.ts_ms);
    svgEl("path", { d: `M${px - 6},${T} L${px + 6},${T} L${px},${T + 10} Z` }, g);
    svgEl("line", { x1: px, x2: px, y1: T, y2: H - B, stroke: "#0d47a1", "stroke-width": 1, "stroke-dasharray": "3 3" }, g);
    svgEl("title", {}, g).textContent = `order ${o.id.slice(0, 8)} qty ${o.qty} → ${o.supplier || ""}`;
  }
  for (const dlv of opts.deliveries || []) {
    const g = svgEl("g", { class: "delivery-marker", "data-order": dlv.id }, svg);
    const px = x(dlv.ts_ms);
    svgEl("path", { d: `M${px - 6},${H - B} L${px + 6},${H - B} L${px},${H - B - 10} Z` }, g);
    svgEl("title", {}, g).textContent = `delivery ${dlv.id.slice(0, 8)} qty ${dlv.qty}`;
  }
  hoverAndZoom(container, svg, opts, { W, H, L, R, T, B, x, y, span });
  return svg;
}

// Hover: a cursor line and the count at that moment; drag: select a range to zoom into.
function hoverAndZoom(container, svg, opts, g) {
  const fmt = opts.fmt || (ms => new Date(ms).toLocaleString());
  const cursor = svgEl("line", { class: "cursor", y1: g.T, y2: g.H - g.B, visibility: "hidden" }, svg);
  const dot = svgEl("circle", { class: "cursor-dot", r: 4, visibility: "hidden" }, svg);
  const band = svgEl("rect", { class: "zoom-band", y: g.T, height: g.H - g.B - g.T, width: 0, visibility: "hidden" }, svg);
  const tip = document.createElement("div");
  tip.className = "chart-tip"; tip.hidden = true;
  container.appendChild(tip);
  const toT = px => opts.start + (px - g.L) / (g.W - g.L - g.R) * g.span;
  const localX = ev => { const r = svg.getBoundingClientRect(); return Math.min(g.W - g.R, Math.max(g.L, (ev.clientX - r.left) * g.W / r.width)); };
  let dragFrom = null;
  svg.addEventListener("pointermove", ev => {
    const px = localX(ev), t = toT(px);
    let v = null;
    for (const p of opts.points) { if (p[0] <= t) v = p[1]; else break; }
    cursor.setAttribute("x1", px); cursor.setAttribute("x2", px); cursor.setAttribute("visibility", "visible");
    if (v != null) { dot.setAttribute("cx", px); dot.setAttribute("cy", g.y(v)); dot.setAttribute("visibility", "visible"); } else dot.setAttribute("visibility", "hidden");
    tip.hidden = false;
    tip.textContent = (v == null ? "no reading" : v + " on hand") + " · " + fmt(t);
    tip.dataset.value = v == null ? "" : v; tip.dataset.ts = Math.round(t);
    const r = svg.getBoundingClientRect();
    tip.style.left = Math.min(r.width - tip.offsetWidth - 4, Math.max(4, px * r.width / g.W + 10)) + "px";
    if (dragFrom != null) {
      band.setAttribute("x", Math.min(dragFrom, px)); band.setAttribute("width", Math.abs(px - dragFrom)); band.setAttribute("visibility", "visible");
    }
  });
  svg.addEventListener("pointerleave", () => { cursor.setAttribute("visibility", "hidden"); dot.setAttribute("visibility", "hidden"); tip.hidden = true; });
  svg.addEventListener("pointerdown", ev => { if (ev.button === 0) { dragFrom = localX(ev); svg.setPointerCapture?.(ev.pointerId); } });
  svg.addEventListener("pointerup", ev => {
    if (dragFrom == null) return;
    const a = dragFrom, b = localX(ev);
    dragFrom = null; band.setAttribute("visibility", "hidden");
    if (Math.abs(b - a) >= 8 && opts.onZoom) opts.onZoom(toT(Math.min(a, b)), toT(Math.max(a, b)));
  });
}

// rows: [{sku, value, cum_share}] sorted by value descending
function paretoChart(container, rows) {
  container.textContent = "";
  if (!rows.length) { container.textContent = "No consumption in this period."; return; }
  const shown = rows.slice(0, 60);
  const W = Math.max(260, Math.round(container.clientWidth || 800)), H = 260, L = 10, R = 40, T = 10, B = 30;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H }, container);
  const max = shown[0].value || 1;
  const bw = (W - L - R) / shown.length;
  let line = "";
  shown.forEach((r, i) => {
    const h = r.value / max * (H - T - B);
    const rect = svgEl("rect", { x: L + i * bw + 1, y: H - B - h, width: Math.max(1, bw - 2), height: h,
      fill: r.class === "A" ? "#c62828" : r.class === "B" ? "#f9a825" : "#2e7d32" }, svg);
    svgEl("title", {}, rect).textContent = `${r.sku}: ${r.value} (${(r.cum_share * 100).toFixed(1)} %)`;
    const py = T + (1 - r.cum_share) * (H - T - B);
    line += (i ? "L" : "M") + (L + i * bw + bw / 2).toFixed(1) + "," + py.toFixed(1);
  });
  svgEl("path", { d: line, fill: "none", stroke: "#1c2330", "stroke-width": 2 }, svg);
  svgEl("text", { x: W - R + 4, y: T + 10 }, svg).textContent = "100%";
  svgEl("text", { x: W - R + 4, y: T + 0.2 * (H - T - B) + 4 }, svg).textContent = "80%";
  svgEl("line", { x1: L, x2: W - R, y1: T + 0.2 * (H - T - B), y2: T + 0.2 * (H - T - B), stroke: "#98a2b3", "stroke-dasharray": "4 4" }, svg);
}
