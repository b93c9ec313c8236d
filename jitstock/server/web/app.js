// jitstock dashboard: floor view, bin page, orders board, alerts, KPIs. Plain JS, no build.
"use strict";

const STATUS_LABEL = { ok: "ok", below_rop: "below ROP", below_ss: "below SS", stockout: "stockout",
  fault: "sensor fault", offline: "agent offline", nodata: "no data" };
const RANGES = { quarter: [900e3, "5s"], hour: [3600e3, "15s"], shift: [8 * 3600e3, "2m"], day: [86400e3, "5m"],
  week: [7 * 86400e3, "1h"], month: [30 * 86400e3, "4h"] };
// The session lives in an HttpOnly cookie the page cannot read; every request carries this
// header, which the server requires of cookie-authenticated changes (a cross-site form cannot send it).
const CSRF = { "X-Requested-With": "jitstock" };
const state = { me: null, tiles: new Map(), els: new Map(),
  view: "", bin: null, range: "day", es: null, floorLoaded: false, reconnectTimer: null };
const $ = id => document.getElementById(id);

// ---------- HTTP ----------
async function api(path, opts = {}) {
  const headers = Object.assign({ "Accept": "application/json" }, CSRF, opts.headers || {});
  if (opts.body && typeof opts.body !== "string") { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(opts.body); }
  const resp = await fetch(path, Object.assign({}, opts, { headers, credentials: "same-origin" }));
  if (resp.status === 401) { showSignin(); const err = new Error("sign-in required"); err.status = 401; throw err; }
  if (!resp.ok) {
    let msg = resp.status + "";
    try { const j = await resp.json(); msg += " " + (typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail)); } catch (e) { /* not JSON */ }
    const err = new Error(msg); err.status = resp.status; throw err;
  }
  return resp.status === 204 ? null : resp.json();
}

const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
// Times in the browser's locale, with date and seconds where an event's moment matters.
const fmtTs = ms => ms ? new Date(ms).toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "";
const fmtHm = ms => ms ? new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }) : "";
const sameDay = (a, b) => new Date(a).toDateString() === new Date(b).toDateString();
// a promise: the time alone when it is today, else with the date
const fmtDue = ms => ms ? (sameDay(ms, Date.now()) ? fmtHm(ms)
  : new Date(ms).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })) : "";
function fmtAge(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? s + " s ago" : s < 3600 ? Math.floor(s / 60) + " min ago" : s < 172800 ? Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min ago" : Math.floor(s / 86400) + " days ago";
}
// The board's state columns, always in the order an order moves through them.
const ORDER_STATES = ["created", "sent", "acknowledged", "shipped", "part_received"];
const ORDER_STATE_SHORT = { created: "order placed", sent: "order sent", acknowledged: "order confirmed", shipped: "order shipped", part_received: "order part received" };
const byOrderState = (a, b) => (ORDER_STATES.indexOf(a) + 1 || 99) - (ORDER_STATES.indexOf(b) + 1 || 99) || (a < b ? -1 : a > b ? 1 : 0);
// Runs f at most once per `ms`, and always once after the last call: live reloads of heavy views.
function throttle(f, ms) {
  let last = 0, timer = null;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => { timer = null; last = Date.now(); f().catch?.(e => console.warn(e)); }, wait);
  };
}
function fmtDur(ms) {
  if (ms == null) return "";
  const neg = ms < 0; ms = Math.abs(ms);
  const m = Math.round(ms / 60000), out = m < 60 ? m + " min" : m < 2880 ? (m / 60).toFixed(1) + " h" : (m / 1440).toFixed(1) + " d";
  return neg ? "-" + out : out;
}
// days of supply: days when a day or more is left, else hours or minutes (0.007 d reads as 10 min)
const fmtDos = d => d >= 1 ? (+d.toFixed(1)) + " d" : fmtDur(d * 86400e3);
const isManager = () => state.me && (state.me.role === "manager" || state.me.role === "admin");

// ---------- sign-in ----------
function showSignin() {
  if (state.es) { state.es.close(); state.es = null; }
  clearTimeout(state.reconnectTimer);
  state.me = null;
  $("live").className = "live off";
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("signin").hidden = false;
}
// Both ways end in the session cookie: user/password signs in; an API key (sent once, as a
// header) opens a browser session of its own. Neither value is kept by the page.
async function signIn() {
  const user = $("signin-user").value.trim(), key = $("signin-key").value.trim();
  const r = user
    ? await fetch("/api/v1/login", { method: "POST", credentials: "same-origin",
        headers: Object.assign({ "Content-Type": "application/json" }, CSRF),
        body: JSON.stringify({ username: user, password: $("signin-pass").value }) })
    : await fetch("/api/v1/session", { method: "POST", credentials: "same-origin",
        headers: Object.assign({ "Authorization": "Bearer " + key }, CSRF) });
  if (r.status === 429) throw new Error("too many failed sign-ins; try again in " + (r.headers.get("Retry-After") || "a few") + " s");
  if (!r.ok) throw new Error(user ? "wrong user name or password" : "invalid or revoked API key");
}
$("signin-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  $("signin-error").textContent = "";
  try {
    await signIn();
    $("signin-form").reset();
    await start();
  } catch (e) { $("signin-error").textContent = e.message; }
});
$("signout").addEventListener("click", async () => {
  try { await api("/api/v1/logout", { method: "POST" }); } catch (e) { /* signing out anyway */ }
  location.hash = "#/floor"; location.reload();
});
$("password-form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const out = $("password-result");
  if ($("pw-new").value !== $("pw-again").value) { out.textContent = "the new passwords differ"; return; }
  try {
    await api("/api/v1/me/password", { method: "POST", body: { old_password: $("pw-old").value, new_password: $("pw-new").value } });
    $("password-form").reset();
    out.textContent = "password changed; your other sessions were signed out";
  } catch (e) { out.textContent = "failed: " + e.message; }
});

// ---------- floor ----------
function tileHtml(t) {
  return `<a class="tile" href="#/bin/${encodeURIComponent(t.id)}" data-bin="${esc(t.id)}">` +
    `<div class="t-head"><span class="t-id">${esc(t.id)}</span><span class="t-abc"></span></div>` +
    `<div class="t-sku"></div><div class="t-count"></div>` +
    `<div class="bar"><div class="fill"></div><i class="mark m-ss"></i><i class="mark m-rop"></i></div>` +
    `<div class="t-foot"><span class="t-dos"></span><span class="t-status"></span></div>` +
    `<div class="t-order" hidden></div></a>`;
}

// Only what changed is written: a live update touches a handful of nodes, not the page.
function paintTile(el, t) {
  const q = el._q || (el._q = { abc: el.querySelector(".t-abc"), sku: el.querySelector(".t-sku"), count: el.querySelector(".t-count"),
    fill: el.querySelector(".fill"), ss: el.querySelector(".m-ss"), rop: el.querySelector(".m-rop"), dos: el.querySelector(".t-dos"),
    status: el.querySelector(".t-status"), order: el.querySelector(".t-order") });
  const cls = "tile st-" + t.status;
  if (el.className !== cls) el.className = cls;
  el.dataset.status = t.status;
  set(q.abc, t.abc || "–");
  set(q.sku, t.sku + (t.supplier ? " · " + t.supplier : ""));
  const countText = t.status === "nodata" ? "–" : String(t.count);
  if (q.count.firstChild?.nodeValue !== countText || !q.count._cap) {
    q.count.innerHTML = esc(countText) + (t.cap ? ` <small>/ ${t.cap}</small>` : "");
    q.count._cap = true;
  }
  const cap = t.cap || Math.max(t.count, (t.rop || 0) * 2, 1);
  q.fill.style.width = Math.min(100, 100 * t.count / cap).toFixed(1) + "%";
  q.rop.style.left = Math.min(100, 100 * (t.rop || 0) / cap).toFixed(1) + "%";
  q.ss.hidden = t.ss == null;
  if (t.ss != null) q.ss.style.left = Math.min(100, 100 * t.ss / cap).toFixed(1) + "%";
  set(q.dos, t.dos != null ? fmtDos(t.dos) : (t.paused ? "paused" : ""));
  set(q.status, STATUS_LABEL[t.status] || t.status);
  el.title = `${t.id}: ${t.count} on hand, ROP ${t.rop}` + (t.ss != null ? `, SS ${t.ss}` : "") + (t.fault ? `, fault: ${t.fault}` : "");
  // shown while any order for the bin is open, whatever the level: state and promise in a few words
  if (t.order) {
    q.order.hidden = false;
    const late = t.order.promised_ms && t.order.promised_ms < Date.now();
    set(q.order, (ORDER_STATE_SHORT[t.order.state] || t.order.state) +
      (t.order.promised_ms ? (late ? " · late, was due " : " · due ") + fmtDue(t.order.promised_ms) : ` · ${t.order.qty} pcs`));
    q.order.classList.toggle("late", !!late);
    q.order.title = `order ${t.order.id.slice(0, 8)}: ${t.order.state}, ${t.order.qty} pcs from ${t.order.supplier}` +
      (t.order.promised_ms ? `, promised ${fmtTs(t.order.promised_ms)}` : "");
  } else if (!q.order.hidden) { q.order.hidden = true; }
}
function set(el, text) { if (el.textContent !== text) el.textContent = text; }

function groupKey(t) { return `${t.site} › ${t.area || "—"} › ${t.line || "—"}`; }

// Server time (now_ms) of the answer each tile was last drawn from: a full load that left
// the server before a push must not draw its older tiles over the pushed ones.
const tileAt = new Map();
function renderFloor(loaded, at) {
  const tiles = loaded.map(t => (tileAt.get(t.id) || 0) > at ? state.tiles.get(t.id) || t : t);
  for (const t of tiles) tileAt.set(t.id, Math.max(tileAt.get(t.id) || 0, at));
  state.tiles = new Map(tiles.map(t => [t.id, t]));
  const groups = new Map();
  for (const t of tiles) { const k = groupKey(t); if (!groups.has(k)) groups.set(k, []); groups.get(k).push(t); }
  // one innerHTML for the whole floor: thousands of tiles in one parse, then a fill pass
  let html = "";
  for (const [k, ts] of groups) {
    html += `<div class="group" data-group="${esc(k)}"><h3>${esc(k)} <span class="muted small">(${ts.length})</span></h3><div class="tiles">`;
    for (const t of ts) html += tileHtml(t);
    html += "</div></div>";
  }
  const floor = $("floor");
  floor.innerHTML = html;
  state.els = new Map();
  for (const el of floor.querySelectorAll(".tile")) {
    state.els.set(el.dataset.bin, el);
    paintTile(el, state.tiles.get(el.dataset.bin));
  }
  fillFilters(tiles);
  applyFilters();
  state.floorLoaded = true;
  window.__floorRendered = performance.now();
}

function updateTiles(tiles, at) {
  let unknown = false;
  for (const t of tiles) {
    const el = state.els.get(t.id);
    if (!el) { unknown = true; continue; }
    if ((tileAt.get(t.id) || 0) > at) continue;  // a newer answer drew it already
    tileAt.set(t.id, at);
    const prev = state.tiles.get(t.id);
    state.tiles.set(t.id, t);
    paintTile(el, t);
    if (filtersActive() && prev && (prev.status !== t.status)) el.hidden = !matches(t);
  }
  if (unknown) loadFloor();  // a bin added since the page loaded
  summarize();
  window.__lastUpdate = performance.now();
}

function fillFilters(tiles) {
  const uniq = f => [...new Set(tiles.map(f).filter(Boolean))].sort();
  fillSelect($("f-area"), uniq(t => t.area), "All areas");
  fillSelect($("f-line"), uniq(t => t.line), "All lines");
  fillSelect($("f-supplier"), uniq(t => t.supplier), "All suppliers");
  fillSelect($("f-status"), Object.keys(STATUS_LABEL), "All statuses", s => STATUS_LABEL[s]);
  $("legend").innerHTML = Object.entries(STATUS_LABEL).map(([k, v]) => `<span class="st-${k}">${v}</span>`).join("");
}
function fillSelect(sel, values, all, label = v => v) {
  const cur = sel.value;
  sel.innerHTML = `<option value="">${all}</option>` + values.map(v => `<option value="${esc(v)}">${esc(label(v))}</option>`).join("");
  sel.value = values.includes(cur) ? cur : "";
}
const FILTERS = ["f-area", "f-line", "f-abc", "f-status", "f-supplier"];
function filtersActive() { return FILTERS.some(id => $(id).value) || $("f-search").value.trim(); }
function matches(t) {
  const f = { area: $("f-area").value, line: $("f-line").value, abc: $("f-abc").value, status: $("f-status").value, supplier: $("f-supplier").value };
  if (f.area && t.area !== f.area) return false;
  if (f.line && t.line !== f.line) return false;
  if (f.abc && t.abc !== f.abc) return false;
  if (f.status && t.status !== f.status) return false;
  if (f.supplier && t.supplier !== f.supplier) return false;
  const q = $("f-search").value.trim().toLowerCase();
  return !q || (t.id + " " + t.sku + " " + (t.supplier || "") + " " + (t.agent || "")).toLowerCase().includes(q);
}
function applyFilters() {
  const active = filtersActive();
  for (const [id, el] of state.els) { const show = !active || matches(state.tiles.get(id)); if (el.hidden === show) el.hidden = !show; }
  for (const g of document.querySelectorAll("#floor .group")) g.hidden = active && !g.querySelector(".tile:not([hidden])");
  summarize();
}
function summarize() {
  const n = {}; for (const t of state.tiles.values()) n[t.status] = (n[t.status] || 0) + 1;
  $("floor-summary").textContent = `${state.tiles.size} bins · ` + Object.entries(n).map(([k, v]) => `${v} ${STATUS_LABEL[k]}`).join(" · ");
}
for (const id of FILTERS) $(id).addEventListener("change", applyFilters);
let searchTimer = null;
$("f-search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(applyFilters, 120); });

async function loadFloor() {
  const data = await api("/api/v1/floor");
  renderFloor(data.tiles, data.now_ms);
}

// ---------- live stream ----------
function connect() {
  if (state.es) state.es.close();
  // same-origin EventSource sends the session cookie: no key in the URL (URLs end up in logs)
  const es = state.es = new EventSource("/api/v1/stream");
  let first = true;
  es.addEventListener("hello", () => {
    $("live").className = "live on";
    // A change pushed before this stream started reached no stream: after a reconnect
    // everything is drawn again; after the page's own first load, what changed is patched in.
    if (!first || state.reconnected) { state.reconnected = false; refreshView(true); } else catchUp();
    first = false;
  });
  es.addEventListener("tiles", ev => { const d = JSON.parse(ev.data); if (state.floorLoaded) updateTiles(d.tiles, d.now_ms); if (state.view === "bin") binTileUpdate(d.tiles); });
  es.addEventListener("tiles", () => liveReload(false));
  es.addEventListener("orders", () => liveReload(true));
  es.addEventListener("alerts", () => { loadAlertCount(); if (state.view === "alerts") loadAlerts(); });
  // a page that fell behind lost pushes: everything it shows is fetched again
  es.addEventListener("resync", () => refreshView(true));
  es.onerror = () => {
    $("live").className = "live off";
    state.reconnected = true;
    // EventSource retries by itself unless the server answered with an error: then we do,
    // unless the session has ended (revoked or expired): then the sign-in form shows
    if (es.readyState !== EventSource.CLOSED || state.es !== es) return;
    clearTimeout(state.reconnectTimer);
    api("/api/v1/me").then(() => { state.reconnectTimer = setTimeout(connect, 1000); },
      e => { if (e.status !== 401) state.reconnectTimer = setTimeout(connect, 1000); });
  };
}

// Every view follows the same push: the floor patches tiles; the others reload their data.
const reloadOrders = throttle(() => loadOrders(), 300);
const reloadKpis = throttle(() => loadKpis(), 800);
const reloadBinExtras = throttle(() => Promise.all([loadBinEvents(), loadPolicy()]), 1000);
function liveReload(ordersChanged) {
  if (state.view === "orders") reloadOrders();
  if (state.view === "kpis") reloadKpis();
  if (state.view === "bin" && ordersChanged) { reloadBinExtras(); clearTimeout(state.chartTimer); state.chartTimer = setTimeout(loadBinChart, 300); }
  if (state.view === "bin" && !ordersChanged) reloadBinExtras();
}

// ---------- bin page ----------
async function showBin(id, keepRange) {
  const changed = state.bin !== id;
  state.bin = id;
  $("bin-title").textContent = id;
  $("bin-actions").hidden = !isManager();
  $("act-result").textContent = "";
  if (changed || !keepRange) {
    state.custom = null;
    // default range: the shortest that holds the data present, so a new bin's line is not 2 px wide
    if (changed) state.range = await defaultRange(id);
    setRange(state.range);
  }
  await Promise.all([loadBinChart(), loadBinEvents(), loadPolicy()]);
}
async function defaultRange(id) {
  // the age of the oldest reading: to the minute over the last day, to 4 h beyond
  const firstPoint = async (span, res) => {
    const end = Date.now(), start = end - span;
    const h = await api(`/api/v1/bins/${encodeURIComponent(id)}/history?start=${start}&end=${end}&resolution=${res}&agg=last`);
    const p = h.points.find(q => q.count != null);
    return p ? { age: end - p.ts_ms, atStart: p.ts_ms - start < 120e3 } : null;
  };
  try {
    let first = await firstPoint(RANGES.day[0], "1m");
    if (!first) first = await firstPoint(RANGES.month[0], "4h");
    else if (first.atStart) first = await firstPoint(RANGES.month[0], "4h") || first;
    if (!first) return "quarter";
    return Object.keys(RANGES).find(r => RANGES[r][0] >= first.age * 1.1 + 60e3) || "month";
  } catch (e) { return "day"; }
}
function setRange(r) {
  state.range = r;
  for (const b of $("ranges").querySelectorAll("button[data-range]")) b.classList.toggle("on", !state.custom && b.dataset.range === r);
  $("zoom-reset").hidden = !state.custom;
}
$("ranges").addEventListener("click", ev => { const r = ev.target.dataset?.range; if (r) { state.custom = null; setRange(r); loadBinChart(); } });
// a custom range, typed or dragged on the chart
const toLocalInput = ms => { const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000); return d.toISOString().slice(0, 19); };
function setCustom(start, end) {
  if (!(end > start)) return;
  state.custom = [Math.round(start), Math.round(end)];
  setRange(state.range);
  loadBinChart();
}
$("range-form").addEventListener("submit", ev => {
  ev.preventDefault();
  setCustom(new Date($("range-from").value).getTime(), new Date($("range-to").value).getTime());
});
$("zoom-reset").addEventListener("click", () => { state.custom = null; setRange(state.range); loadBinChart(); });
// a resolution giving about 400 points over the span (the history API caps buckets)
function resolutionFor(span) {
  const s = Math.max(1, Math.ceil(span / 400 / 1000));
  return s < 60 ? s + "s" : Math.ceil(s / 60) + "m";
}
function chartRange() {
  if (state.custom) return state.custom;
  const end = Date.now() + 1000;
  return [end - RANGES[state.range][0], end];
}

async function loadBinChart() {
  const id = state.bin, [start, end] = chartRange(), res = state.custom ? resolutionFor(end - start) : RANGES[state.range][1];
  const enc = encodeURIComponent(id);
  const [hist, marks] = await Promise.all([
    api(`/api/v1/bins/${enc}/history?start=${start}&end=${end}&resolution=${res}&agg=last`),
    api(`/api/v1/bins/${enc}/markers?start=${start}&end=${end}`),
  ]);
  if (id !== state.bin) return;
  const points = hist.points.filter(p => p.count != null).map(p => [p.ts_ms, p.count]);
  if (!state.custom && marks.tile && marks.tile.seen_ms) points.push([Math.max(marks.tile.seen_ms, points.length ? points[points.length - 1][0] : 0), marks.tile.count]);
  $("range-from").value = toLocalInput(start); $("range-to").value = toLocalInput(end);
  levelChart($("chart"), { points, start, end, now: Date.now(), rop: marks.reorder_point, ss: marks.safety_stock,
    capacity: marks.capacity, orders: marks.orders, deliveries: marks.deliveries, onZoom: setCustom, fmt: fmtTs });
  if (marks.tile) binFacts(marks.tile);
}
window.addEventListener("resize", () => { if (state.view === "bin") { clearTimeout(state.chartTimer); state.chartTimer = setTimeout(loadBinChart, 200); } });
function binFacts(t) {
  const pill = $("bin-status");
  pill.className = "pill st-" + t.status; pill.textContent = STATUS_LABEL[t.status];
  pill.dataset.status = t.status;
  const rows = [["SKU", t.sku + (t.abc ? ` (class ${t.abc})` : "")], ["On hand", `${t.count}` + (t.cap ? ` of ${t.cap}` : "")],
    ["Reorder point", t.rop], ["Safety stock", t.ss ?? "—"], ["Days of supply", t.dos != null ? fmtDos(t.dos) : "—"], ["Supplier", t.supplier || "—"],
    ["Agent", t.agent || "—"], ["Last reading", fmtTs(t.seen_ms)], ["Confidence", t.conf], ["Ordering", t.paused ? "paused" : "automatic"],
    ["Open order", t.order ? `${ORDER_STATE_SHORT[t.order.state] || t.order.state}, ${t.order.qty} pcs` + (t.order.promised_ms ? `, promised ${fmtTs(t.order.promised_ms)}` : "") : "none"]];
  if (t.fault) rows.push(["Fault", t.fault]);
  $("bin-facts").innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("");
  $("act-pause").textContent = t.paused ? "Resume ordering" : "Pause ordering";
  $("act-pause").dataset.paused = t.paused ? "1" : "";
}
function binTileUpdate(tiles) {
  const t = tiles.find(x => x.id === state.bin);
  if (t) { binFacts(t); if (!state.custom) { clearTimeout(state.chartTimer); state.chartTimer = setTimeout(loadBinChart, 300); } }
}
const EVENT_LABEL = { consumption: "picked", refill: "refilled", recount: "recounted", delivery: "delivery" };
// An audit row as a sentence: who did what, from what to what, and why.
function auditSentence(c) {
  const d = c.detail || {}, who = c.actor || "someone";
  const val = v => v == null ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v);
  const label = k => k.replace(/_/g, " ");
  if (c.action === "bin.policy") {
    const from = d.from || {}, to = d.to || {};
    const parts = Object.keys(to).filter(k => from[k] !== to[k]).map(k => `${label(k)} ${val(from[k])} → ${val(to[k])}`);
    return `${who} changed ${parts.join(" and ") || "the policy"}` + (d.why ? `: ${d.why}` : d.reason ? ` (${d.reason})` : "") + ".";
  }
  if (c.action === "bin.recount") return `${who} recounted the bin: ${val(d.on_hand)} on hand (${d.delta > 0 ? "+" : ""}${val(d.delta)}).`;
  const verb = { "bin.update": "changed", "bin.create": "created the bin", "bin.policy_settings": "changed the policy settings" }[c.action] || c.action.replace(/[._]/g, " ");
  const parts = Object.entries(d).filter(([k]) => !["inputs", "result"].includes(k)).map(([k, v]) => {
    if (v && typeof v === "object" && !Array.isArray(v) && ("from" in v || "old" in v)) return `${label(k)} ${val(v.from ?? v.old)} → ${val(v.to ?? v.new)}`;
    if (Array.isArray(v) && v.length === 2) return `${label(k)} ${val(v[0])} → ${val(v[1])}`;
    return `${label(k)} ${val(v)}`;
  });
  return `${who} ${verb}` + (parts.length ? ": " + parts.join(", ") : "") + ".";
}
async function loadBinEvents() {
  const d = await api(`/api/v1/bins/${encodeURIComponent(state.bin)}/events?limit=15`);
  $("bin-events").innerHTML = table(["Time", "Event", "Change", "After"],
    d.events.map(e => [fmtTs(e.ts_ms), EVENT_LABEL[e.kind] || e.kind, (e.delta > 0 ? "+" : "") + e.delta, e.on_hand_after]), "bin-events-t", null, "cards") +
    (d.changes.length ? "<h4>Changes</h4><ul class=\"audit\">" + d.changes.slice(0, 10).map(c =>
      `<li><time>${esc(fmtTs(c.at_ms))}</time> ${esc(auditSentence(c))}</li>`).join("") + "</ul>" : "");
}
async function loadPolicy() {
  try {
    const p = await api(`/api/v1/bins/${encodeURIComponent(state.bin)}/policy`);
    const f = v => v == null ? "—" : (typeof v === "number" ? +v.toFixed(2) : v);
    // a lead time in days, or hours/minutes/seconds when shorter (demo suppliers deliver in seconds)
    const lt = v => v == null ? "—" : v >= 1 ? +v.toFixed(2) + " days" : v * 86400 < 120 ? Math.round(v * 86400) + " s" : fmtDur(v * 86400e3);
    $("bin-policy").innerHTML = `<p>Policy <b>${esc(p.policy)}</b>, demand <b>${esc(p.demand_class)}</b> (${esc(p.forecast_method)}):
      ${f(p.rate_per_day)} ± ${f(p.sigma_per_day)} per day. Lead time ${lt(p.lead_time_days)} ± ${lt(p.sigma_lead_time_days)}
      (${esc(p.lead_time_source)}, ${p.deliveries} deliveries). Class ${esc(p.abc_class || "—")} → service level ${f(p.service_level)}, z ${f(p.z)}.</p>
      <p>Safety stock <b>${f(p.safety_stock)}</b>, reorder point <b>${f(p.reorder_point)}</b> (applied ${p.applied_reorder_point}),
      order quantity <b>${f(p.order_qty)}</b>${p.kanban_cards ? `, ${p.kanban_cards} kanban cards` : ""}.
      ${p.manual_override ? "Manual override in force." : ""} ${p.why_changed ? "Last change: " + esc(p.why_changed) : ""}</p>` +
      (p.fits_capacity === false ? `<p class="error">Reorder point ${p.applied_reorder_point} plus one order of ${p.applied_order_qty}
      is more than the bin holds (${p.capacity}): the service target asks for more stock than fits. Resize the bin or set a manual min/max.</p>` : "");
  } catch (e) {
    $("bin-policy").textContent = e.status === 404 ? "No replenishment policy computed for this bin yet." : "Policy unavailable: " + e.message;
  }
}
async function binAction(path, body) {
  try {
    const r = await api(`/api/v1/bins/${encodeURIComponent(state.bin)}/${path}`, { method: "POST", body });
    $("act-result").textContent = `done: on hand ${r.on_hand}, tare ${r.tare_g} g` + (r.unit_weight_g ? `, unit ${r.unit_weight_g} g` : "") + (r.order ? `, order ${r.order.slice(0, 8)} placed` : "");
    await Promise.all([loadBinChart(), loadBinEvents()]);
  } catch (e) { $("act-result").textContent = "failed: " + e.message; }
}
$("act-recount-form").addEventListener("submit", ev => { ev.preventDefault(); binAction("recount", { on_hand: +$("act-recount-n").value }); });
$("act-recal-form").addEventListener("submit", ev => { ev.preventDefault(); binAction("recalibrate", { count: +$("act-recal-n").value, solve: $("act-recal-solve").value }); });
$("act-pause").addEventListener("click", () => binAction("pause", { paused: !$("act-pause").dataset.paused }));

// ---------- tables and CSV ----------
// A cell is text, or {html, text} for markup (links, buttons); `cls` "cards" turns rows into
// cards on a phone (each cell labelled by its column), otherwise the table scrolls inside its card.
function table(head, rows, id, rowAttrs, cls) {
  const h = head.map(x => typeof x === "string" ? { label: x } : x);
  return `<div class="tscroll"><table${id ? ` id="${id}"` : ""}${cls ? ` class="${cls}"` : ""}><thead><tr>${h.map(x =>
    `<th${x.title ? ` title="${esc(x.title)}" class="defined"` : ""}>${esc(x.label)}</th>`).join("")}</tr></thead><tbody>` +
    rows.map((r, i) => `<tr${rowAttrs ? rowAttrs(i) : ""}>${r.map((c, j) =>
      `<td data-label="${esc(h[j] ? h[j].label : "")}"><span class="v">${c && typeof c === "object" ? c.html : esc(c)}</span></td>`).join("")}</tr>`).join("") +
    "</tbody></table></div>";
}
// Text a spreadsheet would run as a formula (= + - @, a tab or CR first, after any quotes)
// gets one more leading quote, as jitstock/server/csvcells.py does for the server's CSV;
// a cell that is a number ("-3", "12.5 %") stays as it is.
const csvText = s => /^'*[=+\-@\t\r]/.test(s) && !/^[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?( %)?$/i.test(s) ? "'" + s : s;
document.addEventListener("click", ev => {
  const b = ev.target.closest("button.csv"); if (!b) return;
  const t = $(b.dataset.csv)?.querySelector("table"); if (!t) return;
  const csv = [...t.rows].map(r => [...r.cells].map(c => `"${csvText(c.textContent).replace(/"/g, '""')}"`).join(",")).join("\r\n");
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([csv + "\r\n"], { type: "text/csv" }));
  a.download = `jitstock-${b.dataset.csv}.csv`; a.click(); setTimeout(() => URL.revokeObjectURL(a.href), 1000);
});
const binLink = id => id ? { html: `<a href="#/bin/${encodeURIComponent(id)}">${esc(id)}</a>`, text: id } : "";
const orderLink = id => id ? { html: `<a href="#/orders/${encodeURIComponent(id)}">${esc(id.slice(0, 8))}</a>`, text: id } : "";

// ---------- orders board ----------
// Columns, fixed: Order, Bin, Area, SKU, Supplier, State, Qty, Created, Promised, On hand, Stockout in.
// Rows: oldest order first. The matrix's state columns follow ORDER_STATES.
// Loads overlap when pushes come fast; an older answer must never be drawn over a newer one.
const loadGen = {};
const newest = (key) => { const g = (loadGen[key] || 0) + 1; loadGen[key] = g; return () => loadGen[key] === g; };
async function loadOrders() {
  const current = newest("orders");
  const d = await api("/api/v1/board/orders");
  if (!current()) return;
  state.clockSkew = d.now_ms - Date.now();
  const sup = $("o-supplier").value, st = $("o-state").value;
  const states = [...new Set([...ORDER_STATES.filter(x => x !== "part_received"), ...d.orders.map(o => o.state)])].sort(byOrderState);
  const sups = [...new Set(d.orders.map(o => o.supplier))].sort();
  fillSelect($("o-supplier"), sups, "All suppliers");
  fillSelect($("o-state"), states, "All states");
  $("o-supplier").value = sups.includes(sup) ? sup : ""; $("o-state").value = states.includes(st) ? st : "";
  const orders = d.orders.filter(o => (!$("o-supplier").value || o.supplier === sup) && (!$("o-state").value || o.state === st));
  state.board = { orders: d.orders, states, sups, matrix: "" };
  $("orders-table").innerHTML = d.orders.length ? table(["Order", "Bin", "Area", "SKU", "Supplier", "State", "Qty", "Created", "Promised", "On hand", "Stockout in"],
    orders.map(o => [orderLink(o.id), binLink(o.bin), o.area || "", o.sku, o.supplier, o.state.replace(/_/g, " "), o.qty, fmtTs(o.created_ms), fmtTs(o.promised_ms),
      o.on_hand, o.stockout_ms ? fmtDur(o.stockout_ms - d.now_ms) : "—"]), "orders-t",
    i => ` class="clickable${orders[i].overdue ? " overdue" : ""}" data-order="${orders[i].id}" data-state="${orders[i].state}"` +
      (orders[i].promised_ms ? ` data-promised="${orders[i].promised_ms}"` : "") + (orders[i].overdue ? ` data-overdue-at="${Date.now()}"` : ""), "cards")
    : `<p class="card empty">No open orders: every bin is above its reorder point or covered.</p>`;
  markOverdue();
  window.__ordersRendered = Date.now();
}
// An order whose promise passes while the board is open turns red in place (no reload
// needed); the matrix, the rows and the summary count overdue by one rule: the server
// said so when the board loaded, or the promise has passed since.
function markOverdue() {
  const now = Date.now() + (state.clockSkew || 0);
  for (const tr of document.querySelectorAll("#orders-t tr[data-promised]")) {
    const late = +tr.dataset.promised < now;
    if (late && !tr.classList.contains("overdue")) { tr.classList.add("overdue"); tr.dataset.overdueAt = Date.now(); }
  }
  const n = document.querySelectorAll("#orders-t tbody tr.overdue").length;
  const total = document.querySelectorAll("#orders-t tbody tr").length;
  set($("orders-summary"), total ? `${total} open, ${n} overdue` : "");
  const b = state.board;
  if (!b) return;
  const late = o => o.overdue || (o.promised_ms && o.promised_ms < now);
  const html = `<div class="card matrix"><h3>Open orders by state and supplier</h3>` + table(["Supplier", ...b.states.map(x => x.replace(/_/g, " ")), "overdue"],
    b.sups.map(s => [s, ...b.states.map(x => b.orders.filter(o => o.supplier === s && o.state === x).length), b.orders.filter(o => o.supplier === s && late(o)).length])) + "</div>";
  if (html !== b.matrix) { b.matrix = html; $("orders-matrix").innerHTML = html; }
}
setInterval(() => { if (state.view === "orders") markOverdue(); }, 250);
async function showOrder(id) {
  const box = $("order-detail");
  const o = await api(`/api/v1/orders/${encodeURIComponent(id)}`);
  let hist = [];
  try { hist = await api(`/api/v1/orders/${encodeURIComponent(id)}/transitions`); } catch (e) { /* supplier loop not installed */ }
  box.hidden = false;
  box.innerHTML = `<h3>Order ${esc(id)}</h3><dl class="facts">` + [["Bin", binLink(o.bin_id)], ["Supplier", o.supplier_id], ["State", o.state], ["Qty", o.qty],
    ["Created", fmtTs(o.created_ms)], ["Sent", fmtTs(o.sent_ms)], ["Acknowledged", fmtTs(o.acked_ms)], ["Promised", fmtTs(o.promised_ms)],
    ["Last error", o.last_error || ""]].map(([k, v]) => `<dt>${k}</dt><dd>${v && typeof v === "object" ? v.html : esc(v)}</dd>`).join("") + "</dl>" +
    (hist.length ? "<h4>State history</h4>" + table(["Time", "From", "To", "By", "Why"], hist.map(h => [fmtTs(h.at_ms), h.from_state || "", h.to_state, h.actor, h.reason || ""]), null, null, "cards") : "") +
    ((o.attempts || o.attempt_log || []).length ? "<h4>Delivery attempts</h4>" + table(["#", "Time", "HTTP", "Error"], (o.attempts || o.attempt_log).map(a => [a.n, fmtTs(a.at_ms), a.status_code ?? "", a.error || ""]), null, null, "cards") : "");
}
$("orders-table").addEventListener("click", ev => {
  if (ev.target.closest("a")) return;
  const tr = ev.target.closest("tr[data-order]"); if (!tr) return;
  location.hash = "#/orders/" + encodeURIComponent(tr.dataset.order);
});
$("o-supplier").addEventListener("change", loadOrders); $("o-state").addEventListener("change", loadOrders);

// ---------- alerts ----------
async function loadAlertCount() {
  try {
    const a = await api("/api/v1/alerts?state=open&limit=5000");
    const c = $("alert-count"); c.hidden = !a.length; c.textContent = a.length;
  } catch (e) { /* shown on next refresh */ }
}
// Columns, fixed: Severity, Opened, What happened, What to do, About, Status, action.
async function loadAlerts() {
  const current = newest("alerts");
  const which = $("a-state").value;
  const rows = await api(`/api/v1/alerts?state=${which}`);
  if (!current()) return;
  if (!rows.length) {
    $("alerts-table").innerHTML = `<div class="card empty all-well"><h3>All is well</h3><p>${which === "resolved" ? "No resolved alerts yet." :
      "No open alerts: every bin is reporting, stocked or on order, and every supplier is on time."}</p></div>`;
    window.__alertsRendered = Date.now();
    return;
  }
  const status = a => a.state === "resolved" ? `resolved ${fmtTs(a.resolved_ms)}` :
    a.state === "acknowledged" ? `${a.acked_by} is on it (since ${fmtTs(a.acked_ms)})` : "open — nobody has acknowledged it";
  $("alerts-table").innerHTML = table(["Severity", "Opened", "What happened", "What to do", "About", "Status", ""],
    rows.map(a => [
      { html: `<span class="sev sev-${esc(a.severity)}">${esc(a.severity)}</span>` },
      { html: `<span class="age" data-ms="${a.opened_ms}">${esc(fmtAge(a.opened_ms))}</span><br><small class="muted">${esc(fmtTs(a.opened_ms))}</small>` },
      { html: `<b>${esc(a.headline || a.message)}</b>` + (a.headline && a.headline !== a.message ? `<br><small class="muted">${esc(a.message)}</small>` : "") },
      a.what_to_do || "",
      { html: [a.bin_id ? `bin ${binLink(a.bin_id).html}` : "", a.sku ? esc(a.sku) : "", a.order_id ? `order ${orderLink(a.order_id).html}` : "",
        a.supplier_id ? esc(a.supplier_name || a.supplier_id) : "", a.agent_id ? `agent ${esc(a.agent_id)}` : ""].filter(Boolean).join(" · ") },
      status(a),
      { html: a.state === "open" ? `<button class="ack" data-id="${a.id}">Acknowledge</button>` : "" },
    ]),
    "alerts-t", i => ` data-alert="${rows[i].id}" data-kind="${esc(rows[i].kind)}" data-state="${rows[i].state}" class="sev-row-${esc(rows[i].severity)}"`, "cards");
  window.__alertsRendered = Date.now();
}
$("alerts-table").addEventListener("click", async ev => {
  const b = ev.target.closest("button.ack"); if (!b) return;
  try { await api(`/api/v1/alerts/${b.dataset.id}/ack`, { method: "POST" }); } catch (e) { alert("not acknowledged: " + e.message); }
  loadAlerts(); loadAlertCount();
});
$("a-state").addEventListener("change", loadAlerts);
// ages keep counting while the page stays open
setInterval(() => { if (state.view === "alerts") for (const el of document.querySelectorAll("#alerts-t .age")) set(el, fmtAge(+el.dataset.ms)); }, 5000);

// ---------- KPIs ----------
const KPI_DEFS = {
  "Bins": "Bins in the area.",
  "Stockout events": "Times a bin's count reached zero from above in the period.",
  "Stockout minutes": "Minutes bins spent at zero in the period, summed over bins.",
  "Fill rate": "Supplier fill rate: units received ÷ units ordered, over orders completed in the period (not about stockouts).",
  "Avg on hand": "Time-weighted average units on hand over the period, summed over the area's bins.",
  "Days of supply": "Average on hand ÷ average daily consumption.",
  "Inventory turns": "Consumption ÷ average on hand, annualised (by value when SKUs have a cost).",
  "Orders / week": "Orders created in the period ÷ its length in weeks.",
  "Consumed": "Units picked in the period.",
  "Orders": "Orders placed with the supplier in the period.",
  "Completed": "Orders delivered in the period.",
  "On time": "Completed orders received by their promised time, within the on-time tolerance ÷ completed orders with a promise.",
  "Quality": "Accepted ÷ inspected units.",
  "Avg lead time (h)": "Average hours from order created to received, over completed orders.",
  "Value": "Units consumed × unit cost.",
  "Cumulative": "Share of total consumption value of this SKU and every SKU above it.",
  "Class": "ABC class, as on the tiles: A the SKUs making up about the first 80 % of consumption value, B the next 15 %, C the rest.",
};
const kpiHead = labels => labels.map(l => ({ label: l, title: KPI_DEFS[l] }));
async function loadKpis() {
  const days = +$("k-period").value, end = Date.now(), start = end - days * 86400e3, area = $("k-area").value;
  const current = newest("kpis");
  const k = await api(`/api/v1/kpis?start=${start}&end=${end}` + (area ? `&area=${encodeURIComponent(area)}` : ""));
  if (!current()) return;
  const pct = v => v == null ? "—" : (v * 100).toFixed(1) + " %", n = v => v ?? "—";
  if (!area) fillSelect($("k-area"), k.areas.map(a => a.area).filter(a => a !== "all"), "All areas");
  $("kpi-areas").innerHTML = table(kpiHead(["Area", "Bins", "Stockout events", "Stockout minutes", "Fill rate", "Avg on hand", "Days of supply", "Inventory turns", "Orders / week", "Consumed"]),
    k.areas.map(a => [a.area, a.bins, a.stockout_events, a.stockout_minutes, pct(a.fill_rate), a.avg_on_hand, n(a.days_of_supply), n(a.inventory_turns), a.orders_per_week, a.consumed]), "kpi-areas-t");
  $("kpi-suppliers").innerHTML = table(kpiHead(["Supplier", "Orders", "Completed", "On time", "Quality", "Avg lead time (h)"]),
    k.suppliers.map(s => [s.supplier, s.orders, s.completed, pct(s.on_time_rate), pct(s.quality_rate), n(s.avg_lead_time_h)]), "kpi-suppliers-t");
  $("kpi-pareto").innerHTML = table(kpiHead(["SKU", "Consumed", "Value", "Cumulative", "Class"]), k.pareto.map(p => [p.sku, p.consumed, p.value, pct(p.cum_share), p.class]), "kpi-pareto-t");
  paretoChart($("pareto-chart"), k.pareto);
  $("kpi-updated").textContent = "updated " + fmtTs(Date.now());
  window.__kpisRendered = Date.now();
}
$("k-period").addEventListener("change", loadKpis); $("k-area").addEventListener("change", loadKpis);

// ---------- routing ----------
// Between the first load of the page and the start of its stream: tiles patched in place
// (the floor is not drawn anew), tables of the current view loaded again.
async function catchUp() {
  try {
    if (state.floorLoaded) { const d = await api("/api/v1/floor"); updateTiles(d.tiles, d.now_ms); }
    if (state.view === "orders") await loadOrders();
    if (state.view === "alerts") await loadAlerts();
    if (state.view === "kpis") await loadKpis();
    loadAlertCount();
  } catch (e) { console.warn("catch-up failed", e); }
}
async function refreshView(all) {
  try {
    if (all || state.view === "floor") await loadFloor();
    if (state.view === "bin") await showBin(state.bin, true);
    if (state.view === "orders") await loadOrders();
    if (state.view === "alerts") await loadAlerts();
    if (state.view === "kpis") await loadKpis();
    loadAlertCount();
  } catch (e) { console.warn("refresh failed", e); }
}
async function route() {
  const h = location.hash.replace(/^#\/?/, "") || "floor";
  const [view, ...rest] = h.split("/");
  state.view = ["floor", "bin", "orders", "alerts", "kpis", "account"].includes(view) ? view : "floor";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + state.view;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.dataset.view === state.view);
  try {
    if (state.view === "floor" && !state.floorLoaded) await loadFloor();
    if (state.view === "bin") await showBin(decodeURIComponent(rest.join("/")));
    if (state.view === "orders") {
      await loadOrders();
      if (rest.length) await showOrder(decodeURIComponent(rest.join("/"))); else $("order-detail").hidden = true;
    }
    if (state.view === "alerts") await loadAlerts();
    if (state.view === "kpis") await loadKpis();
  } catch (e) { console.warn(e); }
}
window.addEventListener("hashchange", route);

async function start() {
  try { state.me = await api("/api/v1/me"); } catch (e) { return; }
  $("signin").hidden = true;
  $("who").textContent = state.me.auth === "off" ? "open access (demo)" : `${state.me.name} · ${state.me.role}`;
  $("signout").hidden = state.me.auth === "off";
  $("account-link").hidden = !state.me.username;
  document.body.dataset.role = state.me.role;
  await route();
  if (state.view !== "floor") loadFloor().catch(() => {});
  connect();
  loadAlertCount();
}
start();
