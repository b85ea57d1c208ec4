// The board: reads /api/v1 and draws with the DOM. Names from reports are data: they are
// only ever set with textContent or as attribute values, never parsed as markup.
"use strict";

const state = { metric: "wall", days: 7, flake: "", offset: 0, limit: 25, total: 0, metrics: [] };
const errors = [];
window.addEventListener("error", (e) => { errors.push(String(e.message)); document.body.dataset.errors = errors.join(" | "); });
window.addEventListener("unhandledrejection", (e) => { errors.push(String(e.reason)); document.body.dataset.errors = errors.join(" | "); });

const $ = (id) => document.getElementById(id);
const UNITS = { wall: "ns", cpu: "ns", alloc: "bytes", "peak-rss": "bytes" };

function format(value, metric) {
  if (value === null || value === undefined) return "-";
  const unit = UNITS[metric] || "count";
  if (unit === "ns") {
    const s = value / 1e9;
    return s >= 1 ? s.toFixed(2) + " s" : (value / 1e6).toFixed(1) + " ms";
  }
  const steps = unit === "bytes" ? [[1 << 30, " GiB"], [1 << 20, " MiB"], [1 << 10, " KiB"]] : [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [size, suffix] of steps) if (value >= size) return (value / size).toFixed(1) + suffix;
  return String(value) + (unit === "bytes" ? " B" : "");
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function status(text) { $("status").textContent = text; }

async function loadEvaluations() {
  const q = new URLSearchParams({ metric: state.metric, days: state.days, limit: state.limit, offset: state.offset });
  if (state.flake) q.set("flake", state.flake);
  const page = await api("/api/v1/evaluations?" + q);
  state.total = page.total;
  const body = $("evaluations");
  body.replaceChildren();
  $("value-head").textContent = state.metric;
  page.evaluations.forEach((e, i) => {
    const tr = document.createElement("tr");
    tr.dataset.id = e.id;
    if (e.errors > 0 || !e.complete) tr.className = "error";
    cell(tr, String(state.offset + i + 1), "num");
    cell(tr, e.started_at.replace("T", " ").replace("Z", ""));
    cell(tr, e.flake);
    cell(tr, e.command);
    cell(tr, e.hostname);
    cell(tr, format(e.value, state.metric), "num");
    cell(tr, String(e.errors), "num");
    tr.addEventListener("click", () => { select(body, tr); showEvaluation(e.id); });
    body.appendChild(tr);
  });
  $("page").textContent = page.total === 0 ? "no evaluations in this range" : `${state.offset + 1}–${state.offset + page.evaluations.length} of ${page.total}`;
  $("prev").disabled = state.offset === 0;
  $("next").disabled = page.next_offset === null;
  return page;
}

function select(body, tr) {
  for (const other of body.querySelectorAll("tr.selected")) other.classList.remove("selected");
  tr.classList.add("selected");
}

async function showEvaluation(id) {
  const { evaluation: e, nodes, report_page } = await api(`/api/v1/evaluations/${encodeURIComponent(id)}`);
  $("detail").hidden = false;
  $("detail-id").textContent = `${e.id}: ${e.flake}`;
  $("detail-facts").textContent = `${e.command} on ${e.hostname}, Nix ${e.nix_version || "?"}, ${e.started_at}; ` +
    `${state.metric} ${format(e.metrics[state.metric], state.metric)}; ${e.errors} failing outputs; ${nodes.length} nodes`;
  const link = $("report-link");
  link.hidden = !report_page;
  if (report_page) link.href = report_page;
  $("output-value-head").textContent = state.metric;
  const ranked = nodes.filter((n) => n.metrics[state.metric] > 0 || n.error).sort((a, b) => b.metrics[state.metric] - a.metrics[state.metric]).slice(0, 100);
  const body = $("outputs");
  body.replaceChildren();
  for (const n of ranked) {
    const tr = document.createElement("tr");
    if (n.error) tr.className = "error";
    cell(tr, n.name);
    cell(tr, format(n.metrics[state.metric], state.metric), "num");
    cell(tr, n.error ? "error" : "ok");
    tr.addEventListener("click", () => { select(body, tr); showHistory(e.flake, n); });
    body.appendChild(tr);
  }
  drawTreemap(nodes, e.flake);
  return ranked;
}

// A squarified treemap (Bruls, Huizing and van Wijk) of the graph's leaves, sized by the
// metric's exclusive cost. Each box is a div whose text is the output's name.
function drawTreemap(nodes, flake) {
  const box = $("treemap");
  box.replaceChildren();
  const parents = new Set(nodes.map((n) => n.parent).filter((p) => p !== null));
  const leaves = nodes.filter((n) => !parents.has(n.id) && n.metrics[state.metric] > 0)
    .sort((a, b) => b.metrics[state.metric] - a.metrics[state.metric]).slice(0, 150);
  const total = leaves.reduce((s, n) => s + n.metrics[state.metric], 0);
  if (total === 0) return;
  // Each box says the shortest end of its path that no other box shares (`toplevel` twice
  // becomes `web.config.system.build.toplevel` and `db.…`).
  const labels = new Map();
  for (const n of leaves) {
    let k = 1;
    const suffix = (node, len) => node.path.slice(-len).join(".");
    while (k < n.path.length && leaves.some((o) => o !== n && suffix(o, k) === suffix(n, k))) k++;
    labels.set(n.id, suffix(n, k) || n.name);
  }
  const W = box.clientWidth || 800, H = box.clientHeight || 260;
  const scale = (W * H) / total;
  let items = leaves.map((n) => ({ node: n, area: n.metrics[state.metric] * scale }));
  let rect = { x: 0, y: 0, w: W, h: H };
  const worst = (row, side) => {
    const s = row.reduce((a, r) => a + r.area, 0);
    return Math.max(...row.map((r) => Math.max((side * side * r.area) / (s * s), (s * s) / (side * side * r.area))));
  };
  const place = (row) => {
    const s = row.reduce((a, r) => a + r.area, 0);
    const horizontal = rect.w >= rect.h;
    const thick = horizontal ? s / rect.h : s / rect.w;
    let at = horizontal ? rect.y : rect.x;
    for (const r of row) {
      const len = r.area / thick;
      const [x, y, w, h] = horizontal ? [rect.x, at, thick, len] : [at, rect.y, len, thick];
      at += len;
      const div = document.createElement("div");
      Object.assign(div.style, { left: x + "px", top: y + "px", width: w + "px", height: h + "px" });
      const hue = 210 - Math.min(150, 150 * r.node.metrics[state.metric] / leaves[0].metrics[state.metric]);
      div.style.background = r.node.error ? "#f4b4ae" : `hsl(${hue}, 70%, 78%)`;
      div.textContent = labels.get(r.node.id);
      div.title = `${r.node.name}: ${format(r.node.metrics[state.metric], state.metric)}`;
      div.addEventListener("click", () => showHistory(flake, r.node));
      box.appendChild(div);
    }
    if (horizontal) { rect.x += thick; rect.w -= thick; } else { rect.y += thick; rect.h -= thick; }
  };
  let row = [];
  while (items.length) {
    const side = Math.min(rect.w, rect.h);
    const next = items[0];
    if (row.length === 0 || worst(row.concat([next]), side) <= worst(row, side)) { row.push(next); items.shift(); }
    else { place(row); row = []; }
  }
  if (row.length) place(row);
}

async function showHistory(flake, node) {
  const q = new URLSearchParams({ metric: state.metric, days: Math.max(state.days, 30), bucket: "day", flake, path: JSON.stringify(node.path) });
  const { buckets } = await api("/api/v1/history?" + q);
  $("history").hidden = false;
  $("history-name").textContent = `${node.name} (${state.metric}, p50 and max per day)`;
  drawChart(buckets);
  return buckets;
}

function svg(name, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawChart(buckets) {
  const chart = $("chart");
  chart.replaceChildren();
  const W = 800, H = 260, L = 70, B = 30, T = 10, R = 10;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  if (buckets.length === 0) { root.appendChild(svg("text", { x: L, y: H / 2 }, "no evaluations of this output in the range")); chart.appendChild(root); return; }
  const xs = buckets.map((b) => b.start_epoch);
  const top = Math.max(...buckets.map((b) => b.max), 1);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 86400);
  const px = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
  const py = (v) => H - B - (v / top) * (H - B - T);
  root.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }));
  root.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
  for (const f of [0, 0.5, 1]) root.appendChild(svg("text", { x: 4, y: py(top * f) + 4 }, format(Math.round(top * f), state.metric)));
  root.appendChild(svg("text", { x: L, y: H - 8 }, buckets[0].start));
  root.appendChild(svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, buckets[buckets.length - 1].start));
  const line = (key) => buckets.map((b, i) => `${i ? "L" : "M"}${px(b.start_epoch).toFixed(1)},${py(b[key] || 0).toFixed(1)}`).join(" ");
  root.appendChild(svg("path", { d: line("max"), class: "max" }));
  root.appendChild(svg("path", { d: line("p50"), class: "p50" }));
  for (const b of buckets) {
    const dot = svg("circle", { cx: px(b.start_epoch), cy: py(b.p50 || 0), r: 3, fill: "#2f6fde" });
    dot.appendChild(svg("title", {}, `${b.start}: p50 ${format(b.p50, state.metric)}, max ${format(b.max, state.metric)}, n ${b.n}`));
    root.appendChild(dot);
  }
  chart.appendChild(root);
}

async function loadSide() {
  const q = new URLSearchParams({ metric: "peak-rss", quantile: "0.95", window: "7d" });
  if (state.flake) q.set("flake", state.flake);
  const { predictions } = await api("/api/v1/predictions?" + q);
  const body = $("predictions");
  body.replaceChildren();
  for (const p of predictions) {
    const tr = document.createElement("tr");
    cell(tr, p.flake);
    cell(tr, String(p.n), "num");
    cell(tr, format(p.value, "peak-rss"), "num");
    cell(tr, format(p.max, "peak-rss"), "num");
    body.appendChild(tr);
  }
  const { rules, alerts } = await api("/api/v1/alerts");
  const list = $("alerts");
  list.replaceChildren();
  for (const a of alerts) {
    const li = document.createElement("li");
    li.textContent = `${a.rule}: ${a.output ? a.flake + " / " + a.output : a.flake} is ${format(Math.round(a.value), a.metric)}`;
    list.appendChild(li);
  }
  if (alerts.length === 0) {
    const li = document.createElement("li");
    li.style.color = "#2e7d32";
    li.textContent = rules.length ? `no alerts (${rules.length} rules)` : "no rules configured (serve --rule …)";
    list.appendChild(li);
  }
}

async function refresh() {
  status("loading…");
  try {
    await Promise.all([loadEvaluations(), loadSide()]);
    status("");
  } catch (e) {
    status("error: " + e.message);
    throw e;
  }
}

// `#selftest`: drives the board like a user and reports in the DOM, for the browser test.
async function selftest() {
  const first = document.querySelector("#evaluations tr");
  if (!first) throw new Error("no evaluations listed");
  const outputs = await showEvaluation(first.dataset.id);
  if (!document.querySelector("#treemap div")) throw new Error("no treemap");
  if (outputs.length === 0) throw new Error("no outputs");
  const e = await api(`/api/v1/evaluations/${first.dataset.id}`);
  const node = e.nodes.find((n) => n.name === outputs[0].name);
  const buckets = await showHistory(e.evaluation.flake, node);
  if (buckets.length === 0 || !document.querySelector("#chart path.p50")) throw new Error("no history chart");
}

async function main() {
  const index = await api("/api/v1");
  for (const m of index.metrics) {
    const option = document.createElement("option");
    option.value = option.textContent = m;
    $("metric").appendChild(option);
  }
  $("metric").value = state.metric;
  $("metric").addEventListener("change", () => { state.metric = $("metric").value; state.offset = 0; refresh(); });
  $("days").addEventListener("change", () => { state.days = Number($("days").value); state.offset = 0; refresh(); });
  $("flake").addEventListener("change", () => { state.flake = $("flake").value.trim(); state.offset = 0; refresh(); });
  $("controls").addEventListener("submit", (e) => e.preventDefault());
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadEvaluations(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; loadEvaluations(); });
  const days = new URLSearchParams(location.search).get("days");
  if (days) { state.days = Number(days); $("days").value = days; }
  await refresh();
  if (location.hash === "#selftest") {
    try { await selftest(); document.body.dataset.selftest = errors.length ? "fail: " + errors.join(" | ") : "ok"; }
    catch (e) { document.body.dataset.selftest = "fail: " + e.message; }
  } else if (location.hash.startsWith("#first")) {
    // The most expensive evaluation and its most expensive output (or, with `#first=TEXT`,
    // the first output whose name holds TEXT), opened: for screenshots.
    const want = decodeURIComponent(location.hash.slice("#first=".length));
    const first = document.querySelector("#evaluations tr");
    if (first) {
      select($("evaluations"), first);
      await showEvaluation(first.dataset.id);
      const rows = [...document.querySelectorAll("#outputs tr")];
      const output = rows.find((r) => want && r.firstChild.textContent.includes(want)) || rows[0];
      if (output) output.click();
    }
  }
}

main().catch((e) => { status("error: " + e.message); document.body.dataset.selftest = "fail: " + e.message; });
