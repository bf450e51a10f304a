"""The status app over a real store: auth, /health, the JSON endpoints and escaping in the HTML.

The snapshot is a hand-written dict (the shape ``Engine.snapshot()`` returns) and the store a
real SQLite file with decisions, actions and equity written through its public methods; the
app is driven with aiohttp's test client (no browser here; see test_status_browser.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.ops.status import (
    COOKIE,
    bound_port,
    cookie_value,
    heartbeat_health,
    make_app,
    start_status,
    stop_status,
)
from bot.state.heartbeat import write_heartbeat
from bot.state.store import Store
from guards.types import Action, Decision, OrderIntent, Verdict

BTC = "BTC/USDT:USDT"
TOKEN = "s3cret-token"
EVIL = '<script>alert("x")</script>&'


def snapshot(**over: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {
        "ts": 1_743_508_800.0,
        "run_id": "run-1",
        "mode": "paper",
        "wallet": 10_000.0,
        "equity": 10_012.5,
        "positions": [
            {
                "symbol": BTC,
                "side": "long",
                "amount": 0.01,
                "entry": 60_000.0,
                "mark": 61_250.0,
                "mark_age_s": 1.0,
                "stop": 58_800.0,
                "take_profit": None,
                "liquidation": 40_300.0,
                "liq_distance_pct": float("inf"),
                "leverage": 3.0,
                "margin_mode": "isolated",
                "notional": 612.5,
                "unrealized_pnl": 12.5,
            }
        ],
        "halt": None,
        "entries_stopped": False,
        "counters": {"entries_last_hour": [1, 4]},
        "cooldowns": {},
        "breakers": {},
        "decisions": 2,
        "actions": 1,
        "guards_enabled": ["stop_loss"],
    }
    snap.update(over)
    return snap


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "state") as s:
        refused = Decision(
            outcome="reject",
            intent=OrderIntent(BTC, "long", 0.5, leverage=3.0),
            amount=0.0,
            code="stop_missing",
            reason="an opening order must carry a stop",
            verdicts=(
                Verdict("stop_loss", "reject", "stop_missing", "no stop", figures={"risk": 1.5}),
            ),
        )
        allowed = Decision(
            outcome="allow",
            intent=OrderIntent(BTC, "long", 0.01, leverage=3.0, stop_price=58_800.0),
            amount=0.01,
            code="ok",
            reason="",
            stop_price=58_800.0,
        )
        s.record_decision(allowed, 100.0, "run-1")
        s.record_decision(refused, 200.0, "run-1")
        s.record_action(
            Action("place_stop", BTC, "stop_loss", "stop_attached", "stop was missing"),
            150.0,
            True,
            "stop placed",
            "run-1",
        )
        for ts, equity in ((10.0, 10_000.0), (30.0, 10_020.0), (20.0, 9_990.0)):
            s.record_equity(ts, equity, equity, equity, 0.0, "run-1")
        yield s


def always(ok: bool, **detail: Any) -> Any:
    def provider() -> tuple[bool, Mapping[str, Any]]:
        return ok, detail

    return provider


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = make_app(snapshot, store, token=None, health=always(True, detail="fine"))
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.fixture
async def locked(store: Store) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = make_app(snapshot, store, token=TOKEN, health=always(False, detail="stale"))
    async with TestClient(TestServer(app)) as c:
        yield c


BEARER = {"Authorization": f"Bearer {TOKEN}"}
ROUTES = ["/", "/app.js", "/app.css", "/api/status", "/api/decisions", "/api/equity"]


# -- auth ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ROUTES)
async def test_every_route_but_health_needs_the_token(
    locked: TestClient[Any, Any], path: str
) -> None:
    assert (await locked.get(path)).status == 401
    wrong = await locked.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await locked.get(path, headers=BEARER)).status == 200


async def test_health_is_open_even_with_a_token(locked: TestClient[Any, Any]) -> None:
    r = await locked.get("/health")
    assert r.status == 503  # the provider says not ok
    assert await r.json() == {"ok": False, "detail": "stale"}


async def test_token_in_the_url_becomes_a_cookie_and_leaves_the_url(
    locked: TestClient[Any, Any],
) -> None:
    r = await locked.get(f"/?token={TOKEN}", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/"
    set_cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert TOKEN not in set_cookie  # an HMAC of it, not the token
    assert r.cookies[COOKIE].value == cookie_value(TOKEN)
    # the client keeps the cookie: the page and the API now answer without a header
    assert (await locked.get("/")).status == 200
    assert (await locked.get("/api/status")).status == 200


async def test_wrong_token_in_the_url_sets_no_cookie(locked: TestClient[Any, Any]) -> None:
    r = await locked.get("/?token=guess", allow_redirects=False)
    assert r.status == 401 and "Set-Cookie" not in r.headers
    forged = await locked.get("/api/status", cookies={COOKIE: cookie_value("guess")})
    assert forged.status == 401


async def test_read_only(client: TestClient[Any, Any]) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert (await client.request(method, "/api/status")).status == 405


# -- health --------------------------------------------------------------------------------
async def test_health_200_when_ok(client: TestClient[Any, Any]) -> None:
    r = await client.get("/health")
    assert r.status == 200
    assert await r.json() == {"ok": True, "detail": "fine"}


def test_heartbeat_health_reads_the_heartbeat_file(tmp_path: Path) -> None:
    provider = heartbeat_health(tmp_path, max_age_s=30.0)
    ok, detail = provider()
    assert not ok and "no heartbeat" in detail["detail"]
    write_heartbeat(tmp_path, status="running", run_id="r9", positions=1, halted=None)
    ok, detail = provider()
    assert ok and detail["run_id"] == "r9" and detail["positions"] == 1
    write_heartbeat(tmp_path, status="stopped", run_id="r9")
    assert provider()[0] is False


# -- JSON ----------------------------------------------------------------------------------
async def test_status_is_the_snapshot_in_strict_json(client: TestClient[Any, Any]) -> None:
    r = await client.get("/api/status")
    assert r.content_type == "application/json"
    text = await r.text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    pos = data["positions"][0]
    assert (pos["symbol"], pos["stop"], pos["liquidation"]) == (BTC, 58_800.0, 40_300.0)
    assert pos["liq_distance_pct"] == "inf"
    assert data["counters"]["entries_last_hour"] == [1, 4]


async def test_decisions_newest_first_with_verdict_figures(client: TestClient[Any, Any]) -> None:
    data = await (await client.get("/api/decisions")).json()
    rows = data["decisions"]
    assert [d["code"] for d in rows] == ["stop_missing", "ok"]
    refused = rows[0]
    assert refused["outcome"] == "reject" and refused["symbol"] == BTC
    assert refused["intent"]["amount"] == 0.5
    assert refused["verdicts"][0]["figures"] == {"risk": 1.5}
    one = await (await client.get("/api/decisions?limit=1")).json()
    assert len(one["decisions"]) == 1
    assert (await client.get("/api/decisions?limit=x")).status == 400
    other = await (await client.get("/api/decisions?symbol=ETH/USDT:USDT")).json()
    assert other["decisions"] == []


async def test_actions_and_equity(client: TestClient[Any, Any]) -> None:
    actions = (await (await client.get("/api/actions")).json())["actions"]
    assert [(a["kind"], a["code"], a["result"]) for a in actions] == [
        ("place_stop", "stop_attached", "stop placed")
    ]
    equity = (await (await client.get("/api/equity")).json())["equity"]
    # recorded at ts 10, 30, 20: served oldest first for the chart
    assert [(p["ts"], p["equity"]) for p in equity] == [
        (10.0, 10_000.0),
        (20.0, 9_990.0),
        (30.0, 10_020.0),
    ]
    empty = await (await client.get("/api/trades")).json()
    assert (empty["fills"], empty["trades"], empty["realized_today"]["net"]) == ([], [], 0)


async def test_trades_are_round_trips_with_todays_realised_pnl(
    client: TestClient[Any, Any], store: Store
) -> None:
    now = time.time()
    for tid, side, price, fee, rp, role in (
        ("1", "buy", 60_000.0, 0.24, None, "entry"),
        ("2", "sell", 59_000.0, 0.236, -10.0, "stop"),  # 0.01 BTC down 1,000
    ):
        store.record_fill(
            trade_id=tid, symbol=BTC, side=side, amount=0.01, price=price, ts=now - 60 + int(tid),
            order_id=f"o{tid}", fee=fee, fee_currency="USDT", role=role, realized_pnl=rp,
        )  # fmt: skip
    data = await (await client.get("/api/trades")).json()
    assert [f["role"] for f in data["fills"]] == ["stop", "entry"]  # newest first
    (trip,) = data["trades"]
    assert (trip["entry_price"], trip["exit_price"], trip["reason"]) == (60_000.0, 59_000.0, "stop")
    assert trip["net"] == pytest.approx(-10.0 - 0.24 - 0.236)
    assert data["realized_today"]["net"] == pytest.approx(-10.476)
    assert data["realized_today"]["by_reason"] == {"stop": pytest.approx(-10.476)}


# -- HTML ----------------------------------------------------------------------------------
async def test_server_rendered_text_is_escaped(store: Store) -> None:
    def evil() -> dict[str, Any]:
        return snapshot(run_id=EVIL, mode='"><img src=x onerror=alert(1)>')

    app = make_app(evil, store, token=None, health=always(True))
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/")
        body = await r.text()
    assert "<script>alert" not in body and "<img src=x" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in body
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in body
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


async def test_page_is_self_contained(client: TestClient[Any, Any]) -> None:
    body = await (await client.get("/")).text()
    assert "http://" not in body.replace("http://www.w3.org", "") and "https://" not in body
    script = await (await client.get("/app.js")).text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "https://" not in script


async def test_start_and_stop_on_a_free_port(store: Store) -> None:
    import aiohttp

    app = make_app(snapshot, store, token=None, health=always(True))
    runner = await start_status(app, "127.0.0.1", 0)
    try:
        port = bound_port(runner)
        assert port > 0
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/health") as r,
        ):
            assert r.status == 200
    finally:
        await stop_status(runner)
    t0 = time.monotonic()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/health")
    assert time.monotonic() - t0 < 5
