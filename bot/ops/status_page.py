"""The status page itself: its HTML, style and script (served by ``bot.ops.status``).

Self-contained: no CDN, no fonts. The script fills the page from ``/api/*`` every 5 s, inserting
data only with ``textContent`` and DOM/SVG constructors (never ``innerHTML``); a red banner
shows the health reasons while the bot is blind or stale.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<title>guardbot status</title>
</head>
<body>
<header>
  <h1>guardbot status</h1>
  <p class="meta">run <code id="run-id">{{run_id}}</code> · exchange <code>{{mode}}</code> ·
  updated <span id="updated">never</span> <span id="error" class="bad"></span></p>
  <p id="halt" class="banner" hidden></p>
  <p id="blind" class="banner blind" role="alert" hidden></p>
  <p id="existing" class="banner" hidden></p>
</header>
<main>
<section>
  <h2>Positions</h2>
  <table id="positions">
    <thead><tr><th>symbol</th><th>side</th><th>amount</th><th>entry</th><th>mark</th>
    <th>stop</th><th>liquidation</th><th>distance to liquidation</th><th>leverage</th>
    <th>uPnL</th></tr></thead>
    <tbody></tbody>
  </table>
  <p class="summary">wallet <span id="wallet">-</span> · equity <span id="equity">-</span></p>
</section>
<section>
  <h2>Guard state</h2>
  <table id="counters">
    <thead><tr><th>counter</th><th>value</th><th>limit</th><th></th></tr></thead>
    <tbody></tbody>
  </table>
  <table id="cooldowns">
    <thead><tr><th>symbol</th><th>kind</th><th>until</th><th>reason</th></tr></thead>
    <tbody></tbody>
  </table>
  <p class="summary">guards on: <span id="guards-enabled">-</span></p>
</section>
<section>
  <h2>Equity</h2>
  <div id="chart"></div>
</section>
<section>
  <h2>Last guard decisions</h2>
  <table id="decisions">
    <thead><tr><th>time</th><th>symbol</th><th>side</th><th>amount</th><th>outcome</th>
    <th>code</th><th>reason</th><th>figures</th></tr></thead>
    <tbody></tbody>
  </table>
</section>
<section>
  <h2>Recent trades</h2>
  <p class="summary">realised today (UTC): <span id="realized-today">-</span></p>
  <table id="trades">
    <thead><tr><th>closed</th><th>symbol</th><th>side</th><th>amount</th><th>entry</th>
    <th>exit</th><th>net</th><th>why</th></tr></thead>
    <tbody></tbody>
  </table>
</section>
<section>
  <h2>Last guard actions</h2>
  <table id="actions">
    <thead><tr><th>time</th><th>kind</th><th>symbol</th><th>rule</th><th>code</th>
    <th>reason</th><th>result</th></tr></thead>
    <tbody></tbody>
  </table>
</section>
</main>
<script src="/app.js"></script>
</body>
</html>
"""

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1rem 2rem; color: #1b1f24; }
h1 { margin: 0; font-size: 1.4rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
.meta, .summary { color: #57606a; }
table { border-collapse: collapse; margin-bottom: .5rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: .25rem .6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; }
.banner { background: #ffebe9; border: 1px solid #cf222e; padding: .5rem; }
.blind { background: #cf222e; color: #fff; font-weight: bold; }
.bad, tr.reject td.outcome { color: #cf222e; font-weight: 600; }
tr.resize td.outcome { color: #9a6700; }
.empty { color: #8c959f; font-style: italic; }
meter { width: 8rem; vertical-align: middle; }
details summary { cursor: pointer; }
pre { margin: 0; font-size: 12px; white-space: pre-wrap; }
#chart svg { border: 1px solid #d0d7de; background: #fff; }
"""

SCRIPT = r"""
"use strict";
const SVG = "http://www.w3.org/2000/svg";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function num(v, digits) {
  if (v === null || v === undefined) return "-";
  if (typeof v !== "number") return String(v);
  return v.toLocaleString("en-US", {maximumFractionDigits: digits === undefined ? 6 : digits});
}

function when(ts) {
  if (typeof ts !== "number") return "-";
  return new Date(ts * 1000).toISOString().replace(".000Z", "Z");
}

function cell(row, text, cls) {
  const td = el("td", text, cls);
  row.appendChild(td);
  return td;
}

function fill(tableId, rows, width, build) {
  const body = document.querySelector("#" + tableId + " tbody");
  const out = [];
  for (const r of rows) {
    const tr = document.createElement("tr");
    build(tr, r);
    out.push(tr);
  }
  if (out.length === 0) {
    const tr = document.createElement("tr");
    const td = el("td", "none", "empty");
    td.colSpan = width;
    tr.appendChild(td);
    out.push(tr);
  }
  body.replaceChildren(...out);
}

async function get(path) {
  const r = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function distanceBar(td, pct) {
  if (typeof pct !== "number") { td.textContent = "-"; return; }
  const m = document.createElement("meter");
  m.min = 0; m.max = 50; m.low = 5; m.high = 15; m.optimum = 50;
  m.value = Math.min(pct, 50);
  m.title = num(pct, 2) + " % from liquidation";
  td.appendChild(m);
  td.appendChild(document.createTextNode(" " + num(pct, 2) + " %"));
}

function showStatus(s) {
  document.getElementById("run-id").textContent = s.run_id;
  document.getElementById("wallet").textContent = num(s.wallet, 2);
  document.getElementById("equity").textContent = num(s.equity, 2);
  document.getElementById("guards-enabled").textContent = (s.guards_enabled || []).join(", ");
  const blind = document.getElementById("blind");
  const health = s.health || {};
  if (health.ok === false) {
    blind.hidden = false;
    blind.textContent = "UNHEALTHY: " + (health.reasons || []).join("; ");
  } else {
    blind.hidden = true;
    blind.textContent = "";
  }
  const halt = document.getElementById("halt");
  if (s.halt) {
    halt.hidden = false;
    const until = s.halt.until === null ? "until resumed" : "until " + when(s.halt.until);
    halt.textContent = "HALTED (" + s.halt.kind + "): " + s.halt.reason + ", " + until;
  } else if (s.entries_stopped) {
    halt.hidden = false;
    halt.textContent = "entries stopped (shutting down)";
  } else {
    halt.hidden = true;
    halt.textContent = "";
  }
  const existing = document.getElementById("existing");
  const found = Object.entries(s.seatbelt_existing || {});
  existing.hidden = found.length === 0;
  existing.textContent = found.length === 0 ? "" : "Found at start, left as they are until "
    + "`guardbot seatbelt apply`: " + found.map(([sym, w]) => sym + ": "
    + (w || "being judged")).join("; ");
  fill("positions", s.positions || [], 10, (tr, p) => {
    tr.dataset.symbol = p.symbol;
    cell(tr, p.symbol);
    cell(tr, p.side);
    cell(tr, num(p.amount), "num");
    cell(tr, num(p.entry, 2), "num");
    cell(tr, num(p.mark, 2), "num");
    cell(tr, num(p.stop, 2), "num stop");
    cell(tr, num(p.liquidation, 2), "num liquidation");
    distanceBar(cell(tr, null, "distance"), p.liq_distance_pct);
    cell(tr, num(p.leverage, 2) + "x " + p.margin_mode);
    cell(tr, num(p.unrealized_pnl, 2), "num");
  });
  const counters = Object.entries(s.counters || {});
  fill("counters", counters, 4, (tr, [name, pair]) => {
    const [value, limit] = pair;
    cell(tr, name.replaceAll("_", " "));
    cell(tr, num(value), "num");
    cell(tr, num(limit), "num");
    const td = cell(tr, null);
    if (typeof limit === "number" && limit > 0) {
      const m = document.createElement("meter");
      m.min = 0; m.max = limit; m.value = Math.min(value, limit);
      m.low = limit * 0.5; m.high = limit * 0.8; m.optimum = 0;
      td.appendChild(m);
    }
  });
  const waits = [];
  for (const [sym, c] of Object.entries(s.cooldowns || {})) waits.push([sym, "cooldown", c]);
  for (const [sym, c] of Object.entries(s.breakers || {})) waits.push([sym, "breaker", c]);
  fill("cooldowns", waits, 4, (tr, [sym, kind, c]) => {
    cell(tr, sym);
    cell(tr, kind);
    cell(tr, when(c.until));
    cell(tr, c.reason);
  });
}

function figuresOf(d) {
  const lines = [];
  for (const v of d.verdicts || []) {
    if (v.outcome === "skip") continue;
    const parts = Object.entries(v.figures || {}).map(([k, x]) => k + "=" + num(x));
    lines.push(v.rule + " " + v.outcome + " (" + v.code + "): " + parts.join(", "));
  }
  return lines.join("\n");
}

function showDecisions(data) {
  fill("decisions", data.decisions, 8, (tr, d) => {
    tr.className = d.outcome;
    const intent = d.intent || {};
    cell(tr, d.time);
    cell(tr, d.symbol);
    cell(tr, intent.side + (intent.reduce_only ? " (reduce)" : ""));
    cell(tr, num(d.outcome === "reject" ? intent.amount : d.amount), "num");
    cell(tr, d.outcome, "outcome");
    cell(tr, d.code, "code");
    cell(tr, d.reason, "reason");
    const td = cell(tr, null);
    const details = document.createElement("details");
    const n = (d.verdicts || []).length;
    details.appendChild(el("summary", n + (n === 1 ? " rule" : " rules")));
    details.appendChild(el("pre", figuresOf(d)));
    td.appendChild(details);
  });
}

function showActions(data) {
  fill("actions", data.actions, 7, (tr, a) => {
    cell(tr, a.time);
    cell(tr, a.kind);
    cell(tr, a.symbol === null ? "-" : a.symbol);
    cell(tr, a.rule);
    cell(tr, a.code);
    cell(tr, a.reason);
    cell(tr, (a.executed ? "done" : "not done") + (a.result ? ": " + a.result : ""));
  });
}

function showTrades(data) {
  const today = data.realized_today || {};
  const parts = Object.entries(today.by_reason || {}).map(([k, v]) => k + " " + num(v, 2));
  document.getElementById("realized-today").textContent =
    num(today.net || 0, 2) + (parts.length ? " (" + parts.join(", ") + ")" : "");
  fill("trades", data.trades, 8, (tr, t) => {
    cell(tr, t.time);
    cell(tr, t.symbol);
    cell(tr, t.side);
    cell(tr, num(t.amount), "num");
    cell(tr, num(t.entry_price), "num");
    cell(tr, num(t.exit_price), "num");
    cell(tr, num(t.net, 2), "num");
    cell(tr, t.role + (t.closed ? "" : " (part)"));
  });
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function showEquity(data) {
  const box = document.getElementById("chart");
  const pts = (data.equity || []).filter((p) => typeof p.equity === "number");
  if (pts.length === 0) {
    box.replaceChildren(el("p", "no equity snapshots yet", "empty"));
    return;
  }
  const W = 720, H = 220, L = 70, R = 10, T = 10, B = 30;
  const xs = pts.map((p) => p.ts), ys = pts.map((p) => p.equity);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
  const sx = (x) => L + (x1 === x0 ? (W - L - R) / 2 : (x - x0) / (x1 - x0) * (W - L - R));
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const root = svg("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img"});
  root.appendChild(svg("title", {})).textContent = "equity over time";
  root.appendChild(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#8c959f"}));
  root.appendChild(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#8c959f"}));
  for (const y of [y0, y1]) {
    const t = svg("text", {x: L - 6, y: sy(y) + 4, "text-anchor": "end", "font-size": 11});
    t.textContent = num(y, 2);
    root.appendChild(t);
  }
  for (const [x, anchor] of [[x0, "start"], [x1, "end"]]) {
    const t = svg("text", {x: sx(x), y: H - 10, "text-anchor": anchor, "font-size": 11});
    t.textContent = when(x);
    root.appendChild(t);
  }
  const line = pts.map((p) => sx(p.ts).toFixed(1) + "," + sy(p.equity).toFixed(1)).join(" ");
  root.appendChild(svg("polyline", {
    id: "equity-line", points: line, fill: "none", stroke: "#0969da", "stroke-width": 2,
  }));
  box.replaceChildren(root);
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const [s, d, a, e, t] = await Promise.all([
      get("/api/status"), get("/api/decisions?limit=20"), get("/api/actions?limit=20"),
      get("/api/equity?limit=500"), get("/api/trades?limit=20"),
    ]);
    showStatus(s);
    showDecisions(d);
    showActions(a);
    showTrades(t);
    showEquity(e);
    document.getElementById("updated").textContent = new Date().toISOString();
    error.textContent = "";
    document.body.dataset.loaded = "1";
  } catch (exc) {
    error.textContent = "refresh failed: " + exc.message;
  }
}

refresh();
setInterval(refresh, 5000);
"""
