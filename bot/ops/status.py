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
- ``/api/trades``     newest fills and round trips (same parameters), today's realised PnL
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

from bot.ops.status_page import PAGE, SCRIPT, STYLE
from bot.state.heartbeat import check_health, judge
from bot.state.history import action_dict, decision_dict, fill_dict, trip_dict
from bot.state.store import Store, json_safe
from bot.state.trips import round_trips

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
    """Newest fills and round trips, and today's realised PnL (UTC day) per close reason."""
    store = request.app[_STORE_KEY]
    limit, symbol = _limit(request, 20, MAX_ROWS), _symbol(request)
    rows = store.recent_trades(limit, symbol)
    trips = round_trips(store.fills_of(symbol))
    day = time.time() // 86_400 * 86_400
    today: dict[str, float] = {}
    for t in trips:
        if t.closed_at >= day:
            today[t.reason] = today.get(t.reason, 0.0) + t.net
    return json_response(
        {
            "fills": [fill_dict(r) for r in rows],
            "trades": [trip_dict(t) for t in reversed(trips[-limit:])],
            "realized_today": {"net": sum(today.values()), "by_reason": today, "since": day},
        }
    )


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
