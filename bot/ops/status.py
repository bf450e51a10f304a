"""The read-only status page: an aiohttp app serving the page, ``/api/*`` JSON and ``/health``.

What it shows: positions (entry, mark, stop, liquidation price, distance to liquidation as a bar),
guard state (halt, cooldowns, breakers, counters against their limits), the last guard decisions
with every rule's figures, the last sweep actions, and an equity chart (SVG drawn by the script).

Routes, all ``GET`` (``HEAD`` too); any other method is answered 405:

- ``/``               the page (header rendered on the server, the rest filled in by ``/app.js``)
- ``/app.js``, ``/app.css``  the page's script and style (self-contained: no CDN, no fonts)
- ``/api/status``     ``Engine.snapshot()``
- ``/api/decisions``  newest guard decisions (``?limit=`` 1..500, default 20; ``?symbol=``)
- ``/api/actions``    newest sweep actions (same parameters)
- ``/api/trades``     newest fills (same parameters)
- ``/api/equity``     equity snapshots, oldest first (``?limit=`` 1..5000, default 500)
- ``/health``         ``{"ok": true, ...}`` with 200, or 503 when the health provider says no

Authentication. With a token configured, every route except ``/health`` needs either the header
``Authorization: Bearer <token>`` or the session cookie the page sets: opening ``/?token=<token>``
once answers with a redirect to ``/`` and an ``HttpOnly; SameSite=Strict`` cookie holding an HMAC
of the token (never the token itself), so the token leaves the address bar and the history.
Tokens are compared in constant time. The access log is off (a token in a URL is not logged).

Escaping. Server-rendered text goes through ``html.escape``; the script inserts data only with
``textContent`` and DOM/SVG element constructors, never ``innerHTML``. A Content-Security-Policy
allowing only this origin's script and style backs that up. JSON is strict (non-finite floats
become the strings ``"inf"``/``"nan"``).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.state.heartbeat import check_health, judge
from bot.state.history import action_dict, decision_dict, fill_dict
from bot.state.store import Store, json_safe

Snapshot = Callable[[], Mapping[str, Any]]
HealthProvider = Callable[[], tuple[bool, Mapping[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE = "guardbot_status"
MAX_ROWS = 500
MAX_EQUITY = 5000
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_SNAPSHOT_KEY: web.AppKey[Snapshot] = web.AppKey("snapshot")
_STORE_KEY = web.AppKey("store", Store)
_HEALTH_KEY: web.AppKey[HealthProvider] = web.AppKey("health")


# -- JSON ----------------------------------------------------------------------------------
def json_response(data: Any, status: int = 200) -> web.Response:
    body = json.dumps(json_safe(data), allow_nan=False, default=str)
    return web.Response(
        text=body, status=status, content_type="application/json", headers=SECURITY_HEADERS
    )


# -- auth ----------------------------------------------------------------------------------
def cookie_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token, not the token."""
    return hmac.new(token.encode(), b"guardbot-status-cookie", hashlib.sha256).hexdigest()


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def authorized(request: web.Request, token: str) -> bool:
    """The request carries the bearer token or the session cookie (constant-time compares)."""
    given = _bearer(request)
    if given is not None and hmac.compare_digest(given.encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE)
    return cookie is not None and hmac.compare_digest(cookie.encode(), cookie_value(token).encode())


def _unauthorized(request: web.Request) -> web.Response:
    headers = {**SECURITY_HEADERS, "WWW-Authenticate": 'Bearer realm="guardbot"'}
    if request.path.startswith("/api/"):
        body = json.dumps({"error": "unauthorized"})
        return web.Response(text=body, status=401, content_type="application/json", headers=headers)
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<link rel="icon" href="data:,"><title>guardbot status: token needed</title></head>'
        "<body><h1>guardbot status</h1><p>This page needs the status token: open "
        "<code>/?token=&lt;token&gt;</code> once, or send "
        "<code>Authorization: Bearer &lt;token&gt;</code>.</p></body></html>"
    )
    return web.Response(text=page, status=401, content_type="text/html", headers=headers)


def _auth_middleware(token: str) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/health":
            return await handler(request)
        if request.path == "/" and "token" in request.query:
            given = request.query["token"]
            if hmac.compare_digest(given.encode(), token.encode()):
                response = web.Response(status=303, headers={**SECURITY_HEADERS, "Location": "/"})
                response.set_cookie(
                    COOKIE, cookie_value(token), httponly=True, samesite="Strict", path="/"
                )
                return response
            return _unauthorized(request)
        if not authorized(request, token):
            return _unauthorized(request)
        return await handler(request)

    return check


# -- handlers ------------------------------------------------------------------------------
def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"limit must be an integer, got {raw!r}"}),
            content_type="application/json",
        ) from None
    return max(1, min(value, most))


def _symbol(request: web.Request) -> str | None:
    return request.query.get("symbol") or None


async def page(request: web.Request) -> web.Response:
    snap = request.app[_SNAPSHOT_KEY]()
    run_id = html.escape(str(snap.get("run_id", "")))
    mode = html.escape(str(snap.get("mode", "")))
    text = PAGE.replace("{{run_id}}", run_id).replace("{{mode}}", mode)
    return web.Response(text=text, content_type="text/html", headers=SECURITY_HEADERS)


async def script(request: web.Request) -> web.Response:
    return web.Response(text=SCRIPT, content_type="text/javascript", headers=SECURITY_HEADERS)


async def style(request: web.Request) -> web.Response:
    return web.Response(text=STYLE, content_type="text/css", headers=SECURITY_HEADERS)


async def api_status(request: web.Request) -> web.Response:
    return json_response(dict(request.app[_SNAPSHOT_KEY]()))


async def api_decisions(request: web.Request) -> web.Response:
    store = request.app[_STORE_KEY]
    rows = store.recent_decisions(_limit(request, 20, MAX_ROWS), _symbol(request))
    return json_response({"decisions": [decision_dict(r) for r in rows]})


async def api_actions(request: web.Request) -> web.Response:
    store = request.app[_STORE_KEY]
    rows = store.recent_actions(_limit(request, 20, MAX_ROWS), _symbol(request))
    return json_response({"actions": [action_dict(r) for r in rows]})


async def api_trades(request: web.Request) -> web.Response:
    store = request.app[_STORE_KEY]
    rows = store.recent_trades(_limit(request, 20, MAX_ROWS), _symbol(request))
    return json_response({"trades": [fill_dict(r) for r in rows]})


async def api_equity(request: web.Request) -> web.Response:
    rows = request.app[_STORE_KEY].recent_equity(_limit(request, 500, MAX_EQUITY))
    points = [
        {"ts": r.ts, "equity": r.equity, "wallet": r.wallet, "upnl": r.upnl} for r in reversed(rows)
    ]
    return json_response({"equity": points})


async def health_route(request: web.Request) -> web.Response:
    ok, detail = request.app[_HEALTH_KEY]()
    return json_response({**dict(detail), "ok": bool(ok)}, status=200 if ok else 503)


# -- app -----------------------------------------------------------------------------------
def make_app(
    snapshot: Snapshot,
    store: Store,
    *,
    token: str | None,
    health: HealthProvider,
) -> web.Application:
    """The status app over a running engine's ``snapshot`` and its ``store``.

    ``token`` (None or empty: open) guards every route but ``/health``; ``health`` returns
    ``(ok, detail)`` for ``/health``.
    """
    middlewares = [_auth_middleware(token)] if token else []
    app = web.Application(middlewares=middlewares)
    app[_SNAPSHOT_KEY] = snapshot
    app[_STORE_KEY] = store
    app[_HEALTH_KEY] = health
    app.router.add_get("/", page)
    app.router.add_get("/app.js", script)
    app.router.add_get("/app.css", style)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/decisions", api_decisions)
    app.router.add_get("/api/actions", api_actions)
    app.router.add_get("/api/trades", api_trades)
    app.router.add_get("/api/equity", api_equity)
    app.router.add_get("/health", health_route)
    return app


def heartbeat_health(state_dir: Path, max_age_s: float) -> HealthProvider:
    """A ``/health`` provider reading the heartbeat file, as ``guardbot health`` does."""

    def provider() -> tuple[bool, Mapping[str, Any]]:
        result = check_health(state_dir, max_age_s)
        beat = result.beat
        return result.ok, {
            "detail": result.detail,
            "age_s": result.age_s,
            "status": beat.get("status"),
            "run_id": beat.get("run_id"),
            "positions": beat.get("positions"),
            "halted": beat.get("halted"),
        }

    return provider


def published_health(published: Any, max_age_s: float) -> HealthProvider:
    """A ``/health`` provider over the snapshot the trading loop publishes (``bot.ops.http``):
    unhealthy while nothing is published yet, when the last one is older than ``max_age_s``
    (the trading loop is stuck), or when ``judge`` finds a reason in its health facts — the
    same judgement as ``guardbot health``."""

    def provider() -> tuple[bool, Mapping[str, Any]]:
        snap, at = published.value, published.at
        if snap is None or at is None:
            return False, {"detail": "starting: nothing published yet"}
        now = time.time()
        if now - at > max_age_s:
            why = f"trading loop stalled: last snapshot {now - at:.0f}s old (limit {max_age_s:g}s)"
            return False, {"detail": why, "reasons": [why]}
        facts = snap.get("health") or {}
        reasons = judge(facts, now)
        return not reasons, {
            "detail": "; ".join(reasons) if reasons else "ok",
            "reasons": reasons,
            "run_id": snap.get("run_id"),
            "positions": len(snap.get("positions") or []),
            "halted": (snap.get("halt") or {}).get("kind"),
        }

    return provider


async def start_status(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on ``host:port`` (port 0: any free port, see ``bound_port``)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port the first site of ``runner`` listens on."""
    address = runner.addresses[0]
    return int(address[1])


async def stop_status(runner: web.AppRunner) -> None:
    await runner.cleanup()


# -- the page ------------------------------------------------------------------------------
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
    const [s, d, a, e] = await Promise.all([
      get("/api/status"), get("/api/decisions?limit=20"), get("/api/actions?limit=20"),
      get("/api/equity?limit=500"),
    ]);
    showStatus(s);
    showDecisions(d);
    showActions(a);
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
